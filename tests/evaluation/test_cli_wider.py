"""``eval wider`` from the command line: a WIDER-format list or the official .mat files."""
from __future__ import annotations

import json

import numpy as np

from mtcnn_train.evaluation import wider
from tests.evaluation.test_wider import FACES, write_official_mats

GT_TEXT = """0--Parade/0_Parade_a.jpg
2
10 10 20 20 0 0 0 0 0 0 
50 50 30 30 0 0 0 1 0 0 
1--Handshaking/1_Hand_c.jpg
1
5 5 40 40 0 0 0 0 0 0 
"""


def test_predictions_against_a_wider_list(tmp_path, run_cli):
    (tmp_path / "gt.txt").write_text(GT_TEXT)
    wider.write_predictions(tmp_path / "preds", {
        "0--Parade/0_Parade_a": np.array([[50, 50, 30, 30, 0.99], [10, 10, 20, 20, 0.9], [300, 300, 9, 9, 0.1]]),
        "1--Handshaking/1_Hand_c": np.array([[5, 5, 40, 40, 0.5]]),
    })
    out = tmp_path / "out"
    result = run_cli("eval", "wider", "--annotations", tmp_path / "gt.txt", "--images", tmp_path / "images",
                        "--predictions", tmp_path / "preds", "--out", out)
    assert result.returncode == 0, result.stderr
    summary = json.loads((out / "ap.json").read_text())
    # The face flagged invalid is ignored: its hit is dropped, both valid faces are found first.
    assert summary["ap"]["all"] == {"ap": 1.0, "faces": 2}
    assert (out / "pr_curve.png").stat().st_size > 0 and (out / "pr_all.txt").exists()
    assert "WIDER all    AP 1.0000" in result.stdout


def test_official_settings_from_mat_files(tmp_path, run_cli):
    write_official_mats(tmp_path, {"0--Parade": {"files": [("0_Parade_a", FACES)], "easy": [[1]], "medium": [[1, 2]],
                                                 "hard": [[1, 2]]}})
    wider.write_predictions(tmp_path / "preds", {"0--Parade/0_Parade_a": np.array([[10, 10, 20, 20, 0.9]])})
    result = run_cli("eval", "wider", "--gt-dir", tmp_path, "--predictions", tmp_path / "preds", "--out",
                        tmp_path / "out")
    assert result.returncode == 0, result.stderr
    aps = json.loads((tmp_path / "out" / "ap.json").read_text())["ap"]
    assert aps["easy"]["ap"] == 1.0 and aps["hard"]["ap"] == 0.5


def test_needs_exactly_one_source_of_predictions(tmp_path, run_cli):
    (tmp_path / "gt.txt").write_text(GT_TEXT)
    result = run_cli("eval", "wider", "--annotations", tmp_path / "gt.txt", "--images", tmp_path, "--out",
                        tmp_path / "out")
    assert result.returncode == 2 and "exactly one of --weights" in result.stderr


def test_stages_pick_the_cascade_to_score(tmp_path, run_cli):
    import cv2
    import torch

    from mtcnn_train.checkpoint import save_checkpoint
    from mtcnn_train.nets import build_net

    (tmp_path / "gt.txt").write_text(GT_TEXT)
    for name in ("0--Parade/0_Parade_a.jpg", "1--Handshaking/1_Hand_c.jpg"):
        (tmp_path / "images" / name).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(tmp_path / "images" / name), np.random.default_rng(0).integers(0, 255, (90, 120, 3), np.uint8))
    torch.manual_seed(0)
    save_checkpoint(tmp_path / "run" / "pnet.pt", {"stage": "pnet", "model": build_net("pnet").state_dict(), "epoch": 1})
    common = ("eval", "wider", "--annotations", tmp_path / "gt.txt", "--images", tmp_path / "images")

    # A folder with P-Net only is scored as the P-only cascade without being told.
    result = run_cli(*common, "--weights", tmp_path / "run", "--out", tmp_path / "p")
    assert result.returncode == 0, result.stderr
    assert json.loads((tmp_path / "p" / "ap.json").read_text())["ap"]["all"]["faces"] == 2
    result = run_cli(*common, "--weights", tmp_path / "run", "--stages", "rnet", "--out", tmp_path / "pr")
    assert result.returncode == 2 and "rnet.pt" in result.stderr
    result = run_cli(*common, "--predictions", tmp_path / "p" / "predictions", "--stages", "pnet",
                     "--out", tmp_path / "x")
    assert result.returncode == 2 and "does not combine with --predictions" in result.stderr


def test_stages_run_config_must_name_a_run(tmp_path, run_cli):
    from tests.random_nets import save_random_run

    run = save_random_run(tmp_path / "run")
    result = run_cli("eval", "stages", "--weights", f"ours={run}", "--run-config", "published=configs/default.yaml",
                     "--out", tmp_path / "out")
    assert result.returncode == 2 and "--run-config published=configs/default.yaml" in result.stderr
    assert "LABEL given to --weights (ours)" in result.stderr and not (tmp_path / "out").exists()
    result = run_cli("eval", "stages", "--weights", f"a={run}", "--weights", f"a={run}", "--out", tmp_path / "out")
    assert result.returncode == 2 and "the label 'a' is given twice" in result.stderr
    assert not (tmp_path / "out").exists()


def test_a_prediction_folder_matching_no_image_is_an_error(tmp_path, run_cli):
    """Scoring nothing (a wrong folder, or file names that never match) is not an AP of 0."""
    (tmp_path / "gt.txt").write_text(GT_TEXT)
    wider.write_predictions(tmp_path / "preds", {"0--Parade/0_Parade_a.jpg": np.array([[10, 10, 20, 20, 0.9]])})
    (tmp_path / "empty").mkdir()
    for folder, found in (("preds", "named like '0--Parade/0_Parade_a.jpg'"), ("empty", "holds no .txt files")):
        result = run_cli("eval", "wider", "--annotations", tmp_path / "gt.txt", "--images", tmp_path / "images",
                         "--predictions", tmp_path / folder, "--out", tmp_path / f"out-{folder}")
        assert result.returncode == 2 and "no prediction file matches a ground-truth image" in result.stderr
        assert found in result.stderr and len(result.stderr.strip().splitlines()) == 1
