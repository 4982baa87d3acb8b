"""Training commands: ``pnet``, ``rnet``, ``onet``."""
from __future__ import annotations

from pathlib import Path

import click

from mtcnn_train.cli import cli
from mtcnn_train.cli.common import config_options, not_built


def _make_stage_command(stage: str) -> None:
    @cli.command(stage, help=f"Train {stage[0].upper()}-Net on a sample set.")
    @click.option("--samples", "sample_dirs", multiple=True, required=True,
                  type=click.Path(file_okay=False, path_type=Path))
    @click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True)
    @click.option("--resume", is_flag=True)
    @config_options
    def command(sample_dirs, out, resume, config_path, overrides) -> None:
        not_built(stage, "issue 4")


for _stage in ("pnet", "rnet", "onet"):
    _make_stage_command(_stage)
