"""``samples inspect``: counts per type and a contact sheet to check labels by eye.

The sheet has one row per sample type (negative, positive, part, landmark) of random crops,
enlarged with nearest-neighbour so the pixels stay honest, with the stored targets drawn back on:
the box target as a green rectangle, the landmarks as dots -- left eye and left mouth corner in
red, right eye and right mouth corner in blue, nose in yellow -- so a box off the face, a point off
its feature or a left/right swap after mirroring shows at a glance.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from mtcnn_train.io import save_image
from mtcnn_train.samples.shards import CONTACT_SHEET, SampleSet
from mtcnn_train.samples.labels import LABEL_NAMES

_LABEL_WIDTH = 170
_GAP = 4
_BOX_COLOUR = (0, 255, 0)
# RGB: left points red, right points blue, nose yellow.
_POINT_COLOURS = ((255, 40, 40), (40, 120, 255), (255, 230, 0), (255, 40, 40), (40, 120, 255))


@dataclass
class InspectReport:
    directory: Path
    counts: dict[str, int]
    sheet: Path
    crop_size: int

    def summary(self) -> str:
        total = sum(self.counts.values())
        counts = ", ".join(f"{name} {count}" for name, count in self.counts.items())
        return f"{self.directory}: {total} samples of {self.crop_size}x{self.crop_size} ({counts}); contact sheet: {self.sheet}"


def draw_targets(crop: np.ndarray, box: np.ndarray, points: np.ndarray, scale: int) -> np.ndarray:
    """The crop enlarged ``scale`` times with its box target and landmark targets drawn on."""
    size = crop.shape[0] * scale
    cell = cv2.resize(np.ascontiguousarray(crop), (size, size), interpolation=cv2.INTER_NEAREST)
    if np.all(np.isfinite(box)):
        # Box targets are offsets of the face edges from the crop edges, in crop sizes.
        x1, y1, x2, y2 = (np.array([0, 0, 1, 1]) + box) * size
        cv2.rectangle(cell, (int(round(x1)), int(round(y1))), (int(round(x2)) - 1, int(round(y2)) - 1), _BOX_COLOUR, 2)
    if np.all(np.isfinite(points)):
        for k, (x, y) in enumerate(np.asarray(points).reshape(5, 2) * size):
            cv2.circle(cell, (int(round(x)), int(round(y))), max(2, scale // 3), _POINT_COLOURS[k], -1)
    return cell


def contact_sheet(sample_set: SampleSet, per_type: int = 12, seed: int = 0, scale: int = 8) -> np.ndarray:
    """One row per sample type of ``per_type`` random crops with their targets drawn on."""
    labels = np.concatenate([np.asarray(s["labels"]) for s in sample_set.shards]) if sample_set.shards else np.zeros(0)
    offsets = np.cumsum([0] + [len(s["labels"]) for s in sample_set.shards])
    cell = sample_set.crop_size * scale
    width = _LABEL_WIDTH + per_type * (cell + _GAP) + _GAP
    rows = []
    rng = np.random.default_rng(seed)
    for label, name in LABEL_NAMES.items():
        members = np.nonzero(labels == label)[0]
        row = np.full((cell + 2 * _GAP, width, 3), 255, np.uint8)
        cv2.putText(row, name, (8, cell // 2), cv2.FONT_HERSHEY_SIMPLEX, 0.8, (0, 0, 0), 2)
        cv2.putText(row, f"{len(members)}", (8, cell // 2 + 30), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (80, 80, 80), 1)
        picked = np.sort(rng.choice(members, min(per_type, len(members)), replace=False)) if len(members) else []
        for column, index in enumerate(picked):
            shard = int(np.searchsorted(offsets, index, side="right") - 1)
            local = index - offsets[shard]
            arrays = sample_set.shards[shard]
            drawn = draw_targets(np.asarray(arrays["images"][local]), np.asarray(arrays["boxes"][local]),
                                 np.asarray(arrays["landmarks"][local]), scale)
            x0 = _LABEL_WIDTH + _GAP + column * (cell + _GAP)
            row[_GAP:_GAP + cell, x0:x0 + cell] = drawn
        rows.append(row)
    return np.concatenate(rows, axis=0)


def inspect_sample_set(directory: str | Path, out: str | Path | None = None, per_type: int = 12, seed: int = 0,
                       scale: int = 8) -> InspectReport:
    """Counts per type of the set in ``directory`` and its contact sheet (``DIR/contact_sheet.png``)."""
    directory = Path(directory)
    sample_set = SampleSet.open(directory, allow_parts=True)  # a --num-shards part can be looked at
    sheet_path = Path(out) if out is not None else directory / CONTACT_SHEET
    save_image(sheet_path, contact_sheet(sample_set, per_type=per_type, seed=seed, scale=scale))
    return InspectReport(directory, sample_set.counts(), sheet_path, sample_set.crop_size)
