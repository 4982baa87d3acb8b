"""The shared detection loop: batches, skipped images, resumable log, fingerprint."""
from __future__ import annotations

import numpy as np

from mtcnn_train.detection.cascade import Detections
from mtcnn_train.errors import ImageError
from mtcnn_train.detection.runner import DetectionLog, detect_batches, detect_images, detector_fingerprint
from mtcnn_train.io import save_image


class CountingCascade:
    """One 2x3 box per image; records the batch sizes it was called with."""

    def __init__(self):
        self.calls = []

    def detect_batch(self, images, stages=None):
        self.calls.append((len(images), stages))
        return [Detections(np.array([[1, 2, 3, 5]], np.float32), np.array([0.9], np.float32)) for _ in images]


def test_batches_skip_unreadable_items_in_order():
    def load(item):
        if item == "bad":
            raise ImageError("bad: unreadable")
        return np.zeros((4, 6, 3), np.uint8)

    skipped, cascade = [], CountingCascade()
    batches = list(detect_batches(cascade, ["a", "bad", "b", "c"], load, 2, stages="rnet",
                                  on_skip=lambda item, exc: skipped.append((item, str(exc)))))
    assert [tried for tried, _ in batches] == [["a", "bad"], ["b", "c"]]
    assert [[item for item, _, _ in found] for _, found in batches] == [["a"], ["b", "c"]]
    assert skipped == [("bad", "bad: unreadable")] and cascade.calls == [(1, "rnet"), (2, "rnet")]


def test_detect_images_resumes_from_its_log(tmp_path):
    for name in ("a", "b"):
        save_image(tmp_path / f"{name}.png", np.zeros((4, 6, 3), np.uint8))
    items = [("a", tmp_path / "a.png"), ("b", tmp_path / "b.png"), ("c", tmp_path / "missing.png")]
    log = DetectionLog(tmp_path, detector_fingerprint(None, {"min_face_size": 20}))
    first = CountingCascade()
    results, skipped = detect_images(first, items[:1], 4, "test", log)
    np.testing.assert_allclose(results["a"][0], [[1, 2, 2, 3, 0.9]], rtol=1e-6)  # left top width height score
    assert results["a"][1] == (4, 6) and skipped == []
    again = CountingCascade()
    results, skipped = detect_images(again, items, 4, "test", log)
    assert set(results) == {"a", "b"} and skipped == ["c"] and again.calls == [(1, None)]  # "a" came from the log
    other = DetectionLog(tmp_path, detector_fingerprint(None, {"min_face_size": 30}))
    assert other.load() == {}  # another detector's log is not trusted
