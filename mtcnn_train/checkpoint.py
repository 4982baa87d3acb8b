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

from mtcnn_train.errors import UserError
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
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
        raise UserError(f"{path}: not a valid mtcnn-train checkpoint ({first[:200]})") from None
    if not isinstance(payload, dict) or "model" not in payload or "stage" not in payload:
        raise UserError(f"{path}: not an mtcnn-train checkpoint (no 'model' and 'stage' entries)")
    return payload


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
    net = build_net(stage)
    try:
        net.load_state_dict(payload["model"])
    except RuntimeError as exc:
        raise UserError(f"{path}: weights do not fit {stage} ({str(exc).splitlines()[0]})") from None
    return net.to(device).eval()
