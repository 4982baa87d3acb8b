"""The synthetic images written as files in the real formats: WIDER FACE (train and val splits),
CelebA landmarks and FDDB folds, each image rendered from its own random stream
(:func:`image_rng`), and where each part lives under the set's folder (:func:`synthetic_paths`)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from mtcnn_train.datasets.fddb import fold_paths, write_fddb_fold
from mtcnn_train.datasets.landmarks import write_celeba
from mtcnn_train.datasets.records import FaceRecord
from mtcnn_train.datasets.wider import wider_paths, write_wider
from mtcnn_train.errors import UserError
from mtcnn_train.io import save_image
from mtcnn_train.synthetic.scenes import RenderedImage, render_image
from mtcnn_train.synthetic.styles import (CELEBA_STYLE, FDDB_STYLE, WIDER_EVENTS, WIDER_PROFILE_EVENT, WIDER_PROFILE_SIZE,
                                          WIDER_PROFILE_STYLE)

JPEG_QUALITY = 90
#: One random stream per (seed, split, index): the split codes keep the streams apart.
SPLIT_CODES = {"wider_train": 0, "wider_val": 1, "celeba": 2, "fddb": 3}
FDDB_FOLDS = 2
SUMMARY_FILE = "summary.json"


def image_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """The random stream of one image: independent of how many images are rendered, and of order."""
    if seed < 0:
        raise UserError(f"seed must be 0 or more, got {seed}")
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, SPLIT_CODES[split], index])))


# --------------------------------------------------------------------------------------------
# The four sets


#: ``make-synthetic --faces``: the small demo scenes, or WIDER train's face count and sizes.
FACE_PROFILES = ("demo", "wider")


def wider_image(seed: int, split: str, index: int, faces: str = "demo") -> tuple[str, np.ndarray, RenderedImage]:
    """Render WIDER image ``index`` of ``split`` (``wider_train`` or ``wider_val``): (name, image, truth).

    ``faces="wider"``: WIDER's face count and size distribution on WIDER-sized images
    (:data:`~mtcnn_train.synthetic.styles.WIDER_PROFILE_STYLE`) instead of the demo's events."""
    rng = image_rng(seed, split, index)
    if faces == "wider":
        event, style = WIDER_PROFILE_EVENT, WIDER_PROFILE_STYLE
        width, (low, high) = WIDER_PROFILE_SIZE
        height = int(rng.integers(low, high + 1))
    else:
        events = sorted(WIDER_EVENTS)
        event = events[int(rng.integers(len(events)))]
        style = WIDER_EVENTS[event]
        width, height = int(rng.integers(320, 641)), int(rng.integers(320, 641))
    image, truth = render_image(rng, width, height, style)
    number, label = event.split("--", 1)
    return f"{event}/{number}_{label}_{index:05d}.jpg", image, truth


def celeba_image(seed: int, index: int) -> tuple[str, np.ndarray, RenderedImage]:
    """Render CelebA-style image ``index``: one large face, integer landmarks."""
    rng = image_rng(seed, "celeba", index)
    width, height = int(rng.integers(240, 421)), int(rng.integers(240, 421))
    image, truth = render_image(rng, width, height, CELEBA_STYLE, landmark_decimals=0)
    return f"{index + 1:06d}.jpg", image, truth


def fddb_image(seed: int, index: int) -> tuple[str, np.ndarray, RenderedImage]:
    """Render FDDB-style image ``index`` (at least one face): name without ``.jpg``, image, truth."""
    rng = image_rng(seed, "fddb", index)
    year, month, day = int(rng.integers(2002, 2004)), int(rng.integers(1, 13)), int(rng.integers(1, 29))
    width, height = int(rng.integers(320, 501)), int(rng.integers(280, 451))
    for _ in range(10):  # FDDB lists only images with faces
        image, truth = render_image(rng, width, height, FDDB_STYLE)
        if truth.num_faces:
            break
    return f"{year}/{month:02d}/{day:02d}/big/img_{index + 1}", image, truth


def synthetic_paths(out_dir: str | Path) -> dict[str, Path]:
    """Where each part of a synthetic set lives under ``out_dir``."""
    out = Path(out_dir)
    return {
        "wider_root": out / "wider",
        "wider_train_annotations": wider_paths(out / "wider", "train")[0],
        "wider_val_annotations": wider_paths(out / "wider", "val")[0],
        "celeba_landmarks": out / "celeba" / "Anno" / "list_landmarks_celeba.txt",
        "celeba_boxes": out / "celeba" / "Anno" / "list_bbox_celeba.txt",
        "celeba_images": out / "celeba" / "img_celeba",
        "fddb_root": out / "fddb",
        "summary": out / SUMMARY_FILE,
    }


def _split_stats(truths: list[RenderedImage]) -> dict:
    boxes = np.concatenate([t.boxes for t in truths]) if truths else np.zeros((0, 4), np.float32)
    short = np.minimum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
    invalid = sum(int(t.flags["invalid"].sum()) for t in truths)
    return {
        "images": len(truths),
        "faces": int(len(boxes)),
        "invalid_faces": invalid,
        "images_without_faces": sum(1 for t in truths if t.num_faces == 0),
        "face_size_min": int(short.min()) if len(short) else 0,
        "face_size_max": int(short.max()) if len(short) else 0,
        "occluded_faces": sum(int((t.flags["occlusion"] > 0).sum()) for t in truths),
        "blurred_faces": sum(int((t.flags["blur"] > 0).sum()) for t in truths),
        "distractors": sum(len(t.distractor_kinds) for t in truths),
    }


def write_wider_split(out: Path, seed: int, split: str, count: int, progress: bool,
                      faces: str = "demo") -> tuple[list[FaceRecord], dict]:
    annotation_file, images_root = wider_paths(out / "wider", split.split("_")[1])
    records, truths = [], []
    for index in _progress(range(count), f"synthetic {split}", progress):
        name, image, truth = wider_image(seed, split, index, faces)
        save_image(images_root / name, image, quality=JPEG_QUALITY)
        records.append(truth.record(images_root / name, name, landmarks=True))
        truths.append(truth)
    write_wider(records, annotation_file)
    return records, _split_stats(truths)


def write_celeba_set(out: Path, seed: int, count: int, progress: bool,
                     faces: int | None = None) -> tuple[list[FaceRecord], dict]:
    """Render ``count`` CelebA-style images; ``faces`` (default ``count``) list entries.

    More entries than images reuse the rendered images in turn: entry ``k >= count`` is a hard
    link ``<k>.jpg`` to image ``k % count`` (a copy where the file system has no links), with that
    image's box and landmarks, so the list has ``faces`` distinct names (CelebA's 202,599 faces
    cost a few thousand renders and no extra image disk)."""
    import os
    import shutil

    paths = synthetic_paths(out)
    records, truths = [], []
    for index in _progress(range(count), "synthetic celeba", progress):
        name, image, truth = celeba_image(seed, index)
        save_image(paths["celeba_images"] / name, image, quality=JPEG_QUALITY)
        records.append(truth.record(paths["celeba_images"] / name, name, landmarks=True))
        truths.append(truth)
    stats = _split_stats(truths)
    rendered = list(zip(records, truths))
    for index in _progress(range(count, faces or count), "celeba reuse", progress):
        first, truth = rendered[index % count]
        name = f"{index + 1:06d}.jpg"
        target = paths["celeba_images"] / name
        target.unlink(missing_ok=True)
        try:
            os.link(first.image_path, target)
        except OSError:
            shutil.copyfile(first.image_path, target)
        records.append(truth.record(target, name, landmarks=True))
    write_celeba(records, paths["celeba_landmarks"].parent)
    if len(records) > count:
        stats.update({"faces": len(records), "rendered_images": count, "list_entries": len(records)})
    return records, stats


def fddb_fold_of(index: int, count: int) -> int:
    """The fold (1-based) of FDDB image ``index``: contiguous runs, like FDDB's folds."""
    return 1 + index * FDDB_FOLDS // count


def write_fddb_set(out: Path, seed: int, count: int, progress: bool) -> tuple[list[FaceRecord], dict]:
    root = out / "fddb"
    folds: dict[int, list[FaceRecord]] = {f: [] for f in range(1, FDDB_FOLDS + 1)}
    truths = []
    for index in _progress(range(count), "synthetic fddb", progress):
        name, image, truth = fddb_image(seed, index)
        path = root / "originalPics" / f"{name}.jpg"
        save_image(path, image, quality=JPEG_QUALITY)
        folds[fddb_fold_of(index, count)].append(truth.record(path, name, landmarks=True, ellipses=True))
        truths.append(truth)
    for fold, records in folds.items():
        write_fddb_fold(records, *fold_paths(root, fold))
    stats = _split_stats(truths)
    stats["folds"] = FDDB_FOLDS
    return [r for records in folds.values() for r in records], stats


def _progress(items, description: str, enabled: bool):
    if not enabled:
        return items
    from tqdm import tqdm

    return tqdm(items, desc=description, unit="img", leave=False)
