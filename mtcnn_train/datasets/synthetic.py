"""The embedded synthetic dataset: rendered faces written in the real WIDER FACE, CelebA and FDDB formats.

``make_synthetic(out_dir)`` renders four sets, each in the layout its real counterpart uses, so
that every reader, sampler, trainer and evaluator runs on it unchanged:

* ``wider/``  WIDER FACE train and val splits (``wider_face_split/wider_face_<split>_bbx_gt.txt`` and
  ``WIDER_<split>/images/<event>/<name>.jpg``): 0 to 8 faces per image, 12 to 300 px, with WIDER's
  blur / expression / illumination / invalid / occlusion / pose flags set from how each face was drawn;
* ``celeba/`` a CelebA-style landmark set (``Anno/list_bbox_celeba.txt``,
  ``Anno/list_landmarks_celeba.txt``, ``img_celeba/*.jpg``): one large face per image, integer
  landmarks;
* ``fddb/``   an FDDB-style evaluation set (``FDDB-folds/FDDB-fold-XX-ellipseList.txt`` +
  ``FDDB-fold-XX.txt``, ``originalPics/<yyyy>/<mm>/<dd>/big/img_<k>.jpg``) whose ellipses cover the
  whole head, hair included, as FDDB's do;
* ``summary.json``: counts, seed, sizes and paths (also marks the folder as a synthetic set).

Ground truth is exact by construction.  Each face starts from an integer box (WIDER stores
integers); the face ellipse is then solved so that its tight axis-aligned box *is* that box, even
when the face is rolled.  Landmarks are chosen before anything is drawn (rounded to integers for
CelebA, to 2 decimals elsewhere) and the eyes, nose and mouth are drawn around them, at sub-pixel
precision.  Coordinates follow docs/CONVENTIONS.md (pixel edges).

Every image has its own random stream, seeded from ``(seed, split, index)``, so an image does not
depend on how many images are rendered or in which order, and two runs with one seed write
byte-identical files.

The images are meant to make a detector learn the *shape* of a face: backgrounds carry noise
textures, gradients, shapes, lines and text, and face-like distractors that are not faces
(featureless skin-coloured ellipses and blobs, the back of a head, dark dot pairs on non-skin
blobs, balls, clocks and wheels).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import cv2
import numpy as np

from mtcnn_train.datasets.fddb import fold_paths, write_fddb_fold
from mtcnn_train.datasets.landmarks import write_celeba
from mtcnn_train.datasets.records import FaceRecord
from mtcnn_train.datasets.wider import WIDER_FLAGS, wider_paths, write_wider
from mtcnn_train.errors import UserError
from mtcnn_train.geometry import ellipse_to_box
from mtcnn_train.io import atomic_write_json, save_image

#: Written into summary.json; a folder whose summary names this generator may be overwritten.
GENERATOR = "mtcnn-train make-synthetic"
FORMAT_VERSION = 1
JPEG_QUALITY = 90
#: Face boxes are never smaller than this on either side (P-Net's input size).
MIN_FACE = 12
MAX_FACE = 300
#: One random stream per (seed, split, index): the split codes keep the streams apart.
SPLIT_CODES = {"wider_train": 0, "wider_val": 1, "celeba": 2, "fddb": 3}
#: Landmarks of WIDER and FDDB faces are kept at this many decimals (they are not written to a
#: file); CelebA stores integers.
LANDMARK_DECIMALS = 2
FDDB_FOLDS = 2
_SUMMARY = "summary.json"

# OpenCV draws at sub-pixel positions in fixed point with this many fractional bits.
_SHIFT = 4
_ONE = 1 << _SHIFT

_SKIN_RAMP = np.array([[255, 224, 196], [241, 194, 167], [224, 172, 138], [198, 134, 100],
                       [161, 102, 72], [120, 75, 50], [85, 55, 38]], dtype=np.float64)
_HAIR_COLOURS = np.array([[22, 18, 16], [45, 32, 24], [80, 55, 35], [120, 85, 50], [190, 160, 105],
                          [150, 150, 150], [135, 62, 32], [225, 215, 200]], dtype=np.float64)
_HAIR_WEIGHTS = np.array([0.3, 0.22, 0.15, 0.1, 0.08, 0.07, 0.05, 0.03])
_IRIS_COLOURS = np.array([[60, 38, 25], [95, 65, 40], [55, 90, 130], [70, 105, 70], [30, 25, 22]],
                         dtype=np.float64)


# --------------------------------------------------------------------------------------------
# Scene styles: how many faces of which sizes an image holds.


@dataclass(frozen=True)
class SceneStyle:
    """What one kind of image holds.  Ranges are inclusive ``(low, high)``."""

    face_count: tuple[int, int]
    #: Face box width before capping by the image size (log-uniform).
    face_width: tuple[float, float]
    distractors: tuple[int, int]
    clutter_shapes: tuple[int, int]
    #: Chance that a face is partly covered by an object.
    occlusion_prob: float = 0.2
    #: Chance of blur level 0 (sharp), 1 (some) and 2 (heavy).
    blur_probs: tuple[float, float, float] = (0.6, 0.28, 0.12)
    roll_sd_deg: float = 12.0
    yaw_sd: float = 0.35
    #: One face near the image centre (CelebA) instead of faces anywhere.
    centred: bool = False


WIDER_EVENTS = {
    "0--Synthetic_Crowd": SceneStyle((4, 8), (12, 60), (2, 6), (8, 25)),
    "1--Synthetic_Portrait": SceneStyle((1, 2), (60, 300), (1, 3), (4, 15)),
    "2--Synthetic_Group": SceneStyle((2, 5), (20, 150), (1, 4), (6, 20)),
    "3--Synthetic_Street": SceneStyle((0, 3), (12, 200), (3, 8), (15, 35)),
}
CELEBA_STYLE = SceneStyle((1, 1), (0, 0), (1, 3), (4, 15), occlusion_prob=0.0, blur_probs=(0.8, 0.2, 0.0),
                          roll_sd_deg=8.0, yaw_sd=0.25, centred=True)
FDDB_STYLE = SceneStyle((1, 4), (24, 200), (1, 4), (6, 20), occlusion_prob=0.1, blur_probs=(0.7, 0.25, 0.05))


# --------------------------------------------------------------------------------------------
# Random helpers


def image_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """The random stream of one image: independent of how many images are rendered, and of order."""
    if seed < 0:
        raise UserError(f"seed must be 0 or more, got {seed}")
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, SPLIT_CODES[split], index])))


def _log_uniform(rng: np.random.Generator, low: float, high: float) -> float:
    return float(np.exp(rng.uniform(np.log(low), np.log(max(high, low)))))


def _int_range(rng: np.random.Generator, bounds: tuple[int, int]) -> int:
    return int(rng.integers(bounds[0], bounds[1] + 1))


def _colour(values: Iterable[float]) -> tuple[int, int, int]:
    """A colour as OpenCV wants it: a tuple of plain ints in 0..255."""
    r, g, b = (int(np.clip(round(float(v)), 0, 255)) for v in values)
    return r, g, b


def _scaled(colour: Iterable[float], factor: float) -> tuple[int, int, int]:
    return _colour(np.asarray(list(colour), dtype=np.float64) * factor)


def _skin_colour(rng: np.random.Generator) -> np.ndarray:
    """A skin tone from light to dark, with a little per-channel variation."""
    t = rng.uniform(0, len(_SKIN_RAMP) - 1)
    i = min(int(t), len(_SKIN_RAMP) - 2)
    tone = _SKIN_RAMP[i] * (1 - (t - i)) + _SKIN_RAMP[i + 1] * (t - i)
    return np.clip(tone + rng.normal(0, 6, 3), 0, 255)


def _is_skin_like(rgb: np.ndarray) -> bool:
    r, g, b = (float(v) for v in rgb)
    return r > g > b and r > 70 and 20 < r - b < 140 and 0.5 < g / r < 0.93


def _non_skin_colour(rng: np.random.Generator) -> np.ndarray:
    """A random colour that is not a skin tone (for dot-pair distractors)."""
    for _ in range(20):
        rgb = rng.uniform(0, 255, 3)
        if not _is_skin_like(rgb):
            return rgb
    return np.array([60.0, 120.0, 200.0])


# --------------------------------------------------------------------------------------------
# Drawing at sub-pixel positions given in pixel-edge coordinates


class _Painter:
    """Draws anti-aliased shapes onto an image (or a patch of one whose top-left image coordinate is
    ``origin``) and, with the same call, into any masks named; positions are pixel edges."""

    def __init__(self, canvas: np.ndarray, origin: tuple[int, int] = (0, 0)):
        self.canvas = canvas
        self.origin = origin

    def _fixed(self, point) -> tuple[int, int]:
        # OpenCV's integer coordinate k is the centre of pixel k, which is k + 0.5 in pixel edges.
        return (int(round((float(point[0]) - self.origin[0] - 0.5) * _ONE)),
                int(round((float(point[1]) - self.origin[1] - 0.5) * _ONE)))

    def _targets(self, colour, masks):
        return [(self.canvas, colour)] + [(m, 255) for m in masks]

    def ellipse(self, centre, half_axes, angle_deg: float, colour, masks=(), thickness: int = -1,
                arc: tuple[float, float] = (0, 360)) -> None:
        axes = (max(1, int(round(half_axes[0] * _ONE))), max(1, int(round(half_axes[1] * _ONE))))
        for target, col in self._targets(colour, masks):
            cv2.ellipse(target, self._fixed(centre), axes, float(angle_deg), float(arc[0]), float(arc[1]), col,
                        thickness, cv2.LINE_AA, _SHIFT)

    def circle(self, centre, radius: float, colour, masks=(), thickness: int = -1) -> None:
        for target, col in self._targets(colour, masks):
            cv2.circle(target, self._fixed(centre), max(1, int(round(radius * _ONE))), col, thickness,
                       cv2.LINE_AA, _SHIFT)

    def line(self, start, end, colour, thickness: int, masks=()) -> None:
        for target, col in self._targets(colour, masks):
            cv2.line(target, self._fixed(start), self._fixed(end), col, max(1, int(thickness)), cv2.LINE_AA, _SHIFT)

    def polygon(self, points, colour, masks=()) -> None:
        fixed = np.array([self._fixed(p) for p in points], dtype=np.int32)
        for target, col in self._targets(colour, masks):
            cv2.fillPoly(target, [fixed], col, cv2.LINE_AA, _SHIFT)


# --------------------------------------------------------------------------------------------
# Faces: a specification (what to draw), its geometry (where), and the drawing.


@dataclass
class FaceSpec:
    """Everything random about one face, drawn before anything is rendered."""

    box: tuple[int, int, int, int]  # x, y, w, h: integers, the exact ground-truth box
    roll: float  # radians, positive turns the face clockwise on screen
    yaw: float  # -1..1, positive turns the face towards image-right
    skin: np.ndarray
    hair_style: str  # bald | short | long
    hair_colour: np.ndarray
    hair_shape: tuple[float, float]  # hair half-axes in units of the face's a and b
    fringe: bool
    iris: np.ndarray
    layout: dict[str, float]  # feature positions in the face frame (see face_geometry)
    open_mouth: bool
    glasses: bool
    body: bool
    clothes: np.ndarray
    brightness: float
    light_gradient: float
    light_angle: float
    extreme_light: bool
    blur_level: int
    blur_sigma: float
    occluded: bool


@dataclass
class FaceGeometry:
    """Where a face lies in the image, derived from a :class:`FaceSpec` (pixel edges)."""

    centre: np.ndarray  # (2,) centre of the face ellipse
    a: float  # half-width of the face ellipse (along ``right``)
    b: float  # half-height (along ``down``)
    roll: float
    right: np.ndarray  # unit vector from the left to the right cheek
    down: np.ndarray  # unit vector from forehead to chin
    landmarks: np.ndarray  # (5, 2) left eye, right eye, nose tip, left and right mouth corner
    ellipse: np.ndarray  # (5,) FDDB head ellipse: major, minor, angle (rad), cx, cy
    head_box: np.ndarray  # (4,) x1 y1 x2 y2: everything of the head (hair, neck) lies inside
    body_box: np.ndarray  # (4,) where the shoulders would be drawn

    def point(self, u: float, v: float) -> np.ndarray:
        """Face-frame ``(u, v)`` (units of ``a`` and ``b`` from the centre) -> image coordinates."""
        return self.centre + u * self.a * self.right + v * self.b * self.down


def solve_face_ellipse(box_w: float, box_h: float, roll: float) -> tuple[float, float, float]:
    """Half-axes ``(a, b)`` of an ellipse rolled by ``roll`` whose tight box is ``box_w x box_h``.

    The tight box of an ellipse with half-axes a (at angle roll) and b has half-width
    ``sqrt(a² cos² + b² sin²)`` and half-height ``sqrt(a² sin² + b² cos²)``; solved for a² and b².
    Returns ``(a, b, roll)``; when no ellipse at this roll fits (a very elongated box), the roll
    falls back to 0 and the ellipse is the box's inscribed one.
    """
    w2, h2 = (box_w / 2) ** 2, (box_h / 2) ** 2
    cos2 = math.cos(2 * roll)
    if cos2 > 1e-6:
        diff = (w2 - h2) / cos2
        a2, b2 = (w2 + h2 + diff) / 2, (w2 + h2 - diff) / 2
        if a2 > 0.04 * (w2 + h2) and b2 > 0.04 * (w2 + h2):
            return math.sqrt(a2), math.sqrt(b2), roll
    return box_w / 2, box_h / 2, 0.0


def _tight_box(a: float, b: float, roll: float) -> tuple[float, float]:
    """Width and height of the tight box of an ellipse with half-axes a, b rolled by ``roll``."""
    c, s = math.cos(roll), math.sin(roll)
    return 2 * math.hypot(a * c, b * s), 2 * math.hypot(a * s, b * c)


def sample_face_size(rng: np.random.Generator, width_range: tuple[float, float], roll: float, yaw: float,
                     max_w: float, max_h: float) -> tuple[int, int]:
    """An integer box size ``(w, h)`` for a face of the given pose, within the image limits."""
    face_w = _log_uniform(rng, *width_range)
    a = face_w / 2 * (1 - 0.18 * abs(yaw))  # a turned head looks narrower
    b = face_w / 2 * rng.uniform(1.15, 1.35)
    w, h = _tight_box(a, b, roll)
    shrink = min(1.0, max_w / w, max_h / h)
    grow = max(1.0, MIN_FACE / (w * shrink), MIN_FACE / (h * shrink))
    w, h = w * shrink * grow, h * shrink * grow
    return max(MIN_FACE, int(round(w))), max(MIN_FACE, int(round(h)))


def sample_face_spec(rng: np.random.Generator, box: tuple[int, int, int, int], roll: float, yaw: float,
                     style: SceneStyle) -> FaceSpec:
    """Draw the look of one face whose box and pose are already chosen."""
    hair_style = str(rng.choice(["bald", "short", "long"], p=[0.12, 0.5, 0.38]))
    if hair_style == "short":
        hair_shape = (rng.uniform(1.03, 1.12), rng.uniform(0.75, 0.9))
    else:
        hair_shape = (rng.uniform(1.05, 1.18), rng.uniform(1.0, 1.15))
    layout = {
        "eye_u": rng.uniform(0.36, 0.44), "eye_v": rng.uniform(-0.3, -0.15),
        "nose_v": rng.uniform(0.12, 0.26), "mouth_u": rng.uniform(0.26, 0.36),
        "mouth_v": rng.uniform(0.46, 0.6), "smile": rng.uniform(0.0, 0.05),
        "brow_lift": rng.uniform(0.14, 0.22), "eye_size": rng.uniform(0.85, 1.15),
    }
    blur_level = int(rng.choice(3, p=style.blur_probs))
    face_w = box[2]
    blur_sigma = [0.0, rng.uniform(0.4, 0.8) + 0.02 * face_w, rng.uniform(1.0, 1.8) + 0.05 * face_w][blur_level]
    extreme_light = bool(rng.random() < 0.1)
    if extreme_light and rng.random() < 0.5:
        brightness, gradient = rng.uniform(0.35, 0.55), rng.uniform(0.0, 0.3)
    elif extreme_light:
        brightness, gradient = rng.uniform(0.8, 1.1), rng.uniform(0.5, 0.7)
    else:
        brightness, gradient = rng.uniform(0.75, 1.15), rng.uniform(0.0, 0.35)
    return FaceSpec(
        box=box, roll=roll, yaw=yaw, skin=_skin_colour(rng), hair_style=hair_style,
        hair_colour=_HAIR_COLOURS[rng.choice(len(_HAIR_COLOURS), p=_HAIR_WEIGHTS)] + rng.normal(0, 5, 3),
        hair_shape=(float(hair_shape[0]), float(hair_shape[1])), fringe=bool(hair_style != "bald" and rng.random() < 0.5),
        iris=_IRIS_COLOURS[rng.integers(len(_IRIS_COLOURS))], layout=layout,
        open_mouth=bool(rng.random() < 0.1), glasses=bool(rng.random() < 0.08), body=bool(rng.random() < 0.7),
        clothes=rng.uniform(0, 255, 3), brightness=float(brightness), light_gradient=float(gradient),
        light_angle=float(rng.uniform(0, 2 * math.pi)), extreme_light=extreme_light, blur_level=blur_level,
        blur_sigma=float(blur_sigma), occluded=bool(rng.random() < style.occlusion_prob),
    )


def _feature_uv(spec: FaceSpec) -> np.ndarray:
    """The 5 landmarks in the face frame; a turned head (yaw) shifts them sideways and closer together."""
    lay, yaw = spec.layout, spec.yaw
    shift, squeeze = 0.35 * yaw, 1 - 0.25 * abs(yaw)
    return np.array([
        [-lay["eye_u"] * squeeze + shift, lay["eye_v"]],
        [lay["eye_u"] * squeeze + shift, lay["eye_v"]],
        [1.5 * shift, lay["nose_v"]],  # the nose sticks out, so it moves most
        [-lay["mouth_u"] * squeeze + 0.9 * shift, lay["mouth_v"]],
        [lay["mouth_u"] * squeeze + 0.9 * shift, lay["mouth_v"]],
    ])


def _fddb_ellipse(geo: FaceGeometry, spec: FaceSpec) -> np.ndarray:
    """The FDDB ellipse of the whole head: from the chin to the top of the hair, ear to ear."""
    if spec.hair_style == "bald":
        top, half_width = 1.05, 1.07
    else:
        top = _hair_centre_v(spec) + spec.hair_shape[1]
        half_width = max(1.07, 0.95 * spec.hair_shape[0])
    major = geo.b * (1 + top) / 2
    minor = geo.a * half_width
    centre = geo.point(0.0, (1 - top) / 2)
    angle = math.atan2(geo.down[1], geo.down[0])  # the major axis runs from forehead to chin
    if minor > major:  # a very wide head: the major axis is the horizontal one
        major, minor, angle = minor, major, angle - math.pi / 2
    if angle > math.pi / 2:
        angle -= math.pi
    elif angle <= -math.pi / 2:
        angle += math.pi
    return np.round(np.array([major, minor, angle, centre[0], centre[1]]), 6)


def _hair_centre_v(spec: FaceSpec) -> float:
    return 0.35 if spec.hair_style == "short" else 0.15


def _long_hair_quad(geo: FaceGeometry, spec: FaceSpec) -> np.ndarray:
    ha = spec.hair_shape[0]
    return np.array([geo.point(-ha, -0.2), geo.point(ha, -0.2), geo.point(ha, 1.05), geo.point(-ha, 1.05)])


def _neck_quad(geo: FaceGeometry) -> np.ndarray:
    return np.array([geo.point(-0.42, 0.3), geo.point(0.42, 0.3), geo.point(0.48, 1.6), geo.point(-0.48, 1.6)])


def _union_box(points: np.ndarray) -> np.ndarray:
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    return np.array([pts[:, 0].min(), pts[:, 1].min(), pts[:, 0].max(), pts[:, 1].max()])


def _ellipse_corners(half_a: float, half_b: float, angle: float, centre: np.ndarray) -> np.ndarray:
    box = ellipse_to_box(np.array([half_a, half_b, angle, centre[0], centre[1]]))[0]
    return box.reshape(2, 2)


def face_geometry(spec: FaceSpec, landmark_decimals: int) -> FaceGeometry:
    """Where the face of ``spec`` lies: its ellipse fits the integer box exactly, the landmarks are
    rounded to ``landmark_decimals`` before anything is drawn at them."""
    x, y, w, h = spec.box
    a, b, roll = solve_face_ellipse(w, h, spec.roll)
    right = np.array([math.cos(roll), math.sin(roll)])
    down = np.array([-math.sin(roll), math.cos(roll)])
    geo = FaceGeometry(centre=np.array([x + w / 2, y + h / 2]), a=a, b=b, roll=roll, right=right, down=down,
                       landmarks=np.zeros((5, 2)), ellipse=np.zeros(5), head_box=np.zeros(4), body_box=np.zeros(4))
    uv = _feature_uv(spec)
    geo.landmarks = np.round(np.array([geo.point(u, v) for u, v in uv]), landmark_decimals)
    geo.ellipse = _fddb_ellipse(geo, spec)
    parts = [_ellipse_corners(*geo.ellipse[:2], geo.ellipse[2], geo.ellipse[3:]), _neck_quad(geo),
             np.array([[x, y], [x + w, y + h]])]
    if spec.hair_style != "bald":
        parts.append(_ellipse_corners(spec.hair_shape[0] * a, spec.hair_shape[1] * b, roll,
                                      geo.point(0, -_hair_centre_v(spec))))
    if spec.hair_style == "long":
        parts.append(_long_hair_quad(geo, spec))
    geo.head_box = _union_box(np.concatenate(parts))
    geo.body_box = _union_box(_ellipse_corners(2.0 * a, 0.9 * b, roll, geo.point(0, 2.3)))
    return geo


def _draw_hair_back(p: _Painter, geo: FaceGeometry, spec: FaceSpec, hair, masks) -> None:
    if spec.hair_style == "bald":
        return
    ha, hb = spec.hair_shape
    p.ellipse(geo.point(0, -_hair_centre_v(spec)), (ha * geo.a, hb * geo.b), math.degrees(geo.roll), hair, masks)
    if spec.hair_style == "long":
        p.polygon(_long_hair_quad(geo, spec), hair, masks)


def _draw_eyes(p: _Painter, geo: FaceGeometry, spec: FaceSpec, hair) -> None:
    roll_deg = math.degrees(geo.roll)
    skin = spec.skin
    lid = _scaled(skin, 0.45)
    brow = _scaled(spec.hair_colour, 0.8)
    for side, eye in ((-1, geo.landmarks[0]), (1, geo.landmarks[1])):
        # The eye on the side the head turns away from looks smaller.
        scale = spec.layout["eye_size"] * (1 - 0.3 * side * spec.yaw)
        half_w, half_h = 0.15 * geo.a * scale, 0.075 * geo.b * scale
        brow_centre = eye - spec.layout["brow_lift"] * geo.b * geo.down
        p.ellipse(brow_centre, (1.2 * half_w, 0.5 * half_h + 0.02 * geo.b), roll_deg, brow, arc=(190, 350),
                  thickness=max(1, int(round(0.045 * geo.b))))
        p.ellipse(eye, (half_w, half_h), roll_deg, (235, 232, 225))
        p.circle(eye, 0.85 * half_h, _colour(spec.iris))
        p.circle(eye, 0.4 * half_h, (15, 12, 12))
        if half_h > 3:
            p.circle(eye - 0.3 * half_h * geo.down + 0.25 * half_h * geo.right, 0.18 * half_h, (250, 250, 250))
        p.ellipse(eye, (half_w, half_h), roll_deg, lid, arc=(180, 360), thickness=max(1, int(round(0.02 * geo.b))))
        if spec.glasses:
            p.circle(eye, 1.5 * half_w, (20, 20, 20), thickness=max(1, int(round(0.025 * geo.b))))
    if spec.glasses:
        gap = geo.landmarks[1] - geo.landmarks[0]
        span = np.linalg.norm(gap)
        if span > 0:
            unit = gap / span
            half_w = 0.15 * geo.a * spec.layout["eye_size"]
            p.line(geo.landmarks[0] + 1.5 * half_w * unit, geo.landmarks[1] - 1.5 * half_w * unit, (20, 20, 20),
                   max(1, int(round(0.025 * geo.b))))


def _draw_nose(p: _Painter, geo: FaceGeometry, spec: FaceSpec) -> None:
    tip = geo.landmarks[2]
    roll_deg = math.degrees(geo.roll)
    bridge = 0.5 * (geo.landmarks[0] + geo.landmarks[1]) + 0.1 * geo.b * geo.down
    p.line(bridge, tip - 0.05 * geo.b * geo.down, _scaled(spec.skin, 0.85), max(1, int(round(0.04 * geo.a))))
    p.ellipse(tip + 0.01 * geo.b * geo.down, (0.13 * geo.a, 0.07 * geo.b), roll_deg, _scaled(spec.skin, 0.9))
    p.ellipse(tip - 0.015 * geo.b * geo.down, (0.06 * geo.a, 0.035 * geo.b), roll_deg, _scaled(spec.skin, 1.07))
    nostril = _scaled(spec.skin, 0.4)
    for side in (-1, 1):
        p.ellipse(tip + side * 0.075 * geo.a * geo.right + 0.045 * geo.b * geo.down,
                  (0.035 * geo.a, 0.022 * geo.b), roll_deg, nostril)


def _draw_mouth(p: _Painter, geo: FaceGeometry, spec: FaceSpec) -> None:
    left, right_corner = geo.landmarks[3], geo.landmarks[4]
    centre = 0.5 * (left + right_corner)
    span = right_corner - left
    half = 0.5 * float(np.hypot(*span))
    angle = math.degrees(math.atan2(span[1], span[0]))
    lips = _colour(spec.skin * np.array([0.85, 0.55, 0.55]))
    lip_h = (0.13 if spec.open_mouth else 0.055) * geo.b
    p.ellipse(centre, (half, lip_h), angle, lips)
    if spec.open_mouth:
        p.ellipse(centre, (0.8 * half, 0.6 * lip_h), angle, (45, 15, 15))
        p.ellipse(centre - 0.25 * lip_h * geo.down, (0.6 * half, 0.25 * lip_h), angle, (235, 230, 220))
    else:
        depth = max(0.3, spec.layout["smile"] * geo.b)
        p.ellipse(centre - depth * geo.down, (half, depth), angle, _scaled(lips, 0.55), arc=(0, 180),
                  thickness=max(1, int(round(0.02 * geo.b))))


def _draw_occluder(p: _Painter, geo: FaceGeometry, rng: np.random.Generator, occluder_mask: np.ndarray) -> None:
    """A random-coloured bar, block or disk over part of the face."""
    colour = _colour(rng.uniform(0, 255, 3))
    kind = rng.choice(["bar", "block", "disk"])
    size = max(geo.a, geo.b)
    if kind == "disk":
        centre = geo.point(rng.uniform(-0.8, 0.8), rng.uniform(-0.8, 0.8))
        p.circle(centre, rng.uniform(0.3, 0.75) * geo.a, colour, [occluder_mask])
        return
    theta = rng.uniform(0, math.pi) if kind == "bar" else rng.choice([0.0, math.pi / 2]) + geo.roll
    along = np.array([math.cos(theta), math.sin(theta)])
    across = np.array([-along[1], along[0]])
    if kind == "bar":
        centre = geo.point(rng.uniform(-0.5, 0.5), rng.uniform(-0.5, 0.5))
        half_len, half_th = 3 * size, rng.uniform(0.12, 0.35) * size
    else:  # a block coming in from one side, reaching some way into the face
        side = rng.choice([-1.0, 1.0])
        reach = rng.uniform(0.15, 0.9)
        centre = geo.centre + side * (1 - reach + 1.5) * size * across
        half_len, half_th = 3 * size, 1.5 * size
    corners = [centre + s * half_len * along + t * half_th * across for s, t in ((-1, -1), (1, -1), (1, 1), (-1, 1))]
    p.polygon(corners, colour, [occluder_mask])


def _apply_lighting(patch: np.ndarray, mask: np.ndarray, origin, geo: FaceGeometry, spec: FaceSpec) -> None:
    """Brightness and a linear light gradient across the head (only where ``mask`` is set)."""
    h, w = mask.shape
    xs = np.arange(w, dtype=np.float32) + (origin[0] + 0.5 - geo.centre[0])
    ys = np.arange(h, dtype=np.float32) + (origin[1] + 0.5 - geo.centre[1])
    dx, dy = math.cos(spec.light_angle), math.sin(spec.light_angle)
    projection = (xs[None, :] * dx + ys[:, None] * dy) / max(geo.b, 1.0)
    factor = np.clip(spec.brightness * (1 + spec.light_gradient * projection), 0.15, 1.9)
    weight = 1 + (factor - 1) * (mask.astype(np.float32) / 255)
    patch[:] = np.clip(patch.astype(np.float32) * weight[:, :, None], 0, 255).astype(np.uint8)


def _apply_blur(patch: np.ndarray, foreground: np.ndarray, sigma: float) -> None:
    """Blur what was drawn for this face; the background around it stays sharp."""
    blurred = cv2.GaussianBlur(patch, (0, 0), sigma)
    alpha = cv2.GaussianBlur(cv2.dilate(foreground, None, iterations=max(1, int(round(sigma)))), (0, 0), sigma)
    alpha = (alpha.astype(np.float32) / 255)[:, :, None]
    patch[:] = np.clip(blurred * alpha + patch * (1 - alpha), 0, 255).astype(np.uint8)


def _box_slice(box: np.ndarray, width: int, height: int) -> tuple[int, int, int, int]:
    x1 = int(np.clip(math.floor(box[0]), 0, width))
    y1 = int(np.clip(math.floor(box[1]), 0, height))
    x2 = int(np.clip(math.ceil(box[2]), 0, width))
    y2 = int(np.clip(math.ceil(box[3]), 0, height))
    return x1, y1, x2, y2


def occlusion_flag(fraction: float) -> int:
    """WIDER's occlusion levels: 0 none, 1 partial (up to 30 % hidden), 2 heavy."""
    if fraction < 0.01:
        return 0
    return 1 if fraction <= 0.3 else 2


def render_face(image: np.ndarray, spec: FaceSpec, geo: FaceGeometry, rng: np.random.Generator,
                draw_body: bool = True) -> dict[str, int]:
    """Draw one face into ``image`` (in place) and return its WIDER flags.

    Everything drawn for the face stays inside ``geo.head_box`` (plus ``geo.body_box`` for the
    shoulders when ``draw_body``), so the caller can keep faces from covering each other.
    """
    height, width = image.shape[:2]
    region = geo.head_box.copy()
    if draw_body and spec.body:
        region = _union_box(np.concatenate([region.reshape(2, 2), geo.body_box.reshape(2, 2)]))
    margin = 3 * spec.blur_sigma + 2
    x1, y1, x2, y2 = _box_slice(region + np.array([-margin, -margin, margin, margin]), width, height)
    patch = image[y1:y2, x1:x2]
    origin = (x1, y1)
    painter = _Painter(patch, origin)
    head_mask = np.zeros(patch.shape[:2], np.uint8)  # where lighting applies
    face_mask = np.zeros(patch.shape[:2], np.uint8)  # the face ellipse, for the occluded fraction
    drawn_mask = np.zeros(patch.shape[:2], np.uint8)  # everything of this face, for the blur
    roll_deg = math.degrees(geo.roll)
    hair = _colour(spec.hair_colour)

    if draw_body and spec.body:
        painter.ellipse(geo.point(0, 2.3), (2.0 * geo.a, 0.9 * geo.b), roll_deg, _colour(spec.clothes), [drawn_mask])
    _draw_hair_back(painter, geo, spec, hair, [head_mask, drawn_mask])
    painter.polygon(_neck_quad(geo), _scaled(spec.skin, 0.82), [head_mask, drawn_mask])
    painter.ellipse(geo.centre, (geo.a, geo.b), roll_deg, _colour(spec.skin), [head_mask, face_mask, drawn_mask])
    if spec.fringe:
        painter.ellipse(geo.point(0, -0.55), (0.97 * geo.a, 0.47 * geo.b), roll_deg, hair, arc=(180, 360))
    _draw_eyes(painter, geo, spec, hair)
    _draw_nose(painter, geo, spec)
    _draw_mouth(painter, geo, spec)

    occluded_fraction = 0.0
    if spec.occluded:
        # Draw the occluder on the head box only, so that it can never reach another face.
        hx1, hy1, hx2, hy2 = _box_slice(geo.head_box - np.array([x1, y1, x1, y1]), x2 - x1, y2 - y1)
        occluder_mask = np.zeros(patch.shape[:2], np.uint8)
        _draw_occluder(_Painter(patch[hy1:hy2, hx1:hx2], (x1 + hx1, y1 + hy1)), geo, rng,
                       occluder_mask[hy1:hy2, hx1:hx2])
        face_area = np.count_nonzero(face_mask >= 128)
        covered = np.count_nonzero((face_mask >= 128) & (occluder_mask >= 128))
        occluded_fraction = covered / max(face_area, 1)
        head_mask[occluder_mask > 0] = 0
        np.maximum(drawn_mask, occluder_mask, out=drawn_mask)

    _apply_lighting(patch, head_mask, origin, geo, spec)
    if spec.blur_level > 0:
        _apply_blur(patch, drawn_mask, spec.blur_sigma)

    occlusion = occlusion_flag(occluded_fraction)
    tiny_and_blurred = min(spec.box[2], spec.box[3]) < 16 and spec.blur_level == 2
    return {
        "blur": spec.blur_level,
        "expression": int(spec.open_mouth),
        "illumination": int(spec.extreme_light),
        "invalid": int(tiny_and_blurred),  # an unrecognisable smear, as WIDER marks such faces
        "occlusion": occlusion,
        "pose": int(abs(spec.roll) > math.radians(20) or abs(spec.yaw) > 0.55),
    }


# --------------------------------------------------------------------------------------------
# Backgrounds and distractors


def render_background(rng: np.random.Generator, width: int, height: int, shapes: tuple[int, int]) -> np.ndarray:
    """Smooth colour fields, a noise texture, and random shapes, lines and text."""
    grid = rng.uniform(0, 255, (int(rng.integers(2, 7)), int(rng.integers(2, 7)), 3)).astype(np.float32)
    # Real scenes are rarely rainbow-coloured: pull the colours some way towards grey.
    grey = grid.mean(axis=2, keepdims=True)
    grid = grey + (grid - grey) * rng.uniform(0.2, 1.0)
    image = cv2.resize(grid, (width, height), interpolation=cv2.INTER_CUBIC)
    cell = int(rng.integers(3, 24))
    texture = rng.standard_normal((max(2, height // cell), max(2, width // cell))).astype(np.float32)
    texture = cv2.resize(texture, (width, height), interpolation=cv2.INTER_LINEAR) * rng.uniform(4, 30)
    image = np.clip(image + texture[:, :, None], 0, 255).astype(np.uint8)
    painter = _Painter(image)
    for _ in range(_int_range(rng, shapes)):
        _draw_clutter_shape(painter, rng, width, height)
    return image


def _draw_clutter_shape(p: _Painter, rng: np.random.Generator, width: int, height: int) -> None:
    colour = _colour(_skin_colour(rng) if rng.random() < 0.1 else rng.uniform(0, 255, 3))
    centre = rng.uniform([0, 0], [width, height])
    size = _log_uniform(rng, 4, 0.5 * min(width, height))
    kind = rng.choice(["rect", "circle", "ellipse", "line", "polyline", "text"], p=[0.25, 0.15, 0.15, 0.2, 0.15, 0.1])
    if kind == "rect":
        theta = rng.uniform(0, math.pi)
        along, across = np.array([math.cos(theta), math.sin(theta)]), np.array([-math.sin(theta), math.cos(theta)])
        half = rng.uniform(0.2, 1.0, 2) * size
        p.polygon([centre + s * half[0] * along + t * half[1] * across
                   for s, t in ((-1, -1), (1, -1), (1, 1), (-1, 1))], colour)
    elif kind == "circle":
        p.circle(centre, 0.5 * size, colour, thickness=-1 if rng.random() < 0.6 else int(rng.integers(1, 5)))
    elif kind == "ellipse":
        p.ellipse(centre, (0.5 * size, rng.uniform(0.1, 0.5) * size), rng.uniform(0, 180), colour)
    elif kind == "line":
        end = centre + rng.normal(0, size * 2, 2)
        p.line(centre, end, colour, int(rng.integers(1, 7)))
    elif kind == "polyline":
        points = centre + np.cumsum(rng.normal(0, size / 3, (int(rng.integers(3, 8)), 2)), axis=0)
        for start, end in zip(points[:-1], points[1:]):
            p.line(start, end, colour, int(rng.integers(1, 4)))
    else:
        letters = "ABCDEFGHJKLMNPRSTUVWXYZ0123456789"
        text = "".join(rng.choice(list(letters), int(rng.integers(2, 8))))
        scale = rng.uniform(0.4, 2.0)
        cv2.putText(p.canvas, text, (int(centre[0]), int(centre[1])), cv2.FONT_HERSHEY_SIMPLEX, scale, colour,
                    int(rng.integers(1, 4)), cv2.LINE_AA)


DISTRACTOR_KINDS = ("skin_ellipse", "back_of_head", "skin_blob", "dot_pair", "round_object")


def render_distractor(p: _Painter, rng: np.random.Generator, kind: str, centre: np.ndarray, size: float) -> np.ndarray:
    """Draw one face-like thing that is not a face; returns its box ``x1 y1 x2 y2``."""
    angle = rng.uniform(-40, 40)
    half = np.array([0.5 * size, 0.5 * size * rng.uniform(0.8, 1.5)])
    if kind in ("skin_ellipse", "back_of_head"):
        skin = _skin_colour(rng)
        p.ellipse(centre, half, angle, _colour(skin))
        # Soft shading so that a blob is not a flat colour either.
        p.ellipse(centre - 0.15 * half, 0.6 * half, angle, _scaled(skin, rng.uniform(0.9, 1.1)))
        if kind == "back_of_head":
            hair = _colour(_HAIR_COLOURS[rng.integers(len(_HAIR_COLOURS))])
            p.ellipse(centre, half * 1.05, angle, hair, arc=(160, 380))
    elif kind == "skin_blob":  # a hand, an arm, a knee: skin without a face's shape
        count = int(rng.integers(5, 9))
        angles = np.sort(rng.uniform(0, 2 * math.pi, count))
        radii = half[0] * rng.uniform(0.4, 1.2, count)
        p.polygon(centre + np.stack([radii * np.cos(angles), radii * np.sin(angles)], 1), _colour(_skin_colour(rng)))
    elif kind == "dot_pair":  # two eye-like dots on something that is not skin
        base = _non_skin_colour(rng)
        p.ellipse(centre, half, angle, _colour(base))
        theta = math.radians(angle)
        along = np.array([math.cos(theta), math.sin(theta)])
        up = np.array([math.sin(theta), -math.cos(theta)])
        for side in (-1, 1):
            p.circle(centre + side * 0.4 * half[0] * along + 0.25 * half[1] * up, 0.12 * half[0],
                     _colour(rng.uniform(0, 60, 3)))
    else:  # round_object: a ball, a clock, a wheel
        radius = half[0]
        style = rng.choice(["ball", "clock", "wheel"])
        body = _colour(rng.uniform(0, 255, 3))
        if style == "ball":
            p.circle(centre, radius, body)
            p.circle(centre - 0.35 * radius, 0.25 * radius, _scaled(body, 1.4))
        elif style == "clock":
            p.circle(centre, radius, (235, 235, 230))
            p.circle(centre, radius, body, thickness=max(1, int(round(0.1 * radius))))
            for hand in rng.uniform(0, 2 * math.pi, 2):
                p.line(centre, centre + 0.7 * radius * np.array([math.cos(hand), math.sin(hand)]), (20, 20, 20),
                       max(1, int(round(0.06 * radius))))
        else:
            p.circle(centre, radius, (30, 30, 30), thickness=max(1, int(round(0.3 * radius))))
            p.circle(centre, 0.35 * radius, body)
        half = np.array([radius, radius])
    extent = float(np.hypot(*half))
    return np.array([centre[0] - extent, centre[1] - extent, centre[0] + extent, centre[1] + extent])


# --------------------------------------------------------------------------------------------
# Whole images


@dataclass
class RenderedImage:
    """The ground truth of one rendered image (pixel edges, docs/CONVENTIONS.md)."""

    boxes: np.ndarray  # (N, 4) float32 x1 y1 x2 y2; integer valued
    landmarks: np.ndarray  # (N, 5, 2) float32
    ellipses: np.ndarray  # (N, 5) float64 FDDB head ellipses
    flags: dict[str, np.ndarray]  # WIDER flags, (N,) int32 each
    distractor_boxes: np.ndarray  # (M, 4) float32, rough extents of the non-faces
    distractor_kinds: list[str] = field(default_factory=list)

    @property
    def num_faces(self) -> int:
        return len(self.boxes)

    def record(self, image_path: Path, name: str, landmarks: bool = True, ellipses: bool = False) -> FaceRecord:
        return FaceRecord(image_path=Path(image_path), boxes=self.boxes,
                          landmarks=self.landmarks if landmarks else None,
                          ellipses=self.ellipses if ellipses else None,
                          flags=dict(self.flags), name=name, source="synthetic")


def _boxes_intersect(box: np.ndarray, others: list[np.ndarray]) -> bool:
    return any(box[0] < o[2] and o[0] < box[2] and box[1] < o[3] and o[1] < box[3] for o in others)


def _place_faces(rng: np.random.Generator, width: int, height: int, style: SceneStyle,
                 landmark_decimals: int) -> list[tuple[FaceSpec, FaceGeometry]]:
    """Choose the faces of an image: sizes, poses, positions; no face touches another face's box."""
    faces: list[tuple[FaceSpec, FaceGeometry]] = []
    count = _int_range(rng, style.face_count)
    for _ in range(count):
        roll = math.radians(float(np.clip(rng.normal(0, style.roll_sd_deg), -30, 30)))
        yaw = float(np.clip(rng.normal(0, style.yaw_sd), -0.9, 0.9))
        if style.centred:
            short = min(width, height)
            width_range = (0.3 * short, 0.55 * short)
        else:
            width_range = (max(style.face_width[0], MIN_FACE), min(style.face_width[1], MAX_FACE))
        w, h = sample_face_size(rng, width_range, roll, yaw, max_w=0.55 * width, max_h=0.8 * height)
        for _attempt in range(40):
            if style.centred:
                x = int(round((width - w) / 2 + rng.uniform(-0.15, 0.15) * (width - w)))
                y = int(round((height - h) / 2 + rng.uniform(-0.1, 0.25) * (height - h)))
            else:
                x, y = int(rng.integers(0, width - w + 1)), int(rng.integers(0, height - h + 1))
            spec = sample_face_spec(rng, (x, y, w, h), roll, yaw, style)
            geo = face_geometry(spec, landmark_decimals)
            box = np.array([x, y, x + w, y + h], dtype=np.float64)
            if not _boxes_intersect(geo.head_box, [np.array(_box_of(s)) for s, _ in faces]) and \
                    not _boxes_intersect(box, [g.head_box for _, g in faces]):
                faces.append((spec, geo))
                break
    return faces


def _box_of(spec: FaceSpec) -> tuple[int, int, int, int]:
    x, y, w, h = spec.box
    return x, y, x + w, y + h


def render_image(rng: np.random.Generator, width: int, height: int, style: SceneStyle,
                 landmark_decimals: int = LANDMARK_DECIMALS) -> tuple[np.ndarray, RenderedImage]:
    """Render one ``height x width`` RGB image of ``style`` and return it with its ground truth."""
    faces = _place_faces(rng, width, height, style, landmark_decimals)
    image = render_background(rng, width, height, style.clutter_shapes)
    painter = _Painter(image)
    keep_clear = [g.head_box for _, g in faces]
    distractor_boxes, distractor_kinds = [], []
    for _ in range(_int_range(rng, style.distractors)):
        kind = str(rng.choice(DISTRACTOR_KINDS))
        size = _log_uniform(rng, MIN_FACE, min(MAX_FACE, 0.4 * min(width, height)))
        for _attempt in range(20):  # keep distractors off the faces so each stays whole
            centre = rng.uniform([0, 0], [width, height])
            extent = 0.9 * size
            rough = np.array([centre[0] - extent, centre[1] - extent, centre[0] + extent, centre[1] + extent])
            if not _boxes_intersect(rough, keep_clear):
                distractor_boxes.append(render_distractor(painter, rng, kind, centre, size))
                distractor_kinds.append(kind)
                break
    face_boxes = [np.array(_box_of(s), dtype=np.float64) for s, _ in faces]
    flags: dict[str, list[int]] = {key: [] for key in WIDER_FLAGS}
    # Upper faces first: a lower face (nearer the camera in a crowd) covers the shoulders above it.
    order = sorted(range(len(faces)), key=lambda i: (faces[i][0].box[1], faces[i][0].box[0]))
    results: dict[int, dict[str, int]] = {}
    for i in order:
        spec, geo = faces[i]
        others = [b for j, b in enumerate(face_boxes) if j != i]
        results[i] = render_face(image, spec, geo, rng, draw_body=not _boxes_intersect(geo.body_box, others))
    for i in range(len(faces)):
        for key in WIDER_FLAGS:
            flags[key].append(results[i][key])
    noise = rng.standard_normal((height, width, 3), dtype=np.float32) * rng.uniform(1.0, 5.0)
    image = np.clip(image + noise, 0, 255).astype(np.uint8)
    truth = RenderedImage(
        boxes=np.array(face_boxes, dtype=np.float32).reshape(-1, 4),
        landmarks=np.array([g.landmarks for _, g in faces], dtype=np.float32).reshape(-1, 5, 2),
        ellipses=np.array([g.ellipse for _, g in faces], dtype=np.float64).reshape(-1, 5),
        flags={k: np.array(v, dtype=np.int32) for k, v in flags.items()},
        distractor_boxes=np.array(distractor_boxes, dtype=np.float32).reshape(-1, 4),
        distractor_kinds=distractor_kinds,
    )
    return image, truth


# --------------------------------------------------------------------------------------------
# The four sets


def wider_image(seed: int, split: str, index: int) -> tuple[str, np.ndarray, RenderedImage]:
    """Render WIDER image ``index`` of ``split`` (``wider_train`` or ``wider_val``): (name, image, truth)."""
    rng = image_rng(seed, split, index)
    events = sorted(WIDER_EVENTS)
    event = events[int(rng.integers(len(events)))]
    width, height = int(rng.integers(320, 641)), int(rng.integers(320, 641))
    image, truth = render_image(rng, width, height, WIDER_EVENTS[event])
    number, label = event.split("--", 1)
    return f"{event}/{number}_{label}_{index:05d}.jpg", image, truth


def celeba_image(seed: int, index: int) -> tuple[str, np.ndarray, RenderedImage]:
    """Render CelebA-style image ``index``: one large face, integer landmarks."""
    rng = image_rng(seed, "celeba", index)
    width, height = int(rng.integers(240, 421)), int(rng.integers(240, 421))
    image, truth = render_image(rng, width, height, CELEBA_STYLE, landmark_decimals=0)
    return f"{index + 1:06d}.jpg", image, truth


def fddb_image(seed: int, index: int) -> tuple[str, np.ndarray, RenderedImage]:
    """Render FDDB-style image ``index`` (at least one face): name without ``.jpg``, image, truth."""
    rng = image_rng(seed, "fddb", index)
    year, month, day = int(rng.integers(2002, 2004)), int(rng.integers(1, 13)), int(rng.integers(1, 29))
    width, height = int(rng.integers(320, 501)), int(rng.integers(280, 451))
    for _ in range(10):  # FDDB lists only images with faces
        image, truth = render_image(rng, width, height, FDDB_STYLE)
        if truth.num_faces:
            break
    return f"{year}/{month:02d}/{day:02d}/big/img_{index + 1}", image, truth


def split_sizes(num_images: int) -> dict[str, int]:
    """How many images each set gets for ``num_images`` training images."""
    return {"wider_train": num_images, "wider_val": max(1, num_images // 4), "celeba": num_images,
            "fddb": max(FDDB_FOLDS, num_images // 2)}


def synthetic_paths(out_dir: str | Path) -> dict[str, Path]:
    """Where each part of a synthetic set lives under ``out_dir``."""
    out = Path(out_dir)
    return {
        "wider_root": out / "wider",
        "wider_train_annotations": wider_paths(out / "wider", "train")[0],
        "wider_val_annotations": wider_paths(out / "wider", "val")[0],
        "celeba_landmarks": out / "celeba" / "Anno" / "list_landmarks_celeba.txt",
        "celeba_boxes": out / "celeba" / "Anno" / "list_bbox_celeba.txt",
        "celeba_images": out / "celeba" / "img_celeba",
        "fddb_root": out / "fddb",
        "summary": out / _SUMMARY,
    }


def synthetic_config(out_dir: str | Path) -> dict:
    """The ``data`` section of a config that trains on the synthetic set in ``out_dir``
    (``config_from_dict`` accepts it; the FDDB folds are ``1..FDDB_FOLDS``)."""
    paths = synthetic_paths(out_dir)
    return {"data": {"wider_root": str(paths["wider_root"]), "wider_split": "train",
                     "landmarks": str(paths["celeba_landmarks"]), "landmarks_format": "celeba",
                     "fddb_root": str(paths["fddb_root"])}}


def is_synthetic_set(out_dir: str | Path) -> bool:
    """True when ``out_dir`` holds a set written by :func:`make_synthetic` (so rewriting it is safe)."""
    summary = Path(out_dir) / _SUMMARY
    try:
        return json.loads(summary.read_text(encoding="utf-8")).get("generator") == GENERATOR
    except (OSError, ValueError, AttributeError):
        return False


def _split_stats(truths: list[RenderedImage]) -> dict:
    boxes = np.concatenate([t.boxes for t in truths]) if truths else np.zeros((0, 4), np.float32)
    short = np.minimum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
    invalid = sum(int(t.flags["invalid"].sum()) for t in truths)
    return {
        "images": len(truths),
        "faces": int(len(boxes)),
        "invalid_faces": invalid,
        "images_without_faces": sum(1 for t in truths if t.num_faces == 0),
        "face_size_min": int(short.min()) if len(short) else 0,
        "face_size_max": int(short.max()) if len(short) else 0,
        "occluded_faces": sum(int((t.flags["occlusion"] > 0).sum()) for t in truths),
        "blurred_faces": sum(int((t.flags["blur"] > 0).sum()) for t in truths),
        "distractors": sum(len(t.distractor_kinds) for t in truths),
    }


def _render_wider(out: Path, seed: int, split: str, count: int, progress: bool) -> tuple[list[FaceRecord], dict]:
    annotation_file, images_root = wider_paths(out / "wider", split.split("_")[1])
    records, truths = [], []
    for index in _progress(range(count), f"synthetic {split}", progress):
        name, image, truth = wider_image(seed, split, index)
        save_image(images_root / name, image, quality=JPEG_QUALITY)
        records.append(truth.record(images_root / name, name, landmarks=True))
        truths.append(truth)
    write_wider(records, annotation_file)
    return records, _split_stats(truths)


def _render_celeba(out: Path, seed: int, count: int, progress: bool) -> tuple[list[FaceRecord], dict]:
    paths = synthetic_paths(out)
    records, truths = [], []
    for index in _progress(range(count), "synthetic celeba", progress):
        name, image, truth = celeba_image(seed, index)
        save_image(paths["celeba_images"] / name, image, quality=JPEG_QUALITY)
        records.append(truth.record(paths["celeba_images"] / name, name, landmarks=True))
        truths.append(truth)
    write_celeba(records, paths["celeba_landmarks"].parent)
    return records, _split_stats(truths)


def fddb_fold_of(index: int, count: int) -> int:
    """The fold (1-based) of FDDB image ``index``: contiguous runs, like FDDB's folds."""
    return 1 + index * FDDB_FOLDS // count


def _render_fddb(out: Path, seed: int, count: int, progress: bool) -> tuple[list[FaceRecord], dict]:
    root = out / "fddb"
    folds: dict[int, list[FaceRecord]] = {f: [] for f in range(1, FDDB_FOLDS + 1)}
    truths = []
    for index in _progress(range(count), "synthetic fddb", progress):
        name, image, truth = fddb_image(seed, index)
        path = root / "originalPics" / f"{name}.jpg"
        save_image(path, image, quality=JPEG_QUALITY)
        folds[fddb_fold_of(index, count)].append(truth.record(path, name, landmarks=True, ellipses=True))
        truths.append(truth)
    for fold, records in folds.items():
        write_fddb_fold(records, *fold_paths(root, fold))
    stats = _split_stats(truths)
    stats["folds"] = FDDB_FOLDS
    return [r for records in folds.values() for r in records], stats


def _progress(items, description: str, enabled: bool):
    if not enabled:
        return items
    from tqdm import tqdm

    return tqdm(items, desc=description, unit="img", leave=False)


def make_synthetic(out_dir: str | Path, num_images: int = 200, seed: int = 0, progress: bool = False) -> dict:
    """Render the synthetic WIDER (train + val), CelebA and FDDB sets into ``out_dir``.

    Returns the summary that is also written to ``out_dir/summary.json`` (written last, so a
    summary means a complete set).  Two calls with the same arguments write identical bytes.
    """
    if num_images < 1:
        raise UserError(f"--images must be at least 1, got {num_images}")
    image_rng(seed, "wider_train", 0)  # checks the seed before anything is written
    out = Path(out_dir)
    sizes = split_sizes(num_images)
    splits = {}
    _, splits["wider_train"] = _render_wider(out, seed, "wider_train", sizes["wider_train"], progress)
    _, splits["wider_val"] = _render_wider(out, seed, "wider_val", sizes["wider_val"], progress)
    _, splits["celeba"] = _render_celeba(out, seed, sizes["celeba"], progress)
    _, splits["fddb"] = _render_fddb(out, seed, sizes["fddb"], progress)
    paths = synthetic_paths(out)
    summary = {
        "generator": GENERATOR,
        "format_version": FORMAT_VERSION,
        "seed": seed,
        "images": num_images,
        "jpeg_quality": JPEG_QUALITY,
        "splits": splits,
        # Relative to the set's folder, so the summary does not change when the folder moves.
        "paths": {key: str(path.relative_to(out)) for key, path in paths.items() if key != "summary"},
        "fddb_folds": list(range(1, FDDB_FOLDS + 1)),
    }
    atomic_write_json(paths["summary"], summary)
    return summary


def format_summary(summary: dict, out_dir: str | Path) -> str:
    """A few lines for the terminal: images, faces and face sizes per set, and where they are."""
    out = Path(out_dir)
    paths = summary["paths"]
    s = summary["splits"]

    def line(label: str, stats: dict, where: str) -> str:
        return (f"  {label:<15} {stats['images']:>5} images {stats['faces']:>6} faces "
                f"(short side {stats['face_size_min']}-{stats['face_size_max']} px, "
                f"{stats['images_without_faces']} without faces, {stats['distractors']} distractors)"
                f" -> {out / where}")

    return "\n".join([
        f"synthetic set (seed {summary['seed']}) in {out}",
        line("wider train", s["wider_train"], paths["wider_train_annotations"]),
        line("wider val", s["wider_val"], paths["wider_val_annotations"]),
        line("celeba", s["celeba"], paths["celeba_landmarks"]),
        line(f"fddb ({s['fddb']['folds']} folds)", s["fddb"], paths["fddb_root"]),
    ])
