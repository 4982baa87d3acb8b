"""Sample commands: ``gen-samples`` and ``samples inspect``."""
from __future__ import annotations

from pathlib import Path

import click

from mtcnn_train.cli import cli
from mtcnn_train.cli.common import config_options, not_built


@cli.command("gen-samples")
@click.option("--stage", type=click.Choice(["pnet", "rnet", "onet"]), required=True)
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True)
@config_options
def gen_samples(stage: str, out: Path, config_path: Path | None, overrides: tuple[str, ...]) -> None:
    """Cut labelled training crops (P-Net) or mine them with the earlier nets (R-Net, O-Net)."""
    not_built("gen-samples", "issue 3")


@cli.group("samples")
def samples_group() -> None:
    """Look at and combine sample sets."""


@samples_group.command("inspect")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
def inspect(directory: Path) -> None:
    """Counts per type and a contact sheet of random crops with their targets drawn on."""
    not_built("samples inspect", "issue 3")
