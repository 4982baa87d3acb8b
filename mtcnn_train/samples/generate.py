"""``gen-samples``: the sample set of one stage, from the inputs to the manifest.

This module runs the steps; each step's details live in its own module.  How a run goes
(``DIR`` is ``--out``):

1. **Inputs** (:mod:`.inputs`).  The box set (``data.wider_root`` / ``data.boxes``) is read and
   split into train and validation images (whole images); only the training images are sampled,
   then ``data.max_images`` keeps the first N of them.  The landmark list (``data.landmarks``) is
   read in its format.
2. **Work units** (:mod:`.units`).  The images are cut into fixed units (``WIDER_UNIT`` detection
   images or ``LANDMARK_UNIT`` landmark faces).  Each image's random generator is seeded from
   ``(sampling.seed, kind, image index)``, never from the worker or the order of work, so the
   output is the same for any number of workers.  The plan fingerprint says when finished units
   may be reused.
3. **Workers** (:mod:`.pool`).  Units run in ``sampling.workers`` processes: this one plus spawned
   workers (``spawn`` start method, safe with torch; ``0`` = by the amount of work, at most one per
   core), each decoding the next image in a background thread while it cuts the current one.  Each
   unit is cut (:mod:`.cutting`, or :mod:`.mining` for R-Net / O-Net) and written as a folder under
   ``DIR/.work/`` by one atomic rename (:mod:`.workdir`); a rerun after an interruption skips
   finished units (a changed config or input restarts the work).
4. **The mix** (here).  Every unit's candidates are pooled and a seeded random subset keeps the
   configured ratio (``sampling.ratio``) and count (``sampling.total``; 0 = as many as the
   scarcest type allows).  Then ``config.yaml``, the shards and ``manifest.json`` (last) are
   written and ``.work/`` is removed.  The shards are gathered from the memory-mapped units one
   at a time (:class:`Candidates`), so only the labels and indices of the whole set are ever in
   memory, never its crops.

Parts on several machines: ``num_shards=K, shard_index=i`` samples every K-th image (detection and
landmark lists alike, starting at i).  Image seeds stay global, so the parts' candidates together
are exactly the candidates of one whole run.  A part **keeps every candidate** (in its cut order,
with the mined ones' origin) and marks its manifest ``"selection": "pending"``; training refuses
it.  ``mtcnn-train samples merge OUT PART...`` of all K parts (:func:`merge_parts`) maps each
part's images back to their place in the whole run's image list, restores the whole run's order
of the candidates (sorted by that place, stably) and applies the same ratio selection (step 4),
so the merged set holds the same crops in the same order as one run -- for any K, for P-Net sets
and mined sets alike (mining caps negatives per image, so nothing depends on the part).  A part
stores all its candidates, so the parts' disk is that of the candidates, not of the kept set.

Bad inputs never stop a run: unreadable images are counted and listed, grayscale / RGBA / 16-bit
images are converted (counted), boxes reaching past the image are clipped (counted) and boxes
wholly outside it dropped (counted); the counts go into the report and the manifest.
"""
from __future__ import annotations

import dataclasses
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from mtcnn_train.config import Config, config_from_dict, save_config, stage_ratio
from mtcnn_train.datasets.records import FaceRecord
from mtcnn_train.errors import UserError
from mtcnn_train.io import remove_stale_temp_files
from mtcnn_train.samples import sampling as smp
from mtcnn_train.samples.heap import return_freed_memory
from mtcnn_train.samples.inputs import SampleInputs, load_inputs
from mtcnn_train.samples.labels import LABEL_NAMES
from mtcnn_train.samples.mining import composition, recall_summary, weights_fingerprint
from mtcnn_train.samples.pool import run_tasks, worker_count
from mtcnn_train.samples.shards import (ARRAY_DTYPES, CONTACT_SHEET, MANIFEST, PENDING, SampleSet, count_by_type,
                                        empty_arrays, merge_sample_sets, write_sample_chunks)
from mtcnn_train.samples.units import (WIDER_PREFIX, LANDMARK_PREFIX, WorkUnit, plan_fingerprint, plan_units,
                                       settings_fingerprint, sum_stats)
from mtcnn_train.samples.workdir import (WORK_DIR, MiningJob, finished_units, has_unit_array, prepare_work_dir,
                                         run_unit_task, unit_array, unit_stats)
from mtcnn_train.stages import INPUT_SIZE, check_stage

#: At most this many problem files are listed by name in the manifest (all are counted).
MAX_LISTED_PROBLEMS = 1000


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
    #: ``(shard_index, num_shards)`` of a part: it holds every candidate; samples merge keeps the ratio.
    part: tuple[int, int] | None = None

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
        what = (f"part {self.part[0] + 1} of {self.part[1]}: {sum(self.counts.values())} candidates ({counts}) kept "
                "for samples merge" if self.part else f"{sum(self.counts.values())} samples ({counts})")
        return (f"gen-samples: {what} from {s['images']} images and "
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


def _read_finished_manifest(out: Path) -> dict[str, Any] | None:
    try:
        return json.loads((out / MANIFEST).read_text())
    except (OSError, ValueError):
        return None


def generate_samples(cfg: Config, out_dir: str | Path, stage: str = "pnet", weights: str | Path | None = None, *,
                     num_shards: int = 1, shard_index: int = 0, force: bool = False, progress: bool = True,
                     wider_records: Sequence[FaceRecord] | None = None,
                     landmark_records: Sequence[FaceRecord] | None = None,
                     this_process_works: bool = True) -> GenerateReport:
    """Make (or finish) the sample set of ``stage`` in ``out_dir``.

    ``pnet``: IoU-banded crops around the faces.  ``rnet`` / ``onet``: hard-example mining with the
    earlier stages loaded from ``weights`` (a run folder), see :mod:`mtcnn_train.samples.mining`.
    Landmark crops, work units, resume, ratio and manifest are the same for every stage.
    ``wider_records`` / ``landmark_records``: records a caller already holds, instead of reading
    the configured files.  ``this_process_works=False`` leaves every unit to the spawned workers
    (:func:`mtcnn_train.samples.pool.run_tasks`).
    """
    from tqdm import tqdm

    start = time.perf_counter()
    out = Path(out_dir)
    size = INPUT_SIZE[check_stage(stage)]
    mining = None
    weights_hash = ""
    if stage != "pnet":
        if weights is None:
            raise UserError(f"gen-samples --stage {stage} mines with the earlier stages: pass --weights RUN_DIR")
        weights_hash = weights_fingerprint(weights, stage)
        mining = MiningJob(cfg, stage, str(Path(weights).resolve()))
    inputs = load_inputs(cfg, wider_records, landmark_records)
    units, images = plan_units(inputs, num_shards, shard_index)
    fingerprint = plan_fingerprint(cfg, units, num_shards, shard_index, stage, weights_hash)
    # Reading CelebA's 202,599 lines leaves about 50 MB of freed text and records in the heap.
    return_freed_memory()
    work = out / WORK_DIR

    finished = _read_finished_manifest(out)
    if finished is not None and not force:
        if finished.get("plan_fingerprint") != fingerprint:
            raise UserError(f"{out}: holds a finished sample set made with other settings or data; "
                            "pass --force to replace it, or choose another --out")
        shutil.rmtree(work, ignore_errors=True)
        return GenerateReport(out, finished["counts"], finished.get("available", finished["counts"]),
                              finished.get("input_counts", {}), 0.0, 0, len(units), len(units),
                              already_complete=True, mining=finished.get("mining"),
                              part=(shard_index, num_shards) if num_shards > 1 else None)

    out.mkdir(parents=True, exist_ok=True)
    # Temp files of a killed run were never renamed into place: nothing trusts them.
    remove_stale_temp_files(out)
    prepare_work_dir(work, fingerprint)
    done = finished_units(work, units)
    pending = [unit for unit in units if unit.name not in done]
    tasks = [(unit, cfg.sampling, size, str(work), mining) for unit in pending]
    crops_cut = 0
    processes = set()
    with tqdm(total=sum(len(u.items) for u in units), initial=sum(len(u.items) for u in units if u.name in done),
              unit="img", desc=f"gen-samples {stage}", disable=not progress, dynamic_ncols=True) as bar:
        for stats in run_tasks(run_unit_task, tasks, worker_count(cfg.sampling.workers, pending) - 1,
                               this_process_works=this_process_works):
            crops_cut += stats["crops"]
            processes.add(stats["process"])
            bar.update(stats["items"])

    manifest = _finish(cfg, out, work, units, images, inputs, fingerprint, num_shards, shard_index, stage,
                       str(weights) if weights is not None else None)
    seconds = time.perf_counter() - start
    return GenerateReport(out, manifest["counts"], manifest.get("available", manifest["counts"]),
                          manifest["input_counts"], seconds, crops_cut, len(done), len(units),
                          process_ids=tuple(sorted(processes)), mining=manifest.get("mining"),
                          part=(shard_index, num_shards) if num_shards > 1 else None)


class Candidates:
    """Every candidate crop of a run (or of merged parts) in the order one whole run pools them.

    ``segments`` are readers of one array each (a finished unit, or a part's shard): ``read(key)``
    gives that array, memory-mapped (``sources`` already indexing the run's image list);
    ``order`` lists, per candidate in run order, its row in the segments laid end to end (None:
    the segments are already in run order).  Only index-sized columns (labels, origins) are
    ever read whole; crops are gathered a shard at a time (:meth:`rows`).
    """

    def __init__(self, segments: list[Any], lengths: list[int], order: np.ndarray | None = None) -> None:
        self.segments = segments
        self.bounds = np.cumsum([0] + list(lengths))
        self.order = order

    @classmethod
    def of_units(cls, work: Path, units: list[WorkUnit], labels: list[np.ndarray]) -> "Candidates":
        """The candidates of a run's finished units (a unit without ``origin``, a landmark unit of
        a mined set, reads as all zeros)."""
        def reader(unit: WorkUnit, count: int) -> Any:
            return lambda key: (unit_array(work, unit, key) if key != "origin" or has_unit_array(work, unit, key)
                                else np.zeros(count, np.uint8))

        return cls([reader(unit, len(x)) for unit, x in zip(units, labels)], [len(x) for x in labels])

    def column(self, key: str, dtype: Any, shape: tuple[int, ...] = ()) -> np.ndarray:
        """One index-sized array of every candidate, in run order."""
        pooled = np.concatenate([np.asarray(read(key)) for read in self.segments]) if self.segments else \
            np.zeros((0, *shape), dtype)
        return pooled if self.order is None else pooled[self.order]

    def rows(self, indices: np.ndarray, key: str, size: int) -> np.ndarray:
        """Candidates ``indices`` (run order, ascending) of array ``key``."""
        template = empty_arrays(size)[key]
        pooled = np.asarray(indices if self.order is None else self.order[indices], np.int64)
        out = np.empty((len(pooled), *template.shape[1:]), template.dtype)
        segment = np.searchsorted(self.bounds, pooled, side="right") - 1
        for k in np.unique(segment):
            mask = segment == k
            out[mask] = self.segments[k](key)[pooled[mask] - self.bounds[k]]
        return out


def _ratio_used(ratio: dict[str, float], wider_count: int, image_count: int) -> dict[str, float]:
    """The ratio among the types the inputs can make: a type whose input was not given (no
    landmark list, or landmarks only) leaves the mix rather than emptying it."""
    absent = (["landmark"] if wider_count == image_count else []) + (
        ["negative", "positive", "part"] if wider_count == 0 else [])
    ratio_used = {name: (0.0 if name in absent else share) for name, share in ratio.items()}
    if sum(ratio_used.values()) <= 0:
        raise UserError(f"sampling.ratio gives no share to the sample types the inputs can make ({', '.join(absent)} "
                        "have no input)")
    return ratio_used


def _image_sources(sources: dict[str, Any], wider_count: int, image_count: int) -> dict[str, Any]:
    return {"wider": {"prefix": WIDER_PREFIX, "first": 0, "count": wider_count, **sources.get("wider", {})},
            "landmarks": {"prefix": LANDMARK_PREFIX, "first": wider_count, "count": image_count - wider_count,
                          **sources.get("landmarks", {})}}


def _finish(cfg: Config, out: Path, work: Path, units: list[WorkUnit], images: list[str], inputs: SampleInputs,
            fingerprint: str, num_shards: int, shard_index: int, stage: str = "pnet",
            weights: str | None = None) -> dict[str, Any]:
    """Pool the units; a whole run keeps the ratio and writes the set, a part (``num_shards >
    1``) keeps every candidate for ``samples merge`` (:func:`merge_parts`)."""
    labels_per_unit = [np.asarray(unit_array(work, unit, "labels")) for unit in units]
    candidates = Candidates.of_units(work, units, labels_per_unit)
    stats = sum_stats([unit_stats(work, unit) for unit in units])
    wider_count = sum(1 for name in images if name.startswith(WIDER_PREFIX))
    head = {
        "stage": stage,
        "seed": cfg.sampling.seed,
        "plan_fingerprint": fingerprint,
        "images": images,
        "image_sources": _image_sources(inputs.sources, wider_count, len(images)),
        "split": {"val_fraction": cfg.data.val_fraction, "val_seed": cfg.data.val_seed,
                  "train": inputs.train_names, "val": inputs.val_names},
        "parts": {"num_shards": num_shards, "shard_index": shard_index},
    }
    if num_shards > 1:
        head["parts"].update({"wider_images": len(inputs.wider), "landmark_faces": len(inputs.landmarks),
                              "settings": settings_fingerprint(cfg, stage, fingerprint_of_weights(stage, weights))})
        return _write_part(cfg, out, work, candidates, stats, head, stage, weights)
    return _select_and_write(cfg, out, candidates, stats, head, stage, weights, work)


def fingerprint_of_weights(stage: str, weights: str | None) -> str:
    return weights_fingerprint(weights, stage) if stage != "pnet" and weights is not None else ""


def _write_part(cfg: Config, out: Path, work: Path, candidates: Candidates, stats: dict[str, Any],
                head: dict[str, Any], stage: str, weights: str | None) -> dict[str, Any]:
    """A part of a ``--num-shards`` run: every candidate (with its origin when mined), in run
    order, and a manifest marking the selection as pending (``samples merge`` makes it)."""
    size = INPUT_SIZE[stage]
    labels = candidates.column("labels", np.int8)
    extra = {"origin": np.uint8} if stage != "pnet" else {}
    problems = stats.pop("problems")
    manifest = {**head, "selection": PENDING, "input_counts": stats, "problems": problems,
                "labels": {str(label): name for label, name in LABEL_NAMES.items()}, "config": cfg.to_dict(),
                **({"weights": weights} if weights is not None else {})}

    origin = candidates.column("origin", np.uint8) if extra else None

    def chunk(start: int, stop: int) -> dict[str, np.ndarray]:
        indices = np.arange(start, stop)
        arrays = {key: candidates.rows(indices, key, size) for key in ARRAY_DTYPES}
        if origin is not None:
            arrays["origin"] = origin[start:stop]
        return arrays

    return _write_folder(cfg, out, work, labels, chunk, manifest, extra)


def _select_and_write(cfg: Config, out: Path, candidates: Candidates, stats: dict[str, Any], head: dict[str, Any],
                      stage: str, weights: str | None, work: Path | None = None) -> dict[str, Any]:
    """Keep the ratio over the pooled candidates (one whole run, or merged parts: the same
    ``target_counts`` and seeded ``select_by_ratio`` over the same run order) and write the set."""
    s = cfg.sampling
    size = INPUT_SIZE[stage]
    images = head["images"]
    labels = candidates.column("labels", np.int8)
    available = count_by_type(labels)
    ratio = dataclasses.asdict(stage_ratio(s, stage))
    ratio_used = _ratio_used(ratio, head["image_sources"]["wider"]["count"], len(images))
    total = {"pnet": s.total, "rnet": s.total_rnet or s.total, "onet": s.total_onet or s.total}[stage]
    targets = smp.target_counts(available, ratio_used, total)
    chosen = smp.select_by_ratio(labels, targets, s.seed)

    problems = stats.pop("problems")
    if not len(chosen):  # an empty set would only fail later, in training
        first = f"; first problem: {problems[0]['image']}: {problems[0]['problem']}" if problems else ""
        if sum(available.values()):  # crops were cut, but the ratio needs a type none of them has
            needed = [name for name, share in ratio_used.items() if share > 0 and not available.get(name)]
            cut = ", ".join(f"{count} {name}" for name, count in available.items() if count)
            key = "sampling.ratio" + ("" if stage == "pnet" else "_" + stage)
            raise UserError(f"{out}: the {len(images)} input image(s) gave {cut} crops but no {' or '.join(needed)} "
                            f"crop, which {key} asks for (give images with such faces, or set their share in "
                            f"{key} to 0){first}")
        raise UserError(f"{out}: no samples could be cut from the {len(images)} input image(s){first}")
    manifest = {
        **head,
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
        origin = candidates.column("origin", np.uint8)
        manifest["mining"] = {"weights": weights, **recall_summary(stats, stage),
                              "base_crops": s.mining_base_crops,
                              "negatives_per_image_cap": s.mining_negatives_per_image,
                              "negatives_over_cap": stats.get("mined_negatives_over_cap", 0),
                              "thresholds": list(s.mining_thresholds) or list(cfg.detection.thresholds[:2]),
                              "composition": composition(labels[chosen], origin[chosen])}

    def chunk(start: int, stop: int) -> dict[str, np.ndarray]:
        return {key: candidates.rows(chosen[start:stop], key, size) for key in ARRAY_DTYPES}

    return _write_folder(cfg, out, work, labels[chosen], chunk, manifest)


def _write_folder(cfg: Config, out: Path, work: Path | None, labels: np.ndarray, chunk: Any,
                  manifest: dict[str, Any], extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """config.yaml, the shards (one at a time) and the manifest (last) into ``out``."""
    # An older set in the folder stops being a set before any of its shards is replaced.
    (out / MANIFEST).unlink(missing_ok=True)
    (out / CONTACT_SHEET).unlink(missing_ok=True)  # drawn from the older set
    save_config(cfg, out / "config.yaml")
    written = write_sample_chunks(out, labels, INPUT_SIZE[manifest["stage"]], chunk, manifest,
                                  shard_size=cfg.sampling.shard_size, extra=extra)
    keep = {entry["stem"] for entry in written["shards"]}
    for stale in out.glob("shard-*.npy"):
        if stale.name.split(".", 1)[0] not in keep:
            stale.unlink()
    if work is not None:
        shutil.rmtree(work, ignore_errors=True)
    return written


def merge_parts(out: Path, parts: SampleSet, shard_size: int) -> dict[str, Any]:
    """``samples merge`` of the K parts of a ``gen-samples --num-shards K`` run: the set one whole run makes.

    Part ``i`` holds every candidate of images ``i, i + K, ...`` (detection images, then landmark
    faces), each image cut with its own seed.  Mapping every part's images back to their place
    in the whole run's list and sorting the candidates by it (stably; an image's candidates all
    come from one part, in their cut order) restores the order one run pools them in, and the
    same ``target_counts`` / seeded ``select_by_ratio`` then pick the same crops.
    """
    manifests = parts.manifests
    first = manifests[0]
    k = first["parts"].get("num_shards")
    indices = sorted(m["parts"].get("shard_index", -1) for m in manifests)
    if indices != list(range(k)) or any(m["parts"].get("num_shards") != k for m in manifests):
        raise UserError(f"samples merge: needs the {k} parts of one gen-samples --num-shards {k} run, each once; "
                        f"got part(s) {', '.join(str(i + 1) for i in indices)}")
    for directory, m in zip(parts.directories, manifests):
        same = all(m["parts"].get(key) == first["parts"].get(key) for key in ("settings", "wider_images", "landmark_faces"))
        if not same or m.get("stage") != first.get("stage") or m.get("split") != first.get("split"):
            raise UserError(f"samples merge: {directory} was made with other settings or inputs than "
                            f"{parts.directories[0]}; cut all parts with the same config, data and weights")
    wider_total, landmark_total = first["parts"]["wider_images"], first["parts"]["landmark_faces"]
    names: list[str | None] = [None] * (wider_total + landmark_total)
    to_run: list[np.ndarray] = []  # per part: its image index -> the whole run's image index
    for m in manifests:
        i, wider_count = m["parts"]["shard_index"], m["image_sources"]["wider"]["count"]
        local = np.arange(len(m["images"]))
        mapping = np.where(local < wider_count, i + local * k, wider_total + i + (local - wider_count) * k)
        if len(mapping) and mapping.max() >= len(names):
            raise UserError(f"samples merge: part {i + 1} lists more images than its run has")
        for index, name in zip(mapping, m["images"]):
            names[index] = name
        to_run.append(mapping)
    if any(name is None for name in names):
        raise UserError("samples merge: the parts do not cover every image of their run")

    segments, lengths, keys = [], [], []
    for number, (directory, m) in enumerate(zip(parts.directories, manifests)):
        for shard, entry in zip(parts._shards_of(number), m["shards"]):
            sources = to_run[number][np.asarray(shard["sources"], np.int64)].astype(np.int32)
            origin_path = directory / f"{entry['stem']}.origin.npy"

            def read(key: str, shard=shard, sources=sources, origin_path=origin_path, count=entry["count"]):
                if key == "sources":
                    return sources
                if key == "origin":
                    return (np.load(origin_path, mmap_mode="r", allow_pickle=False) if origin_path.is_file()
                            else np.zeros(count, np.uint8))
                return shard[key]

            segments.append(read)
            lengths.append(entry["count"])
            keys.append(sources)
    order = np.argsort(np.concatenate(keys), kind="stable") if keys else np.zeros(0, np.int64)
    candidates = Candidates(segments, lengths, order)

    cfg = config_from_dict(first["config"], f"{parts.directories[0] / MANIFEST}: config")
    cfg = dataclasses.replace(cfg, sampling=dataclasses.replace(cfg.sampling, shard_size=shard_size))
    stats = sum_stats([{**m.get("input_counts", {}), "problems": m.get("problems", [])} for m in manifests])
    own = ("prefix", "first", "count")
    sources = {kind: {key: v for key, v in first["image_sources"].get(kind, {}).items() if key not in own}
               for kind in ("wider", "landmarks")}
    head = {
        "stage": first["stage"],
        "seed": first["seed"],
        "plan_fingerprint": first["parts"]["settings"],
        "images": names,
        "image_sources": _image_sources(sources, wider_total, len(names)),
        "split": first["split"],
        "parts": {"num_shards": k, "merged_from": [str(d) for d in parts.directories]},
    }
    return _select_and_write(cfg, out, candidates, stats, head, first["stage"], first.get("weights"))


def merge_samples(out_dir: str | Path, directories: Sequence[str | Path], shard_size: int = 100_000,
                  force: bool = False) -> dict[str, Any]:
    """``samples merge``: the parts of one ``--num-shards`` run (:func:`merge_parts`), or finished
    sets joined as they are (:func:`mtcnn_train.samples.shards.merge_sample_sets`)."""
    return merge_sample_sets(out_dir, directories, shard_size, force, merge_parts=merge_parts)
