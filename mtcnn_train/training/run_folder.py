"""The run folder's policy: where a stage's files live, what may be overwritten, and metrics.jsonl.

Several stages share one run folder::

    RUN_DIR/<stage>.pt                 best weights, written when the stage finishes (the detector loads it)
    RUN_DIR/<stage>/last.pt            full training state (resume)
    RUN_DIR/<stage>/best.pt            best weights so far (lowest validation loss, or as best_by says)
    RUN_DIR/<stage>/tb/                TensorBoard events
    RUN_DIR/<stage>/metrics.jsonl      one JSON line per epoch
    RUN_DIR/<stage>/config.yaml        the resolved config

Finished work (``<stage>.pt``) and unfinished work (``last.pt``) are never overwritten silently:
``--force`` starts over, ``--resume`` continues (:func:`decide_start`).
"""
from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from mtcnn_train.checkpoint import stage_weights_path
from mtcnn_train.errors import UserError
from mtcnn_train.io import atomic_write_bytes, atomic_write_text, json_safe, remove_stale_temp_files

Start = Literal["fresh", "resume", "done"]


@dataclass(frozen=True)
class StagePaths:
    run_dir: Path
    stage: str

    @property
    def folder(self) -> Path:
        return self.run_dir / self.stage

    @property
    def weights(self) -> Path:
        return stage_weights_path(self.run_dir, self.stage)

    @property
    def last(self) -> Path:
        return self.folder / "last.pt"

    @property
    def best(self) -> Path:
        return self.folder / "best.pt"

    @property
    def tensorboard(self) -> Path:
        return self.folder / "tb"

    @property
    def metrics(self) -> Path:
        return self.folder / "metrics.jsonl"

    @property
    def config(self) -> Path:
        return self.folder / "config.yaml"


def decide_start(paths: StagePaths, resume: bool, force: bool) -> Start:
    """``fresh``, ``resume`` or ``done`` (a finished stage resumed); refuses to overwrite finished work."""
    if resume and force:
        raise UserError("--resume and --force contradict each other; pass one")
    if paths.run_dir.exists() and not paths.run_dir.is_dir():
        raise UserError(f"{paths.run_dir}: exists and is not a folder")
    if force:
        return "fresh"
    if resume:
        if paths.last.is_file():
            return "resume"
        if paths.weights.is_file():
            raise UserError(f"{paths.weights}: {paths.stage} is trained but {paths.last} is missing, so there is "
                            f"nothing to resume; pass --force to train it again")
        return "fresh"
    if paths.weights.is_file():
        raise UserError(f"{paths.weights}: {paths.stage} is already trained in this run folder; pass --force to "
                        f"train it again or --resume to continue")
    if paths.last.is_file():
        raise UserError(f"{paths.last}: an unfinished {paths.stage} run is here; pass --resume to continue it or "
                        f"--force to start over")
    return "fresh"


def prepare_folder(paths: StagePaths) -> None:
    """Create the stage folder and drop temp files a killed run left.  (``--force`` clears the old
    outputs later, with :func:`clear_stage_outputs`, once the run's inputs have loaded.)"""
    paths.folder.mkdir(parents=True, exist_ok=True)
    remove_stale_temp_files(paths.folder)
    remove_stale_temp_files(paths.folder.parent)  # RUN_DIR/<stage>.pt is written there


def clear_stage_outputs(paths: StagePaths) -> None:
    """Remove what an earlier run of this stage wrote (``--force``); nothing else is touched."""
    for path in (paths.weights, paths.last, paths.best, paths.metrics, paths.config):
        path.unlink(missing_ok=True)
    if paths.tensorboard.is_dir():
        shutil.rmtree(paths.tensorboard)


def publish_weights(paths: StagePaths) -> None:
    """Copy ``best.pt`` to ``RUN_DIR/<stage>.pt``: the detector's file appears only once the stage is done."""
    atomic_write_bytes(paths.weights, paths.best.read_bytes())


def write_metrics_jsonl(path: Path, history: list[dict[str, Any]]) -> None:
    """Rewritten whole (atomically) from the history kept in ``last.pt``: never a torn or doubled line."""
    atomic_write_text(path, "".join(json.dumps(json_safe(record)) + "\n" for record in history))
