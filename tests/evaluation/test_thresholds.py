"""``eval thresholds``: the cascade's thresholds chosen on the validation images by the P+R+O AP."""
from __future__ import annotations

import json

import numpy as np
import pytest

from mtcnn_train.config import DetectionConfig
from mtcnn_train.datasets.records import FaceRecord
from mtcnn_train.detection.cascade import Cascade
from mtcnn_train.errors import UserError
from mtcnn_train.evaluation.stages import diagnose_runs
from mtcnn_train.evaluation.thresholds import above_threshold, parse_grid_values, sweep_thresholds
from tests.random_nets import make_random_nets, save_random_run


def _image(seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, (90, 120, 3), dtype=np.uint8)


def test_filtering_the_lowest_onet_threshold_gives_each_higher_one():
    """The O-Net threshold applied after the final NMS equals the cascade run at it (greedy NMS
    decides each box only by higher-scoring boxes), so one pass serves every O-Net threshold."""
    pnet, rnet, onet = make_random_nets(seed=5)
    lowest = Cascade(pnet, rnet, onet, cfg=DetectionConfig(min_face_size=20, thresholds=[0.3, 0.3, 0.0]), device="cpu")
    image = _image()
    everything = lowest.detect(image)
    sizes = []
    for threshold in (0.4, 0.5, 0.55):
        direct = Cascade(pnet, rnet, onet, cfg=DetectionConfig(min_face_size=20, thresholds=[0.3, 0.3, threshold]),
                         device="cpu").detect(image)
        filtered = above_threshold(everything, threshold)
        np.testing.assert_array_equal(filtered.boxes, direct.boxes)
        np.testing.assert_array_equal(filtered.scores, direct.scores)
        np.testing.assert_array_equal(filtered.landmarks, direct.landmarks)
        sizes.append(len(direct))
    # A real test: the thresholds drop boxes, and some survive each.
    assert len(everything) > sizes[0] >= sizes[1] >= sizes[2] > 0 and sizes[0] > sizes[2]


def _records(tmp_path):
    import cv2

    records = []
    for i in range(2):
        path = tmp_path / f"img{i}.jpg"
        cv2.imwrite(str(path), _image(seed=i + 1))
        records.append(FaceRecord(image_path=str(path), boxes=np.array([[20, 20, 60, 60], [70, 30, 100, 60]],
                                                                        np.float32), name=f"e/img{i}.jpg"))
    return records


def test_every_threshold_set_is_scored_as_the_cascade_at_it_best_first(tmp_path):
    run = save_random_run(tmp_path / "run", seed=5)
    records = _records(tmp_path)
    cfg = DetectionConfig(min_face_size=20)
    scores = sweep_thresholds(run, records, cfg, grid=[(0.3, 0.5), (0.3,), (0.0, 0.6)], progress=False)
    assert sorted(s.thresholds for s in scores) == [(0.3, 0.3, 0.0), (0.3, 0.3, 0.6), (0.5, 0.3, 0.0), (0.5, 0.3, 0.6)]
    assert [s.ap for s in scores] == sorted((s.ap for s in scores), reverse=True)
    for s in scores:  # each figure as eval stages gives it for that threshold set
        at = DetectionConfig(min_face_size=20, thresholds=list(s.thresholds))
        onet = diagnose_runs({"run": run}, records, at, progress=False)["run"]["onet"]
        assert s.ap == pytest.approx(onet.ap) and s.recall_50 == onet.recall(0.5)
        assert s.candidates_per_image == onet.candidates / onet.images
    assert len({s.candidates_per_image for s in scores}) > 1  # the thresholds change what is kept


def test_grid_values_are_checked():
    assert parse_grid_values("0.6, 0.5,0.6", "--pnet") == (0.6, 0.5)
    for bad in ("0.6,x", "1.5", ""):
        with pytest.raises(UserError, match="--pnet thresholds"):
            parse_grid_values(bad, "--pnet")


def test_command_writes_the_table_and_the_best_set(tmp_path, run_cli):
    from mtcnn_train.synthetic import make_synthetic, synthetic_config

    make_synthetic(tmp_path / "syn", num_images=8, seed=3)
    run = save_random_run(tmp_path / "run", seed=5)
    data = synthetic_config(tmp_path / "syn")["data"]
    out = tmp_path / "out"
    result = run_cli("eval", "thresholds", "--weights", run, "--pnet", "0.3", "--rnet", "0.3,0.5", "--onet", "0.6,0",
                     "--quiet", "--out", out, "--set", f"data.wider_root={data['wider_root']}",
                     "--set", "data.val_fraction=0.5")
    assert result.returncode == 0, result.stderr
    report = json.loads((out / "thresholds.json").read_text())
    assert len(report["scores"]) == 4 and report["best"] == report["scores"][0]
    best = ",".join(f"{t:g}" for t in report["best"]["thresholds"])
    assert f"--set 'detection.thresholds=[{best}]'" in result.stdout
    assert (out / "thresholds.txt").read_text().count("\n") == 6  # header, rule, four rows

    bad = run_cli("eval", "thresholds", "--weights", run, "--onet", "0.6,2", "--out", tmp_path / "bad")
    assert bad.returncode != 0 and "--onet thresholds '0.6,2'" in bad.stderr and not (tmp_path / "bad").exists()
