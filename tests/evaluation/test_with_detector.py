"""The ``--weights`` paths, driven by a fake cascade with the detector's API (detect_batch)."""
from __future__ import annotations

import json
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from mtcnn_train.config import load_config
from mtcnn_train.datasets.records import FaceRecord
from mtcnn_train.evaluation import fddb, wider
from mtcnn_train.geometry import ellipse_to_box

# Image sizes (h, w) identify the images to the fake detector.
ELLIPSES = {(60, 80): [[20, 12, 1.3, 30, 30]], (70, 90): [[18, 14, 1.6, 60, 35], [10, 8, 1.5, 15, 15]],
            (50, 50): [[15, 10, 1.2, 25, 25]]}
BOXES = {(60, 80): ([[18, 12, 43, 49], [60, 0, 79, 20]], [0.99, 0.4]),
         (70, 90): ([[45, 18, 76, 52]], [0.9]),
         (50, 50): ([], [])}


class FakeCascade:
    def __init__(self, fail_after: int | None = None):
        self.calls = 0
        self.images = 0
        self.fail_after = fail_after

    def detect_batch(self, images):
        if self.fail_after is not None and self.calls >= self.fail_after:
            raise RuntimeError("interrupted")
        self.calls += 1
        self.images += len(images)
        out = []
        for image in images:
            boxes, scores = BOXES[image.shape[:2]]
            out.append(SimpleNamespace(boxes=np.array(boxes, np.float32).reshape(-1, 4),
                                       scores=np.array(scores, np.float32)))
        return out


@pytest.fixture
def records(tmp_path):
    recs = []
    for i, (size, ell) in enumerate(ELLIPSES.items()):
        path = tmp_path / "originalPics" / f"img_{i}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(path), np.zeros((*size, 3), np.uint8))
        e = np.array(ell, float)
        recs.append(FaceRecord(image_path=path, boxes=ellipse_to_box(e), ellipses=e, name=f"img_{i}"))
    return recs


@pytest.fixture
def cfg():
    c = load_config(None)
    c.detection.batch_size = 1
    return c


def test_fddb_with_detector_writes_the_official_files(tmp_path, records, cfg):
    out = tmp_path / "out"
    results = fddb.evaluate_fddb_with_detector(FakeCascade(), records, out, cfg, echo=lambda *_: None)
    assert set(results) == {"rectangles"}
    text = (out / "detections.txt").read_text()
    assert text.startswith("img_0\n2\n18.00 12.00 25.00 37.00 0.99000001\n")  # x y w h score
    assert "img_2\n0\n" in text
    res = results["rectangles"]
    assert (out / "DiscROC.txt").read_text() == fddb.format_roc(res.disc)
    assert (out / "ContROC.txt").read_text() == fddb.format_roc(res.cont)
    sizes = {r.name: cv2.imread(str(r.image_path)).shape[:2] for r in records}
    again = fddb.score_fddb([(r.name, r.ellipses) for r in records], fddb.read_detections(out / "detections.txt"), sizes)
    assert fddb.format_roc(again.disc) == fddb.format_roc(res.disc)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["faces"] == 4 and set(summary["tpr_at_fp"]) == {"100", "500", "1000", "2000"}
    assert (out / "roc.png").exists() and not (out / "detections.partial.jsonl").exists()


def test_box_to_ellipse_reports_both_scorings(tmp_path, records, cfg):
    lines = []
    results = fddb.evaluate_fddb_with_detector(FakeCascade(), records, tmp_path / "out", cfg, box_to_ellipse=True,
                                               echo=lines.append)
    assert set(results) == {"rectangles", "box_to_ellipse"}
    assert (tmp_path / "out" / "box_to_ellipse" / "DiscROC.txt").exists()
    ell = fddb.read_detections(tmp_path / "out" / "box_to_ellipse" / "detections.txt", ellipse=True)
    assert ell["img_0"].shape == (2, 6)
    assert any("rectangles" in line for line in lines) and any("ellipses" in line for line in lines)


def test_fddb_resumes_after_an_interruption(tmp_path, records, cfg):
    out = tmp_path / "out"
    with pytest.raises(RuntimeError):
        fddb.evaluate_fddb_with_detector(FakeCascade(fail_after=2), records, out, cfg, echo=lambda *_: None)
    second = FakeCascade()
    fddb.evaluate_fddb_with_detector(second, records, out, cfg, echo=lambda *_: None)
    assert second.images == 1  # two of three images were already done
    clean = tmp_path / "clean"
    fddb.evaluate_fddb_with_detector(FakeCascade(), records, clean, cfg, echo=lambda *_: None)
    assert (out / "DiscROC.txt").read_text() == (clean / "DiscROC.txt").read_text()
    assert (out / "detections.txt").read_text() == (clean / "detections.txt").read_text()


def test_a_different_detector_starts_afresh(tmp_path, records, cfg):
    out = tmp_path / "out"
    with pytest.raises(RuntimeError):
        fddb.evaluate_fddb_with_detector(FakeCascade(fail_after=2), records, out, cfg, echo=lambda *_: None)
    cfg.detection.min_face_size = 40.0
    again = FakeCascade()
    fddb.evaluate_fddb_with_detector(again, records, out, cfg, echo=lambda *_: None)
    assert again.images == 3


def test_wider_with_detector(tmp_path, records, cfg):
    recs = [FaceRecord(image_path=r.image_path, boxes=np.array(BOXES[cv2.imread(str(r.image_path)).shape[:2]][0],
                                                                 np.float32).reshape(-1, 4), name=f"ev/{r.name}.jpg")
            for r in records]
    gt = wider.ground_truth_from_records(recs)
    results = wider.evaluate_wider_with_detector(FakeCascade(), gt, tmp_path / "out", cfg, echo=lambda *_: None)
    assert results["all"].ap == 1.0 and results["all"].faces == 3
    assert (tmp_path / "out" / "predictions" / "ev" / "img_0.txt").read_text().startswith("img_0\n2\n18.00 12.00 25.00")
    assert json.loads((tmp_path / "out" / "ap.json").read_text())["ap"]["all"]["ap"] == 1.0


def _random_run_dir(tmp_path):
    from tests.random_nets import save_random_run

    return save_random_run(tmp_path / "run")


def test_cli_weights_runs_the_real_cascade(tmp_path, records, run_cli):
    from mtcnn_train.datasets.fddb import write_fddb_fold

    root = tmp_path  # records' images already sit in tmp_path/originalPics/<name>.jpg
    write_fddb_fold(records, root / "FDDB-folds" / "FDDB-fold-01-ellipseList.txt", root / "FDDB-folds" / "FDDB-fold-01.txt")
    run_dir = _random_run_dir(tmp_path)
    settings = ["--set", "detection.min_face_size=24", "--set", "detection.device=cpu"]
    result = run_cli("eval", "fddb", "--fddb-root", root, "--folds", "1", "--weights", run_dir, "--out",
                        tmp_path / "fddb", "--box-to-ellipse", *settings)
    assert result.returncode == 0, result.stderr
    for sub in ("", "box_to_ellipse/"):
        for name in ("detections.txt", "DiscROC.txt", "ContROC.txt", "summary.json", "roc.png"):
            assert (tmp_path / "fddb" / sub / name).exists(), sub + name
    assert list(fddb.read_detections(tmp_path / "fddb" / "detections.txt")) == ["img_0", "img_1", "img_2"]

    (tmp_path / "gt.txt").write_text("".join(f"{r.name}.jpg\n1\n1 1 10 10 0 0 0 0 0 0\n" for r in records))
    result = run_cli("eval", "wider", "--annotations", tmp_path / "gt.txt", "--images", root / "originalPics",
                        "--weights", run_dir, "--out", tmp_path / "wider", *settings)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in (tmp_path / "wider" / "predictions").iterdir()) == ["img_0.txt", "img_1.txt", "img_2.txt"]
