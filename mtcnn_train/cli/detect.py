"""Detection commands: ``detect`` and ``import-weights``."""
from __future__ import annotations

from pathlib import Path

import click

from mtcnn_train.cli import cli
from mtcnn_train.cli.common import config_options, not_built


@cli.command("detect")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--weights", type=click.Path(file_okay=False, path_type=Path), required=True)
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True)
@config_options
def detect(paths, weights, out, config_path, overrides) -> None:
    """Detect faces and landmarks in images, folders or a video."""
    not_built("detect", "issue 5")


@cli.command("import-weights")
@click.option("--from", "source", type=click.Choice(["facenet-pytorch"]), required=True)
@click.argument("path", required=False, type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True)
def import_weights(source, path, out) -> None:
    """Convert the published MTCNN weights into our checkpoints."""
    not_built("import-weights", "issue 5")
