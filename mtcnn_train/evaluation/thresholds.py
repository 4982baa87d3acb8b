"""Cascade thresholds chosen on held-out images: the P+R+O AP for a grid of threshold sets.

The paper's thresholds (0.6 / 0.7 / 0.7) suit the published nets; a cascade trained on other data
ranks its faces differently, and AP sweeps the final score anyway, so the thresholds worth
scoring a cascade with are those that do best on the validation images (never on a test set).

The O-Net threshold costs no extra pass: O-Net's face scores do not depend on it, and dropping
the boxes at or below a threshold before the final NMS keeps exactly the boxes above it that NMS
would keep without the drop (greedy NMS decides a box only by the higher-scoring boxes).  So one
cascade pass per (P, R) pair at the lowest O-Net threshold gives every O-Net threshold of the
grid by filtering its output (:func:`above_threshold`).
"""
from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from mtcnn_train.detection.cascade import Cascade, Detections
from mtcnn_train.errors import UserError
from mtcnn_train.evaluation.stages import StageFigures, add_image, counted_faces, load_images, stage_average_precision

#: The grid scored when none is given: the paper's value first, then lower ones.
DEFAULT_GRID = ((0.6, 0.5, 0.4), (0.7, 0.3, 0.1), (0.7, 0.1, 0.0))


@dataclass(frozen=True)
class ThresholdScore:
    """The full cascade's figures on the validation images at one threshold set."""

    thresholds: tuple[float, float, float]
    ap: float
    recall_50: float
    recall_65: float
    candidates_per_image: float

    def to_json(self) -> dict[str, Any]:
        return {"thresholds": list(self.thresholds), "ap": self.ap, "recall@0.5": self.recall_50,
                "recall@0.65": self.recall_65, "candidates_per_image": self.candidates_per_image}


def parse_grid_values(text: str, stage: str) -> tuple[float, ...]:
    """``"0.6,0.5,0.4"`` -> (0.6, 0.5, 0.4); each a face score in [0, 1]."""
    try:
        values = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise UserError(f"{stage} thresholds {text!r}: expected numbers separated by commas, e.g. 0.6,0.5") from None
    if not values or not all(0.0 <= v <= 1.0 for v in values):
        raise UserError(f"{stage} thresholds {text!r}: each must lie in [0, 1]")
    return tuple(dict.fromkeys(values))  # repeated values scored once


def above_threshold(found: Detections, threshold: float) -> Detections:
    """The detections scored above ``threshold`` (the cascade keeps O-Net's ``p > t``)."""
    keep = np.asarray(found.scores) > threshold
    return Detections(found.boxes[keep], found.scores[keep],
                      None if found.landmarks is None else found.landmarks[keep])


def _score(records: Sequence[Any], outputs: Sequence[Detections], thresholds: tuple[float, float, float],
           min_face_size: float) -> ThresholdScore:
    figures = StageFigures()
    for record, found in zip(records, outputs):
        add_image(figures, counted_faces(record.boxes, record.valid, min_face_size), found.boxes)
    return ThresholdScore(thresholds, stage_average_precision(records, outputs), figures.recall(0.5),
                          figures.recall(0.65), figures.candidates / max(figures.images, 1))


def sweep_thresholds(run_dir: str | Path, records: Sequence[Any], detection_cfg: Any,
                     grid: Sequence[Sequence[float]] = DEFAULT_GRID, progress: bool = True) -> list[ThresholdScore]:
    """The P+R+O figures of the cascade in ``run_dir`` on ``records``' images for every threshold
    set of ``grid`` (P values, R values, O values; everything else as ``detection_cfg``), best AP
    first."""
    from tqdm import tqdm

    pnet_values, rnet_values, onet_values = (tuple(v) for v in grid)
    records, images = load_images(records, progress)
    if not images:
        raise UserError("no validation image could be read: nothing to choose thresholds on")
    cascade = Cascade.from_run_dir(run_dir, detection_cfg)  # all three stages (a clear error if one is missing)
    lowest_onet = min(onet_values)
    scores = []
    pairs = list(itertools.product(pnet_values, rnet_values))
    for pnet_t, rnet_t in tqdm(pairs, desc="threshold sets", unit="pair", disable=not progress):
        # The cascade reads its thresholds from cfg at every call; nothing else in cfg changes.
        cascade.cfg = dataclasses.replace(detection_cfg, thresholds=[pnet_t, rnet_t, lowest_onet])
        outputs = cascade.detect_batch(images)
        for onet_t in onet_values:
            kept = [above_threshold(found, onet_t) for found in outputs]
            scores.append(_score(records, kept, (pnet_t, rnet_t, onet_t), detection_cfg.min_face_size))
    return sorted(scores, key=lambda s: -s.ap)


def format_table(scores: Sequence[ThresholdScore]) -> str:
    lines = [f"{'P':>5} {'R':>5} {'O':>5} {'recall@0.5':>10} {'recall@0.65':>11} {'cand/img':>9} {'AP':>7}",
             "-" * 57]
    for s in scores:
        p, r, o = s.thresholds
        lines.append(f"{p:>5g} {r:>5g} {o:>5g} {s.recall_50:>10.4f} {s.recall_65:>11.4f} "
                     f"{s.candidates_per_image:>9.1f} {s.ap:>7.4f}")
    return "\n".join(lines)


def write_report(out_dir: str | Path, scores: Sequence[ThresholdScore]) -> str:
    """``thresholds.txt`` (the table, best first) and ``thresholds.json`` in ``out_dir``."""
    from mtcnn_train.io import atomic_write_json, atomic_write_text

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    table = format_table(scores)
    atomic_write_text(out_dir / "thresholds.txt", table + "\n")
    atomic_write_json(out_dir / "thresholds.json", {"best": scores[0].to_json() if scores else None,
                                                    "scores": [s.to_json() for s in scores]})
    return table
