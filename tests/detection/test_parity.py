"""Parity with facenet-pytorch's MTCNN (the published model) on the first 100 WIDER FACE images.

Runs where facenet-pytorch is importable (a separate venv: see benchmarks/detect_speed.py) and
the shared data is present; skipped elsewhere.  Their boxes are converted from 1-based inclusive
corners to our pixel edges (``weights_import.facenet_to_edges``).
"""
from __future__ import annotations

import os

import pytest

from mtcnn_train.config import DetectionConfig
from mtcnn_train.detection.cascade import Cascade
from mtcnn_train.io import load_image
from mtcnn_train.detection.weights_import import add_counts, facenet_to_edges, import_facenet_weights, parity_counts
from conftest import shared_path

pytestmark = [pytest.mark.slow, pytest.mark.shared_data]


def wider_images(root, count: int):
    """The first ``count`` images in the order of the official train annotation file."""
    from mtcnn_train.datasets.wider import read_wider, wider_paths

    return [record.image_path for record in read_wider(*wider_paths(root, "train"))[:count]]


@pytest.mark.parametrize("packed", [False, True], ids=["per-level", "packed-pyramid"])
def test_parity_with_facenet_pytorch(tmp_path, packed):
    facenet = pytest.importorskip("facenet_pytorch")
    root = shared_path("wider_face")
    import_facenet_weights(None, tmp_path / "weights")
    # facenet-pytorch crops clip to the image
    cfg = DetectionConfig(crop_border="clip", device="cpu", packed_pyramid=packed)
    ours = Cascade.from_run_dir(tmp_path / "weights", cfg, device="cpu")
    theirs = facenet.MTCNN(keep_all=True, device="cpu", min_face_size=20, thresholds=[0.6, 0.7, 0.7], factor=0.709)
    total: dict = {}
    paths = wider_images(root, int(os.environ.get("MTCNN_PARITY_IMAGES", "100")))
    for path in paths:
        image = load_image(path)
        boxes, _, points = theirs.detect(image, landmarks=True)
        ref_boxes, ref_points = facenet_to_edges(boxes, points)
        dets = ours.detect(image)
        add_counts(total, parity_counts(ref_boxes, ref_points, dets.boxes, dets.landmarks))
    print(f"\nparity on {len(paths)} images: {total}")
    assert total["ref"] > 100  # the images hold faces: the comparison is not vacuous
    assert total["ref_matched"] >= 0.99 * total["ref"]
    assert total["ours_matched"] >= 0.99 * total["ours"]
    assert total["points_ok"] >= 0.99 * total["points_checked"]
