"""Sample commands: ``gen-samples``, ``samples inspect`` and ``samples merge``."""
from __future__ import annotations

from pathlib import Path
from typing import get_args

import click

from mtcnn_train.cli.common import cli, config_options, get_config, lock_output_dir, prepare_output_dir
from mtcnn_train.config import LandmarksFormat
from mtcnn_train.datasets.formats import BOX_FORMATS
from mtcnn_train.errors import UserError
from mtcnn_train.stages import STAGES


@cli.command("gen-samples")
@click.option("--stage", type=click.Choice(STAGES), required=True)
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Sample folder; rerunning the same command resumes an interrupted run.")
@click.option("--weights", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Run folder with the trained earlier stages (rnet: pnet.pt; onet: pnet.pt and rnet.pt).")
@click.option("--wider-root", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder holding wider_face_split/ and WIDER_train/ (overrides data.wider_root).")
@click.option("--boxes", type=click.Path(path_type=Path), default=None,
              help="A face-box set in any box format instead of --wider-root: COCO .json, YOLO folder/list/"
                   "data.yaml, VOC folder, WIDER-format file (overrides data.boxes).")
@click.option("--boxes-format", type=click.Choice(("auto",) + BOX_FORMATS), default=None,
              help="Format of --boxes (default: told from the path).")
@click.option("--boxes-images", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder the --boxes image names are relative to (default: per format).")
@click.option("--landmarks", "landmarks", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="CelebA, LFW+Net or MTFL landmark list (overrides data.landmarks).")
@click.option("--landmarks-format", type=click.Choice(get_args(LandmarksFormat)),
              default=None, help="Format of --landmarks (default: detected).")
@click.option("--workers", type=click.IntRange(min=0), default=None,
              help="Worker processes (overrides sampling.workers; 0 = automatic, at most one per CPU core).")
@click.option("--num-shards", type=click.IntRange(min=1), default=1, show_default=True,
              help="Split the images into this many parts (one per machine) ... Each part keeps all its "
                   "candidates; 'samples merge' of all parts keeps the ratio and gives the very set (same crops) "
                   "one run makes, for any number of parts.")
@click.option("--shard-index", type=click.IntRange(min=0), default=0, show_default=True,
              help="... and make part number i (join the parts with 'samples merge').")
@click.option("--force", is_flag=True, help="Replace a finished sample set made with other settings.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@config_options
def gen_samples(stage: str, out: Path, weights: Path | None, wider_root: Path | None, boxes: Path | None,
                boxes_format: str | None, boxes_images: Path | None, landmarks: Path | None, landmarks_format: str | None,
                workers: int | None, num_shards: int, shard_index: int, force: bool, quiet: bool,
                config_path: Path | None, overrides: tuple[str, ...]) -> None:
    """Cut labelled training crops (P-Net) or mine them with the earlier nets (R-Net, O-Net)."""
    if stage != "pnet" and weights is None:
        raise UserError(f"gen-samples --stage {stage} mines with the earlier stages: pass --weights RUN_DIR")
    if shard_index >= num_shards:
        raise UserError(f"--shard-index {shard_index} must be below --num-shards {num_shards}")
    from mtcnn_train.samples.generate import generate_samples
    from mtcnn_train.samples.heap import bound_onednn_cache

    bound_onednn_cache()  # this process runs no convolution before mining (samples/heap.py)
    cfg = get_config(config_path, overrides)
    # Command-line paths are relative to the working folder, not to the config file.
    if wider_root is not None and boxes is not None:
        raise UserError("give the box set once: --wider-root or --boxes")
    if wider_root is not None:
        cfg.data.wider_root, cfg.data.boxes = str(wider_root.resolve()), None
    if boxes is not None:
        cfg.data.boxes, cfg.data.wider_root = str(boxes.resolve()), None
    if boxes_format is not None:
        cfg.data.boxes_format = boxes_format
    if boxes_images is not None:
        cfg.data.boxes_images = str(boxes_images.resolve())
    if landmarks is not None:
        cfg.data.landmarks = str(landmarks.resolve())
    if landmarks_format is not None:
        cfg.data.landmarks_format = landmarks_format
    if workers is not None:
        cfg.sampling.workers = workers
    prepare_output_dir(out, force, resume_ok=True)
    report = generate_samples(cfg, out, stage, weights, num_shards=num_shards, shard_index=shard_index, force=force,
                              progress=not quiet)
    click.echo(report.summary())


@cli.group("samples")
def samples_group() -> None:
    """Look at and combine sample sets."""


#: Crops per row of a contact sheet at most (a 48 px crop: 12,288 px wide).
MAX_PER_TYPE = 256
SHEET_SUFFIXES = (".png", ".jpg", ".jpeg")


@samples_group.command("inspect")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Contact sheet, .png or .jpg (default: DIRECTORY/contact_sheet.png).")
@click.option("--force", is_flag=True, help="Replace an existing --out file.")
@click.option("--per-type", type=click.IntRange(min=1, max=MAX_PER_TYPE), default=12, show_default=True,
              help="Crops per row.")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True, help="Which random crops to show.")
def inspect(directory: Path, out: Path | None, force: bool, per_type: int, seed: int) -> None:
    """Counts per type and a contact sheet of random crops with their targets drawn on."""
    from mtcnn_train.samples.inspect import inspect_sample_set

    if out is not None:
        if out.suffix.lower() not in SHEET_SUFFIXES:
            raise UserError(f"{out}: the contact sheet is an image; name it .png or .jpg")
        if out.exists() and not force:  # it may be anything, even one of the dataset's images
            raise UserError(f"{out}: exists; pass --force to replace it, or choose another --out")
        lock_output_dir(out.parent)
    elif directory.is_dir():  # a missing folder is reported by inspect_sample_set, never created
        lock_output_dir(directory)
    click.echo(inspect_sample_set(directory, out, per_type=per_type, seed=seed).summary())


@samples_group.command("merge")
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.argument("parts", nargs=-1, required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--shard-size", type=click.IntRange(min=1), default=100_000, show_default=True)
@click.option("--force", is_flag=True, help="Replace a finished sample set already in OUT.")
def merge(out: Path, parts: tuple[Path, ...], shard_size: int, force: bool) -> None:
    """Join sample sets into OUT: the --num-shards parts of one gen-samples run (giving the set one
    whole run makes), or finished sample sets (concatenated)."""
    from mtcnn_train.samples.generate import merge_samples

    lock_output_dir(out)
    manifest = merge_samples(out, parts, shard_size=shard_size, force=force)
    counts = ", ".join(f"{name} {count}" for name, count in manifest["counts"].items())
    click.echo(f"samples merge: {manifest['num_samples']} samples ({counts}) from {len(parts)} sets into {out}")
