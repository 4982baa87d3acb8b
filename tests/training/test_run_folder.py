"""The run folder's rules: what --force and --resume may do with what a folder holds; metrics.jsonl."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from mtcnn_train.errors import UserError
from mtcnn_train.training.run_folder import StagePaths, clear_stage_outputs, decide_start, write_metrics_jsonl


def _paths(tmp_path, *present: str) -> StagePaths:
    paths = StagePaths(tmp_path / "run", "rnet")
    paths.folder.mkdir(parents=True)
    for name in present:
        getattr(paths, name).write_bytes(b"x")
    return paths


def test_the_layout_of_a_stage():
    paths = StagePaths(Path("RUN"), "onet")
    assert [str(p) for p in (paths.weights, paths.last, paths.best, paths.tensorboard, paths.metrics, paths.config)] == [
        "RUN/onet.pt", "RUN/onet/last.pt", "RUN/onet/best.pt", "RUN/onet/tb", "RUN/onet/metrics.jsonl",
        "RUN/onet/config.yaml"]


def test_an_empty_folder_starts_fresh_with_or_without_resume(tmp_path):
    paths = _paths(tmp_path)
    assert decide_start(paths, resume=False, force=False) == "fresh"
    assert decide_start(paths, resume=True, force=False) == "fresh"


@pytest.mark.parametrize("present, resume, force, expected", [
    (("last",), True, False, "resume"),
    (("weights", "last"), True, False, "resume"),
    (("weights",), False, True, "fresh"),
    (("last",), False, True, "fresh"),
])
def test_resume_and_force(tmp_path, present, resume, force, expected):
    assert decide_start(_paths(tmp_path, *present), resume, force) == expected


@pytest.mark.parametrize("present, resume, force, message", [
    (("weights",), False, False, "already trained"),
    (("last",), False, False, "unfinished rnet run"),
    (("weights",), True, False, "nothing to resume"),
    ((), True, True, "contradict"),
])
def test_finished_or_unfinished_work_is_never_overwritten_silently(tmp_path, present, resume, force, message):
    with pytest.raises(UserError, match=message):
        decide_start(_paths(tmp_path, *present), resume, force)


def test_force_clears_only_the_stage_outputs(tmp_path):
    paths = _paths(tmp_path, "weights", "last", "best", "metrics", "config")
    paths.tensorboard.mkdir()
    other = paths.run_dir / "pnet.pt"
    other.write_bytes(b"keep")
    clear_stage_outputs(paths)
    assert sorted(p.name for p in paths.run_dir.rglob("*")) == ["pnet.pt", "rnet"]


def test_metrics_jsonl_holds_one_strict_json_line_per_epoch(tmp_path):
    path = tmp_path / "metrics.jsonl"
    history = [{"epoch": 1, "val": {"recall": math.nan, "loss": 0.5}}, {"epoch": 2, "val": None}]
    write_metrics_jsonl(path, history)
    lines = path.read_text().splitlines()
    assert [json.loads(line) for line in lines] == [{"epoch": 1, "val": {"recall": None, "loss": 0.5}},
                                                     {"epoch": 2, "val": None}]
    assert "NaN" not in path.read_text()
