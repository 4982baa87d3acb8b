"""Whole synthetic images: backgrounds (noise textures, gradients, shapes, lines, text), face-like
distractors that are not faces, and the placing of faces so that none touches another's box."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from mtcnn_train.datasets.records import FaceRecord
from mtcnn_train.datasets.wider import WIDER_FLAGS
from mtcnn_train.synthetic.drawing import (HAIR_COLOURS, Painter, as_colour, int_range, log_uniform, non_skin_colour,
                                           scaled_colour, skin_colour)
from mtcnn_train.synthetic.faces import (LANDMARK_DECIMALS, MAX_FACE, MIN_FACE, FaceGeometry, FaceSpec, face_geometry,
                                         render_face, sample_face_size, sample_face_spec)
from mtcnn_train.synthetic.styles import SceneStyle


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
    painter = Painter(image)
    for _ in range(int_range(rng, shapes)):
        _draw_clutter_shape(painter, rng, width, height)
    return image


def _draw_clutter_shape(p: Painter, rng: np.random.Generator, width: int, height: int) -> None:
    colour = as_colour(skin_colour(rng) if rng.random() < 0.1 else rng.uniform(0, 255, 3))
    centre = rng.uniform([0, 0], [width, height])
    size = log_uniform(rng, 4, 0.5 * min(width, height))
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


def render_distractor(p: Painter, rng: np.random.Generator, kind: str, centre: np.ndarray, size: float) -> np.ndarray:
    """Draw one face-like thing that is not a face; returns its box ``x1 y1 x2 y2``."""
    angle = rng.uniform(-40, 40)
    half = np.array([0.5 * size, 0.5 * size * rng.uniform(0.8, 1.5)])
    if kind in ("skin_ellipse", "back_of_head"):
        skin = skin_colour(rng)
        p.ellipse(centre, half, angle, as_colour(skin))
        # Soft shading so that a blob is not a flat colour either.
        p.ellipse(centre - 0.15 * half, 0.6 * half, angle, scaled_colour(skin, rng.uniform(0.9, 1.1)))
        if kind == "back_of_head":
            hair = as_colour(HAIR_COLOURS[rng.integers(len(HAIR_COLOURS))])
            p.ellipse(centre, half * 1.05, angle, hair, arc=(160, 380))
    elif kind == "skin_blob":  # a hand, an arm, a knee: skin without a face's shape
        count = int(rng.integers(5, 9))
        angles = np.sort(rng.uniform(0, 2 * math.pi, count))
        radii = half[0] * rng.uniform(0.4, 1.2, count)
        p.polygon(centre + np.stack([radii * np.cos(angles), radii * np.sin(angles)], 1), as_colour(skin_colour(rng)))
    elif kind == "dot_pair":  # two eye-like dots on something that is not skin
        base = non_skin_colour(rng)
        p.ellipse(centre, half, angle, as_colour(base))
        theta = math.radians(angle)
        along = np.array([math.cos(theta), math.sin(theta)])
        up = np.array([math.sin(theta), -math.cos(theta)])
        for side in (-1, 1):
            p.circle(centre + side * 0.4 * half[0] * along + 0.25 * half[1] * up, 0.12 * half[0],
                     as_colour(rng.uniform(0, 60, 3)))
    else:  # round_object: a ball, a clock, a wheel
        radius = half[0]
        style = rng.choice(["ball", "clock", "wheel"])
        body = as_colour(rng.uniform(0, 255, 3))
        if style == "ball":
            p.circle(centre, radius, body)
            p.circle(centre - 0.35 * radius, 0.25 * radius, scaled_colour(body, 1.4))
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
    if style.count_lognormal is None:
        count = int_range(rng, style.face_count)
    else:
        median, sigma, most = style.count_lognormal
        count = int(np.clip(round(median * math.exp(sigma * rng.standard_normal())), 1, most))
    for _ in range(count):
        roll = math.radians(float(np.clip(rng.normal(0, style.roll_sd_deg), -30, 30)))
        yaw = float(np.clip(rng.normal(0, style.yaw_sd), -0.9, 0.9))
        if style.centred:
            short = min(width, height)
            width_range = (0.3 * short, 0.55 * short)
        elif style.width_lognormal is not None:
            median, sigma = style.width_lognormal
            drawn = float(np.clip(median * math.exp(sigma * rng.standard_normal()), MIN_FACE, MAX_FACE))
            width_range = (drawn, drawn)
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
    painter = Painter(image)
    keep_clear = [g.head_box for _, g in faces]
    distractor_boxes, distractor_kinds = [], []
    for _ in range(int_range(rng, style.distractors)):
        kind = str(rng.choice(DISTRACTOR_KINDS))
        size = log_uniform(rng, MIN_FACE, min(MAX_FACE, 0.4 * min(width, height)))
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
