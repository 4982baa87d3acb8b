"""The unit of work of a sample run, and what every unit's cutter shares.

A run's images are cut into fixed units (:data:`WIDER_UNIT` detection images or
:data:`LANDMARK_UNIT` landmark faces): the grain of resuming and of parallel work.  Each image's
random generator is seeded from ``(sampling.seed, stream, image index)`` with
:class:`numpy.random.SeedSequence` (:func:`item_rng`), never from the worker or the order of work,
so the output is the same for any number of workers.  The plan fingerprint hashes everything that
decides a unit's content, so a finished unit is reused only by the same plan.

Both cutters -- the P-Net crops (:mod:`.cutting`) and hard-example mining (:mod:`.mining`) -- build
on what is here: the per-unit counters, image loading that counts (never raises on) bad images,
and the clipped, usable faces of a detection image.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from mtcnn_train.config import Config
from mtcnn_train.datasets.records import FaceRecord
from mtcnn_train.datasets.split import record_key
from mtcnn_train.errors import ImageError, UserError
from mtcnn_train.geometry import clip_boxes
from mtcnn_train.io import load_image
from mtcnn_train.samples.inputs import SampleInputs

#: Detection images per work unit (a unit is the grain of resuming and of parallel work).
WIDER_UNIT = 32
#: Landmark faces per work unit (small images; cut together in mosaics).
LANDMARK_UNIT = 1024
#: Prefixes of the names in ``manifest["images"]``, so every sample's source is unambiguous.
WIDER_PREFIX = "wider:"
LANDMARK_PREFIX = "landmarks:"
#: Seed-sequence tags of the random streams.
WIDER_STREAM, LANDMARK_STREAM = 0, 1

COUNTERS = ("images", "landmark_faces", "images_unreadable", "images_converted", "boxes_clipped",
            "boxes_outside", "faces_not_usable", "landmark_faces_unusable", "landmark_faces_without_crops", "crops",
            # hard-example mining (R-Net / O-Net sets): what the earlier stages found
            "faces_usable", "candidates", "covered_0.65", "covered_0.4", "mined_negatives_over_cap")


@dataclass
class WorkUnit:
    """A fixed group of images; ``items`` are ``(seed index, source index, record)`` (for landmark
    faces a :class:`~.inputs.UnitItems`, which builds the records as they are read)."""

    name: str
    kind: str  # "wider" | "landmarks"
    items: Sequence[tuple[int, int, FaceRecord]]


def plan_units(inputs: SampleInputs, num_shards: int = 1, shard_index: int = 0) -> tuple[list[WorkUnit], list[str]]:
    """The work units of one part and the part's ``manifest["images"]`` list (sources index it)."""
    if num_shards < 1 or not 0 <= shard_index < num_shards:
        raise UserError(f"--shard-index must lie in [0, {num_shards}), got {shard_index}")
    wider = inputs.wider[shard_index::num_shards]
    landmarks = inputs.landmarks[shard_index::num_shards]
    images = [WIDER_PREFIX + record_key(r) for _, r in wider] + [LANDMARK_PREFIX + key for key in landmarks.keys()]
    units = []
    for start in range(0, len(wider), WIDER_UNIT):
        items = [(seed_index, start + k, r) for k, (seed_index, r) in enumerate(wider[start:start + WIDER_UNIT])]
        units.append(WorkUnit(f"wider-{start // WIDER_UNIT:06d}", "wider", items))
    for start in range(0, len(landmarks), LANDMARK_UNIT):
        # A landmark unit holds its faces' rows, not records: CelebA's 202,599 faces as records
        # would cost about 450 MB for the whole run (docs/SCALING.md).
        items = landmarks.unit_items(slice(start, start + LANDMARK_UNIT), len(wider) + start)
        units.append(WorkUnit(f"landmarks-{start // LANDMARK_UNIT:06d}", "landmarks", items))
    return units, images


def plan_fingerprint(cfg: Config, units: list[WorkUnit], num_shards: int, shard_index: int,
                     stage: str = "pnet", weights_hash: str = "") -> str:
    """Hash of everything that decides the output (not the worker count): a finished unit is
    reused only when this matches.  Mined sets also hash the earlier stages' weights and the
    detection settings they ran with."""
    digest = hashlib.sha256()
    head = _settings(cfg, stage, weights_hash)
    head["parts"] = [num_shards, shard_index]
    if num_shards > 1:  # a part keeps every candidate; samples merge keeps the ratio
        head["selection"] = "at merge"
    digest.update(json.dumps(head, sort_keys=True).encode())
    for unit in units:
        digest.update(unit.name.encode())
        for seed_index, source_index, record in unit.items:
            digest.update(f"{seed_index}:{source_index}:{record.image_path}".encode())
            digest.update(np.ascontiguousarray(record.boxes, np.float32).tobytes())
            digest.update(np.ascontiguousarray(record.flags["invalid"], np.int32).tobytes())
            if unit.kind == "landmarks" and record.landmarks is not None:
                digest.update(np.ascontiguousarray(record.landmarks, np.float32).tobytes())
    return digest.hexdigest()


def _settings(cfg: Config, stage: str, weights_hash: str) -> dict[str, Any]:
    sampling = dataclasses.asdict(cfg.sampling)
    sampling.pop("workers")
    for option, default in (("mining_mirror", False), ("ratio_rnet", None), ("ratio_onet", None)):
        if sampling[option] == default:  # sets made before the option existed keep their fingerprint
            sampling.pop(option)
    mining = {"weights": weights_hash, "detection": dataclasses.asdict(cfg.detection)} if stage != "pnet" else {}
    return {"format": 1, "stage": stage, **mining, "sampling": sampling, "val_fraction": cfg.data.val_fraction,
            "val_seed": cfg.data.val_seed, "max_images": cfg.data.max_images,
            "wider_unit": WIDER_UNIT, "landmark_unit": LANDMARK_UNIT}


def settings_fingerprint(cfg: Config, stage: str = "pnet", weights_hash: str = "") -> str:
    """Hash of the settings (not the part, nor the images) that decide a run's candidates:
    ``samples merge`` joins only parts made with the same ones."""
    return hashlib.sha256(json.dumps(_settings(cfg, stage, weights_hash), sort_keys=True).encode()).hexdigest()


def new_stats() -> dict[str, Any]:
    """Zeroed counters of a unit (:data:`COUNTERS`) and its list of problem files."""
    stats: dict[str, Any] = {name: 0 for name in COUNTERS}
    stats["problems"] = []
    return stats


def sum_stats(all_stats: list[dict[str, Any]]) -> dict[str, Any]:
    """The counters and problems of several units added up."""
    total = new_stats()
    for stats in all_stats:
        for name in COUNTERS:
            total[name] += stats.get(name, 0)
        total["problems"].extend(stats.get("problems", []))
    return total


@dataclass
class LoadedImage:
    """An image as :func:`load_counted` read it: the pixels, or why not."""

    image: np.ndarray | None
    problem: str | None = None
    converted: bool = False


def load_counted(path: Path) -> LoadedImage:
    """``io.load_image``, noting (not raising) why an image is unusable and whether it was converted."""
    try:
        image = load_image(path)
    except ImageError as exc:
        return LoadedImage(None, str(exc))
    return LoadedImage(image, converted=_needs_conversion(path))


def count_loaded(loaded: LoadedImage, name: str, stats: dict[str, Any]) -> np.ndarray | None:
    """Add an image's outcome to the counts; returns its pixels (None: skipped)."""
    if loaded.image is None:
        stats["images_unreadable"] += 1
        stats["problems"].append({"image": name, "problem": loaded.problem})
    elif loaded.converted:
        stats["images_converted"] += 1
        stats["problems"].append({"image": name, "problem": "converted to 8-bit RGB"})
    return loaded.image


def load_ahead(paths: Sequence[Path]) -> Iterator[LoadedImage]:
    """The images of ``paths`` in order, decoded one step ahead in a background thread.

    JPEG decoding is about half the work per image and OpenCV releases the GIL while it decodes,
    so reading the next image while this one is cut keeps a second core busy at no start-up cost.
    """
    from concurrent.futures import ThreadPoolExecutor

    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="decode")
    try:
        yield from executor.map(load_counted, paths)
    finally:
        executor.shutdown(wait=True, cancel_futures=True)


def load_ahead_once(paths: Sequence[Path]) -> Iterator[LoadedImage]:
    """:func:`load_ahead`, decoding a run of equal paths once (the faces of one photo in a box
    set with landmarks follow each other): they share one array instead of a copy each."""
    firsts = [i == 0 or paths[i - 1] != path for i, path in enumerate(paths)]
    loaded = load_ahead([path for path, first in zip(paths, firsts) if first])
    current = None
    for first in firsts:
        if first:
            current = next(loaded)
        yield current


def _needs_conversion(path: Path) -> bool:
    """Whether the file is not plain 8-bit RGB (grayscale, RGBA, palette, CMYK, 16-bit): header only."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            return im.mode != "RGB"
    except Exception:  # load_image already decoded it; an odd header is not a reason to stop
        return False


def item_rng(seed: int, stream: int, index: int) -> np.random.Generator:
    """The random generator of one image (or landmark face): a function of the seed and its index only."""
    return np.random.default_rng(np.random.SeedSequence([seed, stream, index]))


def detection_faces(record: FaceRecord, width: int, height: int, min_face: float,
                     stats: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """All boxes of an image clipped to it (those wholly outside dropped), and which are usable."""
    boxes = np.asarray(record.boxes, np.float64).reshape(-1, 4)
    clipped = clip_boxes(boxes, width, height)
    sized_before = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    sized_after = (clipped[:, 2] > clipped[:, 0]) & (clipped[:, 3] > clipped[:, 1])
    outside = sized_before & ~sized_after
    changed = sized_after & np.any(clipped != boxes, axis=1)
    stats["boxes_outside"] += int(outside.sum())
    stats["boxes_clipped"] += int(changed.sum())
    keep = ~outside
    faces = clipped[keep]
    short_side = np.minimum(faces[:, 2] - faces[:, 0], faces[:, 3] - faces[:, 1])
    usable = (record.flags["invalid"][keep] == 0) & (short_side >= min_face)
    stats["faces_not_usable"] += int((~usable).sum())
    return faces, usable



def detection_images(unit: WorkUnit, min_face: float,
                     stats: dict[str, Any]) -> Iterator[tuple[int, int, np.ndarray, np.ndarray, np.ndarray]]:
    """The readable images of a unit of detection images, decoded one ahead and counted in ``stats``:
    ``(seed index, source index, pixels, faces, usable)`` with the faces of :func:`detection_faces`."""
    loaded_images = load_ahead([record.image_path for _, _, record in unit.items])
    for (seed_index, source_index, record), loaded in zip(unit.items, loaded_images):
        image = count_loaded(loaded, record_key(record), stats)
        if image is None:
            continue
        stats["images"] += 1
        height, width = image.shape[:2]
        faces, usable = detection_faces(record, width, height, min_face, stats)
        yield seed_index, source_index, image, faces, usable
