"""``gen-samples --stage pnet``: orchestration of the P-Net sample set.

How a run goes (``DIR`` is ``--out``):

1. **Inputs.**  The WIDER-format box set (``data.wider_root``) is read and split into train and
   validation images (:func:`~mtcnn_train.datasets.split.split_train_val`, whole images); only the
   training images are sampled, then ``data.max_images`` keeps the first N of them.  The landmark
   list (``data.landmarks``) is read in its format.
2. **Work units.**  The images are cut into fixed units (:data:`WIDER_UNIT` detection images or
   :data:`LANDMARK_UNIT` landmark faces).  Each image's random generator is seeded from
   ``(sampling.seed, kind, image index)`` with :class:`numpy.random.SeedSequence`, never from the
   worker or the order of work, so the output is the same for any number of workers.
3. **Workers.**  Units run in ``sampling.workers`` processes: this one plus spawned workers
   (``spawn`` start method, safe with torch; ``0`` = by the amount of work, at most one per core),
   each decoding the next image in a background thread while it cuts the current one.  Each
   finished unit is written as a folder under ``DIR/.work/`` by one atomic rename; a rerun after
   an interruption skips finished units (a changed config or input restarts the work).
4. **The mix.**  Every unit's candidates are pooled and a seeded random subset keeps the
   configured ratio (``sampling.ratio``) and count (``sampling.total``; 0 = as many as the
   scarcest type allows).  Then ``config.yaml``, the shards and ``manifest.json`` (last) are
   written and ``.work/`` is removed.

Parts on several machines: ``num_shards=K, shard_index=i`` samples every K-th image (detection and
landmark lists alike, starting at i).  Image seeds stay global, so the parts' candidates together
are exactly the candidates of one whole run.  **Each part applies the ratio itself** to its own
candidates (with ``total / K`` samples when ``sampling.total`` is set), so the merged set
(``mtcnn-train samples merge`` or ``SampleSet.open([DIR1, DIR2, ...])``) keeps the ratio up to
rounding, though not the exact subset one whole run would pick.

Bad inputs never stop a run: unreadable images are counted and listed, grayscale / RGBA / 16-bit
images are converted (counted), boxes reaching past the image are clipped (counted) and boxes
wholly outside it dropped (counted); the counts go into the report and the manifest.
"""
from __future__ import annotations

import collections
import dataclasses
import hashlib
import json
import multiprocessing
import os
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from mtcnn_train.config import Config, save_config
from mtcnn_train.stages import INPUT_SIZE
from mtcnn_train.datasets.records import FaceRecord
from mtcnn_train.datasets.split import record_key, split_train_val
from mtcnn_train.errors import ImageError, UserError
from mtcnn_train.geometry import clip_boxes
from mtcnn_train.io import fault_point, load_image, remove_stale_temp_files
from mtcnn_train.samples import sampling as smp
from mtcnn_train.samples.shards import ARRAY_DTYPES, CONTACT_SHEET, MANIFEST, concat_arrays, count_by_type, empty_arrays, shard_stem, write_sample_set
from mtcnn_train.samples.labels import LABEL_LANDMARK, LABEL_NAMES

#: Detection images per work unit (a unit is the grain of resuming and of parallel work).
WIDER_UNIT = 32
#: Landmark faces per work unit (small images; cut together in mosaics).
LANDMARK_UNIT = 1024
WORK_DIR = ".work"
PLAN_FILE = "plan.json"
UNIT_STATS = "stats.json"
#: Prefixes of the names in ``manifest["images"]``, so every sample's source is unambiguous.
WIDER_PREFIX = "wider:"
LANDMARK_PREFIX = "landmarks:"
#: Seed-sequence tags of the random streams.
_WIDER_STREAM, _LANDMARK_STREAM = 0, 1
#: At most this many problem files are listed by name in the manifest (all are counted).
MAX_LISTED_PROBLEMS = 1000
LANDMARK_BOX_RULES = ("auto", "file", "derived")

COUNTERS = ("images", "landmark_faces", "images_unreadable", "images_converted", "boxes_clipped",
            "boxes_outside", "faces_not_usable", "landmark_faces_unusable", "landmark_faces_without_crops", "crops",
            # hard-example mining (R-Net / O-Net sets): what the earlier stages found
            "faces_usable", "candidates", "covered_0.65", "covered_0.4", "mined_negatives_over_cap")
#: Per-crop arrays a unit may hold besides the sample arrays; they stay in the work folder and
#: feed the manifest (``origin``: mined candidate or top-up crop, see samples/mining.py).
UNIT_EXTRA_ARRAYS = {"origin": np.uint8}


# --------------------------------------------------------------------------------------------
# Inputs


@dataclass
class SampleInputs:
    """What a run samples from.  Indices are positions in the full annotation / landmark lists."""

    wider: list[tuple[int, FaceRecord]] = field(default_factory=list)
    landmarks: list[tuple[int, FaceRecord]] = field(default_factory=list)
    train_names: list[str] = field(default_factory=list)
    val_names: list[str] = field(default_factory=list)
    #: Where each list came from, for the manifest.
    sources: dict[str, Any] = field(default_factory=dict)


def _landmark_format(path: Path, fmt: str) -> str:
    from mtcnn_train.datasets.landmarks import detect_landmark_format

    return detect_landmark_format(path) if fmt == "auto" else fmt


def derive_landmark_boxes(rule: str, fmt: str) -> bool:
    """Whether landmark faces get boxes from their points (``box_from_landmarks``).

    ``auto``: yes for MTFL (its "box" is the whole crop, about 2.5x a detection box) and aligned
    CelebA (no boxes); the file's boxes otherwise.
    """
    if rule not in LANDMARK_BOX_RULES:
        raise UserError(f"sampling.landmark_boxes must be one of {', '.join(LANDMARK_BOX_RULES)}, got {rule!r}")
    return rule == "derived" or (rule == "auto" and fmt in ("mtfl", "celeba-aligned"))


def read_landmark_list(cfg: Config) -> tuple[list[FaceRecord], dict[str, str]]:
    """The configured landmark list (``data.landmarks``), boxed as ``sampling.landmark_boxes``
    says, and where it came from."""
    from mtcnn_train.datasets.landmarks import read_landmarks

    path = cfg.resolve_path(cfg.data.landmarks)
    if not path.is_file():
        raise UserError(f"{path}: landmark list not found")
    fmt = _landmark_format(path, cfg.data.landmarks_format)
    derive = derive_landmark_boxes(cfg.sampling.landmark_boxes, fmt)
    records = read_landmarks(path, fmt=fmt, derive_boxes=derive)
    if not records:
        raise UserError(f"{path}: the landmark list holds no faces")
    return records, {"list": str(path), "format": fmt,
                     "boxes": "derived from the points" if derive else "from the file"}


def load_inputs(cfg: Config, wider_records: Sequence[FaceRecord] | None = None,
                landmark_records: Sequence[FaceRecord] | None = None) -> SampleInputs:
    """Read the configured box set and landmark list (or take the given records) and split them.

    ``wider_records`` / ``landmark_records`` let a caller (a notebook, a test) pass records it
    already holds; otherwise the box set (``data.wider_root`` or ``data.boxes``, any box format)
    and ``data.landmarks`` are read.  The box set's training faces that carry all five landmarks
    give landmark crops too, before those of the landmark list.
    """
    inputs = SampleInputs()
    data = cfg.data
    if wider_records is None:
        from mtcnn_train.datasets.formats import read_box_set

        box_set = read_box_set(cfg)
        if box_set is not None:
            wider_records, inputs.sources["wider"] = box_set
            if not wider_records:
                raise UserError(f"{inputs.sources['wider'].get('annotation')}: the annotation file lists no images")
    if wider_records is not None:
        records = list(wider_records)
        train, val = split_train_val(records, data.val_fraction, data.val_seed)
        train_ids = {id(r) for r in train}
        # The split is made on the whole list, so max_images never changes which images are held out.
        chosen = [(i, r) for i, r in enumerate(records) if id(r) in train_ids]
        if data.max_images:
            chosen = chosen[:data.max_images]
        inputs.wider = chosen
        inputs.train_names = [record_key(r) for _, r in chosen]
        inputs.val_names = [record_key(r) for r in val]
        inputs.sources.setdefault("wider", {})
        inputs.sources["wider"].update({"records": len(records), "train_images": len(train),
                                        "val_images": len(val), "sampled_images": len(chosen)})
        if landmark_records is None:
            # A box set with landmarks (COCO keypoints, YOLO-face) gives landmark crops of the
            # faces of the same training images, alongside any landmark list.
            from mtcnn_train.datasets.formats import landmark_faces

            own = landmark_faces([r for _, r in chosen])
            derive = derive_landmark_boxes(cfg.sampling.landmark_boxes, "boxes")
            if own:
                if derive:
                    from mtcnn_train.datasets.landmarks import box_from_landmarks

                    for record in own:
                        record.boxes = box_from_landmarks(record.landmarks).astype(np.float32)
                inputs.landmarks = list(enumerate(own))
                inputs.sources["landmarks"] = {"list": "the box set's faces with five landmarks", "format": "boxes",
                                               "boxes": "derived from the points" if derive else "from the file"}
    if landmark_records is None and data.landmarks:
        landmark_records, where = read_landmark_list(cfg)
        if inputs.landmarks:  # the box set's own landmark faces come first
            where["box_set_faces"] = len(inputs.landmarks)
        inputs.sources["landmarks"] = where
    if landmark_records is not None:
        # data.landmarks_val_fraction of the list's faces are held out of every sample set (the
        # landmark validation split); indices stay positions in the full list, so seeds do not move.
        records = list(landmark_records)
        _, val = split_train_val(records, data.landmarks_val_fraction, data.val_seed)
        held_out = {id(r) for r in val}
        own = [r for _, r in inputs.landmarks]
        inputs.landmarks = [(i, r) for i, r in enumerate(own + records) if id(r) not in held_out]
        inputs.sources.setdefault("landmarks", {})["val_faces"] = len(val)
    if inputs.landmarks:
        inputs.sources.setdefault("landmarks", {})["faces"] = len(inputs.landmarks)
    if not inputs.wider and not inputs.landmarks:
        raise UserError("nothing to sample: set data.wider_root (or --wider-root) or data.boxes (or --boxes), "
                        "and/or data.landmarks (or --landmarks)")
    return inputs


# --------------------------------------------------------------------------------------------
# Work units


@dataclass
class WorkUnit:
    """A fixed group of images; ``items`` are ``(seed index, source index, record)``."""

    name: str
    kind: str  # "wider" | "landmarks"
    items: list[tuple[int, int, FaceRecord]]


def plan_units(inputs: SampleInputs, num_shards: int = 1, shard_index: int = 0) -> tuple[list[WorkUnit], list[str]]:
    """The work units of one part and the part's ``manifest["images"]`` list (sources index it)."""
    if num_shards < 1 or not 0 <= shard_index < num_shards:
        raise UserError(f"--shard-index must lie in [0, {num_shards}), got {shard_index}")
    wider = inputs.wider[shard_index::num_shards]
    landmarks = inputs.landmarks[shard_index::num_shards]
    images = [WIDER_PREFIX + record_key(r) for _, r in wider] + [LANDMARK_PREFIX + record_key(r) for _, r in landmarks]
    units = []
    for start in range(0, len(wider), WIDER_UNIT):
        items = [(seed_index, start + k, r) for k, (seed_index, r) in enumerate(wider[start:start + WIDER_UNIT])]
        units.append(WorkUnit(f"wider-{start // WIDER_UNIT:06d}", "wider", items))
    for start in range(0, len(landmarks), LANDMARK_UNIT):
        chunk = landmarks[start:start + LANDMARK_UNIT]
        items = [(seed_index, len(wider) + start + k, r) for k, (seed_index, r) in enumerate(chunk)]
        units.append(WorkUnit(f"landmarks-{start // LANDMARK_UNIT:06d}", "landmarks", items))
    return units, images


def plan_fingerprint(cfg: Config, units: list[WorkUnit], num_shards: int, shard_index: int,
                     stage: str = "pnet", weights_hash: str = "") -> str:
    """Hash of everything that decides the output (not the worker count): a finished unit is
    reused only when this matches.  Mined sets also hash the earlier stages' weights and the
    detection settings they ran with."""
    sampling = dataclasses.asdict(cfg.sampling)
    sampling.pop("workers")
    digest = hashlib.sha256()
    mining = {"weights": weights_hash, "detection": dataclasses.asdict(cfg.detection)} if stage != "pnet" else {}
    head = {"format": 1, "stage": stage, **mining, "sampling": sampling, "val_fraction": cfg.data.val_fraction,
            "val_seed": cfg.data.val_seed, "max_images": cfg.data.max_images, "parts": [num_shards, shard_index],
            "wider_unit": WIDER_UNIT, "landmark_unit": LANDMARK_UNIT}
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


def _new_stats() -> dict[str, Any]:
    stats: dict[str, Any] = {name: 0 for name in COUNTERS}
    stats["problems"] = []
    return stats


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


def _load_ahead_once(paths: Sequence[Path]) -> Iterator[LoadedImage]:
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


def _item_rng(seed: int, stream: int, index: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, stream, index]))


def _detection_faces(record: FaceRecord, width: int, height: int, min_face: float,
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


def process_wider_unit(unit: WorkUnit, sampling, size: int) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Cut every kept crop of a unit of detection images (one decode per image, one cut call)."""
    stats = _new_stats()
    bands = smp.Bands.from_config(sampling)
    parts = []
    loaded_images = load_ahead([record.image_path for _, _, record in unit.items])
    for (seed_index, source_index, record), loaded in zip(unit.items, loaded_images):
        image = count_loaded(loaded, record_key(record), stats)
        if image is None:
            continue
        stats["images"] += 1
        height, width = image.shape[:2]
        faces, usable = _detection_faces(record, width, height, sampling.min_face_size, stats)
        plan = smp.plan_detection_crops(_item_rng(sampling.seed, _WIDER_STREAM, seed_index), width, height,
                                        faces, usable, sampling, bands)
        n = len(plan)
        stats["crops"] += n
        parts.append({
            "images": smp.crop_resize_fast(image, plan.crops, size),
            "labels": plan.labels,
            "boxes": plan.boxes,
            "landmarks": np.full((n, 10), np.nan, np.float32),
            "sources": np.full(n, source_index, np.int32),
            "crops": plan.crops.astype(np.float32),
        })
    return concat_arrays(parts, size), stats


def process_landmark_unit(unit: WorkUnit, sampling, size: int) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Landmark crops of a unit of landmark faces; the small images are cut together."""
    stats = _new_stats()
    bands = smp.Bands.from_config(sampling)
    usable = []
    for seed_index, source_index, record in unit.items:
        name = record_key(record)
        if record.landmarks is None or record.num_faces != 1:
            stats["landmark_faces_unusable"] += 1
            stats["problems"].append({"image": name, "problem": "no single face with landmarks"})
            continue
        face, points = record.boxes[0].astype(np.float64), record.landmarks[0].astype(np.float64)
        if not (np.all(np.isfinite(face)) and np.all(np.isfinite(points)) and face[2] > face[0] and face[3] > face[1]):
            stats["landmark_faces_unusable"] += 1
            stats["problems"].append({"image": name, "problem": "empty box or missing landmarks"})
            continue
        usable.append((seed_index, source_index, record, face, points))
    images, plans, sources = [], [], []
    loaded_images = _load_ahead_once([item[2].image_path for item in usable])
    for (seed_index, source_index, record, face, points), loaded in zip(usable, loaded_images):
        name = record_key(record)
        image = count_loaded(loaded, name, stats)
        if image is None:
            continue
        height, width = image.shape[:2]
        if face[2] <= 0 or face[3] <= 0 or face[0] >= width or face[1] >= height:
            stats["boxes_outside"] += 1
            stats["problems"].append({"image": name, "problem": "face box outside the image"})
            continue
        stats["landmark_faces"] += 1
        plan = smp.plan_landmark_crops(_item_rng(sampling.seed, _LANDMARK_STREAM, seed_index), face, points,
                                       sampling.landmark_crops_per_face, bands, sampling.landmark_max_rotation)
        if len(plan) == 0:
            stats["landmark_faces_without_crops"] += 1
        images.append(image)
        plans.append(plan)
        sources.append(source_index)
    upright = sampling.landmark_max_rotation <= 0
    cut = (smp.crop_resize_many(images, [p.crops for p in plans], size) if upright else
           [smp.crop_rotated(image, p.crops, p.angles, size) for image, p in zip(images, plans)])
    parts = []
    for crops, plan, source_index in zip(cut, plans, sources):
        crops = crops.copy()
        crops[plan.mirrored] = crops[plan.mirrored][:, :, ::-1]
        n = len(plan)
        stats["crops"] += n
        parts.append({
            "images": crops,
            "labels": np.full(n, LABEL_LANDMARK, np.int8),
            "boxes": plan.boxes,
            "landmarks": plan.landmarks,
            "sources": np.full(n, source_index, np.int32),
            "crops": plan.crops.astype(np.float32),
        })
    return concat_arrays(parts, size), stats


@dataclass(frozen=True)
class MiningJob:
    """What a worker needs to mine a unit of detection images with the earlier stages."""

    cfg: Config
    stage: str
    weights: str


def process_unit(unit: WorkUnit, sampling, size: int,
                 mining: MiningJob | None = None) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    if unit.kind == "wider":
        if mining is not None:
            from mtcnn_train.samples.mining import process_mining_unit

            return process_mining_unit(unit, mining.cfg, mining.stage, mining.weights)
        return process_wider_unit(unit, sampling, size)
    return process_landmark_unit(unit, sampling, size)


def run_unit(unit: WorkUnit, sampling, size: int, work_dir: str, mining: MiningJob | None = None) -> dict[str, Any]:
    """Process a unit and publish it as ``work_dir/<name>/`` with one atomic directory rename.

    The files are written into a temporary folder first (no per-file fsync: they are scratch,
    and a folder that never got renamed is discarded on the next run).
    """
    arrays, stats = process_unit(unit, sampling, size, mining)
    work = Path(work_dir)
    tmp = work / f".tmp-{unit.name}-{os.getpid()}"
    try:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        for key, dtype in {**ARRAY_DTYPES, **UNIT_EXTRA_ARRAYS}.items():
            if key in arrays:
                np.save(tmp / f"{shard_stem(0)}.{key}.npy", np.ascontiguousarray(arrays[key], dtype=dtype),
                        allow_pickle=False)
        (tmp / UNIT_STATS).write_text(json.dumps(stats))
        final = work / unit.name
        shutil.rmtree(final, ignore_errors=True)
        fault_point()
        os.replace(tmp, final)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise UserError(f"{work}: cannot write work unit {unit.name} ({exc.strerror or exc}); "
                        "free some space and run the same command again to resume") from None
    stats["unit"] = unit.name
    stats["items"] = len(unit.items)
    stats["process"] = os.getpid()
    return stats


class WorkerDiedError(UserError):
    """A worker process of the pool vanished mid-unit (SIGKILL, out-of-memory killer)."""


def _run_unit_task(task: tuple) -> dict[str, Any]:
    return run_unit(*task)


@dataclass
class WorkerPool:
    """Spawned worker processes and the queue on which each says it has finished starting."""

    pool: Any
    ready: Any
    size: int

    def close(self) -> None:
        self.pool.terminate()
        self.pool.join()


#: With ``sampling.workers: 0`` one process per this many pending detection images (landmark faces
#: count a twentieth), up to one per core: starting a worker costs about 2 CPU seconds (it imports
#: numpy, OpenCV and torch), which only pays on larger runs.
IMAGES_PER_AUTO_WORKER = 250


#: Whether this process works on units beside its workers (tests switch it off to make sure that
#: units really run in other processes).
MAIN_PROCESS_TAKES_UNITS = True


def worker_count(workers: int, pending: list[WorkUnit]) -> int:
    """Processes to use: ``workers`` as configured (never more than there are units), or for 0 one
    per :data:`IMAGES_PER_AUTO_WORKER` pending images, at most one per CPU core."""
    if workers <= 0:
        load = sum(len(u.items) / (20 if u.kind == "landmarks" else 1) for u in pending)
        workers = min(os.cpu_count() or 1, 1 + int(load // IMAGES_PER_AUTO_WORKER))
    return max(1, min(workers, len(pending)))


def start_pool(helpers: int) -> WorkerPool | None:
    """``helpers`` spawned worker processes besides this one (None for none)."""
    if helpers <= 0:
        return None
    context = multiprocessing.get_context("spawn")
    ready = context.SimpleQueue()
    return WorkerPool(context.Pool(helpers, initializer=_init_worker, initargs=(ready,)), ready, helpers)


def run_tasks(tasks: list[tuple], workers: WorkerPool | None) -> Iterator[dict[str, Any]]:
    """Run work units in this process and in the pool's workers (None: in this process only).

    This process works from the start (it has everything imported already).  A worker gets its
    first unit only once it reports that it has started -- never is a unit left waiting on a
    worker still starting while this process is idle -- and its next one as soon as it finishes
    (from the pool's result thread).  The order of completion does not matter: every unit writes
    its own folder.  Yields each finished unit's stats, in this process.
    """
    if workers is None or len(tasks) <= 1:
        for task in tasks:
            yield _run_unit_task(task)
        return
    queue = collections.deque(tasks)
    lock = threading.Condition()
    finished: list[dict[str, Any]] = []
    errors: list[BaseException] = []
    in_pool = [0]
    started = [0]

    def take() -> tuple | None:
        with lock:
            return queue.popleft() if queue and not errors else None

    def feed() -> None:
        task = take()
        if task is None:
            return
        with lock:
            in_pool[0] += 1
        workers.pool.apply_async(_run_unit_task, (task,), callback=done, error_callback=failed)

    def done(stats: dict[str, Any]) -> None:
        with lock:
            finished.append(stats)
            in_pool[0] -= 1
            lock.notify_all()
        feed()

    def failed(exc: BaseException) -> None:
        with lock:
            errors.append(exc)
            in_pool[0] -= 1
            lock.notify_all()

    def welcome_started_workers() -> None:
        while not workers.ready.empty():
            pid = workers.ready.get()
            if started[0] < workers.size:
                started[0] += 1
                feed()
                continue
            # The pool only starts a worker beyond its size to replace one that died (killed, or
            # out of memory): the unit that worker held will never report back, so waiting for
            # it would hang.  Stop; the finished units are on disk and a rerun resumes from them.
            with lock:
                errors.append(WorkerDiedError(f"a sample worker process died (killed, or out of memory?) and "
                                              f"was replaced by process {pid}; the finished units are kept: "
                                              "rerun the same command to resume"))
                in_pool[0] = 0

    def drain() -> list[dict[str, Any]]:
        with lock:
            out, finished[:] = list(finished), []
        return out

    while True:
        welcome_started_workers()
        task = take() if MAIN_PROCESS_TAKES_UNITS else None
        if task is not None:
            yield _run_unit_task(task)
            yield from drain()
            continue
        with lock:
            if (not queue or errors) and in_pool[0] == 0:
                break
            lock.wait(timeout=0.1)
        yield from drain()
    yield from drain()
    if errors:
        raise errors[0]


def _init_worker(ready) -> None:
    # Each worker is one process per core: keep libraries from spawning threads of their own.
    import cv2
    import torch

    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    ready.put(os.getpid())


# --------------------------------------------------------------------------------------------
# The run


@dataclass
class GenerateReport:
    out_dir: Path
    counts: dict[str, int]
    available: dict[str, int]
    stats: dict[str, Any]
    seconds: float
    #: Crops cut in this run (units reused from an interrupted run are not counted).
    crops_cut: int
    units_done_before: int
    units_total: int
    already_complete: bool = False
    #: Process ids that cut units in this run.
    process_ids: tuple[int, ...] = ()
    #: Mined sets: the earlier stages' recall and candidates per image (manifest["mining"]).
    mining: dict[str, Any] | None = None

    @property
    def crops_per_second(self) -> float:
        return self.crops_cut / self.seconds if self.seconds > 0 else 0.0

    def summary(self) -> str:
        if self.already_complete:
            counts = ", ".join(f"{k} {v}" for k, v in self.counts.items())
            return f"gen-samples: {self.out_dir} is already complete ({counts}); nothing to do"
        counts = ", ".join(f"{k} {v}" for k, v in self.counts.items())
        s = self.stats
        resumed = f"; {self.units_done_before}/{self.units_total} work units reused" if self.units_done_before else ""
        return (f"gen-samples: {sum(self.counts.values())} samples ({counts}) from {s['images']} images and "
                f"{s['landmark_faces']} landmark faces; skipped {s['images_unreadable']} unreadable images, "
                f"converted {s['images_converted']}, clipped {s['boxes_clipped']} boxes, dropped {s['boxes_outside']} "
                f"outside the image; {self.crops_cut} crops cut in {self.seconds:.1f} s "
                f"({self.crops_per_second:.0f} crops/s){resumed}" + self.mining_summary())

    def mining_summary(self) -> str:
        if not self.mining:
            return ""
        m = self.mining
        text = (f"\n{m['earlier_stages']} recall on {m['faces_usable']} training faces: "
                f"{m['recall_at_0.65']:.3f} at IoU >= 0.65, {m['recall_at_0.4']:.3f} at IoU >= 0.4; "
                f"{m['candidates_per_image']:.1f} candidates per image")
        if "composition" in m:
            shares = []
            for name, parts in m["composition"].items():
                total = parts["detections"] + parts["top_up"]
                shares.append(f"{name} {parts['detections'] / total:.0%}" if total else f"{name} -")
            text += (f"\nfrom detections: {', '.join(shares)}"
                     f"{' (the rest: mining_base_crops top-up)' if m.get('base_crops') else ''}; "
                     f"{m.get('negatives_over_cap', 0)} negatives over the per-image cap of "
                     f"{m.get('negatives_per_image_cap')} left out")
        return text


def _sum_stats(all_stats: list[dict[str, Any]]) -> dict[str, Any]:
    total = _new_stats()
    for stats in all_stats:
        for name in COUNTERS:
            total[name] += stats.get(name, 0)
        total["problems"].extend(stats.get("problems", []))
    return total


def _prepare_work_dir(work: Path, fingerprint: str) -> None:
    """Keep ``.work/`` when it belongs to this plan (resume), else start it afresh."""
    plan_file = work / PLAN_FILE
    if work.is_dir():
        try:
            same = json.loads(plan_file.read_text()).get("fingerprint") == fingerprint
        except (OSError, ValueError):
            same = False
        if not same:
            shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    for stale in work.glob(".tmp-*"):
        shutil.rmtree(stale, ignore_errors=True) if stale.is_dir() else stale.unlink(missing_ok=True)
    if not plan_file.is_file():
        plan_file.write_text(json.dumps({"fingerprint": fingerprint}))


def _read_finished_manifest(out: Path) -> dict[str, Any] | None:
    try:
        return json.loads((out / MANIFEST).read_text())
    except (OSError, ValueError):
        return None


def generate_pnet_samples(cfg: Config, out_dir: str | Path, *, num_shards: int = 1, shard_index: int = 0,
                          force: bool = False, progress: bool = True,
                          wider_records: Sequence[FaceRecord] | None = None,
                          landmark_records: Sequence[FaceRecord] | None = None) -> GenerateReport:
    """Make (or finish) the P-Net sample set in ``out_dir``; see the module docstring."""
    return generate_samples(cfg, out_dir, "pnet", num_shards=num_shards, shard_index=shard_index, force=force,
                            progress=progress, wider_records=wider_records, landmark_records=landmark_records)


def generate_samples(cfg: Config, out_dir: str | Path, stage: str = "pnet", weights: str | Path | None = None, *,
                     num_shards: int = 1, shard_index: int = 0, force: bool = False, progress: bool = True,
                     wider_records: Sequence[FaceRecord] | None = None,
                     landmark_records: Sequence[FaceRecord] | None = None) -> GenerateReport:
    """Make (or finish) the sample set of ``stage`` in ``out_dir``.

    ``pnet``: IoU-banded crops around the faces.  ``rnet`` / ``onet``: hard-example mining with the
    earlier stages loaded from ``weights`` (a run folder), see :mod:`mtcnn_train.samples.mining`.
    Landmark crops, work units, resume, ratio and manifest are the same for every stage.
    """
    from tqdm import tqdm

    start = time.perf_counter()
    out = Path(out_dir)
    size = INPUT_SIZE[stage]
    mining = None
    weights_hash = ""
    if stage != "pnet":
        from mtcnn_train.samples.mining import weights_fingerprint

        if weights is None:
            raise UserError(f"gen-samples --stage {stage} mines with the earlier stages: pass --weights RUN_DIR")
        weights_hash = weights_fingerprint(weights, stage)
        mining = MiningJob(cfg, stage, str(Path(weights).resolve()))
    pool = None
    try:
        inputs = load_inputs(cfg, wider_records, landmark_records)
        units, images = plan_units(inputs, num_shards, shard_index)
        fingerprint = plan_fingerprint(cfg, units, num_shards, shard_index, stage, weights_hash)
        work = out / WORK_DIR

        finished = _read_finished_manifest(out)
        if finished is not None and not force:
            if finished.get("plan_fingerprint") != fingerprint:
                raise UserError(f"{out}: holds a finished sample set made with other settings or data; "
                                "pass --force to replace it, or choose another --out")
            shutil.rmtree(work, ignore_errors=True)
            return GenerateReport(out, finished["counts"], finished.get("available", {}),
                                  finished.get("input_counts", {}), 0.0, 0, len(units), len(units),
                                  already_complete=True, mining=finished.get("mining"))

        out.mkdir(parents=True, exist_ok=True)
        # Temp files of a killed run were never renamed into place: nothing trusts them.
        remove_stale_temp_files(out)
        _prepare_work_dir(work, fingerprint)
        done = {unit.name for unit in units if (work / unit.name / UNIT_STATS).is_file()}
        pending = [unit for unit in units if unit.name not in done]
        pool = start_pool(worker_count(cfg.sampling.workers, pending) - 1)
        crops_cut = 0
        processes = set()
        with tqdm(total=sum(len(u.items) for u in units), initial=sum(len(u.items) for u in units if u.name in done),
                  unit="img", desc=f"gen-samples {stage}", disable=not progress, dynamic_ncols=True) as bar:
            for stats in run_tasks([(unit, cfg.sampling, size, str(work), mining) for unit in pending], pool):
                crops_cut += stats["crops"]
                processes.add(stats["process"])
                bar.update(stats["items"])
    finally:
        if pool is not None:
            pool.close()

    manifest = _finish(cfg, out, work, units, images, inputs, fingerprint, num_shards, shard_index, stage,
                       str(weights) if weights is not None else None)
    seconds = time.perf_counter() - start
    return GenerateReport(out, manifest["counts"], manifest["available"], manifest["input_counts"], seconds,
                          crops_cut, len(done), len(units), process_ids=tuple(sorted(processes)),
                          mining=manifest.get("mining"))


def _part_total(total: int, num_shards: int, shard_index: int) -> int:
    """This part's share of ``sampling.total`` (parts differ by at most one sample)."""
    if total <= 0:
        return 0
    return total // num_shards + (1 if shard_index < total % num_shards else 0)


def _unit_array(work: Path, unit: WorkUnit, key: str) -> np.ndarray:
    return np.load(work / unit.name / f"{shard_stem(0)}.{key}.npy", mmap_mode="r", allow_pickle=False)


def _finish(cfg: Config, out: Path, work: Path, units: list[WorkUnit], images: list[str], inputs: SampleInputs,
            fingerprint: str, num_shards: int, shard_index: int, stage: str = "pnet",
            weights: str | None = None) -> dict[str, Any]:
    """Pool the units, keep the ratio, write config.yaml, the shards and the manifest (last)."""
    s = cfg.sampling
    labels_per_unit = [np.asarray(_unit_array(work, unit, "labels")) for unit in units]
    labels = np.concatenate(labels_per_unit) if labels_per_unit else np.zeros(0, np.int8)
    available = count_by_type(labels)
    ratio = dataclasses.asdict(s.ratio)
    # A type whose input was not given (no landmark list, or landmarks only) leaves the mix rather
    # than emptying it: the others keep their ratio among themselves.
    wider_count = sum(1 for name in images if name.startswith(WIDER_PREFIX))
    absent = (["landmark"] if wider_count == len(images) else []) + (
        ["negative", "positive", "part"] if wider_count == 0 else [])
    ratio_used = {name: (0.0 if name in absent else share) for name, share in ratio.items()}
    if sum(ratio_used.values()) <= 0:
        raise UserError(f"sampling.ratio gives no share to the sample types the inputs can make ({', '.join(absent)} "
                        "have no input)")
    total = {"pnet": s.total, "rnet": s.total_rnet or s.total, "onet": s.total_onet or s.total}[stage]
    targets = smp.target_counts(available, ratio_used, _part_total(total, num_shards, shard_index))
    chosen = smp.select_by_ratio(labels, targets, s.seed)

    bounds = np.cumsum([0] + [len(x) for x in labels_per_unit])
    parts = []
    for k, unit in enumerate(units):
        local = chosen[(chosen >= bounds[k]) & (chosen < bounds[k + 1])] - bounds[k]
        if len(local):
            parts.append({key: np.asarray(_unit_array(work, unit, key)[local]) for key in ARRAY_DTYPES})
    arrays = concat_arrays(parts, INPUT_SIZE[stage]) if parts else empty_arrays(INPUT_SIZE[stage])

    stats = _sum_stats([json.loads((work / unit.name / UNIT_STATS).read_text()) for unit in units])
    problems = stats.pop("problems")
    if not len(chosen):  # an empty set would only fail later, in training
        first = f"; first problem: {problems[0]['image']}: {problems[0]['problem']}" if problems else ""
        raise UserError(f"{out}: no samples could be cut from the {len(images)} input image(s){first}")
    manifest = {
        "stage": stage,
        "seed": s.seed,
        "plan_fingerprint": fingerprint,
        "images": images,
        "image_sources": {
            "wider": {"prefix": WIDER_PREFIX, "first": 0, "count": wider_count, **inputs.sources.get("wider", {})},
            "landmarks": {"prefix": LANDMARK_PREFIX, "first": wider_count, "count": len(images) - wider_count,
                          **inputs.sources.get("landmarks", {})},
        },
        "split": {"val_fraction": cfg.data.val_fraction, "val_seed": cfg.data.val_seed,
                  "train": inputs.train_names, "val": inputs.val_names},
        "parts": {"num_shards": num_shards, "shard_index": shard_index},
        "ratio": ratio,
        "ratio_used": ratio_used,
        "total": s.total,
        "available": available,
        "targets": targets,
        "input_counts": stats,
        "problems": problems[:MAX_LISTED_PROBLEMS],
        "labels": {str(label): name for label, name in LABEL_NAMES.items()},
        "config": cfg.to_dict(),
    }
    if stage != "pnet":
        from mtcnn_train.samples.mining import composition, recall_summary

        origin = np.concatenate([np.asarray(_unit_array(work, unit, "origin"))
                                 if (work / unit.name / f"{shard_stem(0)}.origin.npy").is_file()
                                 else np.zeros(len(unit_labels), np.uint8)
                                 for unit, unit_labels in zip(units, labels_per_unit)]) if units else np.zeros(0, np.uint8)
        manifest["mining"] = {"weights": weights, **recall_summary(stats, stage),
                              "base_crops": s.mining_base_crops,
                              "negatives_per_image_cap": s.mining_negatives_per_image,
                              "negatives_over_cap": stats.get("mined_negatives_over_cap", 0),
                              "thresholds": list(s.mining_thresholds) or list(cfg.detection.thresholds[:2]),
                              "composition": composition(labels[chosen], origin[chosen])}
    # An older set in the folder stops being a set before any of its shards is replaced.
    (out / MANIFEST).unlink(missing_ok=True)
    (out / CONTACT_SHEET).unlink(missing_ok=True)  # drawn from the older set
    save_config(cfg, out / "config.yaml")
    written = write_sample_set(out, arrays, manifest, shard_size=s.shard_size)
    keep = {entry["stem"] for entry in written["shards"]}
    for stale in out.glob("shard-*.npy"):
        if stale.name.split(".", 1)[0] not in keep:
            stale.unlink()
    shutil.rmtree(work, ignore_errors=True)
    return written
