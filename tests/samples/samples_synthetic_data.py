"""Small synthetic data for the sample-generation tests: cv2-drawn faces in WIDER's text layout and
an MTFL-style landmark list of 80x80 face crops."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from mtcnn_train.config import load_config


def draw_face(image: np.ndarray, box: tuple[float, float, float, float], rng: np.random.Generator) -> np.ndarray:
    """A skin-coloured ellipse with eyes, nose and mouth in ``box``; returns its 5 landmarks (x, y)."""
    x1, y1, x2, y2 = box
    w, h = x2 - x1, y2 - y1
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    skin = tuple(int(v) for v in rng.integers(120, 230, 3))
    cv2.ellipse(image, (int(cx), int(cy)), (max(1, int(w / 2)), max(1, int(h / 2))), 0, 0, 360, skin, -1)
    points = np.array([[x1 + 0.3 * w, y1 + 0.38 * h], [x1 + 0.7 * w, y1 + 0.38 * h], [cx, y1 + 0.58 * h],
                       [x1 + 0.35 * w, y1 + 0.76 * h], [x1 + 0.65 * w, y1 + 0.76 * h]])
    r = max(1, int(w / 14))
    for k, (px, py) in enumerate(points):
        colour = (30, 30, 30) if k != 2 else (90, 60, 60)
        cv2.circle(image, (int(px), int(py)), r, colour, -1)
    return points


def write_wider_set(root: Path, count: int = 24, seed: int = 0) -> Path:
    """``root/wider_face_split/wider_face_train_bbx_gt.txt`` and ``root/WIDER_train/images/<event>/``.

    Three events; 1 to 4 faces per image, some small (below 20 px) and some flagged invalid.
    """
    rng = np.random.default_rng(seed)
    lines = []
    for i in range(count):
        event = f"{i % 3}--Event{i % 3}"
        name = f"{event}/{i % 3}_img_{i:03d}.jpg"
        height, width = int(rng.integers(110, 170)), int(rng.integers(140, 220))
        image = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
        image = cv2.GaussianBlur(image, (9, 9), 3)
        faces = []
        for _ in range(int(rng.integers(1, 5))):
            side = int(rng.choice([12, 16, 28, 36, 48]))
            x = int(rng.integers(0, width - side))
            y = int(rng.integers(0, height - side))
            draw_face(image, (x, y, x + side, y + side), rng)
            invalid = int(rng.random() < 0.15)
            faces.append(f"{x} {y} {side} {side} 0 0 0 {invalid} 0 0 ")
        path = root / "WIDER_train" / "images" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(path), image)
        lines += [name, str(len(faces)), *faces]
    annotation = root / "wider_face_split" / "wider_face_train_bbx_gt.txt"
    annotation.parent.mkdir(parents=True, exist_ok=True)
    annotation.write_text("\n".join(lines) + "\n")
    return root


def write_mtfl_set(root: Path, count: int = 40, seed: int = 1) -> Path:
    """An MTFL-style list (``path x1..x5 y1..y5``) of 80x80 face crops; returns the list file."""
    rng = np.random.default_rng(seed)
    lines = []
    for i in range(count):
        image = np.full((80, 80, 3), int(rng.integers(30, 90)), np.uint8)
        side = int(rng.integers(34, 44))
        x, y = int(rng.integers(14, 80 - side - 14)), int(rng.integers(14, 80 - side - 14))
        points = draw_face(image, (x, y, x + side, y + side), rng)
        rel = f"faces/face_{i:04d}.jpg"
        (root / "faces").mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(root / rel), image)
        values = list(points[:, 0]) + list(points[:, 1])
        lines.append(rel + " " + " ".join(f"{v:.2f}" for v in values))
    list_file = root / "mtfl_train.txt"
    list_file.write_text("\n".join(lines) + "\n")
    return list_file


@pytest.fixture(scope="session")
def synthetic_data(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("sample_data")
    wider = write_wider_set(root / "wider", count=24)
    landmarks = write_mtfl_set(root / "mtfl", count=40)
    return {"wider": wider, "landmarks": landmarks}


@pytest.fixture
def small_config(synthetic_data):
    """A config over the synthetic data: small per-image counts, one worker."""
    def make(*extra: str):
        return load_config(None, [f"data.wider_root={synthetic_data['wider']}",
                                  f"data.landmarks={synthetic_data['landmarks']}",
                                  "data.val_fraction=0.125", "sampling.random_negatives_per_image=12",
                                  "sampling.crops_per_face=12", "sampling.landmark_crops_per_face=4",
                                  "sampling.workers=1", *extra])
    return make
