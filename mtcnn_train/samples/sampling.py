"""P-Net training crops: draw candidate boxes and label them by IoU band (the pixels are cut by
:mod:`mtcnn_train.imaging`).

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

import numpy as np

from mtcnn_train.imaging import rotation_matrices
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


@dataclass(frozen=True)
class Bands:
    """The IoU thresholds of :class:`~mtcnn_train.config.SamplingConfig`."""

    neg_iou: float = 0.3
    part_iou: float = 0.4
    pos_iou: float = 0.65

    @classmethod
    def from_config(cls, sampling) -> "Bands":
        return cls(sampling.neg_iou, sampling.part_iou, sampling.pos_iou)


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



def rotated_point_fractions(crops: np.ndarray, angles_deg: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Where ``points`` ``(N, 5, 2)`` (source pixels) fall in square crops turned by ``angles_deg``,
    as fractions of the crop side.

    A crop turned by angle a shows the source point ``c + R(a) d`` at offset ``d`` from its centre
    ``c`` (the convention :func:`mtcnn_train.imaging.crop_rotated` cuts by), so a source point ``p`` lands at
    ``d = R(a)^T (p - c)``.  With all angles 0 this is :func:`~mtcnn_train.geometry.landmark_offsets`.
    """
    crops = np.asarray(crops, np.float64).reshape(-1, 4)
    side = (crops[:, 2] - crops[:, 0])[:, None, None]
    centre = ((crops[:, :2] + crops[:, 2:]) / 2)[:, None, :]
    rotation = rotation_matrices(angles_deg)
    # d_i = sum_j R_ji (p - c)_j: R transposed applied to each point.
    offsets = np.einsum("nji,nkj->nki", rotation, np.asarray(points, np.float64).reshape(-1, 5, 2) - centre)
    return offsets / side + 0.5


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
