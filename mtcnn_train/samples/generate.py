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

import dataclasses
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from mtcnn_train.config import Config, save_config
from mtcnn_train.datasets.records import FaceRecord
from mtcnn_train.errors import UserError
from mtcnn_train.io import remove_stale_temp_files
from mtcnn_train.samples import sampling as smp
from mtcnn_train.samples.inputs import SampleInputs, load_inputs
from mtcnn_train.samples.labels import LABEL_NAMES
from mtcnn_train.samples.mining import composition, recall_summary, weights_fingerprint
from mtcnn_train.samples.pool import run_tasks, worker_count
from mtcnn_train.samples.shards import (ARRAY_DTYPES, CONTACT_SHEET, MANIFEST, concat_arrays, count_by_type, empty_arrays,
                                        write_sample_set)
from mtcnn_train.samples.units import WIDER_PREFIX, LANDMARK_PREFIX, WorkUnit, plan_fingerprint, plan_units, sum_stats
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
    return GenerateReport(out, manifest["counts"], manifest["available"], manifest["input_counts"], seconds,
                          crops_cut, len(done), len(units), process_ids=tuple(sorted(processes)),
                          mining=manifest.get("mining"))


def _part_total(total: int, num_shards: int, shard_index: int) -> int:
    """This part's share of ``sampling.total`` (parts differ by at most one sample)."""
    if total <= 0:
        return 0
    return total // num_shards + (1 if shard_index < total % num_shards else 0)


def _finish(cfg: Config, out: Path, work: Path, units: list[WorkUnit], images: list[str], inputs: SampleInputs,
            fingerprint: str, num_shards: int, shard_index: int, stage: str = "pnet",
            weights: str | None = None) -> dict[str, Any]:
    """Pool the units, keep the ratio, write config.yaml, the shards and the manifest (last)."""
    s = cfg.sampling
    labels_per_unit = [np.asarray(unit_array(work, unit, "labels")) for unit in units]
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
            parts.append({key: np.asarray(unit_array(work, unit, key)[local]) for key in ARRAY_DTYPES})
    arrays = concat_arrays(parts, INPUT_SIZE[stage]) if parts else empty_arrays(INPUT_SIZE[stage])

    stats = sum_stats([unit_stats(work, unit) for unit in units])
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
        origin = np.concatenate([np.asarray(unit_array(work, unit, "origin"))
                                 if has_unit_array(work, unit, "origin")
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
