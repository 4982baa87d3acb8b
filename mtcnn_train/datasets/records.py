"""The one record every dataset reader yields: one image and the faces in it.

Coordinates follow docs/CONVENTIONS.md: float pixel edges, ``x1, y1, x2, y2``; a face covering
pixel columns 10..19 inclusive has ``x1 = 10, x2 = 20``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

#: Order of the 5 landmarks everywhere in the package.
LANDMARK_NAMES = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")


@dataclass
class FaceRecord:
    """One image and its faces.

    Attributes:
        image_path: absolute path of the image file.
        boxes: ``(N, 4)`` float32, ``x1, y1, x2, y2`` pixel edges.
        landmarks: ``(N, 5, 2)`` float32 ``(x, y)`` in :data:`LANDMARK_NAMES` order, or ``None``
            when the source has no landmarks.  Faces without landmarks in a set that has them
            carry NaN.
        ellipses: ``(N, 5)`` float64 ``major_radius, minor_radius, angle_rad, cx, cy`` (FDDB), or
            ``None``.
        flags: per-face integer arrays of length N, e.g. WIDER's ``blur``, ``expression``,
            ``illumination``, ``invalid``, ``occlusion``, ``pose``; always holds ``invalid``.
        name: the image's name as the annotation file spells it (WIDER ``event/file.jpg``,
            FDDB ``2002/07/19/big/img_414``).
        source: ``file:line`` where the record starts, for error messages.
    """

    image_path: Path
    boxes: np.ndarray
    landmarks: np.ndarray | None = None
    ellipses: np.ndarray | None = None
    flags: dict[str, np.ndarray] = field(default_factory=dict)
    name: str = ""
    source: str = ""

    def __post_init__(self) -> None:
        self.boxes = np.asarray(self.boxes, dtype=np.float32).reshape(-1, 4)
        n = len(self.boxes)
        if self.landmarks is not None:
            self.landmarks = np.asarray(self.landmarks, dtype=np.float32).reshape(n, 5, 2)
        if self.ellipses is not None:
            self.ellipses = np.asarray(self.ellipses, dtype=np.float64).reshape(n, 5)
        self.flags = {k: np.asarray(v, dtype=np.int32).reshape(n) for k, v in self.flags.items()}
        self.flags.setdefault("invalid", np.zeros(n, dtype=np.int32))

    @property
    def num_faces(self) -> int:
        return len(self.boxes)

    @property
    def valid(self) -> np.ndarray:
        """Boolean mask of faces usable for training: not flagged invalid, positive size."""
        w = self.boxes[:, 2] - self.boxes[:, 0]
        h = self.boxes[:, 3] - self.boxes[:, 1]
        return (self.flags["invalid"] == 0) & (w > 0) & (h > 0)
