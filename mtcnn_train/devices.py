"""Which torch device a setting names: the one resolver of ``auto``, ``cpu``, ``cuda`` and ``cuda:N``.

Training (``train.<stage>.device``) and detection (``detection.device``) both name devices the
same way; this module turns the setting into a :class:`torch.device` and refuses, with one line,
a CUDA device that is not there.  Placing each ``torchrun`` rank on its own GPU is the
distributed module's business (:func:`mtcnn_train.training.distributed.rank_device`).
"""
from __future__ import annotations

import torch

from mtcnn_train.errors import UserError


def resolve_device(requested: str | torch.device) -> torch.device:
    """``auto`` picks CUDA when present, else the CPU; ``cuda``/``cuda:N`` must be available.

    A bare ``cuda`` stays without an index (the caller chooses the GPU); ``cuda:N`` must name a
    visible GPU.
    """
    if str(requested) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(requested)
    except (RuntimeError, TypeError):
        raise UserError(f"device {str(requested)!r}: expected auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UserError(f"device {str(requested)!r} requested but CUDA is not available")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise UserError(f"device cuda:{device.index} requested but only {torch.cuda.device_count()} GPU(s) "
                            "are visible")
    return device
