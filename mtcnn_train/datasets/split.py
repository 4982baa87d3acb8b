"""The train/validation split of a detection set: whole images, spread over events.

Every stage that needs the split (sample generation, evaluation on held-out images) calls
:func:`split_train_val` on the full record list with ``data.val_fraction`` and ``data.val_seed``,
so they all agree on it.  An image is held out or not as a whole (never single faces), and the
held-out images are spread over the events (WIDER's ``<event>/`` folder): each event gives its
share, so a validation set never misses a scene type the training set has.
"""
from __future__ import annotations

import zlib
from typing import Sequence, TypeVar

import numpy as np

from mtcnn_train.datasets.records import FaceRecord

Record = TypeVar("Record", bound=FaceRecord)


def record_key(record: FaceRecord) -> str:
    """The image's name as the annotation file spells it (or its path when it has no name)."""
    return record.name or str(record.image_path)


def record_group(record: FaceRecord) -> str:
    """The event (first folder of the name, e.g. ``1--Handshaking``); ``''`` for flat names."""
    return key_group(record_key(record))


def key_group(key: str) -> str:
    """:func:`record_group` of a record whose :func:`record_key` is ``key``."""
    key = key.replace("\\", "/")
    return key.split("/", 1)[0] if "/" in key else ""


def _held_out_per_group(sizes: dict[str, int], fraction: float) -> dict[str, int]:
    """Split ``round(fraction * total)`` over the groups in proportion to their size.

    Largest-remainder rounding (ties broken by group name), so the total is exact and small
    events are not all rounded down to zero.
    """
    total = sum(sizes.values())
    wanted = int(round(fraction * total))
    exact = {group: fraction * size for group, size in sizes.items()}
    counts = {group: int(np.floor(value)) for group, value in exact.items()}
    left = wanted - sum(counts.values())
    by_remainder = sorted(sizes, key=lambda g: (-(exact[g] - counts[g]), g))
    for group in by_remainder[:max(0, left)]:
        counts[group] += 1
    return {group: min(count, sizes[group]) for group, count in counts.items()}


def split_train_val(records: Sequence[Record], fraction: float, seed: int) -> tuple[list[Record], list[Record]]:
    """Hold out about ``fraction`` of the images (whole images) for validation.

    Within each event the held-out images are a seeded random choice that depends only on the
    seed, the event's name and the names of its images (not on the order of the list or on the
    other events).  Both returned lists keep the input order.  The choice is made per image
    name, so records sharing a name (the readers refuse such lists, but a caller may join
    several) always land on the same side.
    """
    held_out = held_out_keys([record_key(r) for r in records], fraction, seed)
    train = [r for r in records if record_key(r) not in held_out]
    val = [r for r in records if record_key(r) in held_out]
    return train, val


def held_out_keys(keys: Sequence[str], fraction: float, seed: int) -> set[str]:
    """The names :func:`split_train_val` holds out, given every record's :func:`record_key` (for
    lists held as arrays, which have the names without building records)."""
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"validation fraction must lie in [0, 1), got {fraction}")
    groups: dict[str, dict[str, None]] = {}  # event -> its image names, an ordered set
    for key in keys:
        groups.setdefault(key_group(key), {})[key] = None
    counts = _held_out_per_group({g: len(names) for g, names in groups.items()}, fraction)
    held_out: set[str] = set()
    for group, names in groups.items():
        if counts[group] == 0:
            continue
        by_name = sorted(names)
        rng = np.random.default_rng(np.random.SeedSequence([seed, zlib.crc32(group.encode("utf-8"))]))
        held_out.update(by_name[i] for i in rng.permutation(len(by_name))[:counts[group]])
    return held_out
