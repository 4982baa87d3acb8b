"""The work folder ``DIR/.work/`` of a sample run: one finished unit per sub-folder.

A unit is cut (:mod:`.cutting` for P-Net crops and landmark crops, :mod:`.mining` for mined
R-Net / O-Net candidates) and published as ``.work/<unit name>/`` by one atomic directory rename,
so a killed run leaves only whole units; a rerun with the same plan (``plan.json`` holds its
fingerprint) skips them, and a changed plan starts the folder afresh.
"""
from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mtcnn_train.config import Config
from mtcnn_train.errors import UserError
from mtcnn_train.io import fault_point
from mtcnn_train.samples.cutting import process_landmark_unit, process_wider_unit
from mtcnn_train.samples.heap import return_freed_memory
from mtcnn_train.samples.mining import process_mining_unit
from mtcnn_train.samples.shards import ARRAY_DTYPES, shard_stem
from mtcnn_train.samples.units import WorkUnit

WORK_DIR = ".work"
PLAN_FILE = "plan.json"
UNIT_STATS = "stats.json"
#: Per-crop arrays a unit may hold besides the sample arrays; they stay in the work folder and
#: feed the manifest (``origin``: mined candidate or top-up crop, see samples/mining.py).
UNIT_EXTRA_ARRAYS = {"origin": np.uint8}


@dataclass(frozen=True)
class MiningJob:
    """What a worker needs to mine a unit of detection images with the earlier stages."""

    cfg: Config
    stage: str
    weights: str


def process_unit(unit: WorkUnit, sampling, size: int,
                 mining: MiningJob | None = None) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Cut a unit: mined candidates (``mining``) or P-Net crops for detection images, landmark crops otherwise."""
    if unit.kind == "wider":
        if mining is not None:
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
    del arrays
    return_freed_memory()  # the unit's arrays and pyramids are gone: give their pages back (heap.py)
    stats["unit"] = unit.name
    stats["items"] = len(unit.items)
    stats["process"] = os.getpid()
    return stats


def run_unit_task(task: tuple) -> dict[str, Any]:
    """:func:`run_unit` of one ``(unit, sampling, size, work_dir, mining)`` task (what the workers run)."""
    return run_unit(*task)


def prepare_work_dir(work: Path, fingerprint: str) -> None:
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


def finished_units(work: Path, units: list[WorkUnit]) -> set[str]:
    """Names of the units already published in ``work``."""
    return {unit.name for unit in units if (work / unit.name / UNIT_STATS).is_file()}


def unit_array(work: Path, unit: WorkUnit, key: str) -> np.ndarray:
    """One array of a finished unit, memory-mapped."""
    return np.load(work / unit.name / f"{shard_stem(0)}.{key}.npy", mmap_mode="r", allow_pickle=False)


def has_unit_array(work: Path, unit: WorkUnit, key: str) -> bool:
    return (work / unit.name / f"{shard_stem(0)}.{key}.npy").is_file()


def unit_stats(work: Path, unit: WorkUnit) -> dict[str, Any]:
    """The counters a finished unit recorded."""
    return json.loads((work / unit.name / UNIT_STATS).read_text())
