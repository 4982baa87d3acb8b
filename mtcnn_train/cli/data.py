"""Data commands: ``make-synthetic`` and ``data check``."""
from __future__ import annotations

from pathlib import Path

import click

from mtcnn_train.cli import cli
from mtcnn_train.cli.common import config_options, not_built


@cli.command("make-synthetic")
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.option("--images", type=click.IntRange(min=1), default=200, show_default=True, help="Training images to render.")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True,
              help="Random seed; one seed always gives byte-identical files.")
@click.option("--force", is_flag=True, help="Write into OUT even if it holds something other than a synthetic set.")
@config_options
def make_synthetic(out: Path, images: int, seed: int, force: bool, config_path: Path | None,
                   overrides: tuple[str, ...]) -> None:
    """Render the embedded synthetic dataset (WIDER, CelebA and FDDB formats) into OUT.

    OUT gets wider/ (train and val splits), celeba/ (landmarks), fddb/ (ellipses, 2 folds) and
    summary.json.  A folder holding an earlier synthetic set is rewritten; any other non-empty
    folder needs --force.
    """
    import time

    from mtcnn_train.cli.common import get_config, prepare_output_dir
    from mtcnn_train.datasets import synthetic

    get_config(config_path, overrides)  # a bad --config/--set fails here, before anything is written
    prepare_output_dir(out, force, resume_ok=synthetic.is_synthetic_set(out))
    started = time.perf_counter()
    summary = synthetic.make_synthetic(out, num_images=images, seed=seed, progress=True)
    click.echo(synthetic.format_summary(summary, out))
    click.echo(f"rendered in {time.perf_counter() - started:.1f} s")


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
