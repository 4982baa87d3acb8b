"""Box geometry as small pure functions over NumPy arrays or torch tensors.

Convention (docs/CONVENTIONS.md): boxes are float ``x1, y1, x2, y2`` pixel edges, so the width is
``x2 - x1`` with no ``+1``.  Functions that take ``(N, 4)`` arrays also accept torch tensors where
noted; NMS uses torchvision-free batched code so it runs on CPU and CUDA alike.
"""
from __future__ import annotations

import math

import numpy as np
import torch


def box_area(boxes: np.ndarray) -> np.ndarray:
    """Area of ``(N, 4)`` boxes; empty or inverted boxes have area 0."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return np.clip(boxes[:, 2] - boxes[:, 0], 0, None) * np.clip(boxes[:, 3] - boxes[:, 1], 0, None)


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box in ``a`` (N, 4) with every box in ``b`` (M, 4): an ``(N, M)`` array.

    Pairs whose union is empty have IoU 0.
    """
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    ix1 = np.maximum(a[:, None, 0], b[None, :, 0])
    iy1 = np.maximum(a[:, None, 1], b[None, :, 1])
    ix2 = np.minimum(a[:, None, 2], b[None, :, 2])
    iy2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(ix2 - ix1, 0, None) * np.clip(iy2 - iy1, 0, None)
    union = box_area(a)[:, None] + box_area(b)[None, :] - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)
    return out


def max_iou(crops: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """For each crop, the highest IoU with any face (0 when there are no faces)."""
    crops = np.asarray(crops).reshape(-1, 4)
    if len(np.asarray(faces).reshape(-1, 4)) == 0:
        return np.zeros(len(crops))
    return iou_matrix(crops, faces).max(axis=1)


def _overlap_torch(boxes: torch.Tensor, mode: str) -> torch.Tensor:
    x1, y1, x2, y2 = boxes.unbind(1)
    area = (x2 - x1).clamp(min=0) * (y2 - y1).clamp(min=0)
    ix1 = torch.maximum(x1[:, None], x1[None, :])
    iy1 = torch.maximum(y1[:, None], y1[None, :])
    ix2 = torch.minimum(x2[:, None], x2[None, :])
    iy2 = torch.minimum(y2[:, None], y2[None, :])
    inter = (ix2 - ix1).clamp(min=0) * (iy2 - iy1).clamp(min=0)
    if mode == "min":
        denom = torch.minimum(area[:, None], area[None, :])
    else:
        denom = area[:, None] + area[None, :] - inter
    return torch.where(denom > 0, inter / denom.clamp(min=1e-12), torch.zeros_like(inter))


def nms(boxes, scores, threshold: float, mode: str = "union"):
    """Greedy non-maximum suppression; returns kept indices, highest score first.

    ``mode='union'`` is IoU, ``mode='min'`` divides the intersection by the smaller area (the
    overlap the reference MTCNN uses for its final O-Net NMS).  A box is suppressed when its overlap
    with a kept, higher-scoring box is *above* ``threshold``.  Accepts NumPy arrays (returns a NumPy
    index array) or torch tensors (returns a tensor on the same device).  Ties keep the earlier box.
    """
    as_numpy = not isinstance(boxes, torch.Tensor)
    b = torch.as_tensor(np.asarray(boxes, dtype=np.float32) if as_numpy else boxes).reshape(-1, 4).float()
    s = torch.as_tensor(np.asarray(scores, dtype=np.float32) if as_numpy else scores).reshape(-1).float()
    if mode not in ("union", "min"):
        raise ValueError(f"nms mode must be 'union' or 'min', got {mode!r}")
    if b.shape[0] == 0:
        keep = torch.zeros(0, dtype=torch.long, device=b.device)
        return keep.numpy() if as_numpy else keep
    order = torch.sort(s, descending=True, stable=True).indices
    overlap = _overlap_torch(b[order], mode) > threshold
    # The greedy pass over a precomputed boolean matrix: cheap because candidates per call are
    # bounded (P-Net output per scale, R/O-Net survivors); the matrix work is vectorised.
    suppressed = torch.zeros(len(order), dtype=torch.bool)
    overlap_cpu = overlap.cpu()
    keep_positions = []
    for i in range(len(order)):
        if suppressed[i]:
            continue
        keep_positions.append(i)
        suppressed |= overlap_cpu[i]
    keep = order[torch.tensor(keep_positions, dtype=torch.long, device=order.device)]
    return keep.cpu().numpy() if as_numpy else keep


def batched_nms(boxes: torch.Tensor, scores: torch.Tensor, groups: torch.Tensor, threshold: float,
                mode: str = "union") -> torch.Tensor:
    """NMS applied separately within each group id (e.g. per image or per pyramid scale).

    Offsets each group's boxes so that boxes of different groups never overlap, then runs one
    NMS: the standard trick that turns many small NMS calls into one.
    """
    if boxes.numel() == 0:
        return torch.zeros(0, dtype=torch.long, device=boxes.device)
    span = (boxes.max() - boxes.min()).clamp(min=1) + 1
    offsets = groups.to(boxes.dtype)[:, None] * span * 2
    return nms(boxes + offsets, scores, threshold, mode)


def calibrate(boxes, offsets):
    """Apply box regression: ``offsets`` (N, 4) are fractions of the box width/height.

    ``x1' = x1 + dx1 * w`` and so on, as in the paper's bounding box regression.  NumPy or torch.
    """
    w = boxes[:, 2] - boxes[:, 0]
    h = boxes[:, 3] - boxes[:, 1]
    scale = (np if isinstance(boxes, np.ndarray) else torch).stack([w, h, w, h], 1)
    return boxes + offsets * scale


def box_offsets(crops: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Regression targets: offsets of ``faces`` from ``crops``, divided by the crop size.

    The inverse of :func:`calibrate`: ``calibrate(crops, box_offsets(crops, faces)) == faces``.
    """
    crops = np.asarray(crops, dtype=np.float64).reshape(-1, 4)
    faces = np.asarray(faces, dtype=np.float64).reshape(-1, 4)
    w = crops[:, 2] - crops[:, 0]
    h = crops[:, 3] - crops[:, 1]
    scale = np.stack([w, h, w, h], 1)
    return ((faces - crops) / scale).astype(np.float32)


def landmark_offsets(crops: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """Landmark targets: ``(N, 5, 2)`` points as fractions of the crop, from its top-left corner."""
    crops = np.asarray(crops, dtype=np.float64).reshape(-1, 4)
    pts = np.asarray(landmarks, dtype=np.float64).reshape(-1, 5, 2)
    origin = crops[:, None, :2]
    size = np.stack([crops[:, 2] - crops[:, 0], crops[:, 3] - crops[:, 1]], 1)[:, None, :]
    return ((pts - origin) / size).astype(np.float32)


def landmarks_from_offsets(crops, offsets):
    """Inverse of :func:`landmark_offsets`: ``(N, 5, 2)`` fractions back to pixels."""
    lib = np if isinstance(crops, np.ndarray) else torch
    origin = crops[:, None, :2]
    size = lib.stack([crops[:, 2] - crops[:, 0], crops[:, 3] - crops[:, 1]], 1)[:, None, :]
    return origin + offsets.reshape(-1, 5, 2) * size


def square(boxes):
    """Grow each box to a square on its longer side, keeping its centre (NumPy or torch)."""
    w = boxes[:, 2] - boxes[:, 0]
    h = boxes[:, 3] - boxes[:, 1]
    lib = np if isinstance(boxes, np.ndarray) else torch
    side = lib.maximum(w, h)
    cx = boxes[:, 0] + w * 0.5
    cy = boxes[:, 1] + h * 0.5
    return lib.stack([cx - side * 0.5, cy - side * 0.5, cx + side * 0.5, cy + side * 0.5], 1)


def clip_boxes(boxes: np.ndarray, width: float, height: float) -> np.ndarray:
    """Clip boxes to the image ``[0, width] x [0, height]``."""
    boxes = np.array(boxes, dtype=np.float64).reshape(-1, 4)
    boxes[:, [0, 2]] = np.clip(boxes[:, [0, 2]], 0, width)
    boxes[:, [1, 3]] = np.clip(boxes[:, [1, 3]], 0, height)
    return boxes


def xywh_to_xyxy(boxes: np.ndarray) -> np.ndarray:
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return np.concatenate([boxes[:, :2], boxes[:, :2] + boxes[:, 2:]], 1)


def xyxy_to_xywh(boxes: np.ndarray) -> np.ndarray:
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], 1)


def ellipse_to_box(ellipses: np.ndarray) -> np.ndarray:
    """Tight axis-aligned box of FDDB ellipses ``(major_r, minor_r, angle_rad, cx, cy)``.

    For an ellipse with semi-axes ``a`` (along angle θ) and ``b``, the half-width of its bounding
    box is ``sqrt(a² cos²θ + b² sin²θ)`` and the half-height ``sqrt(a² sin²θ + b² cos²θ)``.
    """
    e = np.asarray(ellipses, dtype=np.float64).reshape(-1, 5)
    a, b, theta, cx, cy = e.T
    half_w = np.sqrt((a * np.cos(theta)) ** 2 + (b * np.sin(theta)) ** 2)
    half_h = np.sqrt((a * np.sin(theta)) ** 2 + (b * np.cos(theta)) ** 2)
    return np.stack([cx - half_w, cy - half_h, cx + half_w, cy + half_h], 1)


def box_to_ellipse(boxes: np.ndarray, height_scale: float = 1.2) -> np.ndarray:
    """The common conversion of a face box to an FDDB-style upright ellipse.

    Paper-style detectors cut the face at the brow and chin while FDDB's ellipses cover the whole
    head, so the box height is stretched by ``height_scale`` and the centre moved up by
    ``(height_scale - 1) / 2`` of the box height, which keeps the chin where it was.  The minor
    radius is half the box width.  Returns ``(major_r, minor_r, angle_rad, cx, cy)`` with the major
    axis vertical (angle pi/2, FDDB's convention for an upright face).
    """
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    w = b[:, 2] - b[:, 0]
    h = b[:, 3] - b[:, 1]
    cx = (b[:, 0] + b[:, 2]) / 2
    cy = (b[:, 1] + b[:, 3]) / 2 - h * (height_scale - 1) / 2
    major = h * height_scale / 2
    minor = w / 2
    return np.stack([major, minor, np.full_like(major, math.pi / 2), cx, cy], 1)
