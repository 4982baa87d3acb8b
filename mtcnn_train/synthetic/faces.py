"""One synthetic face: its specification (what to draw), its geometry (where: box, landmarks, FDDB
head ellipse, all exact by construction) and the drawing itself.

Each face starts from an integer box (WIDER stores integers); the face ellipse is then solved so
that its tight axis-aligned box *is* that box, even when the face is rolled.  Landmarks are chosen
before anything is drawn and the eyes, nose and mouth are drawn around them, at sub-pixel precision.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from mtcnn_train.geometry import ellipse_to_box
from mtcnn_train.synthetic.drawing import (HAIR_COLOURS, HAIR_WEIGHTS, IRIS_COLOURS, Painter, as_colour, log_uniform,
                                           scaled_colour, skin_colour)
from mtcnn_train.synthetic.styles import SceneStyle

#: Face boxes are never smaller than this on either side (P-Net's input size).
MIN_FACE = 12
MAX_FACE = 300
#: Landmarks of WIDER and FDDB faces are kept at this many decimals (they are not written to a
#: file); CelebA stores integers.
LANDMARK_DECIMALS = 2


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
    face_w = log_uniform(rng, *width_range)
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
        box=box, roll=roll, yaw=yaw, skin=skin_colour(rng), hair_style=hair_style,
        hair_colour=HAIR_COLOURS[rng.choice(len(HAIR_COLOURS), p=HAIR_WEIGHTS)] + rng.normal(0, 5, 3),
        hair_shape=(float(hair_shape[0]), float(hair_shape[1])), fringe=bool(hair_style != "bald" and rng.random() < 0.5),
        iris=IRIS_COLOURS[rng.integers(len(IRIS_COLOURS))], layout=layout,
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


def _draw_hair_back(p: Painter, geo: FaceGeometry, spec: FaceSpec, hair, masks) -> None:
    if spec.hair_style == "bald":
        return
    ha, hb = spec.hair_shape
    p.ellipse(geo.point(0, -_hair_centre_v(spec)), (ha * geo.a, hb * geo.b), math.degrees(geo.roll), hair, masks)
    if spec.hair_style == "long":
        p.polygon(_long_hair_quad(geo, spec), hair, masks)


def _draw_eyes(p: Painter, geo: FaceGeometry, spec: FaceSpec, hair) -> None:
    roll_deg = math.degrees(geo.roll)
    skin = spec.skin
    lid = scaled_colour(skin, 0.45)
    brow = scaled_colour(spec.hair_colour, 0.8)
    for side, eye in ((-1, geo.landmarks[0]), (1, geo.landmarks[1])):
        # The eye on the side the head turns away from looks smaller.
        scale = spec.layout["eye_size"] * (1 - 0.3 * side * spec.yaw)
        half_w, half_h = 0.15 * geo.a * scale, 0.075 * geo.b * scale
        brow_centre = eye - spec.layout["brow_lift"] * geo.b * geo.down
        p.ellipse(brow_centre, (1.2 * half_w, 0.5 * half_h + 0.02 * geo.b), roll_deg, brow, arc=(190, 350),
                  thickness=max(1, int(round(0.045 * geo.b))))
        p.ellipse(eye, (half_w, half_h), roll_deg, (235, 232, 225))
        p.circle(eye, 0.85 * half_h, as_colour(spec.iris))
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


def _draw_nose(p: Painter, geo: FaceGeometry, spec: FaceSpec) -> None:
    tip = geo.landmarks[2]
    roll_deg = math.degrees(geo.roll)
    bridge = 0.5 * (geo.landmarks[0] + geo.landmarks[1]) + 0.1 * geo.b * geo.down
    p.line(bridge, tip - 0.05 * geo.b * geo.down, scaled_colour(spec.skin, 0.85), max(1, int(round(0.04 * geo.a))))
    p.ellipse(tip + 0.01 * geo.b * geo.down, (0.13 * geo.a, 0.07 * geo.b), roll_deg, scaled_colour(spec.skin, 0.9))
    p.ellipse(tip - 0.015 * geo.b * geo.down, (0.06 * geo.a, 0.035 * geo.b), roll_deg, scaled_colour(spec.skin, 1.07))
    nostril = scaled_colour(spec.skin, 0.4)
    for side in (-1, 1):
        p.ellipse(tip + side * 0.075 * geo.a * geo.right + 0.045 * geo.b * geo.down,
                  (0.035 * geo.a, 0.022 * geo.b), roll_deg, nostril)


def _draw_mouth(p: Painter, geo: FaceGeometry, spec: FaceSpec) -> None:
    left, right_corner = geo.landmarks[3], geo.landmarks[4]
    centre = 0.5 * (left + right_corner)
    span = right_corner - left
    half = 0.5 * float(np.hypot(*span))
    angle = math.degrees(math.atan2(span[1], span[0]))
    lips = as_colour(spec.skin * np.array([0.85, 0.55, 0.55]))
    lip_h = (0.13 if spec.open_mouth else 0.055) * geo.b
    p.ellipse(centre, (half, lip_h), angle, lips)
    if spec.open_mouth:
        p.ellipse(centre, (0.8 * half, 0.6 * lip_h), angle, (45, 15, 15))
        p.ellipse(centre - 0.25 * lip_h * geo.down, (0.6 * half, 0.25 * lip_h), angle, (235, 230, 220))
    else:
        depth = max(0.3, spec.layout["smile"] * geo.b)
        p.ellipse(centre - depth * geo.down, (half, depth), angle, scaled_colour(lips, 0.55), arc=(0, 180),
                  thickness=max(1, int(round(0.02 * geo.b))))


def _draw_occluder(p: Painter, geo: FaceGeometry, rng: np.random.Generator, occluder_mask: np.ndarray) -> None:
    """A random-coloured bar, block or disk over part of the face."""
    colour = as_colour(rng.uniform(0, 255, 3))
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
    painter = Painter(patch, origin)
    head_mask = np.zeros(patch.shape[:2], np.uint8)  # where lighting applies
    face_mask = np.zeros(patch.shape[:2], np.uint8)  # the face ellipse, for the occluded fraction
    drawn_mask = np.zeros(patch.shape[:2], np.uint8)  # everything of this face, for the blur
    roll_deg = math.degrees(geo.roll)
    hair = as_colour(spec.hair_colour)

    if draw_body and spec.body:
        painter.ellipse(geo.point(0, 2.3), (2.0 * geo.a, 0.9 * geo.b), roll_deg, as_colour(spec.clothes), [drawn_mask])
    _draw_hair_back(painter, geo, spec, hair, [head_mask, drawn_mask])
    painter.polygon(_neck_quad(geo), scaled_colour(spec.skin, 0.82), [head_mask, drawn_mask])
    painter.ellipse(geo.centre, (geo.a, geo.b), roll_deg, as_colour(spec.skin), [head_mask, face_mask, drawn_mask])
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
        _draw_occluder(Painter(patch[hy1:hy2, hx1:hx2], (x1 + hx1, y1 + hy1)), geo, rng,
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
