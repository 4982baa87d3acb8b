"""FDDB scoring, reproducing the official ``evaluate`` program (Jain & Learned-Miller, 2010).

Every convention below was read from the official source (``evaluation.tgz``: evaluate.cpp,
EllipseR.cpp, RectangleR.cpp, Region.cpp, Matching.cpp, Results.cpp, Hungarian.cpp) and is listed
with its evidence in docs/FDDB.md.  In short:

* Faces and detections are *regions of the image*: each is rasterised into an image-sized mask
  (so everything outside the image is cut off) and the overlap of a pair is the pixel count of
  the intersection divided by the pixel count of the union.
* Ellipses ``major minor angle cx cy`` are drawn filled with OpenCV: centre rounded (to float32,
  then to nearest, ties to even), axes truncated to whole pixels, and the rotation passed as
  ``180 - (pi - angle) * 180 / pi`` degrees, which OpenCV rounds to a whole degree.
* Rectangles ``left top width height`` are drawn filled from ``round(left), round(top)`` to
  ``round(left + width), round(top + height)`` *inclusive* (one pixel wider and taller than the
  box).
* For each image and each distinct detection score ``s`` (ascending), the detections with score
  ``>= s`` are matched one-to-one to the faces by the official Hungarian solver (reproduced in
  :mod:`mtcnn_train.evaluation.fddb_matching`; it does not always find the largest total overlap,
  ``matching="optimal"`` does); a matched pair is a true positive when its overlap is above 0.5;
  the continuous score adds the overlaps of all matched pairs; false positives are the kept
  detections that are not true positives.
* The per-image curves are merged over the union of all thresholds; an image with no detections
  contributes one point at the largest double (printed ``1.79769e+308``).
* ``DiscROC.txt`` rows are ``TPR FP threshold`` and ``ContROC.txt`` rows ``TPR FP``, in ascending
  threshold order (most false positives first), numbers printed like C++ ``ostream`` does
  (6 significant digits).

The scorer works on plain arrays (:func:`score_fddb`); the file-level helpers read and write the
official formats and the ``evaluate_*`` functions drive the detector and write a result folder.
"""
from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import cv2
import numpy as np

from mtcnn_train.datasets.annotation_text import MAX_DRAWN_COORDINATE, parse_number
from mtcnn_train.errors import AnnotationError, ImageError, UserError
from mtcnn_train.evaluation.fddb_matching import MATCHING_METHODS, OfficialSolverError, assignment
from mtcnn_train.detection.runner import DetectionLog, detect_images, detector_fingerprint
from mtcnn_train.io import remove_stale_temp_files, atomic_write_json, atomic_write_text, image_size

#: Threshold the official program gives an image without detections (C++ DBL_MAX on Linux).
NO_DETECTION_THRESHOLD = sys.float_info.max
#: File names of the two ROC curves, as the official program writes them (without its prefix).
DISC_ROC_NAME = "DiscROC.txt"
CONT_ROC_NAME = "ContROC.txt"
#: Detection file written by the detector-driven evaluation.
DETECTIONS_NAME = "detections.txt"


# --------------------------------------------------------------------------------------------
# Results


@dataclass
class FddbResult:
    """The two ROC curves exactly as the official program writes them.

    Attributes:
        disc: ``(K, 3)`` rows ``true positive rate, false positives, threshold`` in the official
            order: ascending threshold, so the first row has the most false positives.
        cont: ``(K, 2)`` rows ``continuous true positive rate, false positives``, same order.
        num_faces: faces in the evaluated images (the TPR denominator).
        num_images: images evaluated.
        images_without_detections: images whose detection count was 0 (or that were absent from
            the detections and counted as 0, see ``missing_detections``).
        missing_detections: names of evaluated images absent from the detections.
    """

    disc: np.ndarray
    cont: np.ndarray
    num_faces: int
    num_images: int
    images_without_detections: int = 0
    missing_detections: list[str] = field(default_factory=list)

    def tpr_at(self, fp_points: Iterable[int], continuous: bool = False) -> dict[int, float]:
        roc = self.cont if continuous else self.disc
        return {int(fp): tpr_at_fp(roc, fp) for fp in fp_points}


def tpr_at_fp(roc: np.ndarray, fp: float) -> float:
    """The best true positive rate reached with at most ``fp`` false positives (0 if none).

    Rows are ``(tpr, fp, ...)``.  The maximum over rows is used rather than a single row because
    re-matching at a lower threshold can, in rare images, trade a true positive away, so the
    official curve is not always monotone.
    """
    roc = np.atleast_2d(np.asarray(roc, dtype=np.float64))
    ok = roc[:, 1] <= fp
    return float(roc[ok, 0].max()) if ok.any() else 0.0


# --------------------------------------------------------------------------------------------
# Number formatting: C++ ``ostream << double`` with the default precision is printf("%g") with 6
# significant digits; Python's '.6g' is the same conversion (both round exactly, ties to even).


def format_cpp_double(value: float) -> str:
    return format(float(value), ".6g")


def format_roc(roc: np.ndarray) -> str:
    """The text of a ROC file: one row per line, values separated by one space."""
    roc = np.asarray(roc, dtype=np.float64)
    if roc.ndim != 2:
        raise ValueError(f"a ROC curve is a 2-D array, got shape {roc.shape}")
    return "".join(" ".join(format_cpp_double(v) for v in row) + "\n" for row in roc)


def write_roc(path: str | Path, roc: np.ndarray) -> None:
    """Write a ROC curve (``DiscROC``: 3 columns, ``ContROC``: 2) in the official layout."""
    atomic_write_text(path, format_roc(roc))


def _read_text(path: Path, what: str) -> str:
    """A text file another program wrote (undecodable bytes replaced), or a one-line UserError."""
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        raise UserError(f"{path}: {what} not found") from None
    except OSError as exc:
        raise UserError(f"{path}: cannot read ({exc.strerror or exc})") from None


def read_roc(path: str | Path) -> np.ndarray:
    """Read a DiscROC/ContROC file (ours or anyone's): rows of 2 or 3 numbers, ``TPR FP [thr]``."""
    path = Path(path)
    text = _read_text(path, "ROC file")
    rows = []
    width = None
    for number, line in enumerate(text.splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        try:
            values = [float(f) for f in fields]
        except ValueError:
            raise AnnotationError(path, number, f"expected numbers 'TPR FP [threshold]', got {line.strip()!r}") from None
        if len(values) < 2:
            raise AnnotationError(path, number, "a ROC row needs at least 'TPR FP'")
        width = min(width or len(values), len(values), 3)
        rows.append(values[:3])
    if not rows:
        raise UserError(f"{path}: empty ROC file")
    return np.array([r[:width] for r in rows], dtype=np.float64)


# --------------------------------------------------------------------------------------------
# Detection files: ``name`` line, ``count`` line, then ``count`` lines of
# ``left top width height score`` (or ``major minor angle cx cy score`` for ellipses).


def _parse_count(token: str, path: Path, line: int) -> int:
    value = parse_number(token, path, line, "detection count", limit=None)
    if value < 0 or not float(value).is_integer():
        raise AnnotationError(path, line, f"detection count must be a whole number >= 0, got {token!r}")
    return int(value)


def read_detections(path: str | Path, ellipse: bool = False) -> dict[str, np.ndarray]:
    """Read a detection file in the official FDDB layout.

    Returns ``{image name: array}`` in file order: ``(M, 5)`` ``left top width height score`` or,
    with ``ellipse=True``, ``(M, 6)`` ``major minor angle cx cy score``.  Blank lines between
    records are skipped; extra numbers after the expected ones on a detection line are ignored (as
    the official reader does).  Malformed records raise :class:`AnnotationError` with the line.

    The two layouts are told apart, so that one is never scored as the other (ellipses read as
    rectangles score a TPR near 0): rectangles may not have a negative width or height, and a
    file whose every line holds exactly 6 numbers with an angle (within +-pi) third is taken for
    ellipses and refused without ``ellipse=True``.
    """
    path = Path(path)
    text = _read_text(path, "detection file")
    lines = text.splitlines()
    width = 6 if ellipse else 5
    layout = "major minor angle cx cy score" if ellipse else "left top width height score"
    out: dict[str, np.ndarray] = {}
    ellipse_like: list[int] = []  # detection lines shaped like 'major minor angle cx cy score'
    rows_read = 0
    i = 0
    while i < len(lines):
        name = lines[i].strip()
        if not name:
            i += 1
            continue
        name_line = i + 1
        if name in out:
            raise AnnotationError(path, name_line, f"image {name!r} appears twice")
        i += 1
        while i < len(lines) and not lines[i].strip():
            i += 1
        if i >= len(lines):
            raise AnnotationError(path, name_line, f"image {name!r} has no detection count line")
        fields = lines[i].split()
        if len(fields) != 1:
            raise AnnotationError(path, i + 1, f"expected the detection count of {name!r}, got {lines[i].strip()!r}")
        count = _parse_count(fields[0], path, i + 1)
        i += 1
        if count > len(lines) - i:  # before allocating: a corrupt count may be astronomically large
            raise AnnotationError(path, len(lines), f"image {name!r}: expected {count} detections (count on line {i}), "
                                                    f"found {len(lines) - i} lines (truncated file?)")
        rows = np.zeros((count, width), dtype=np.float64)
        for k in range(count):
            if i >= len(lines):
                raise AnnotationError(path, len(lines), f"image {name!r}: expected {count} detections, found {k}")
            fields = lines[i].split()
            if len(fields) < width:
                raise AnnotationError(path, i + 1, f"expected {width} numbers '{layout}', got {lines[i].strip()!r}")
            rows[k] = [parse_number(tok, path, i + 1, what, limit=None) for tok, what in zip(fields[:width], layout.split())]
            if ellipse and (rows[k, 0] < 0 or rows[k, 1] < 0):
                raise AnnotationError(path, i + 1, "ellipse radii must not be negative")
            if not ellipse and (rows[k, 2] < 0 or rows[k, 3] < 0):
                raise AnnotationError(path, i + 1, f"negative width or height in 'left top width height score' "
                                                   f"({lines[i].strip()!r}); for ellipses pass --ellipse")
            rows_read += 1
            if not ellipse and len(fields) == 6 and abs(float(fields[2])) <= math.pi + 1e-3:
                ellipse_like.append(i + 1)
            if np.abs(rows[k, :-1]).max() > MAX_DRAWN_COORDINATE:
                raise AnnotationError(path, i + 1, f"coordinates beyond +-{MAX_DRAWN_COORDINATE:g} pixels")
            i += 1
        out[name] = rows
    if rows_read and len(ellipse_like) == rows_read:
        raise AnnotationError(path, ellipse_like[0], "every detection line holds 6 numbers with an angle third, "
                                                     "like ellipses 'major minor angle cx cy score'; pass --ellipse "
                                                     "to score ellipses (rectangles are 'left top width height score')")
    return out


def _format_coordinate(value: float) -> str:
    return f"{value:.2f}"


def _format_score(value: float) -> str:
    # 9 significant digits keep every float32 score distinct (near-1 scores of a cascade would
    # otherwise tie at a fixed number of decimals and blur the low-false-positive end).
    return format(float(value), ".9g")


def format_detections(detections: Mapping[str, np.ndarray] | Iterable[tuple[str, np.ndarray]],
                      ellipse: bool = False) -> str:
    items = detections.items() if isinstance(detections, Mapping) else detections
    width = 6 if ellipse else 5
    parts = []
    for name, rows in items:
        rows = np.asarray(rows, dtype=np.float64).reshape(-1, width)
        parts.append(f"{name}\n{len(rows)}\n")
        for row in rows:
            parts.append(" ".join(_format_coordinate(v) for v in row[:-1]) + " " + _format_score(row[-1]) + "\n")
    return "".join(parts)


def write_detections(path: str | Path, detections: Mapping[str, np.ndarray] | Iterable[tuple[str, np.ndarray]],
                     ellipse: bool = False) -> None:
    """Write detections in the official layout (coordinates to 0.01 px, scores to 9 digits)."""
    atomic_write_text(path, format_detections(detections, ellipse))


def read_image_list(path: str | Path) -> list[str]:
    """An FDDB image list: whitespace-separated names (the official reader splits on any space)."""
    path = Path(path)
    try:
        names = path.read_text(encoding="utf-8", errors="replace").split()
    except FileNotFoundError:
        raise UserError(f"{path}: image list not found") from None
    except OSError as exc:
        raise UserError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if not names:
        raise UserError(f"{path}: the image list is empty")
    if len(set(names)) < len(names):  # the official program would score such an image twice
        from mtcnn_train.datasets.annotation_text import read_text_lines

        seen: dict[str, int] = {}
        for number, line in enumerate(read_text_lines(path), 1):
            for name in line.split():
                if name in seen:
                    raise AnnotationError(path, number, f"image {name!r} is listed twice (also on line "
                                                        f"{seen[name]}); remove one of the entries")
                seen[name] = number
    return names


# --------------------------------------------------------------------------------------------
# Rasterisation, following the official calls parameter by parameter.


def _cv_round_float32(values: np.ndarray) -> np.ndarray:
    """``cvRound((float)x)``: the official code passes coordinates through ``CvPoint2D32f``."""
    return np.rint(np.asarray(values, dtype=np.float64).astype(np.float32)).astype(np.int64)


def ellipse_draw_params(ellipses: np.ndarray) -> np.ndarray:
    """``(N, 5)`` FDDB ellipses -> ``(N, 5)`` int ``cx cy axis_major axis_minor angle_deg``.

    EllipseR::display calls ``cvEllipse(mask, cvPointFrom32f(cvPoint2D32f(cx, cy)),
    cvSize((int)ra, (int)rb), 180 - angle, 0, 360, ...)`` with ``angle = (M_PI - t) * 180 / M_PI``
    set by the reader, and ``cv::ellipse`` rounds the rotation to whole degrees (cvRound).
    """
    e = np.asarray(ellipses, dtype=np.float64).reshape(-1, 5)
    major, minor, theta, cx, cy = e.T
    # Same operations in the same order as the C++ so that the doubles agree bit for bit.
    angle_deg = (math.pi - theta) * 180 / math.pi
    cv_angle = np.rint(180 - angle_deg).astype(np.int64)
    centre = _cv_round_float32(np.stack([cx, cy], 1))
    axes = np.trunc(np.stack([major, minor], 1)).astype(np.int64)  # C cast (int) truncates
    return np.concatenate([centre, axes, cv_angle[:, None]], 1)


def rectangle_corners(rects: np.ndarray) -> np.ndarray:
    """``(M, 4)`` ``left top width height`` -> ``(M, 4)`` int inclusive ``x0 y0 x1 y1``.

    RectangleR::display fills ``cvRectangle(cvPointFrom32f(cvPoint2D32f(x, y)),
    cvPointFrom32f(cvPoint2D32f(x + w, y + h)))``; a filled OpenCV rectangle covers both corner
    pixels, whichever way round they are given.
    """
    r = np.asarray(rects, dtype=np.float64).reshape(-1, 4)
    p1 = _cv_round_float32(r[:, :2])
    p2 = _cv_round_float32(r[:, :2] + r[:, 2:4])
    return np.concatenate([np.minimum(p1, p2), np.maximum(p1, p2)], 1)


@dataclass
class _MaskRegion:
    """A rasterised region cut to its bounding box: pixels ``mask`` at ``(x0, y0)``."""

    x0: int
    y0: int
    mask: np.ndarray  # bool (h, w); may be empty
    area: int

    @property
    def x1(self) -> int:  # exclusive
        return self.x0 + self.mask.shape[1]

    @property
    def y1(self) -> int:
        return self.y0 + self.mask.shape[0]


def rasterize_ellipses(ellipses: np.ndarray, height: int, width: int) -> list[_MaskRegion]:
    """Draw each ellipse filled on an image-sized canvas and keep its bounding-box crop."""
    params = ellipse_draw_params(ellipses)
    canvas = np.zeros((height, width), dtype=np.uint8)
    regions = []
    for cx, cy, a, b, angle in params.tolist():
        if a < 0 or b < 0:
            raise UserError(f"ellipse with negative radius ({a}, {b}) cannot be drawn")
        if max(abs(cx), abs(cy), a, b) > MAX_DRAWN_COORDINATE:
            raise UserError(f"ellipse beyond +-{MAX_DRAWN_COORDINATE:g} pixels cannot be drawn")
        reach = max(a, b) + 2  # polygon vertices lie within the larger radius (+ rounding)
        x0, x1 = max(cx - reach, 0), min(cx + reach + 1, width)
        y0, y1 = max(cy - reach, 0), min(cy + reach + 1, height)
        if x0 >= x1 or y0 >= y1:
            regions.append(_MaskRegion(0, 0, np.zeros((0, 0), dtype=bool), 0))
            continue
        cv2.ellipse(canvas, (int(cx), int(cy)), (int(a), int(b)), float(angle), 0, 360, 1, thickness=-1,
                    lineType=cv2.LINE_8)
        crop = canvas[y0:y1, x0:x1]
        mask = crop.astype(bool)
        crop[:] = 0  # the canvas is reused: clear only what was drawn
        regions.append(_MaskRegion(int(x0), int(y0), mask, int(mask.sum())))
    return regions


def _clip_rectangles(corners: np.ndarray, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Inclusive corners cut to the image, and the pixel count of each (0 when outside)."""
    c = corners.copy()
    c[:, [0, 2]] = np.clip(c[:, [0, 2]], 0, width - 1) if width > 0 else 0
    c[:, [1, 3]] = np.clip(c[:, [1, 3]], 0, height - 1) if height > 0 else 0
    inside = (corners[:, 2] >= 0) & (corners[:, 0] <= width - 1) & (corners[:, 3] >= 0) & (corners[:, 1] <= height - 1)
    area = np.where(inside, (c[:, 2] - c[:, 0] + 1) * (c[:, 3] - c[:, 1] + 1), 0)
    return c, area.astype(np.int64)


def _mask_rect_intersections(region: _MaskRegion, corners: np.ndarray, inside: np.ndarray) -> np.ndarray:
    """Pixels of ``region`` inside each clipped rectangle, by a summed-area table (vectorised)."""
    out = np.zeros(len(corners), dtype=np.int64)
    if region.area == 0 or len(corners) == 0:
        return out
    table = cv2.integral(region.mask.astype(np.uint8))  # (h + 1, w + 1) int32
    h, w = region.mask.shape
    ax0 = np.clip(corners[:, 0] - region.x0, 0, w)
    ax1 = np.clip(corners[:, 2] + 1 - region.x0, 0, w)
    ay0 = np.clip(corners[:, 1] - region.y0, 0, h)
    ay1 = np.clip(corners[:, 3] + 1 - region.y0, 0, h)
    ok = inside & (ax1 > ax0) & (ay1 > ay0)
    sums = table[ay1, ax1] - table[ay0, ax1] - table[ay1, ax0] + table[ay0, ax0]
    out[ok] = sums[ok]
    return out


def _mask_mask_intersection(a: _MaskRegion, b: _MaskRegion) -> int:
    x0, x1 = max(a.x0, b.x0), min(a.x1, b.x1)
    y0, y1 = max(a.y0, b.y0), min(a.y1, b.y1)
    if x0 >= x1 or y0 >= y1:
        return 0
    wa = a.mask[y0 - a.y0:y1 - a.y0, x0 - a.x0:x1 - a.x0]
    wb = b.mask[y0 - b.y0:y1 - b.y0, x0 - b.x0:x1 - b.x0]
    return int(np.count_nonzero(wa & wb))


def _ratio(inter: np.ndarray, union: np.ndarray) -> np.ndarray:
    # Official: nInter / nUnion in double.  A pair of two empty regions (both wholly outside the
    # image) would be 0/0 = NaN there; it is 0 here.
    inter = np.asarray(inter, dtype=np.float64)
    union = np.asarray(union, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def region_overlaps(faces: np.ndarray, detections: np.ndarray, height: int, width: int,
                    ellipse_detections: bool = False) -> np.ndarray:
    """``(N, M)`` region overlap (pixel IoU inside the image) of FDDB face ellipses and detections.

    ``detections`` are ``(M, >=4)`` ``left top width height ...`` rectangles, or with
    ``ellipse_detections`` ``(M, >=5)`` ``major minor angle cx cy ...`` ellipses.
    """
    faces = np.asarray(faces, dtype=np.float64).reshape(-1, 5)
    det = np.asarray(detections, dtype=np.float64)
    m = det.shape[0] if det.ndim == 2 else 0
    out = np.zeros((len(faces), m), dtype=np.float64)
    if len(faces) == 0 or m == 0:
        return out
    face_regions = rasterize_ellipses(faces, height, width)
    face_area = np.array([r.area for r in face_regions], dtype=np.int64)
    if not ellipse_detections:
        corners = rectangle_corners(det[:, :4])
        clipped, det_area = _clip_rectangles(corners, height, width)
        inside = det_area > 0
        for i, region in enumerate(face_regions):
            inter = _mask_rect_intersections(region, clipped, inside)
            out[i] = _ratio(inter, face_area[i] + det_area - inter)
        return out
    det_regions = rasterize_ellipses(det[:, :5], height, width)
    for i, fr in enumerate(face_regions):
        for j, dr in enumerate(det_regions):
            inter = _mask_mask_intersection(fr, dr)
            out[i, j] = _ratio(inter, fr.area + dr.area - inter)
    return out


# --------------------------------------------------------------------------------------------
# Per-image statistics and the official merge.


@dataclass
class _ImageCurve:
    """One image's statistics at each of its distinct detection scores (ascending)."""

    thresholds: np.ndarray
    tp_disc: np.ndarray
    tp_cont: np.ndarray
    fp: np.ndarray
    num_faces: int


def check_matching(matching: str) -> str:
    """``matching`` itself if it is a known method, else a :class:`UserError`."""
    if matching not in MATCHING_METHODS:
        raise UserError(f"unknown FDDB matching {matching!r}; expected one of {', '.join(MATCHING_METHODS)}")
    return matching


def _match(overlaps: np.ndarray, positive_threshold: float, matching: str = "official") -> tuple[int, float]:
    """Matching::runHungarian: true positives and summed overlap of the one-to-one matching.

    ``matching="official"`` reproduces the official solver's pairs (sometimes not the largest
    total), ``"optimal"`` takes a matching of largest total overlap; both drop faces and
    detections without positive overlap first and pairs of overlap 0 after (see
    :mod:`mtcnn_train.evaluation.fddb_matching`).  The matched overlaps come in the order the
    C++ lists them (by face, or by detection when it transposed the matrix) and are added up in
    that order, so that the continuous score is the same double.
    """
    rows, cols = assignment(overlaps, matching)
    scores = overlaps[rows, cols]
    total = 0.0
    for value in scores.tolist():  # left-to-right double sum, like TPCont += score
        total += value
    return int(np.count_nonzero(scores > positive_threshold)), total


def image_curve(overlaps: np.ndarray, scores: np.ndarray, positive_threshold: float = 0.5,
                matching: str = "official") -> _ImageCurve:
    """The official per-image loop: for each distinct score ``s`` keep detections ``>= s``, match."""
    overlaps = np.asarray(overlaps, dtype=np.float64)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    num_faces = overlaps.shape[0]
    if len(scores) == 0:
        zero = np.zeros(1)
        return _ImageCurve(np.array([NO_DETECTION_THRESHOLD]), zero, zero.copy(), zero.copy(), num_faces)
    thresholds = np.unique(scores)
    k = len(thresholds)
    tp_disc = np.zeros(k)
    tp_cont = np.zeros(k)
    fp = np.zeros(k)
    touches = (overlaps > 0).any(axis=0) if num_faces else np.zeros(len(scores), dtype=bool)
    cached: tuple[int, float] = (0, 0.0)
    previous_touching = -1
    # Walk from the highest threshold down.  The matrix the solver sees holds only the kept
    # detections that touch a face (and the faces they touch), so the matching only changes when
    # such a detection joins the kept set; it is recomputed only then.
    for t in range(k - 1, -1, -1):
        kept = scores >= thresholds[t]
        touching = int(np.count_nonzero(kept & touches))
        if touching != previous_touching:
            cached = _match(overlaps[:, kept], positive_threshold, matching) if touching else (0, 0.0)
            previous_touching = touching
        tp_disc[t], tp_cont[t] = cached
        fp[t] = np.count_nonzero(kept) - cached[0]
    return _ImageCurve(thresholds, tp_disc, tp_cont, fp, num_faces)


def merge_curves(curves: Sequence[_ImageCurve]) -> tuple[np.ndarray, np.ndarray]:
    """Results::merge over all images, in image order; returns ``(disc, cont)`` as written.

    At every threshold of the union, each image contributes its statistics at its smallest
    threshold at or above it (nothing above its highest).  The continuous sums are accumulated
    image by image, left to right, as the C++ merge does, so the doubles agree bit for bit.
    """
    if not curves:
        return np.zeros((0, 3)), np.zeros((0, 2))
    union = np.unique(np.concatenate([c.thresholds for c in curves]))
    tp_disc = np.zeros(len(union))
    tp_cont = np.zeros(len(union))
    fp = np.zeros(len(union))
    num_faces = 0
    for curve in curves:
        num_faces += curve.num_faces
        positions = np.searchsorted(union, curve.thresholds)  # each is in the union
        spans = np.diff(np.concatenate([[-1], positions]))
        end = positions[-1] + 1
        tp_disc[:end] += np.repeat(curve.tp_disc, spans)
        tp_cont[:end] += np.repeat(curve.tp_cont, spans)
        fp[:end] += np.repeat(curve.fp, spans)
    if num_faces == 0:
        # Results::saveROC writes "0 0" / "0 0 threshold" when there are no faces at all.
        disc = np.stack([np.zeros(len(union)), np.zeros(len(union)), union], 1)
        return disc, np.zeros((len(union), 2))
    n = float(num_faces)
    disc = np.stack([tp_disc / n, fp, union], 1)
    cont = np.stack([tp_cont / n, fp], 1)
    return disc, cont


def _face_ellipses(item: Any) -> tuple[str, np.ndarray]:
    if isinstance(item, tuple):
        name, ellipses = item
    else:  # a FaceRecord
        name, ellipses = item.name, item.ellipses
    if ellipses is None:
        raise UserError(f"{name}: FDDB scoring needs face ellipses, this record has none")
    return str(name), np.asarray(ellipses, dtype=np.float64).reshape(-1, 5)


def score_fddb(annotations: Iterable[Any], detections: Mapping[str, np.ndarray],
               image_sizes: Mapping[str, tuple[int, int]], overlap: float = 0.5,
               ellipse_detections: bool = False, progress: bool = False,
               matching: str = "official") -> FddbResult:
    """Score detections against FDDB face ellipses exactly like the official program.

    Args:
        annotations: ``(name, ellipses (N, 5))`` pairs (or FaceRecords with ``.ellipses``) in the
            order of the image list; ellipses are ``major_r minor_r angle_rad cx cy``.
        detections: name -> ``(M, 5)`` ``left top width height score`` rows, or with
            ``ellipse_detections`` ``(M, 6)`` ``major minor angle cx cy score``.  An image that is
            absent counts as an image without detections (and is listed in the result).
        image_sizes: name -> ``(height, width)``; regions are cut to the image.
        overlap: a matched pair is a true positive when its overlap is above this (official 0.5).
        matching: ``"official"`` (default) matches faces and detections exactly as the official
            program's solver does, so the curves are the published program's; ``"optimal"`` uses
            a matching of largest total overlap (SciPy), which the official solver sometimes
            misses (docs/FDDB.md).
    """
    from tqdm import tqdm

    check_matching(matching)
    width = 6 if ellipse_detections else 5
    curves = []
    missing: list[str] = []
    empty = 0
    items = [_face_ellipses(a) for a in annotations]
    for name, faces in tqdm(items, desc="FDDB scoring", unit="img", disable=not progress, leave=False):
        if name not in image_sizes:
            raise UserError(f"{name}: no image size given for this image")
        height, width_px = (int(v) for v in image_sizes[name])
        det = detections.get(name)
        if det is None:
            missing.append(name)
            det = np.zeros((0, width))
        det = np.asarray(det, dtype=np.float64).reshape(-1, width)
        if not np.isfinite(det).all():
            raise UserError(f"{name}: detections must be finite numbers")
        if len(det) == 0:
            empty += 1
        ious = region_overlaps(faces, det, height, width_px, ellipse_detections)
        try:
            curves.append(image_curve(ious, det[:, -1], overlap, matching))
        except OfficialSolverError as exc:
            raise UserError(f"{name}: the official FDDB solver fails on this image ({exc}), as the official "
                            "program would; score it with --matching optimal") from None
    disc, cont = merge_curves(curves)
    return FddbResult(disc=disc, cont=cont, num_faces=sum(c.num_faces for c in curves), num_images=len(curves),
                      images_without_detections=empty, missing_detections=missing)


# --------------------------------------------------------------------------------------------
# Result folders


def write_result(out_dir: str | Path, result: FddbResult, fp_points: Sequence[int],
                 extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Write ``DiscROC.txt``, ``ContROC.txt`` and ``summary.json``; returns the summary."""
    out_dir = Path(out_dir)
    write_roc(out_dir / DISC_ROC_NAME, result.disc)
    write_roc(out_dir / CONT_ROC_NAME, result.cont)
    summary = {
        "images": result.num_images,
        "faces": result.num_faces,
        "images_without_detections": result.images_without_detections,
        "images_missing_from_detections": len(result.missing_detections),
        "tpr_at_fp": {str(k): v for k, v in result.tpr_at(fp_points).items()},
        "cont_tpr_at_fp": {str(k): v for k, v in result.tpr_at(fp_points, continuous=True).items()},
    }
    if extra:
        summary.update(extra)
    atomic_write_json(out_dir / "summary.json", summary)
    return summary


def describe(result: FddbResult, fp_points: Sequence[int], label: str = "FDDB") -> str:
    """Human-readable lines: TPR at each false-positive count, discrete and continuous."""
    disc = result.tpr_at(fp_points)
    cont = result.tpr_at(fp_points, continuous=True)
    lines = [f"{label}: {result.num_images} images, {result.num_faces} faces"]
    for fp in fp_points:
        lines.append(f"  TPR at {fp:>5} false positives: {disc[int(fp)]:.4f} (continuous {cont[int(fp)]:.4f})")
    if result.missing_detections:
        lines.append(f"  warning: {len(result.missing_detections)} image(s) absent from the detections were "
                     f"scored as having none (first: {result.missing_detections[0]})")
    return "\n".join(lines)


def _compare_label(path: Path, depth: int = 1) -> str:
    """A ROC file's curve label: its name without the DiscROC/ContROC suffix, else its folder's
    name, with ``depth - 1`` more folders in front (``runs/a/fddb-chosen/DiscROC.txt`` at depth 2:
    ``a/fddb-chosen``)."""
    stem = path.stem
    for suffix in ("DiscROC", "ContROC"):
        if stem.endswith(suffix):
            stem = stem[: -len(suffix)].rstrip("-_ ")
    parts = [stem] if stem else []
    folder = path.parent
    while len(parts) < depth and folder.name:
        parts.insert(0, folder.name)
        folder = folder.parent
    return "/".join(parts) or path.name


def curve_labels(main_label: str, compare: Sequence[Path]) -> list[str]:
    """Labels of the compared ROC files, with as many parent folders as it takes to tell them
    apart from each other and from ``main_label`` (two runs' ``fddb-chosen/DiscROC.txt`` become
    ``run-a/fddb-chosen`` and ``run-b/fddb-chosen``)."""
    paths = [Path(p).resolve() for p in compare]
    depths = [1] * len(paths)
    while True:
        labels = [_compare_label(p, d) for p, d in zip(paths, depths)]
        clashing = [i for i, label in enumerate(labels)
                    if label == main_label or labels.count(label) > 1]
        grown = [i for i in clashing if _compare_label(paths[i], depths[i] + 1) != labels[i]]
        if not grown:
            return labels
        for i in grown:
            depths[i] += 1


def _plot(out_dir: Path, result: FddbResult, label: str, compare: Sequence[Path] = ()) -> Path:
    from mtcnn_train.evaluation.plots import plot_roc

    curves = [(label, result.disc)]
    curves += list(zip(curve_labels(label, compare), (read_roc(p) for p in compare)))
    path = out_dir / "roc.png"
    plot_roc(path, curves, title=f"FDDB discrete ROC ({result.num_faces} faces)")
    return path


def _read_annotations(annotations: str | Path, images_dir: str | Path) -> list[Any]:
    from mtcnn_train.datasets.fddb import read_fddb_fold

    return read_fddb_fold(annotations, images_dir)


def evaluate_fddb_file(detections_file: str | Path, annotations_file: str | Path, image_list: str | Path,
                       images_dir: str | Path, out_dir: str | Path, ellipse: bool = False,
                       compare: Sequence[str | Path] = (), overlap: float = 0.5,
                       fp_points: Sequence[int] = (100, 500, 1000, 2000), echo=print,
                       matching: str = "official", label: str | None = None) -> FddbResult:
    """Score an existing detection file: the replacement for the official ``evaluate`` program.

    Images are taken from ``image_list`` (official ``-l``), their faces from ``annotations_file``
    (``-a``), their sizes from ``images_dir/NAME.jpg`` (``-i`` with ``-z .jpg``).  Writes
    ``DiscROC.txt``, ``ContROC.txt``, ``summary.json`` and ``roc.png`` into ``out_dir``.
    ``matching`` is ``"official"`` or ``"optimal"`` (see :func:`score_fddb`); ``label`` names
    this file's curve on the plot (default: the file's name).
    """
    check_matching(matching)
    names = read_image_list(image_list)
    records = {r.name: r for r in _read_annotations(annotations_file, images_dir)}
    absent = [n for n in names if n not in records]
    if absent:
        raise UserError(f"{image_list}: image {absent[0]!r} is not in the annotations {annotations_file}"
                        + (f" ({len(absent)} such images)" if len(absent) > 1 else ""))
    sizes = {}
    for name in names:
        width, height = image_size(Path(images_dir) / f"{name}.jpg")
        sizes[name] = (height, width)
    return _score_file(detections_file, [(n, records[n].ellipses) for n in names], sizes, out_dir, ellipse,
                       compare, overlap, fp_points, echo, matching, label, {})


def evaluate_fddb_file_on_folds(detections_file: str | Path, fddb_root: str | Path, out_dir: str | Path,
                                folds: str | Sequence[int] | None = None, ellipse: bool = False,
                                compare: Sequence[str | Path] = (), overlap: float = 0.5,
                                fp_points: Sequence[int] = (100, 500, 1000, 2000), echo=print,
                                matching: str = "official", label: str | None = None) -> FddbResult:
    """Score an existing detection file against the FDDB folds under ``fddb_root`` (default all
    ten), as ``eval fddb --weights`` scores its own: the images of the folds whose files are present
    (those not found are counted and left out, faces and all, as the detector-driven run leaves
    out images it cannot read).  Rescores a run's ``detections.txt`` without hand-made lists."""
    from mtcnn_train.datasets.fddb import read_fddb

    check_matching(matching)
    fold_list = parse_folds(folds)
    records = read_fddb(fddb_root, fold_list)
    sizes, missing = {}, []
    for record in records:
        try:
            width, height = image_size(record.image_path)
        except ImageError:
            missing.append(record.image_path)
            continue
        sizes[record.name] = (height, width)
    if not sizes:
        raise UserError(f"{fddb_root}: no image of folds {fold_list} could be read; nothing to score")
    faces = [(r.name, r.ellipses) for r in records if r.name in sizes]
    result = _score_file(detections_file, faces, sizes, out_dir, ellipse, compare, overlap, fp_points, echo,
                         matching, label, {"folds": fold_list, "skipped_images": len(missing)})
    if missing:
        echo(f"  skipped {len(missing)} image(s) not found or unreadable (first: {missing[0]})")
    return result


def _score_file(detections_file: str | Path, faces: list[tuple[str, np.ndarray]], sizes: dict[str, tuple[int, int]],
                out_dir: str | Path, ellipse: bool, compare: Sequence[str | Path], overlap: float,
                fp_points: Sequence[int], echo, matching: str, label: str | None,
                extra: dict[str, Any]) -> FddbResult:
    """Score ``detections_file`` on ``faces`` (name, ellipses) of images of ``sizes`` (height, width);
    write the curves, summary and plot into ``out_dir``."""
    out_dir = Path(out_dir)
    detections = read_detections(detections_file, ellipse)
    listed = {name for name, _ in faces}
    if listed and not listed & set(detections):  # nothing to score: a wrong file or names that never match
        found = f"its images are named like {next(iter(detections))!r}" if detections else "it lists no image"
        raise UserError(f"{detections_file}: no scored image is in the detections ({found}; the scored images are "
                        f"named like {faces[0][0]!r}, without .jpg)")
    unlisted = [n for n in detections if n not in listed]
    result = score_fddb(faces, detections, sizes, overlap=overlap, ellipse_detections=ellipse, progress=True,
                        matching=matching)
    write_result(out_dir, result, fp_points, {"detections": str(detections_file), **extra,
                                              "detections_not_in_list": len(unlisted), "matching": matching})
    plot = _plot(out_dir, result, label or Path(detections_file).stem, [Path(p) for p in compare])
    echo(describe(result, fp_points))
    if unlisted:
        echo(f"  note: {len(unlisted)} image(s) in the detections are not among the scored images and were ignored")
    echo(f"wrote {out_dir / DISC_ROC_NAME}, {out_dir / CONT_ROC_NAME}, {plot}")
    return result


# --------------------------------------------------------------------------------------------
# Detector-driven evaluation (the loop and its resumable log: mtcnn_train.detection.runner).


def evaluate_fddb_with_detector(cascade: Any, records: Sequence[Any], out_dir: str | Path, cfg: Any,
                                box_to_ellipse: bool | None = None, fingerprint: dict[str, Any] | None = None,
                                echo=print, matching: str = "official",
                                compare: Sequence[Path] = (), label: str | None = None) -> dict[str, FddbResult]:
    """Detect faces in FDDB images, write the official detection file, score it, write a report.

    ``records`` are FaceRecords with ``.name``, ``.image_path`` and ``.ellipses``.  Writes into
    ``out_dir``: ``detections.txt``, ``DiscROC.txt``, ``ContROC.txt``, ``summary.json``,
    ``roc.png``; with ``box_to_ellipse`` (default: ``cfg.evaluation.box_to_ellipse``) also the
    same under ``box_to_ellipse/``, scored with the boxes turned into upright ellipses
    (:func:`mtcnn_train.geometry.box_to_ellipse`).  Returns ``{"rectangles": result[,
    "box_to_ellipse": result]}``.  Rerunning after an interruption continues from the images
    already detected with the same detector (``fingerprint``).  ``matching`` is ``"official"``
    or ``"optimal"`` (see :func:`score_fddb`).  ``compare``: DiscROC files of other runs drawn on
    the rectangle plot, this run's curve named ``label`` (default: "rectangles").
    """
    from mtcnn_train.geometry import box_to_ellipse as to_ellipse

    check_matching(matching)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_temp_files(out_dir)  # a killed run's temp files were never trusted
    ev = cfg.evaluation
    use_ellipses = ev.box_to_ellipse if box_to_ellipse is None else box_to_ellipse
    log = DetectionLog(out_dir, fingerprint or detector_fingerprint(None, cfg.detection))
    items = [(r.name, Path(r.image_path)) for r in records]
    detected, skipped = detect_images(cascade, items, cfg.detection.batch_size, "FDDB detection", log)
    kept = [r for r in records if r.name in detected]
    if not kept:
        raise UserError("no FDDB image could be read; nothing to score")
    sizes = {name: size for name, (_, size) in detected.items()}
    write_detections(out_dir / DETECTIONS_NAME, [(r.name, detected[r.name][0]) for r in kept])
    # Score what the file says (coordinates to 0.01 px), so that rescoring the file with
    # `eval fddb --detections` gives the same curves.
    written = read_detections(out_dir / DETECTIONS_NAME)
    fp_points = list(ev.fp_points)
    annotations = [(r.name, r.ellipses) for r in kept]
    extra = {"skipped_images": len(skipped), "detections": DETECTIONS_NAME, "matching": matching}
    results = {"rectangles": score_fddb(annotations, written, sizes, overlap=ev.fddb_overlap, progress=True,
                                        matching=matching)}
    write_result(out_dir, results["rectangles"], fp_points, extra)
    _plot(out_dir, results["rectangles"], label or "rectangles", compare)
    echo(describe(results["rectangles"], fp_points, "FDDB (rectangles, official scoring)"))
    if use_ellipses:
        sub = out_dir / "box_to_ellipse"
        ellipses = []
        for r in kept:
            rows = written[r.name]
            boxes = np.concatenate([rows[:, :2], rows[:, :2] + rows[:, 2:4]], 1)
            ellipses.append((r.name, np.concatenate([to_ellipse(boxes), rows[:, 4:5]], 1)))
        write_detections(sub / DETECTIONS_NAME, ellipses, ellipse=True)
        written_e = read_detections(sub / DETECTIONS_NAME, ellipse=True)
        results["box_to_ellipse"] = score_fddb(annotations, written_e, sizes, overlap=ev.fddb_overlap,
                                               ellipse_detections=True, progress=True, matching=matching)
        write_result(sub, results["box_to_ellipse"], fp_points, extra)
        _plot(sub, results["box_to_ellipse"], "boxes as ellipses")
        echo(describe(results["box_to_ellipse"], fp_points, "FDDB (boxes turned into ellipses)"))
    if skipped:
        echo(f"  skipped {len(skipped)} unreadable image(s) (first: {skipped[0]})")
    log.finish()
    return results


def parse_folds(text: str | Sequence[int] | None) -> list[int]:
    """``"1-10"``, ``"2"``, ``"1,3,5-7"`` (or a list) -> sorted fold numbers in 1..10."""
    if text is None:
        return list(range(1, 11))
    if not isinstance(text, str):
        folds = [int(v) for v in text]
    else:
        folds = []
        for part in text.replace(" ", "").split(","):
            if not part:
                continue
            try:
                if "-" in part:
                    lo, hi = (int(v) for v in part.split("-", 1))
                    folds.extend(range(lo, hi + 1))
                else:
                    folds.append(int(part))
            except ValueError:
                raise UserError(f"--folds {text}: expected fold numbers like 1-10 or 1,3,5") from None
    bad = [f for f in folds if not 1 <= f <= 10]
    if bad or not folds:
        raise UserError(f"--folds {text}: FDDB folds are numbered 1 to 10")
    return sorted(set(folds))


def evaluate_fddb_run(weights: str | Path, fddb_root: str | Path, out_dir: str | Path, cfg: Any,
                      folds: str | Sequence[int] | None = None, box_to_ellipse: bool | None = None,
                      echo=print, matching: str = "official", compare: Sequence[Path] = (),
                      backend: str = "torch", label: str | None = None) -> dict[str, FddbResult]:
    """``eval fddb --weights``: load the cascade from a run folder (or, with an onnx ``backend``, an
    export folder), read the folds, evaluate."""
    check_matching(matching)
    from mtcnn_train.datasets.fddb import read_fddb
    from mtcnn_train.detection.cascade import Cascade

    fold_list = parse_folds(folds)
    records = read_fddb(fddb_root, fold_list)
    if not records:
        raise UserError(f"{fddb_root}: no FDDB images in folds {fold_list}")
    cascade = Cascade.load(weights, cfg.detection, backend=backend, device=cfg.detection.device)
    fingerprint = {**detector_fingerprint(weights, cfg.detection), "backend": backend}
    return evaluate_fddb_with_detector(cascade, records, out_dir, cfg, box_to_ellipse=box_to_ellipse,
                                       fingerprint=fingerprint, echo=echo,
                                       matching=matching, compare=compare, label=label)
