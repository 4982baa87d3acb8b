"""Training commands: ``pnet``, ``rnet``, ``onet``.

Each one trains a stage into a run folder shared by the three stages.  Under ``torchrun`` the
same command trains on several processes (GPUs or nodes).
"""
from __future__ import annotations

import math
import os
from pathlib import Path

import click

from mtcnn_train.cli.common import cli, config_options, get_config, lock_output_dir
from mtcnn_train.stages import INPUT_SIZE, STAGES

def _summary(result: dict) -> str:
    val = result.get("best_val") or {}
    parts = [f"{result['stage']}: trained {result['epoch']} epochs, best epoch {result['best_epoch']}"]
    for key in ("accuracy", "recall", "precision", "box_l2", "landmark_l2"):
        value = val.get(key)
        if isinstance(value, float) and math.isfinite(value):
            parts.append(f"val {key} {value:.4f}")
    return ", ".join(parts)


def _make_stage_command(stage: str) -> None:
    letter = stage[0].upper()

    @cli.command(stage, help=f"Train {letter}-Net on {INPUT_SIZE[stage]}x{INPUT_SIZE[stage]} sample shards into RUN_DIR "
                             f"(RUN_DIR/{stage}.pt, RUN_DIR/{stage}/).  Works under torchrun for several GPUs.")
    @click.option("--samples", "sample_dirs", multiple=True, required=True,
                  type=click.Path(file_okay=False, path_type=Path),
                  help="Sample folder made by gen-samples (repeatable: the folders are read as one set).")
    @click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True, metavar="RUN_DIR",
                  help="Run folder (shared by the three stages).")
    @click.option("--resume", is_flag=True, help=f"Continue from RUN_DIR/{stage}/last.pt.")
    @click.option("--force", is_flag=True, help=f"Train again, replacing a finished or unfinished {stage} in RUN_DIR.")
    @click.option("--init", "init", type=click.Path(exists=True, path_type=Path), default=None, metavar="WEIGHTS",
                  help=f"Start from the {stage} weights of a run folder or .pt file (fine-tuning).")
    @config_options
    def command(sample_dirs, out, resume, force, init, config_path, overrides) -> None:
        from mtcnn_train.pipeline import detection_scorer
        from mtcnn_train.training.trainer import train_stage

        cfg = get_config(config_path, overrides)
        lock_output_dir(out)
        result = train_stage(stage, cfg, sample_dirs, out, resume=resume, init=init, force=force,
                             epoch_scorer=detection_scorer(stage, cfg, out))
        if os.environ.get("RANK", "0") == "0":  # under torchrun, one summary
            click.echo(_summary(result))


for _stage in STAGES:
    _make_stage_command(_stage)
