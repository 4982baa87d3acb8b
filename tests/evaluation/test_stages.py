"""Stage diagnostics: recall per stage, candidate budgets, the measure that picks checkpoints."""
from __future__ import annotations

import json

import numpy as np
import pytest

from mtcnn_train.config import DetectionConfig
from mtcnn_train.datasets.records import FaceRecord
from mtcnn_train.errors import UserError
from mtcnn_train.detection.cascade import Cascade, Detections
from mtcnn_train.evaluation.stages import (
    CANDIDATE_BUDGETS, SELECTION_BUDGET, StageFigures, add_image, counted_faces, detection_measure, stage_figures,
    write_report)
from tests.random_nets import make_random_nets


def _record(boxes):
    return FaceRecord(image_path="img.jpg", boxes=np.asarray(boxes, np.float32), name="e/img.jpg")


def test_only_valid_faces_at_least_the_minimum_size_count():
    boxes = np.array([[0, 0, 30, 40], [0, 0, 19, 50], [10, 10, 40, 40]], float)
    kept = counted_faces(boxes, np.array([True, True, False]), min_face_size=20)
    np.testing.assert_array_equal(kept, boxes[:1])  # too narrow, and invalid, are left out


def test_recall_at_each_iou_and_candidate_budget():
    faces = np.array([[0, 0, 100, 100], [200, 200, 300, 300]], float)
    # Best first: a poor box on face 0 (IoU 0.6), then 30 misses, then an exact box on face 1.
    candidates = np.concatenate([[[0, 0, 100, 60]], np.tile([[500, 500, 520, 520]], (30, 1)), [[200, 200, 300, 300]]])
    figures = StageFigures()
    add_image(figures, faces, candidates)
    assert figures.faces == 2 and figures.candidates == 32
    assert figures.recall(0.5) == 1.0 and figures.recall(0.65) == 0.5
    # Face 1 is found only by the 32nd candidate: not within 10 or 25, within 50 and more.
    assert [figures.recall_at_budget(k) for k in CANDIDATE_BUDGETS] == [0, 0, 0.5, 0.5, 0.5, 0.5, 0.5]
    add_image(figures, faces, np.zeros((0, 4)))  # an image where the stage found nothing
    assert figures.faces == 4 and figures.images == 2 and figures.recall(0.5) == 0.5


def test_detection_measure_ranks_pnet_by_budgeted_recall_and_onet_by_ap():
    figures = StageFigures()
    add_image(figures, np.array([[0, 0, 100, 100]], float), np.array([[0, 0, 100, 100]], float))
    budget = SELECTION_BUDGET["pnet"]
    assert detection_measure("pnet", {"pnet": figures})["score"] == figures.recall_at_budget(budget) == 1.0
    figures.ap = 0.42
    assert detection_measure("onet", {"onet": figures})["score"] == 0.42


def test_stage_figures_follow_the_cascade_outputs():
    records = [_record([[10, 10, 50, 50], [100, 100, 140, 140]])]
    per_image = [{
        "pnet": Detections(np.array([[10, 10, 50, 50], [100, 100, 140, 140], [0, 0, 5, 5]], np.float32),
                           np.array([0.9, 0.8, 0.7], np.float32)),
        "rnet": Detections(np.array([[10, 10, 50, 50]], np.float32), np.array([0.95], np.float32)),
    }]
    figures = stage_figures(records, per_image, min_face_size=20)
    assert figures["pnet"].recall(0.65) == 1.0 and figures["rnet"].recall(0.65) == 0.5
    assert figures["pnet"].candidates == 3 and figures["rnet"].candidates == 1
    # AP by the WIDER protocol: P finds both faces first, R only one.
    assert figures["pnet"].ap == pytest.approx(1.0) and figures["rnet"].ap < figures["pnet"].ap
    assert figures["pnet"].duplicates_at_top == 0.0  # its two best boxes are the two faces


def test_detect_stages_matches_detect_stopped_at_each_stage():
    pnet, rnet, onet = make_random_nets(seed=5)
    cfg = DetectionConfig(min_face_size=20, thresholds=[0.3, 0.3, 0.3])
    cascade = Cascade(pnet, rnet, onet, cfg=cfg, device="cpu")
    image = np.random.default_rng(1).integers(0, 255, (90, 120, 3), dtype=np.uint8)
    stages = cascade.detect_stages(image)
    assert set(stages) == {"pnet", "rnet", "onet"}
    assert len(stages["pnet"]) > len(stages["rnet"]) > 0  # a real test: every stage has candidates
    for stage, found in stages.items():
        alone = cascade.detect(image, stages=stage)
        np.testing.assert_array_equal(found.boxes, alone.boxes)
        np.testing.assert_array_equal(found.scores, alone.scores)


def test_report_files(tmp_path):
    figures = StageFigures()
    add_image(figures, np.array([[0, 0, 100, 100]], float), np.array([[0, 0, 100, 100]], float))
    figures.ap = 0.5
    table = write_report(tmp_path, {"ours": {"pnet": figures}, "published": {"pnet": figures}})
    assert "published" in table and "P " in table
    data = json.loads((tmp_path / "stages.json").read_text())
    assert data["ours"]["P"]["recall@0.65"] == 1.0 and data["ours"]["P"]["ap"] == 0.5
    assert (tmp_path / "stages.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_detections_are_found_faces_duplicates_near_misses_or_background():
    from mtcnn_train.evaluation.stages import (BACKGROUND, DUPLICATE, FOUND, NEAR_MISS, detection_kinds,
                                               duplicates_at_top)

    faces = np.array([[0, 0, 100, 100], [200, 0, 300, 100]], float)
    boxes = np.array([
        [5, 5, 105, 105],      # IoU 0.82 with face 0, scored below the next box: a duplicate
        [0, 0, 100, 100],      # face 0, best score: found
        [200, 0, 300, 100],    # face 1: found
        [250, 0, 350, 100],    # IoU 0.33 with face 1: a near miss
        [500, 500, 600, 600],  # background
    ], float)
    scores = np.array([0.8, 0.9, 0.5, 0.95, 0.99])
    kinds = detection_kinds(boxes, scores, faces)
    assert kinds.tolist() == [DUPLICATE, FOUND, FOUND, NEAR_MISS, BACKGROUND]
    # A duplicate that outscores the face it repeats takes the face; the other box becomes the duplicate.
    assert detection_kinds(boxes[:2], [0.9, 0.8], faces).tolist() == [FOUND, DUPLICATE]
    assert detection_kinds(boxes, scores, np.zeros((0, 4))).tolist() == [BACKGROUND] * 5
    # Ranked over all images: the 2 best of (0.99 bg, 0.95 near) hold no duplicate; the best 5 hold one.
    assert duplicates_at_top([scores], [kinds], 2) == 0.0
    assert duplicates_at_top([scores[:2], scores[2:]], [kinds[:2], kinds[2:]], 5) == pytest.approx(0.2)


def test_each_run_can_detect_at_its_own_settings(tmp_path):
    """eval stages --run-config: one cascade at the common settings, another at its own, scored on
    the same images and faces."""
    import cv2

    from mtcnn_train.evaluation.stages import diagnose_runs
    from tests.random_nets import save_random_run

    run = save_random_run(tmp_path / "run", seed=5)
    image = np.random.default_rng(1).integers(0, 255, (90, 120, 3), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "img.jpg"), image)
    records = [FaceRecord(image_path=str(tmp_path / "img.jpg"), boxes=np.array([[20, 20, 60, 60]], np.float32),
                          name="e/img.jpg")]
    common = DetectionConfig(min_face_size=20, thresholds=[0.3, 0.3, 0.3])
    strict = DetectionConfig(min_face_size=20, thresholds=[0.9999, 0.9999, 0.9999])
    results = diagnose_runs({"common": run, "strict": run}, records, common, progress=False,
                            own_detection={"strict": strict})
    assert results["common"]["pnet"].candidates > results["strict"]["pnet"].candidates
    assert results["common"]["pnet"].faces == results["strict"]["pnet"].faces == 1
    same = diagnose_runs({"a": run}, records, common, progress=False)
    assert same["a"]["pnet"].candidates == results["common"]["pnet"].candidates
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match=r"empty: no pnet.pt, rnet.pt or onet.pt to measure"):
        diagnose_runs({"a": run, "b": tmp_path / "empty"}, records, common, progress=False)
