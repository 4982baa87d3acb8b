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


# --------------------------------------------------------------------------------------------
# data check

from mtcnn_train.cli.common import get_config  # noqa: E402

DATA_FORMATS = ("wider", "celeba", "celeba-aligned", "lfw-net", "mtfl", "fddb")


@cli.group("data")
def data_group() -> None:
    """Check annotation files and the images they point to."""


@data_group.command("check")
@click.option("--format", "fmt", type=click.Choice(DATA_FORMATS), required=True,
              help="Annotation format of PATH.")
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--images", "images_root", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder the image names are relative to (default: where each dataset keeps them).")
@click.option("--allow-missing", is_flag=True, help="Count missing images instead of failing on the first.")
@config_options
def data_check(fmt: str, path: Path, images_root: Path | None, allow_missing: bool,
               config_path: Path | None, overrides: tuple[str, ...]) -> None:
    """Parse PATH, check that every image exists, and print a summary.

    PATH is the annotation file (WIDER: the *_bbx_gt.txt file or the WIDER root; CelebA: the
    landmark list; LFW+Net and MTFL: the image list), or for fddb the FDDB root.
    """
    from mtcnn_train.datasets.check import check_dataset

    get_config(config_path, overrides)  # a bad --config/--set fails here, before any reading
    click.echo(check_dataset(fmt, path, images_root, allow_missing=allow_missing).describe())
