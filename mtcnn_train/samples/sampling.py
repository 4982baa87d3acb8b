"""P-Net training crops: draw candidate boxes, label them by IoU band, cut them out in bulk.

Everything here works on one image (or one batch of small landmark images) and is pure apart
from the random generator it is given, so the orchestration (:mod:`.generate`) can seed each
image's generator from ``(seed, image index)`` and get the same crops whatever process runs it.

Labelling rule (one rule for every crop; ``docs/CONVENTIONS.md`` IoU bands):

* Every candidate's IoU is computed against **every** box of its image, invalid and tiny faces
  included, and the crop is labelled by the **maximum** IoU ``m`` over them.  The face reaching
  the maximum is the crop's target face (its box target is the offset to that face).
* negative: ``m < neg_iou`` -- kept only from the negative draws (random squares and squares
  shifted near a face).
* positive: ``m > pos_iou``; part face: ``part_iou <= m <= pos_iou`` -- kept only from the
  shifted-and-scaled draws around a face, and only when the target face is *usable* (not flagged
  invalid, shorter side at least ``min_face_size``).  A crop cut around face A that overlaps face
  B more is therefore labelled (and regressed) against B, or dropped when B is unusable; so the
  stored label always equals the band of the crop's max IoU with the image's ground truth.
* crops with ``neg_iou <= m < part_iou`` are dropped (ambiguous).
* landmark crops: ``IoU > pos_iou`` with their face box and all five points strictly inside the
  crop; half of them (at random) are mirrored, with left/right points swapped
  (:data:`~mtcnn_train.geometry.MIRROR_POINT_ORDER`).  The stored ``crops`` box is
  the unmirrored source box; the pixels and the targets are mirrored.

Crop boxes are whole pixels (integer edges), squares, and -- for the WIDER draws -- lie inside
the image, as P-Net's sliding window does.  Landmark crops may reach past the edge of small
landmark images (MTFL's 80x80 crops); the part outside reads as zeros (zero padding).
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from mtcnn_train.geometry import box_offsets, iou_matrix, landmark_offsets, mirror_box_offsets, mirror_point_fractions
from mtcnn_train.samples.labels import LABEL_NEGATIVE, LABEL_PART, LABEL_POSITIVE

#: Internal label of candidates that fall in no band (never stored).
DISCARD = 99
#: Smallest crop side drawn, in pixels: P-Net's input size.
MIN_CROP_SIDE = 12
#: Random negatives are drawn this many times over and the first passing ones kept, so crowded
#: images still give their quota without a Python retry loop.
NEGATIVE_OVERSAMPLING = 4
#: Landmark crops drawn per kept one (most pass: IoU > 0.65 is a loose condition for these draws).
LANDMARK_OVERSAMPLING = 3
#: Small images (landmark crops) of one shape up to this side are cut together in one mosaic.
MOSAIC_MAX_SIDE = 256
#: OpenCV's remap indexes the source with 16-bit coordinates.
MOSAIC_MAX_PIXELS_SIDE = 8192


@dataclass(frozen=True)
class Bands:
    """The IoU thresholds of :class:`~mtcnn_train.config.SamplingConfig`."""

    neg_iou: float = 0.3
    part_iou: float = 0.4
    pos_iou: float = 0.65

    @classmethod
    def from_config(cls, sampling) -> "Bands":
        return cls(sampling.neg_iou, sampling.part_iou, sampling.pos_iou)


# --------------------------------------------------------------------------------------------
# Cutting


def pyramid_levels(boxes: np.ndarray, size: int) -> np.ndarray:
    """Power-of-two shrink level per box: the image is box-filtered by ``2**level`` before sampling
    so a large box is area-averaged rather than aliased (the rule of ``imaging.crop_resize``)."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    side = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
    return np.floor(np.log2(np.maximum(side / size, 1.0))).astype(np.int64)


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def crop_resize_fast(image: np.ndarray, boxes: np.ndarray, size: int) -> np.ndarray:
    """Cut ``boxes`` (N, 4 pixel edges) out of ``image`` (H x W x 3 uint8) and resize them to ``size``.

    The sampling of :func:`mtcnn_train.imaging.crop_resize_numpy` -- bilinear at output pixel
    centres, zeros outside the image, and for large boxes a power-of-two box-filtered level
    (``avg_pool2d(ceil_mode=True)``: a partial block at the image's edge averages the pixels it
    covers) -- done with OpenCV on uint8: the levels by exact 2x2 area halving, and all crops of
    one level in ONE ``cv2.remap`` call (the crops are stacked into one tall map).  About 10x
    faster than the float tensor path on CPU; results agree with it within a few grey levels
    (rounding of the uint8 levels and of OpenCV's 1/32-pixel interpolation weights).
    Returns ``N x size x size x C`` uint8.
    """
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    return _cut(image, boxes, np.zeros((len(boxes), 2), np.int64), size, correct_edges=True)


def _level_images(image: np.ndarray, levels: np.ndarray, correct_edges: bool) -> dict[int, np.ndarray]:
    """The pyramid levels that ``levels`` asks for.  Level L pixel (i, j) averages source pixels
    ``[i * 2**L, (i + 1) * 2**L)``; the image is zero-padded to a multiple of the top block so each
    halving is an exact 2x2 average, and partial edge blocks are rescaled to the mean of the
    pixels they cover (``correct_edges``)."""
    height, width = image.shape[:2]
    top = int(levels.max())
    align = 2 ** top
    pad_h, pad_w = _round_up(height, align) - height, _round_up(width, align) - width
    source = cv2.copyMakeBorder(image, 0, pad_h, 0, pad_w, cv2.BORDER_CONSTANT, value=0) if pad_h or pad_w else image
    out = {}
    for level in range(top + 1):
        if level > 0:
            source = cv2.resize(source, (source.shape[1] // 2, source.shape[0] // 2), interpolation=cv2.INTER_AREA)
        if level not in levels:
            continue
        block = 2 ** level
        rows, cols = -(-height // block), -(-width // block)
        # A view is enough: OpenCV reads rows with any stride, so the padded copy is not copied again.
        level_image = image if level == 0 else source[:rows, :cols]
        cover_h, cover_w = height - (rows - 1) * block, width - (cols - 1) * block
        if correct_edges and (cover_h < block or cover_w < block):
            level_image = _rescale_edges(level_image, block / cover_h, block / cover_w)
        out[level] = level_image
    return out


def _rescale_edges(level_image: np.ndarray, scale_bottom: float, scale_right: float) -> np.ndarray:
    """Multiply the last row by ``scale_bottom`` and the last column by ``scale_right`` (corner: both)."""
    fixed = level_image.copy()
    row_scale = np.ones(level_image.shape[0])
    row_scale[-1] = scale_bottom
    col_scale = np.ones(level_image.shape[1])
    col_scale[-1] = scale_right
    bottom = level_image[-1].astype(np.float64) * scale_bottom * col_scale[:, None]
    right = level_image[:, -1].astype(np.float64) * scale_right * row_scale[:, None]
    fixed[-1] = np.clip(np.rint(bottom), 0, 255)
    fixed[:, -1] = np.clip(np.rint(right), 0, 255)
    return fixed


def _fixed_point_maps(boxes: np.ndarray, offsets: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """``cv2.remap`` maps in OpenCV's fixed-point form (``CV_16SC2`` + interpolation table index).

    Computed here in float64 from each box's own coordinates, then shifted by whole-pixel
    ``offsets`` (N, 2): a crop cut from a mosaic tile gets exactly the weights it gets alone.
    """
    bits = 5  # cv2.INTER_BITS: weights in 1/32 pixel
    n = len(boxes)
    steps = (np.arange(size) + 0.5) / size
    # cv2.remap addresses pixel centres at integers; pixel edges are at -0.5, 0.5, ...
    xs = boxes[:, 0:1] + steps[None, :] * (boxes[:, 2:3] - boxes[:, 0:1]) - 0.5
    ys = boxes[:, 1:2] + steps[None, :] * (boxes[:, 3:4] - boxes[:, 1:2]) - 0.5
    fx = np.rint(xs * (1 << bits)).astype(np.int64)
    fy = np.rint(ys * (1 << bits)).astype(np.int64)
    ix = (fx >> bits) + offsets[:, 0:1]
    iy = (fy >> bits) + offsets[:, 1:2]
    frac_x = fx & ((1 << bits) - 1)
    frac_y = fy & ((1 << bits) - 1)
    xy = np.empty((n, size, size, 2), np.int16)
    xy[..., 0] = ix[:, None, :]
    xy[..., 1] = iy[:, :, None]
    table = (frac_y[:, :, None] << bits) + frac_x[:, None, :]
    return xy.reshape(n * size, size, 2), table.astype(np.uint16).reshape(n * size, size)


def _cut(image: np.ndarray, boxes: np.ndarray, offsets: np.ndarray, size: int, correct_edges: bool) -> np.ndarray:
    out = np.zeros((len(boxes), size, size) + image.shape[2:], np.uint8)
    if len(boxes) == 0:
        return out
    if max(image.shape[:2]) >= 32767 - 2 * size:
        # OpenCV's remap indexes with 16-bit coordinates; fall back to the tensor path.
        from mtcnn_train.imaging import crop_resize_numpy

        return crop_resize_numpy(image, (boxes + np.tile(offsets, 2)).astype(np.float32), size)
    levels = pyramid_levels(boxes, size)
    images = _level_images(image, levels, correct_edges)
    per_call = (32767 - 1) // size  # OpenCV's remap also limits the map's height to 16 bits
    for level, source in images.items():
        block = 2 ** level
        members = np.nonzero(levels == level)[0]
        for start in range(0, len(members), per_call):
            index = members[start:start + per_call]
            map_xy, map_table = _fixed_point_maps(boxes[index] / block, offsets[index] // block, size)
            crops = cv2.remap(source, map_xy, map_table, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                              borderValue=0)
            out[index] = crops.reshape((len(index), size, size) + image.shape[2:])
    return out


def crop_resize_many(images: list[np.ndarray], boxes: list[np.ndarray], size: int) -> list[np.ndarray]:
    """:func:`crop_resize_fast` over many images; small images of one shape are cut together.

    Landmark sets such as MTFL are thousands of 80x80 images with ten crops each: one OpenCV call
    per image would cost more than the work.  Images of one shape (sides up to
    :data:`MOSAIC_MAX_SIDE`, divisible by the largest pyramid block) are laid on a zero mosaic in
    aligned cells with zero gutters wider than any crop's overhang, and cut in one call per
    level.  Each crop gets exactly the pixels it would get alone (same pixels, same zero padding,
    same pyramid blocks, same interpolation weights), so batching never changes the output.
    """
    boxes = [np.asarray(b, np.float64).reshape(-1, 4) for b in boxes]
    results: list[np.ndarray | None] = [None] * len(images)
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, (image, box) in enumerate(zip(images, boxes)):
        if len(box) and max(image.shape[:2]) <= MOSAIC_MAX_SIDE:
            groups.setdefault(image.shape, []).append(i)
        else:
            results[i] = crop_resize_fast(image, box, size)
    for shape, members in groups.items():
        align = 2 ** int(pyramid_levels(np.concatenate([boxes[i] for i in members]), size).max())
        if shape[0] % align or shape[1] % align:
            for i in members:  # partial edge blocks need the per-image correction
                results[i] = crop_resize_fast(images[i], boxes[i], size)
            continue
        gutter, cell_h, cell_w = _mosaic_layout(shape, [boxes[i] for i in members], align)
        per_side = max(1, (MOSAIC_MAX_PIXELS_SIDE - gutter) // max(cell_h, cell_w))
        for start in range(0, len(members), per_side * per_side):
            part = members[start:start + per_side * per_side]
            cut = _cut_mosaic([images[i] for i in part], [boxes[i] for i in part], shape,
                              (gutter, cell_h, cell_w), size)
            for i, crops in zip(part, cut):
                results[i] = crops
    return results  # type: ignore[return-value]


def _mosaic_layout(shape: tuple[int, ...], boxes: list[np.ndarray], align: int) -> tuple[int, int, int]:
    """(gutter, cell height, cell width), all multiples of ``align``, for tiles holding ``boxes``."""
    height, width = shape[:2]
    stacked = np.concatenate(boxes)
    overhang = max(0.0, float(-stacked[:, 0].min()), float(-stacked[:, 1].min()),
                   float(stacked[:, 2].max() - width), float(stacked[:, 3].max() - height))
    gutter = _round_up(int(np.ceil(overhang)) + 2, align)
    return gutter, gutter + height, gutter + width


def _cut_mosaic(images: list[np.ndarray], boxes: list[np.ndarray], shape: tuple[int, ...],
                layout: tuple[int, int, int], size: int) -> list[np.ndarray]:
    height, width = shape[:2]
    gutter, cell_h, cell_w = layout
    columns = int(np.ceil(np.sqrt(len(images))))
    rows = int(np.ceil(len(images) / columns))
    mosaic = np.zeros((rows * cell_h + gutter, columns * cell_w + gutter) + tuple(shape[2:]), np.uint8)
    offsets = []
    for k, (image, box) in enumerate(zip(images, boxes)):
        y0 = (k // columns) * cell_h + gutter
        x0 = (k % columns) * cell_w + gutter
        mosaic[y0:y0 + height, x0:x0 + width] = image
        offsets.append(np.tile([[x0, y0]], (len(box), 1)))
    crops = _cut(mosaic, np.concatenate(boxes), np.concatenate(offsets).astype(np.int64), size, correct_edges=False)
    bounds = np.cumsum([0] + [len(b) for b in boxes])
    return [crops[bounds[k]:bounds[k + 1]] for k in range(len(images))]


# --------------------------------------------------------------------------------------------
# Drawing candidate boxes (vectorised: one call draws every candidate of an image)


def _squares(x1: np.ndarray, y1: np.ndarray, side: np.ndarray) -> np.ndarray:
    return np.stack([x1, y1, x1 + side, y1 + side], axis=1).astype(np.float64)


def random_squares(rng: np.random.Generator, width: int, height: int, count: int,
                   min_side: int = MIN_CROP_SIDE) -> np.ndarray:
    """``count`` random squares inside the image, side uniform in [min_side, shorter side / 2]."""
    short = min(width, height)
    if count <= 0 or short < min_side:
        return np.zeros((0, 4))
    side = rng.integers(min_side, max(min_side, short // 2) + 1, size=count)
    x1 = rng.integers(0, width - side + 1)
    y1 = rng.integers(0, height - side + 1)
    return _squares(x1, y1, side)


def squares_near_faces(rng: np.random.Generator, faces: np.ndarray, per_face: int, width: int, height: int,
                       min_side: int = MIN_CROP_SIDE) -> np.ndarray:
    """Squares whose top-left corner lies on or just before each face (hard negative candidates).

    Side uniform in [min_side, shorter image side / 2]; corner shifted from the face's top-left by
    up to one side before it and one face width/height after it.  Squares leaving the image are
    dropped.
    """
    faces = np.asarray(faces, np.float64).reshape(-1, 4)
    short = min(width, height)
    if per_face <= 0 or len(faces) == 0 or short < min_side:
        return np.zeros((0, 4))
    face = np.repeat(faces, per_face, axis=0)
    n = len(face)
    side = rng.integers(min_side, max(min_side, short // 2) + 1, size=n).astype(np.float64)
    w = face[:, 2] - face[:, 0]
    h = face[:, 3] - face[:, 1]
    low_x = np.maximum(-side, -face[:, 0])
    low_y = np.maximum(-side, -face[:, 1])
    x1 = np.floor(np.maximum(0, face[:, 0] + low_x + rng.random(n) * (w - low_x)))
    y1 = np.floor(np.maximum(0, face[:, 1] + low_y + rng.random(n) * (h - low_y)))
    boxes = _squares(x1, y1, side)
    return boxes[(boxes[:, 2] <= width) & (boxes[:, 3] <= height)]


def squares_around_faces(rng: np.random.Generator, faces: np.ndarray, per_face: int) -> tuple[np.ndarray, np.ndarray]:
    """Shifted and scaled squares around each face: positive, part and landmark candidates.

    Side uniform in [0.8 x shorter, 1.25 x longer face side], centre shifted by up to 20% of the
    face width/height (the common MTCNN recipe).  Returns the boxes and the index of the face each
    was drawn around.
    """
    faces = np.asarray(faces, np.float64).reshape(-1, 4)
    if per_face <= 0 or len(faces) == 0:
        return np.zeros((0, 4)), np.zeros(0, np.int64)
    owner = np.repeat(np.arange(len(faces)), per_face)
    face = faces[owner]
    n = len(face)
    w = face[:, 2] - face[:, 0]
    h = face[:, 3] - face[:, 1]
    low = np.ceil(0.8 * np.minimum(w, h))
    high = np.maximum(low, np.ceil(1.25 * np.maximum(w, h)))
    side = np.maximum(1.0, np.floor(low + rng.random(n) * (high - low + 1)))
    dx = (rng.random(n) * 2 - 1) * 0.2 * w
    dy = (rng.random(n) * 2 - 1) * 0.2 * h
    x1 = np.floor(face[:, 0] + w / 2 + dx - side / 2)
    y1 = np.floor(face[:, 1] + h / 2 + dy - side / 2)
    return _squares(x1, y1, side), owner


# --------------------------------------------------------------------------------------------
# Labelling


def best_face(crops: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Max IoU of each crop over ``faces`` and the index of the face reaching it (-1: no faces)."""
    crops = np.asarray(crops, np.float64).reshape(-1, 4)
    if len(faces) == 0 or len(crops) == 0:
        return np.zeros(len(crops)), np.full(len(crops), -1, np.int64)
    iou = iou_matrix(crops, faces)
    best = iou.argmax(axis=1)
    return iou[np.arange(len(crops)), best], best


def band_labels(max_iou: np.ndarray, target_usable: np.ndarray, bands: Bands) -> np.ndarray:
    """The labelling rule of the module docstring: int8 labels, :data:`DISCARD` outside every band.

    ``target_usable`` says whether each crop's target face may give a positive or part face.
    """
    labels = np.full(len(max_iou), DISCARD, np.int8)
    labels[max_iou < bands.neg_iou] = LABEL_NEGATIVE
    labels[(max_iou >= bands.part_iou) & (max_iou <= bands.pos_iou) & target_usable] = LABEL_PART
    labels[(max_iou > bands.pos_iou) & target_usable] = LABEL_POSITIVE
    return labels


@dataclass
class DetectionPlan:
    """Crops of one detection image, before cutting: boxes, labels and box targets."""

    crops: np.ndarray      # (N, 4) float64 pixel edges
    labels: np.ndarray     # (N,) int8
    boxes: np.ndarray      # (N, 4) float32 box targets, NaN for negatives

    def __len__(self) -> int:
        return len(self.labels)


def plan_detection_crops(rng: np.random.Generator, width: int, height: int, faces: np.ndarray,
                         usable: np.ndarray, sampling, bands: Bands | None = None) -> DetectionPlan:
    """Every kept crop of one WIDER-style image (labelling rule in the module docstring).

    ``faces`` holds ALL boxes of the image (clipped to it); ``usable`` marks those that may give
    positives and part faces.  ``sampling`` is a :class:`~mtcnn_train.config.SamplingConfig`.
    """
    bands = bands or Bands.from_config(sampling)
    faces = np.asarray(faces, np.float64).reshape(-1, 4)
    usable = np.asarray(usable, bool).reshape(-1)
    sized = (faces[:, 2] - faces[:, 0] >= 1) & (faces[:, 3] - faces[:, 1] >= 1)

    # Negatives: random squares (first `random_negatives_per_image` that pass) and squares near faces.
    random_boxes = random_squares(rng, width, height, sampling.random_negatives_per_image * NEGATIVE_OVERSAMPLING)
    random_iou, _ = best_face(random_boxes, faces)
    random_keep = np.nonzero(random_iou < bands.neg_iou)[0][:sampling.random_negatives_per_image]
    near_boxes = squares_near_faces(rng, faces[sized], sampling.negatives_per_face, width, height)
    near_iou, _ = best_face(near_boxes, faces)
    negatives = np.concatenate([random_boxes[random_keep], near_boxes[near_iou < bands.neg_iou]])

    # Positives and part faces: squares around usable faces, clamped into the image like the
    # common recipe (top-left at least 0) and dropped when they still leave it.
    around, _ = squares_around_faces(rng, faces[usable & sized], sampling.crops_per_face)
    around[:, [0, 2]] -= np.minimum(around[:, [0]], 0)
    around[:, [1, 3]] -= np.minimum(around[:, [1]], 0)
    around = around[(around[:, 2] <= width) & (around[:, 3] <= height)]
    around_iou, around_face = best_face(around, faces)
    around_labels = band_labels(around_iou, usable[around_face] if len(around) else np.zeros(0, bool), bands)
    keep = (around_labels == LABEL_POSITIVE) | (around_labels == LABEL_PART)
    faced = around[keep]

    crops = np.concatenate([negatives, faced]).reshape(-1, 4)
    labels = np.concatenate([np.full(len(negatives), LABEL_NEGATIVE, np.int8), around_labels[keep]])
    targets = np.full((len(crops), 4), np.nan, np.float32)
    if len(faced):
        targets[len(negatives):] = box_offsets(faced, faces[around_face[keep]])
    return DetectionPlan(crops, labels, targets)


@dataclass
class LandmarkPlan:
    """Crops of one landmark face, before cutting."""

    crops: np.ndarray       # (N, 4) float64 unmirrored, unrotated crop boxes in source pixels
    mirrored: np.ndarray    # (N,) bool
    boxes: np.ndarray       # (N, 4) float32 box targets (of the mirrored crop where mirrored)
    landmarks: np.ndarray   # (N, 10) float32 x1, y1, ..., x5, y5 (rotated, then mirrored where mirrored)
    #: (N,) float64 degrees each crop is turned about its centre before mirroring (see
    #: :func:`rotated_point_fractions`); all zero unless rotation was asked for.
    angles: np.ndarray = None  # type: ignore[assignment]

    def __post_init__(self) -> None:
        if self.angles is None:
            self.angles = np.zeros(len(self.crops))

    def __len__(self) -> int:
        return len(self.crops)


def _rotation_matrices(angles_deg: np.ndarray) -> np.ndarray:
    """``(N, 2, 2)`` matrices turning a crop's axes by each angle (image axes: x right, y down)."""
    theta = np.deg2rad(np.asarray(angles_deg, np.float64).reshape(-1))
    cos, sin = np.cos(theta), np.sin(theta)
    return np.stack([np.stack([cos, -sin], -1), np.stack([sin, cos], -1)], -2)


def rotated_point_fractions(crops: np.ndarray, angles_deg: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Where ``points`` ``(N, 5, 2)`` (source pixels) fall in square crops turned by ``angles_deg``,
    as fractions of the crop side.

    A crop turned by angle a shows the source point ``c + R(a) d`` at offset ``d`` from its centre
    ``c`` (the convention :func:`crop_rotated` cuts by), so a source point ``p`` lands at
    ``d = R(a)^T (p - c)``.  With all angles 0 this is :func:`~mtcnn_train.geometry.landmark_offsets`.
    """
    crops = np.asarray(crops, np.float64).reshape(-1, 4)
    side = (crops[:, 2] - crops[:, 0])[:, None, None]
    centre = ((crops[:, :2] + crops[:, 2:]) / 2)[:, None, :]
    rotation = _rotation_matrices(angles_deg)
    # d_i = sum_j R_ji (p - c)_j: R transposed applied to each point.
    offsets = np.einsum("nji,nkj->nki", rotation, np.asarray(points, np.float64).reshape(-1, 5, 2) - centre)
    return offsets / side + 0.5


def crop_rotated(image: np.ndarray, crops: np.ndarray, angles_deg: np.ndarray, size: int) -> np.ndarray:
    """Cut square ``crops`` turned by ``angles_deg`` about their centres: ``N x size x size [x C]``.

    Output pixel ``u`` shows the source point ``c + R(a) ((u + 0.5) k - side / 2)`` (pixel edges,
    ``k = side / size``), bilinear, zeros outside the image like the upright crops.  Shrinking
    crops are cut from an area-resized copy of the image at the crop's scale, so a rotated crop is
    as free of aliasing as an upright one.
    """
    crops = np.asarray(crops, np.float64).reshape(-1, 4)
    rotation = _rotation_matrices(angles_deg)
    height, width = image.shape[:2]
    out = np.zeros((len(crops), size, size) + image.shape[2:], image.dtype)
    scaled_cache: dict[tuple[int, int], np.ndarray] = {}
    for i, (crop, turn) in enumerate(zip(crops, rotation)):
        side = crop[2] - crop[0]
        step = side / size
        shrink = min(1.0, 1.0 / step)
        scaled_size = (max(1, round(width * shrink)), max(1, round(height * shrink)))
        if scaled_size not in scaled_cache:
            scaled_cache[scaled_size] = (image if scaled_size == (width, height) else
                                         cv2.resize(image, scaled_size, interpolation=cv2.INTER_AREA))
        scaled = scaled_cache[scaled_size]
        axis_scale = np.array([scaled_size[0] / width, scaled_size[1] / height])
        centre = (crop[:2] + crop[2:]) / 2
        # Output pixel index u -> source edge point c + R ((u + 0.5) step - side / 2), scaled to
        # the resized image (edges scale by axis_scale), then to its pixel indices (- 0.5).
        linear = axis_scale[:, None] * turn * step
        offset = axis_scale * (centre + turn @ np.full(2, 0.5 * step - side / 2)) - 0.5
        matrix = np.hstack([linear, offset[:, None]])
        out[i] = cv2.warpAffine(scaled, matrix, (size, size), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                                borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return out


def plan_landmark_crops(rng: np.random.Generator, face: np.ndarray, points: np.ndarray, count: int,
                        bands: Bands, max_rotation: float = 0.0) -> LandmarkPlan:
    """Up to ``count`` crops of one landmark face with IoU > ``bands.pos_iou`` and all points inside.

    With ``max_rotation`` (degrees) each crop is also turned by a random angle in that range; the
    IoU test uses the upright square, the inside test the turned crop.
    """
    face = np.asarray(face, np.float64).reshape(1, 4)
    points = np.asarray(points, np.float64).reshape(5, 2)
    candidates, _ = squares_around_faces(rng, face, count * LANDMARK_OVERSAMPLING)
    mirror_draw = rng.random(len(candidates)) < 0.5
    # Drawn last and only when asked, so upright plans keep the draws they always had.
    angles = ((rng.random(len(candidates)) * 2 - 1) * max_rotation if max_rotation > 0
              else np.zeros(len(candidates)))
    iou = iou_matrix(candidates, face)[:, 0] if len(candidates) else np.zeros(0)
    all_points = np.broadcast_to(points, (len(candidates), 5, 2))
    fractions = (rotated_point_fractions(candidates, angles, all_points) if max_rotation > 0
                 else landmark_offsets(candidates, all_points))
    inside = np.all((fractions > 0) & (fractions < 1), axis=(1, 2))
    keep = np.nonzero((iou > bands.pos_iou) & inside)[0][:count]
    crops = candidates[keep]
    mirrored = mirror_draw[keep]
    # Landmark samples feed only the landmark loss (the β masks); the box target of a turned crop
    # is that of its upright square.
    box_targets = box_offsets(crops, np.broadcast_to(face, (len(crops), 4)))
    point_targets = fractions[keep]
    box_targets[mirrored] = mirror_box_offsets(box_targets[mirrored])
    point_targets[mirrored] = mirror_point_fractions(point_targets[mirrored])
    return LandmarkPlan(crops, mirrored, box_targets.astype(np.float32),
                        point_targets.reshape(-1, 10).astype(np.float32), angles[keep])


# --------------------------------------------------------------------------------------------
# The final mix


def target_counts(available: dict[str, int], ratio: dict[str, float], total: int) -> dict[str, int]:
    """How many samples of each type to keep.

    ``total > 0``: ``total`` split by ``ratio`` (rounded), never more than available.
    ``total == 0``: as many as the scarcest type (relative to its share) allows: the largest
    ``k`` with ``k * share <= available`` for every type with a positive share.
    """
    weight = sum(ratio.values())
    shares = {name: ratio.get(name, 0.0) / weight for name in available}
    if total > 0:
        want = {name: int(round(total * share)) for name, share in shares.items()}
    else:
        scale = min((available[name] / share for name, share in shares.items() if share > 0), default=0.0)
        want = {name: int(np.floor(scale * share + 1e-6)) for name, share in shares.items()}
    return {name: min(count, available[name]) for name, count in want.items()}


def select_by_ratio(labels: np.ndarray, targets: dict[str, int], seed: int) -> np.ndarray:
    """Indices (ascending) of a seeded random subset of ``labels`` with ``targets[type]`` per type."""
    from mtcnn_train.samples.labels import LABEL_OF

    labels = np.asarray(labels)
    chosen = []
    for name, count in targets.items():
        label = LABEL_OF[name]
        members = np.nonzero(labels == label)[0]
        rng = np.random.default_rng(np.random.SeedSequence([seed, 7, label & 0xFF]))
        chosen.append(members[np.sort(rng.permutation(len(members))[:count])])
    return np.sort(np.concatenate(chosen)) if chosen else np.zeros(0, np.int64)
