"""Data commands: ``make-synthetic`` and ``data check``."""
from __future__ import annotations

from pathlib import Path

import click

from mtcnn_train.cli.common import cli, config_options, get_config, prepare_output_dir
from mtcnn_train.datasets.formats import DATASET_FORMATS
from mtcnn_train.errors import UserError


@cli.command("make-synthetic")
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.option("--images", type=click.IntRange(min=1), default=200, show_default=True, help="Training images to render.")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True,
              help="Random seed; one seed always gives byte-identical files.")
@click.option("--faces", type=click.Choice(["demo", "wider"]), default="demo", show_default=True,
              help="Face count and sizes of the WIDER images: the small demo scenes, or WIDER FACE train's "
                   "distribution (about 12 faces per image, a heavy tail of crowds, mostly small faces, 1024 px wide).")
@click.option("--landmark-faces", type=click.IntRange(min=1), default=None,
              help="Entries of the CelebA landmark list (e.g. 202599, CelebA's size); beyond the rendered "
                   "CelebA images they reuse those images (hard links).  [default: one per rendered image]")
@click.option("--celeba-images", type=click.IntRange(min=1), default=None,
              help="CelebA images to render.  [default: --images, at most --landmark-faces]")
@click.option("--eval-images", type=click.IntRange(min=1), default=None,
              help="Size WIDER val (a quarter) and FDDB (a half) by this instead of --images.")
@click.option("--force", is_flag=True, help="Write into OUT even if it holds something other than a synthetic set.")
@config_options
def make_synthetic(out: Path, images: int, seed: int, faces: str, landmark_faces: int | None,
                   celeba_images: int | None, eval_images: int | None, force: bool, config_path: Path | None,
                   overrides: tuple[str, ...]) -> None:
    """Render the embedded synthetic dataset (WIDER, CelebA and FDDB formats) into OUT.

    OUT gets wider/ (train and val splits), celeba/ (landmarks), fddb/ (ellipses, 2 folds) and
    summary.json.  A folder holding an earlier synthetic set is rewritten; any other non-empty
    folder needs --force.
    """
    import time

    from mtcnn_train import synthetic

    get_config(config_path, overrides)  # a bad --config/--set fails here, before anything is written
    prepare_output_dir(out, force, resume_ok=synthetic.is_synthetic_set(out))
    started = time.perf_counter()
    summary = synthetic.make_synthetic(out, num_images=images, seed=seed, progress=True, faces=faces,
                                       landmark_faces=landmark_faces, celeba_images=celeba_images,
                                       eval_images=eval_images)
    click.echo(synthetic.format_summary(summary, out))
    click.echo(f"rendered in {time.perf_counter() - started:.1f} s")


# --------------------------------------------------------------------------------------------
# data check, data convert

DATA_FORMATS = ("auto",) + DATASET_FORMATS


def _names(text: str | None) -> tuple[str, ...] | None:
    return None if text is None else tuple(n.strip() for n in text.split(",") if n.strip())


def reader_options(func):
    """The images folder and the reader settings of the labelling-tool formats (these override
    the config's data section)."""
    func = click.option("--folds", default=None, metavar="SPEC",
                        help="fddb: the folds to read, e.g. 1-3 or 4,5 (default: every fold there).")(func)
    func = click.option("--keypoint-names", default=None, metavar="A,B,C,D,E",
                        help="coco: the category's keypoints that are our five points, in our order (left eye, "
                             "right eye, nose, left and right mouth corner as seen in the image; default: by "
                             "their usual names; data.keypoint_names).")(func)
    func = click.option("--ignore-classes", default=None, metavar="A,B",
                        help="Labels kept as ignore regions, flagged invalid (default: labels named 'ignore'; "
                             "data.ignore_classes).")(func)
    func = click.option("--classes", default=None, metavar="A,B",
                        help="Labels that are faces: COCO category names or ids, YOLO class ids or names, VOC "
                             "object names (default: all; data.classes).")(func)
    func = click.option("--images", "images_root", type=click.Path(file_okay=False, path_type=Path), default=None,
                        help="Folder the image names are relative to (default: where each format keeps them).")(func)
    return func


def read_options(cfg, classes: str | None, ignore_classes: str | None, keypoint_names: str | None,
                 folds: str | None):
    """:class:`ReadOptions` from the config's data section, with the command line's values on top."""
    import dataclasses

    from mtcnn_train.datasets.formats import ReadOptions

    options = ReadOptions.from_config(cfg)
    given = {"classes": _names(classes), "ignore_classes": _names(ignore_classes),
             "keypoint_names": _names(keypoint_names)}
    if given["keypoint_names"] is not None and len(given["keypoint_names"]) != 5:
        raise UserError(f"--keypoint-names {keypoint_names}: needs 5 names, got {len(given['keypoint_names'])}")
    if folds is not None:
        from mtcnn_train.evaluation.fddb import parse_folds

        given["folds"] = tuple(parse_folds(folds))
    return dataclasses.replace(options, **{k: v for k, v in given.items() if v is not None})


@cli.group("data")
def data_group() -> None:
    """Check annotation files and the images they point to, and convert between formats."""


@data_group.command("check")
@click.option("--format", "fmt", type=click.Choice(DATA_FORMATS), default="auto", show_default=True,
              help="Annotation format of PATH (auto: told from the path).")
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--allow-missing", is_flag=True, help="Count missing images instead of failing on the first.")
@reader_options
@config_options
def data_check(fmt: str, path: Path, allow_missing: bool, images_root: Path | None, classes, ignore_classes,
               keypoint_names, folds, config_path: Path | None, overrides: tuple[str, ...]) -> None:
    """Parse PATH, check that every image exists, and print a summary.

    PATH is the annotation file (WIDER: the *_bbx_gt.txt file or the WIDER root; COCO: the .json;
    YOLO: the folder with images/ and labels/, an image list or a data.yaml; VOC: the folder of
    .xml files; CelebA: the landmark list; LFW+Net and MTFL: the image list), or for fddb the FDDB
    root.
    """
    from mtcnn_train.datasets.check import check_dataset

    cfg = get_config(config_path, overrides)  # a bad --config/--set fails here, before any reading
    options = read_options(cfg, classes, ignore_classes, keypoint_names, folds)
    click.echo(check_dataset(fmt, path, images_root, allow_missing=allow_missing, options=options).describe())


@data_group.command("convert")
@click.option("--from", "source_format", type=click.Choice(DATA_FORMATS), default="auto", show_default=True,
              help="Format of SOURCE (auto: told from the path).")
@click.option("--to", "target", type=click.Choice(["wider", "coco", "yolo"]), required=True,
              help="Format to write: wider (a *_bbx_gt.txt file), coco (a .json file) or yolo (a folder).")
@click.argument("source", type=click.Path(path_type=Path))
@click.argument("out", type=click.Path(path_type=Path))
@click.option("--skip-missing", is_flag=True, help="Leave out (and count) images that are missing, instead of failing.")
@reader_options
@config_options
def data_convert(source_format: str, target: str, source: Path, out: Path, skip_missing: bool,
                 images_root: Path | None, classes, ignore_classes, keypoint_names, folds, config_path: Path | None,
                 overrides: tuple[str, ...]) -> None:
    """Convert the annotations of SOURCE into OUT (a new file, or a new or empty folder for yolo).

    Images are not copied: WIDER and COCO names stay relative to SOURCE's images folder, and a
    YOLO folder gets images/ as a link to it.  Boxes round-trip exactly.
    """
    from mtcnn_train.datasets.convert import convert_dataset

    cfg = get_config(config_path, overrides)
    options = read_options(cfg, classes, ignore_classes, keypoint_names, folds)
    report = convert_dataset(source_format, source, target, out, images_root, options, skip_missing=skip_missing)
    click.echo(report.describe())
