"""Checkpoints: plain dicts of tensors and basic values, loadable with ``weights_only=True``.

A checkpoint never runs code on load.  Layout of a run folder::

    RUN_DIR/pnet.pt  rnet.pt  onet.pt      best weights of each stage (what the detector loads)
    RUN_DIR/<stage>/last.pt  best.pt       full training state / best weights, with config and metrics
    RUN_DIR/<stage>/tb/                    TensorBoard events
"""
from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mtcnn_train.errors import UserError, first_line
from mtcnn_train.io import atomic_write_bytes
from mtcnn_train.nets import build_net

CHECKPOINT_VERSION = 1


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> None:
    """Serialise to memory, then write atomically: a crash never leaves a torn checkpoint."""
    payload = dict(payload)
    payload.setdefault("checkpoint_version", CHECKPOINT_VERSION)
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True``: pickled code in a file is refused."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: checkpoint not found")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises UnpicklingError, RuntimeError, EOFError, ...
        raise UserError(f"{path}: not a valid mtcnn-train checkpoint ({torch_load_failure(exc)})") from None
    if not isinstance(payload, dict) or "model" not in payload or "stage" not in payload:
        raise UserError(f"{path}: not an mtcnn-train checkpoint (no 'model' and 'stage' entries)")
    return payload


def checkpoint_window_rule(path: str | Path) -> str:
    """How the P-Net of a checkpoint maps its output cells back to image pixels
    (:data:`mtcnn_train.detector.WINDOW_RULES`).  The trainer records ``exact``; checkpoints without
    the entry (imported published weights, and runs older than the entry) use ``reference``."""
    return str(load_checkpoint(path).get("window_rule", "reference"))


def torch_load_failure(exc: BaseException) -> str:
    """Why ``torch.load`` refused a file, in one line.

    torch's refusal of pickled objects opens with a paragraph about ``weights_only`` and states
    the reason (the object it would not load) further down; keep that reason.
    """
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    if not lines:
        return exc.__class__.__name__
    if lines[0].startswith("Weights only load failed"):
        reasons = [line for line in lines[1:] if not line.startswith("Check the documentation")
                   and not line.startswith("Please file an issue")]
        reason = reasons[0] if reasons else "it holds objects other than tensors and plain values"
        return f"refused to load Python objects that could run code: {reason[:300]}"
    return lines[0][:300]


def check_state_dict(state: Any, path: str | Path, stage: str) -> None:
    """The ``model`` entry must map parameter names to finite tensors: anything else is a damaged
    or foreign file, and NaN or infinite weights (a diverged training) would find no faces."""
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                              for k, v in state.items()):
        raise UserError(f"{path}: the 'model' entry is not {stage} weights (expected a mapping of names to "
                        f"tensors, got {type(state).__name__})")
    bad = [name for name, value in state.items() if value.is_floating_point() and not torch.isfinite(value).all()]
    if bad:
        raise UserError(f"{path}: {len(bad)} weight tensor(s) hold NaN or infinite values (first: {bad[0]}); "
                        "the training that wrote them diverged")


def stage_weights_path(run_dir: str | Path, stage: str) -> Path:
    return Path(run_dir) / f"{stage}.pt"


def stage_file(run_dir_or_file: str | Path, stage: str) -> Path:
    """``RUN_DIR/<stage>.pt`` of a run folder, or the given ``.pt`` file."""
    path = Path(run_dir_or_file)
    return stage_weights_path(path, stage) if path.is_dir() else path


def init_record(run_dir_or_file: str | Path, stage: str) -> dict[str, Any]:
    """What a fine-tuned checkpoint records about its starting weights: the file, its SHA-256,
    and where those came from (``source`` of imported weights, or their own starting point)."""
    import hashlib

    path = stage_file(run_dir_or_file, stage)
    payload = load_checkpoint(path)
    record: dict[str, Any] = {"path": str(path.resolve()), "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
    if payload.get("source") is not None:
        record["source"] = str(payload["source"])
    if payload.get("initialised_from") is not None:
        record["initialised_from"] = payload["initialised_from"]
    return record


def load_stage_net(run_dir_or_file: str | Path, stage: str, device: str | torch.device = "cpu") -> nn.Module:
    """Build the ``stage`` net and load its best weights from a run folder (or a ``.pt`` file)."""
    path = stage_file(run_dir_or_file, stage)
    payload = load_checkpoint(path)
    if payload["stage"] != stage:
        raise UserError(f"{path}: holds {payload['stage']} weights, expected {stage}")
    check_state_dict(payload["model"], path, stage)
    net = build_net(stage)
    try:
        net.load_state_dict(payload["model"])
    except RuntimeError as exc:
        raise UserError(f"{path}: weights do not fit {stage} ({first_line(exc)})") from None
    return net.to(device).eval()
