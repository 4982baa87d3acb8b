"""The shared detection loop: batches, skipped images, resumable log, fingerprint."""
from __future__ import annotations

import threading

import numpy as np
import pytest

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


@pytest.mark.parametrize("read_ahead", [True, False])
def test_batches_skip_unreadable_items_in_order(read_ahead):
    def load(item):
        if item == "bad":
            raise ImageError("bad: unreadable")
        return np.zeros((4, 6, 3), np.uint8)

    skipped, cascade = [], CountingCascade()
    batches = list(detect_batches(cascade, ["a", "bad", "b", "c"], load, 2, stages="rnet",
                                  on_skip=lambda item, exc: skipped.append((item, str(exc))), read_ahead=read_ahead))
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


def test_read_ahead_loads_the_next_batch_while_this_one_is_detected():
    """The next batch is read in another thread before this batch's detection returns."""
    log, started = [], threading.Event()

    def load(item):
        log.append((item, threading.current_thread() is threading.main_thread()))
        if item == "c":
            started.set()
        return np.zeros((4, 6, 3), np.uint8)

    class WaitingCascade(CountingCascade):
        def detect_batch(self, images, stages=None):
            if not self.calls:  # the first batch: the second must start loading meanwhile
                assert started.wait(10), "the next batch was not read during detection"
            return super().detect_batch(images, stages)

    batches = list(detect_batches(WaitingCascade(), ["a", "b", "c", "d"], load, 2))
    assert [[item for item, _, _ in found] for _, found in batches] == [["a", "b"], ["c", "d"]]
    assert [item for item, _ in log] == ["a", "b", "c", "d"] and not any(main for _, main in log)
    serial = []
    list(detect_batches(CountingCascade(), ["a", "b"], lambda item: serial.append(
        threading.current_thread() is threading.main_thread()) or np.zeros((4, 6, 3), np.uint8), 1, read_ahead=False))
    assert serial == [True, True]


def test_stopping_early_leaves_no_reader_thread():
    before = threading.active_count()
    batches = detect_batches(CountingCascade(), list("abcdef"), lambda item: np.zeros((4, 6, 3), np.uint8), 1)
    next(batches)
    batches.close()  # the consumer stops after one batch (an error, a break)
    assert threading.active_count() == before
    assert not [t for t in threading.enumerate() if t.name.startswith("read-ahead")]
