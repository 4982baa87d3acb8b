"""Import the published MTCNN weights (as shipped by facenet-pytorch) into our checkpoints.

facenet-pytorch's ``data/pnet.pt``, ``rnet.pt`` and ``onet.pt`` are plain state dicts (loaded here
with ``weights_only=True``) whose layer names and shapes match :mod:`mtcnn_train.nets`.  Three
layout differences are converted:

* R-Net and O-Net flatten their last feature map after ``permute(0, 3, 2, 1)``, i.e. in
  ``(W, H, C)`` order; ours flatten in PyTorch's ``(C, H, W)`` order, so the columns of
  ``dense4.weight`` (R-Net) and ``dense5.weight`` (O-Net) are reordered;
* O-Net's landmark head ``dense6_3`` gives ``x1..x5, y1..y5``; ours gives ``x1, y1, ..., x5, y5``,
  so its rows are reordered;
* their P-Net and R-Net have no landmark head: ours (``conv4_3``, ``dense5_3``) keep a fixed-seed
  initialisation and the checkpoint lists them under ``untrained``.

Their box outputs are in the reference's 1-based inclusive pixel convention, which the cascade
(:mod:`mtcnn_train.detection.cascade`) reproduces, so no weight needs changing for that.
"""
from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path

import torch

from mtcnn_train.checkpoint import save_checkpoint, stage_weights_path, torch_load_failure
from mtcnn_train.config import Config
from mtcnn_train.stages import STAGES
from mtcnn_train.errors import UserError
from mtcnn_train.nets import build_net

#: Landmark rows: ours (x1, y1, x2, y2, ...) taken from theirs (x1..x5, y1..y5).
LANDMARK_ROWS = [0, 5, 1, 6, 2, 7, 3, 8, 4, 9]
#: Dense layer after the last convolution, and that convolution's output (channels, height, width).
FLATTENED_DENSE = {"rnet": ("dense4.weight", (64, 3, 3)), "onet": ("dense5.weight", (128, 3, 3))}
LANDMARK_HEAD = {"pnet": "conv4_3", "rnet": "dense5_3", "onet": "dense6_3"}


def facenet_data_dir() -> Path:
    """The ``data`` folder of the installed facenet-pytorch package, found without importing it
    (importing it pulls in torchvision and requests)."""
    spec = importlib.util.find_spec("facenet_pytorch")
    if spec is None or not spec.submodule_search_locations:
        raise UserError("facenet-pytorch is not installed here; pass the folder holding its pnet.pt, rnet.pt "
                        "and onet.pt as PATH")
    return Path(list(spec.submodule_search_locations)[0]) / "data"


def dense_columns_to_chw(weight: torch.Tensor, chw: tuple[int, int, int]) -> torch.Tensor:
    """Reorder a dense weight's input columns from a ``(W, H, C)`` flatten to ``(C, H, W)``."""
    channels, height, width = chw
    out_features = weight.shape[0]
    return weight.reshape(out_features, width, height, channels).permute(0, 3, 2, 1).reshape(out_features, -1)


def convert_facenet_state_dict(stage: str, theirs: dict[str, torch.Tensor], source: str = "state dict",
                               seed: int = 0) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Our ``stage`` state dict from facenet-pytorch's; also the layers left untrained.

    Raises :class:`UserError` naming ``source`` when a tensor is missing or has the wrong shape.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # the heads they lack get a reproducible initialisation
        ours = build_net(stage).state_dict()
    theirs = {k: v for k, v in theirs.items() if isinstance(v, torch.Tensor)}
    head = LANDMARK_HEAD[stage]
    has_head = f"{head}.weight" in theirs
    expected = {k for k in ours if has_head or not k.startswith(head + ".")}
    missing = sorted(expected - set(theirs))
    unexpected = sorted(set(theirs) - set(ours))
    if missing or unexpected:
        detail = "; ".join(part for part in (f"missing {', '.join(missing)}" if missing else "",
                                             f"unexpected {', '.join(unexpected)}" if unexpected else "") if part)
        raise UserError(f"{source}: not a facenet-pytorch {stage} state dict ({detail})")
    converted = {}
    for key in expected:
        value = theirs[key].detach().to(torch.float32).clone()
        if stage in FLATTENED_DENSE and key == FLATTENED_DENSE[stage][0] and value.dim() == 2:
            chw = FLATTENED_DENSE[stage][1]
            if value.shape[1] == chw[0] * chw[1] * chw[2]:
                value = dense_columns_to_chw(value, chw)
        if stage == "onet" and key.startswith("dense6_3."):
            value = value[LANDMARK_ROWS]
        if value.shape != ours[key].shape:
            raise UserError(f"{source}: {key} has shape {tuple(value.shape)}, expected {tuple(ours[key].shape)}")
        converted[key] = value
    untrained = [] if has_head else [head]
    for key, value in ours.items():
        converted.setdefault(key, value)
    return converted, untrained


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def import_facenet_weights(source_dir: str | Path | None, out_dir: str | Path, force: bool = False) -> list[Path]:
    """Convert ``pnet.pt``, ``rnet.pt``, ``onet.pt`` from ``source_dir`` (default: the installed
    package's data folder) into ``out_dir/<stage>.pt`` checkpoints.  Returns the written paths.

    All three are read and converted before anything is written, so a damaged file leaves
    ``out_dir`` as it was; existing ``<stage>.pt`` files there (a trained run's) are replaced only
    with ``force``."""
    source = Path(source_dir) if source_dir is not None else facenet_data_dir()
    if not source.is_dir():
        what = "is a file; give the folder" if source.is_file() else "folder not found"
        raise UserError(f"{source}: {what} (it should hold facenet-pytorch's pnet.pt, rnet.pt, onet.pt)")
    files = {stage: source / f"{stage}.pt" for stage in STAGES}
    absent = [p.name for p in files.values() if not p.is_file()]
    if absent:
        raise UserError(f"{source}: missing {', '.join(absent)} (expected facenet-pytorch's pnet.pt, rnet.pt, onet.pt)")
    out_dir = Path(out_dir)
    existing = [stage_weights_path(out_dir, stage) for stage in STAGES if stage_weights_path(out_dir, stage).exists()]
    if existing and not force:
        raise UserError(f"{existing[0]}: exists (weights of another run?); pass --force to replace "
                        f"{'it' if len(existing) == 1 else 'them'}, or import into another folder")
    config = Config().to_dict()
    checkpoints = {}
    for stage, path in files.items():
        try:
            theirs = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # UnpicklingError, RuntimeError, EOFError ...
            raise UserError(f"{path}: cannot read as a state dict ({torch_load_failure(exc)})") from None
        if not isinstance(theirs, dict):
            raise UserError(f"{path}: expected a state dict, got {type(theirs).__name__}")
        model, untrained = convert_facenet_state_dict(stage, theirs, source=str(path))
        checkpoints[stage] = {
            "stage": stage,
            "model": model,
            "config": config,
            "metrics": {},
            "epoch": 0,
            "source": "facenet-pytorch",
            "source_file": str(path),
            "source_sha256": _sha256(path),
            "untrained": untrained,
        }
    written = []
    for stage, checkpoint in checkpoints.items():
        target = stage_weights_path(out_dir, stage)
        save_checkpoint(target, checkpoint)
        written.append(target)
    return written


# --------------------------------------------------------------------------------------------
# Comparing with facenet-pytorch's own detector (parity test, benchmarks/detect_speed.py)


def facenet_to_edges(boxes, points):
    """facenet-pytorch's ``MTCNN.detect(..., landmarks=True)`` output for one image, in our
    convention: boxes from its 1-based inclusive corners to pixel edges (``x1 - 1, y1 - 1, x2,
    y2``); landmarks unchanged (the reference already puts them on pixel edges)."""
    import numpy as np

    from mtcnn_train.geometry import inclusive_to_edges

    if boxes is None or len(boxes) == 0:
        return np.zeros((0, 4), np.float32), np.zeros((0, 5, 2), np.float32)
    return inclusive_to_edges(np.asarray(boxes, np.float32)), np.asarray(points, np.float32).reshape(-1, 5, 2)


def parity_counts(ref_boxes, ref_points, boxes, points, min_iou: float = 0.95, max_point_error: float = 2.0) -> dict:
    """How well one image's detections agree: boxes of each side with a partner on the other at
    IoU >= ``min_iou``, and matched pairs whose five landmarks all lie within ``max_point_error`` px."""
    import numpy as np

    from mtcnn_train.geometry import iou_matrix

    iou = iou_matrix(ref_boxes, boxes)
    ref_matched = iou.max(1) >= min_iou if iou.shape[1] else np.zeros(len(ref_boxes), bool)
    ours_matched = iou.max(0) >= min_iou if iou.shape[0] else np.zeros(len(boxes), bool)
    point_ok, worst = 0, 0.0
    for i in np.flatnonzero(ref_matched):
        if ref_points is None or points is None:
            break
        error = float(np.abs(ref_points[i] - points[int(iou[i].argmax())]).max())
        worst = max(worst, error)
        point_ok += error <= max_point_error
    return {"ref": len(ref_boxes), "ref_matched": int(ref_matched.sum()), "ours": len(boxes),
            "ours_matched": int(ours_matched.sum()), "points_ok": int(point_ok),
            "points_checked": int(ref_matched.sum()), "worst_point_error": worst}


def add_counts(total: dict, counts: dict) -> dict:
    for key, value in counts.items():
        total[key] = max(total.get(key, 0.0), value) if key == "worst_point_error" else total.get(key, 0) + value
    return total
