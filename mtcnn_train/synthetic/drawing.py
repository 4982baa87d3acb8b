"""Drawing primitives of the synthetic set: sub-pixel shapes in pixel-edge coordinates (OpenCV's
fixed point), random helpers and the colour palettes of skin, hair and eyes."""
from __future__ import annotations

from typing import Iterable

import cv2
import numpy as np

# OpenCV draws at sub-pixel positions in fixed point with this many fractional bits.
_SHIFT = 4
_ONE = 1 << _SHIFT

_SKIN_RAMP = np.array([[255, 224, 196], [241, 194, 167], [224, 172, 138], [198, 134, 100],
                       [161, 102, 72], [120, 75, 50], [85, 55, 38]], dtype=np.float64)
HAIR_COLOURS = np.array([[22, 18, 16], [45, 32, 24], [80, 55, 35], [120, 85, 50], [190, 160, 105],
                         [150, 150, 150], [135, 62, 32], [225, 215, 200]], dtype=np.float64)
HAIR_WEIGHTS = np.array([0.3, 0.22, 0.15, 0.1, 0.08, 0.07, 0.05, 0.03])
IRIS_COLOURS = np.array([[60, 38, 25], [95, 65, 40], [55, 90, 130], [70, 105, 70], [30, 25, 22]],
                        dtype=np.float64)


def log_uniform(rng: np.random.Generator, low: float, high: float) -> float:
    return float(np.exp(rng.uniform(np.log(low), np.log(max(high, low)))))


def int_range(rng: np.random.Generator, bounds: tuple[int, int]) -> int:
    return int(rng.integers(bounds[0], bounds[1] + 1))


def as_colour(values: Iterable[float]) -> tuple[int, int, int]:
    """A colour as OpenCV wants it: a tuple of plain ints in 0..255."""
    r, g, b = (int(np.clip(round(float(v)), 0, 255)) for v in values)
    return r, g, b


def scaled_colour(colour: Iterable[float], factor: float) -> tuple[int, int, int]:
    return as_colour(np.asarray(list(colour), dtype=np.float64) * factor)


def skin_colour(rng: np.random.Generator) -> np.ndarray:
    """A skin tone from light to dark, with a little per-channel variation."""
    t = rng.uniform(0, len(_SKIN_RAMP) - 1)
    i = min(int(t), len(_SKIN_RAMP) - 2)
    tone = _SKIN_RAMP[i] * (1 - (t - i)) + _SKIN_RAMP[i + 1] * (t - i)
    return np.clip(tone + rng.normal(0, 6, 3), 0, 255)


def _is_skin_like(rgb: np.ndarray) -> bool:
    r, g, b = (float(v) for v in rgb)
    return r > g > b and r > 70 and 20 < r - b < 140 and 0.5 < g / r < 0.93


def non_skin_colour(rng: np.random.Generator) -> np.ndarray:
    """A random colour that is not a skin tone (for dot-pair distractors)."""
    for _ in range(20):
        rgb = rng.uniform(0, 255, 3)
        if not _is_skin_like(rgb):
            return rgb
    return np.array([60.0, 120.0, 200.0])


# --------------------------------------------------------------------------------------------
# Drawing at sub-pixel positions given in pixel-edge coordinates


class Painter:
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
