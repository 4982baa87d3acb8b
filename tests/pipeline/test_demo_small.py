"""A reduced `mtcnn-train demo`: the whole pipeline on a small synthetic set must really learn.

It asserts learning (the cascade finds most faces at few false positives, far above what an
untrained cascade does), never a wall time.
"""
import json

import pytest

from mtcnn_train.pipeline import run_demo

pytestmark = pytest.mark.slow

SMALL = ("train.pnet.epochs=8", "train.rnet.epochs=5", "train.onet.epochs=3", "sampling.workers=1")


def test_reduced_demo_learns_and_resumes(tmp_path):
    lines = []
    report = run_demo(tmp_path / "demo", images=48, seed=1, overrides=SMALL, progress=False, echo=lines.append)
    text = "\n".join(lines)
    for step in ("[1/6] pnet samples", "[2/6] pnet trained", "[3/6] rnet samples mined", "[4/6] rnet trained",
                 "[5/6] onet samples mined", "[6/6] onet trained"):
        assert step in text, text
    for stage in ("pnet", "rnet", "onet"):
        assert all(report.samples[stage][t] > 0 for t in ("negative", "positive", "part", "landmark")), report.samples
        assert report.metrics[stage]["best_val"]["accuracy"] > 0.8, report.metrics[stage]
    figures = report.evaluation["FDDB-format synthetic eval"]
    # An untrained cascade finds next to nothing at 100 false positives; a trained one most faces.
    assert figures["TPR@100FP"] > 0.5, figures
    run = tmp_path / "demo" / "run"
    assert (run / "eval" / "fddb" / "roc.png").is_file() and (run / "eval" / "fddb" / "DiscROC.txt").is_file()
    summary = json.loads((run / "summary.json").read_text())
    assert summary["evaluation"]["FDDB-format synthetic eval"]["TPR@100FP"] == figures["TPR@100FP"]
    table = report.table()
    assert "onet" in table and "TPR@100FP" in table

    # Rerunning finds every stage finished and gives the same figures without retraining.
    weights_before = {s: (run / f"{s}.pt").read_bytes() for s in ("pnet", "rnet", "onet")}
    lines.clear()
    again = run_demo(tmp_path / "demo", images=48, seed=1, overrides=SMALL, progress=False, echo=lines.append)
    assert "already" in "\n".join(lines)
    assert again.evaluation["FDDB-format synthetic eval"]["TPR@100FP"] == figures["TPR@100FP"]
    assert {s: (run / f"{s}.pt").read_bytes() for s in ("pnet", "rnet", "onet")} == weights_before
