"""Data commands: ``make-synthetic``."""
from __future__ import annotations

from pathlib import Path

import click

from mtcnn_train.cli import cli
from mtcnn_train.cli.common import config_options, not_built


@cli.command("make-synthetic")
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.option("--images", type=click.IntRange(min=1), default=200, show_default=True, help="Training images to render.")
@click.option("--seed", type=int, default=0, show_default=True)
@config_options
def make_synthetic(out: Path, images: int, seed: int, config_path: Path | None, overrides: tuple[str, ...]) -> None:
    """Render the embedded synthetic dataset (WIDER, CelebA and FDDB formats) into OUT."""
    not_built("make-synthetic", "issue 2")
