"""gen-samples on the real shared data (WIDER subset + MTFL crops); skips when the data is absent.

A subset keeps it fast (data.max_images); the full run's figures are in docs/BENCHMARKS.md.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import shared_path
from mtcnn_train.config import load_config
from mtcnn_train.datasets.landmarks import read_landmarks
from mtcnn_train.datasets.wider import read_wider, wider_paths
from mtcnn_train.geometry import iou_matrix
from mtcnn_train.samples.generate import generate_samples
from mtcnn_train.samples.inputs import derive_landmark_boxes
from mtcnn_train.samples.units import LANDMARK_PREFIX, WIDER_PREFIX
from mtcnn_train.samples.shards import SampleSet
from mtcnn_train.samples.labels import LABEL_LANDMARK, LABEL_NEGATIVE, LABEL_PART, LABEL_POSITIVE

pytestmark = pytest.mark.shared_data


def test_real_data_counts_meet_the_ratio_and_every_sample_is_in_its_band(tmp_path):
    wider_root = shared_path("wider_face")
    mtfl = shared_path("mtfl_80x80", "new_training.txt")
    total = 7000
    cfg = load_config(None, [f"data.wider_root={wider_root}", f"data.landmarks={mtfl}", "data.max_images=120",
                             f"sampling.total={total}", "sampling.workers=1"])
    derive = derive_landmark_boxes(cfg.sampling.landmark_boxes, "mtfl")
    landmark_records = read_landmarks(mtfl, fmt="mtfl", derive_boxes=derive)[:1500]
    report = generate_samples(cfg, tmp_path / "set", progress=False, landmark_records=landmark_records)

    ratio = {"negative": 3, "positive": 1, "part": 1, "landmark": 2}
    for name, share in ratio.items():
        target = total * share / sum(ratio.values())
        assert abs(report.counts[name] - target) <= 0.05 * target, (name, report.counts)
    assert report.stats["images"] == 120 and report.stats["images_unreadable"] == 0

    manifest = json.loads((tmp_path / "set" / "manifest.json").read_text())
    annotation, images_root = wider_paths(wider_root)
    truth = {WIDER_PREFIX + r.name: r.boxes for r in read_wider(annotation, images_root)}
    truth.update({LANDMARK_PREFIX + r.name: r.boxes for r in landmark_records})
    val = {WIDER_PREFIX + name for name in manifest["split"]["val"]}
    arrays = SampleSet.open(tmp_path / "set").arrays()
    labels, crops, sources = arrays["labels"], arrays["crops"].astype(np.float64), arrays["sources"]
    s = cfg.sampling
    checked = 0
    for source in np.unique(sources):
        name = manifest["images"][source]
        assert name not in val
        members = sources == source
        best = iou_matrix(crops[members], truth[name]).max(axis=1)
        kind = labels[members]
        assert (best[kind == LABEL_NEGATIVE] < s.neg_iou).all(), name
        assert (best[kind == LABEL_POSITIVE] > s.pos_iou).all(), name
        part = best[kind == LABEL_PART]
        assert ((part >= s.part_iou) & (part <= s.pos_iou)).all(), name
        assert (best[kind == LABEL_LANDMARK] > s.pos_iou).all(), name
        checked += int(members.sum())
    assert checked == len(labels) == sum(report.counts.values())
