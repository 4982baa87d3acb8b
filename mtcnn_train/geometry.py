"""Box geometry as small pure functions over NumPy arrays or torch tensors.

Convention (docs/CONVENTIONS.md): boxes are float ``x1, y1, x2, y2`` pixel edges, so the width is
``x2 - x1`` with no ``+1``.  Functions that take ``(N, 4)`` arrays also accept torch tensors where
noted; NMS uses torchvision-free batched code so it runs on CPU and CUDA alike.
"""
from __future__ import annotations

import math
from typing import Callable

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


def _pair_overlap(boxes: torch.Tensor, first: torch.Tensor, second: torch.Tensor, mode: str) -> torch.Tensor:
    """:func:`_overlap_torch` for a list of index pairs: the same arithmetic, element by element."""
    return paired_overlap(boxes[first], boxes[second], mode)


def paired_overlap(a: torch.Tensor, b: torch.Tensor, mode: str = "union") -> torch.Tensor:
    """IoU (``mode="union"``) or intersection over the smaller area (``"min"``) of ``a[i]`` with
    ``b[i]``, for two ``(N, 4)`` tensors of boxes; 0 where both are empty."""
    area_a = (a[:, 2] - a[:, 0]).clamp(min=0) * (a[:, 3] - a[:, 1]).clamp(min=0)
    area_b = (b[:, 2] - b[:, 0]).clamp(min=0) * (b[:, 3] - b[:, 1]).clamp(min=0)
    iw = (torch.minimum(a[:, 2], b[:, 2]) - torch.maximum(a[:, 0], b[:, 0])).clamp(min=0)
    ih = (torch.minimum(a[:, 3], b[:, 3]) - torch.maximum(a[:, 1], b[:, 1])).clamp(min=0)
    inter = iw * ih
    denom = torch.minimum(area_a, area_b) if mode == "min" else area_a + area_b - inter
    return torch.where(denom > 0, inter / denom.clamp(min=1e-12), torch.zeros_like(inter))


#: Candidate pairs examined per chunk when searching for overlapping boxes (bounds memory).
_PAIR_CHUNK = 1 << 20


def _x_overlapping_pairs(boxes: torch.Tensor, groups: torch.Tensor | None,
                         keep: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None
                         ) -> tuple[torch.Tensor, torch.Tensor]:
    """All index pairs of boxes of the same group whose x-extents overlap with positive width
    (and, with ``keep``, for which ``keep(first, second)`` is true: applied chunk by chunk, so the
    x-overlapping pairs never exist all at once -- on a large image at a low threshold they number
    tens of millions, a gigabyte as index tensors).

    A sweep instead of an ``N x N`` matrix: sorted by ``x1``, box ``b`` overlaps box ``a`` in x
    (and comes after it) exactly when ``x1_a <= x1_b < x2_a``, a contiguous run found with
    ``searchsorted``.  Groups are kept apart by shifting each group's keys past the previous one
    (in float64, for the sort only; overlaps are computed on the true coordinates).  Each pair is
    returned once, as ``(first, second)`` in arbitrary order.
    """
    n = boxes.shape[0]
    starts = boxes[:, 0].double()
    ends = boxes[:, 2].double()
    if groups is not None and n:
        lo = torch.minimum(starts.min(), ends.min())
        span = (torch.maximum(starts.max(), ends.max()) - lo) + 1.0
        shift = (groups.to(boxes.device).double() - groups.min().double()) * span * 2 - lo
        starts, ends = starts + shift, ends + shift
    order = torch.argsort(starts, stable=True)
    sorted_starts = starts[order]
    run_end = torch.searchsorted(sorted_starts, ends[order], side="left")
    position = torch.arange(n, device=boxes.device)
    counts = (run_end - position - 1).clamp(min=0)
    firsts, seconds = [], []
    # Chunk the boxes so that at most about _PAIR_CHUNK candidate pairs exist at a time.
    cumulative = counts.cumsum(0)
    total = int(cumulative[-1]) if n else 0
    chunk_starts = [0]
    if total > _PAIR_CHUNK:
        marks = torch.arange(_PAIR_CHUNK, total, _PAIR_CHUNK, device=boxes.device)
        chunk_starts += torch.searchsorted(cumulative, marks, side="right").tolist()
    chunk_starts = sorted(set(chunk_starts)) + [n]
    for lo_i, hi_i in zip(chunk_starts[:-1], chunk_starts[1:]):
        c = counts[lo_i:hi_i]
        m = int(c.sum())
        if m == 0:
            continue
        first = position[lo_i:hi_i].repeat_interleave(c)
        run_start = torch.cumsum(c, 0) - c
        step = torch.arange(m, device=boxes.device) - run_start.repeat_interleave(c)
        first, second = order[first], order[first + 1 + step]
        if keep is not None:
            kept = keep(first, second)
            first, second = first[kept], second[kept]
        firsts.append(first)
        seconds.append(second)
    if not firsts:
        empty = torch.zeros(0, dtype=torch.long, device=boxes.device)
        return empty, empty
    return torch.cat(firsts), torch.cat(seconds)


#: Rounds of :func:`_greedy_pass`'s vectorised update before it walks the boxes one by one.
_GREEDY_ROUNDS = 64


def _greedy_pass(hi: np.ndarray, lo: np.ndarray, n: int) -> np.ndarray:
    """Which of ``n`` boxes greedy NMS keeps, in score-rank space, given the overlapping pairs
    ``(hi[k], lo[k])`` (``hi[k] < lo[k]``: the higher-scoring box first).

    Greedy NMS keeps box ``j`` exactly when no kept box ranked before it overlaps it.  That rule
    has one solution (box 0 is kept; each later box is settled by the boxes before it), so
    applying it to all boxes at once, ``kept = no kept partner ranks before``, from "all kept"
    until nothing changes reaches it: after round ``r`` every box whose chain of suppressions is
    at most ``r`` long is settled.  Chains are short in detection (a few rounds, each a few NumPy
    passes over the pairs, where walking the boxes in Python took milliseconds per image); a long
    chain falls back to the walk.
    """
    kept = np.ones(n, dtype=bool)
    for _ in range(_GREEDY_ROUNDS):
        update = np.ones(n, dtype=bool)
        update[lo[kept[hi]]] = False
        if np.array_equal(update, kept):
            return kept
        kept = update
    removed = np.zeros(n, dtype=bool)
    by_source = np.argsort(hi, kind="stable")
    hi, lo = hi[by_source], lo[by_source]
    sources, bounds = np.unique(hi, return_index=True)
    bounds = np.append(bounds, len(hi)).tolist()
    # Sources are visited in score order; a box suppresses others only if it is itself kept.
    for k, src in enumerate(sources.tolist()):
        if not removed[src]:
            removed[lo[bounds[k]:bounds[k + 1]]] = True
    return ~removed


def _greedy_nms(b: torch.Tensor, s: torch.Tensor, threshold: float, mode: str,
                groups: torch.Tensor | None = None) -> torch.Tensor:
    """Exact greedy NMS (optionally within groups); kept indices, highest score first.

    Only pairs that overlap above ``threshold`` matter, so they are found first (a sweep over x,
    then the overlap test, all tensor code) and the greedy pass walks that sparse list in score
    order with NumPy.  Same result as the textbook loop over a full overlap matrix, in memory
    linear in the number of overlapping pairs.
    """
    n = b.shape[0]
    order = torch.sort(s, descending=True, stable=True).indices
    rank = torch.empty_like(order)
    rank[order] = torch.arange(n, device=order.device)
    if threshold < 0:  # every pair overlaps "above" a negative threshold, even disjoint ones
        ii, jj = torch.triu_indices(n, n, 1, device=b.device)
        same = ii == ii if groups is None else groups[ii] == groups[jj]
        first, second = ii[same], jj[same]
    else:
        first, second = _x_overlapping_pairs(b, groups, lambda f, s: _pair_overlap(b, f, s, mode) > threshold)
    # In rank space: the higher-scoring box of each pair suppresses the other.
    ra, rb = rank[first], rank[second]
    hi = torch.minimum(ra, rb).cpu().numpy()
    lo = torch.maximum(ra, rb).cpu().numpy()
    kept = _greedy_pass(hi, lo, n)
    kept_ranks = torch.from_numpy(np.flatnonzero(kept)).to(order.device)
    return order[kept_ranks]


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
    keep = _greedy_nms(b, s.to(b.device), threshold, mode)
    return keep.cpu().numpy() if as_numpy else keep


def batched_nms(boxes: torch.Tensor, scores: torch.Tensor, groups: torch.Tensor, threshold: float,
                mode: str = "union") -> torch.Tensor:
    """NMS applied separately within each group id (e.g. per image or per pyramid scale).

    One pass for all groups: boxes of different groups are never compared, and overlaps are
    computed on the true coordinates, so a group's result does not depend on the other groups.
    Returns kept indices, highest score first (ties: the earlier box).
    """
    if mode not in ("union", "min"):
        raise ValueError(f"nms mode must be 'union' or 'min', got {mode!r}")
    if boxes.numel() == 0:
        return torch.zeros(0, dtype=torch.long, device=boxes.device)
    b = boxes.reshape(-1, 4).float()
    return _greedy_nms(b, scores.reshape(-1).float().to(b.device), threshold, mode, groups.reshape(-1).to(b.device))


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


#: Point order after a horizontal flip: the left eye becomes the right eye, the mouth corners swap,
#: the nose stays (points are left eye, right eye, nose, left and right mouth corner).
MIRROR_POINT_ORDER = (1, 0, 2, 4, 3)


def mirror_boxes(boxes, width: float):
    """Boxes ``(x1, y1, x2, y2)`` as they lie in the horizontally flipped image of ``width``
    pixels (edge coordinates: pixel column ``c`` spans ``[c, c + 1)`` and becomes
    ``[width - c - 1, width - c)``).  Its own inverse; NumPy (or anything array-like) or torch."""
    lib = torch if isinstance(boxes, torch.Tensor) else np
    boxes = boxes.reshape(-1, 4) if lib is torch else np.asarray(boxes).reshape(-1, 4)
    return lib.stack([width - boxes[:, 2], boxes[:, 1], width - boxes[:, 0], boxes[:, 3]], 1)


def mirror_point_fractions(points):
    """Points given as fractions of their crop, ``(N, 5, 2)`` or flat ``(N, 10)`` (NumPy or torch),
    as they read in the horizontally flipped crop: ``x -> 1 - x`` and left/right swapped.  Its own
    inverse; the result has the input's shape."""
    lib = np if isinstance(points, np.ndarray) else torch
    p = points.reshape(-1, 5, 2)[:, list(MIRROR_POINT_ORDER)]
    return lib.stack([1.0 - p[:, :, 0], p[:, :, 1]], -1).reshape(points.shape)


def mirror_box_offsets(offsets):
    """Box offsets ``(N, 4)`` (see :func:`calibrate`) read on a horizontally flipped crop, as they
    apply to the unflipped crop: the flipped left edge is the right edge, ``(dx1, dy1, dx2, dy2) ->
    (-dx2, dy1, -dx1, dy2)``: :func:`mirror_boxes` about ``x = 0``.  Its own inverse; NumPy or torch."""
    return mirror_boxes(offsets, 0.0)


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


def inclusive_to_edges(boxes):
    """Reference-MTCNN boxes (1-based pixel indices, both ends included) to pixel edges.

    The original MTCNN code and facenet-pytorch describe a box by the 1-based indices of its first
    and last pixel (width ``x2 - x1 + 1``): pixel edges are ``x1 - 1, y1 - 1, x2, y2``.  NumPy or
    torch.  Landmark points need no conversion: the reference already places them on edges.
    """
    shift = np.array([1, 1, 0, 0], dtype=np.float32) if isinstance(boxes, np.ndarray) else \
        torch.tensor([1.0, 1.0, 0.0, 0.0], dtype=boxes.dtype, device=boxes.device)
    return boxes - shift


def edges_to_inclusive(boxes):
    """Inverse of :func:`inclusive_to_edges`."""
    shift = np.array([1, 1, 0, 0], dtype=np.float32) if isinstance(boxes, np.ndarray) else \
        torch.tensor([1.0, 1.0, 0.0, 0.0], dtype=boxes.dtype, device=boxes.device)
    return boxes + shift
