"""Sample sets on disk: a few memory-mappable shard files plus a manifest.

A sample directory looks like::

    DIR/manifest.json                 written last; a set without it is incomplete
    DIR/config.yaml                   the resolved config that made the set
    DIR/shard-00000.images.npy        (N, S, S, 3) uint8 RGB crops, S = 12, 24 or 48
    DIR/shard-00000.labels.npy        (N,) int8: see the LABEL_* constants
    DIR/shard-00000.boxes.npy         (N, 4) float32 box offsets / crop size (NaN where unused)
    DIR/shard-00000.landmarks.npy     (N, 10) float32 x1, y1, ..., x5, y5 as crop fractions (NaN where unused)
    DIR/shard-00000.sources.npy       (N,) int32 index of the source image in manifest["images"]
    DIR/shard-00000.crops.npy         (N, 4) float32 crop box in source-image pixels

Every file is written atomically (temp file, then rename), and ``manifest.json`` last, so a reader
never trusts a half-written set.  ``.npy`` keeps the arrays memory-mappable with plain NumPy.
"""
from __future__ import annotations

import json
import math
import os
import re
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

from mtcnn_train.errors import UserError, first_line
from mtcnn_train.io import atomic_path, atomic_write_json
from mtcnn_train.samples.labels import LABEL_NAMES, LABEL_OF


ARRAY_DTYPES: dict[str, Any] = {
    "images": np.uint8,
    "labels": np.int8,
    "boxes": np.float32,
    "landmarks": np.float32,
    "sources": np.int32,
    "crops": np.float32,
}
MANIFEST = "manifest.json"
FORMAT_VERSION = 1
#: ``manifest["selection"]`` of a ``gen-samples --num-shards K`` part: it holds every candidate
#: of its images; ``samples merge`` of all K parts keeps the ratio, as one whole run would.
PENDING = "pending"


def is_pending(manifest: dict[str, Any]) -> bool:
    return manifest.get("selection") == PENDING


def shard_stem(index: int) -> str:
    return f"shard-{index:05d}"


def empty_arrays(size: int) -> dict[str, np.ndarray]:
    """Zero-length arrays of the right dtypes and shapes for crops of ``size`` pixels."""
    return {
        "images": np.zeros((0, size, size, 3), np.uint8),
        "labels": np.zeros(0, np.int8),
        "boxes": np.zeros((0, 4), np.float32),
        "landmarks": np.zeros((0, 10), np.float32),
        "sources": np.zeros(0, np.int32),
        "crops": np.zeros((0, 4), np.float32),
    }


def concat_arrays(parts: Iterable[dict[str, np.ndarray]], size: int) -> dict[str, np.ndarray]:
    parts = list(parts)
    if not parts:
        return empty_arrays(size)
    return {key: np.concatenate([p[key] for p in parts]).astype(dtype, copy=False) for key, dtype in ARRAY_DTYPES.items()}


def check_arrays(arrays: dict[str, np.ndarray]) -> int:
    """Check keys, dtypes and lengths; returns the sample count."""
    missing = set(ARRAY_DTYPES) - set(arrays)
    if missing:
        raise ValueError(f"sample arrays lack {sorted(missing)}")
    n = len(arrays["labels"])
    for key in ARRAY_DTYPES:
        if len(arrays[key]) != n:
            raise ValueError(f"sample array {key!r} has {len(arrays[key])} rows, labels have {n}")
    return n


#: Samples gathered and written at a time within a shard.  A shard of 100,000 O-Net crops is
#: 691 MB; written in chunks of this many rows it never sits in memory whole (57 MB at 48 px).
WRITE_ROWS = 8192


def write_shard(directory: str | Path, index: int, count: int, fetch: Callable[[int, int], dict[str, np.ndarray]],
                extra: dict[str, Any] | None = None, rows_per_write: int | None = None) -> dict[str, Any]:
    """Write one shard of ``count`` samples atomically, fetching rows ``start:stop`` of it with
    ``fetch`` at most ``rows_per_write`` at a time (each array is streamed into its ``.npy`` after
    the header); returns its manifest entry.  A write error is a one-line UserError naming the file:
    the bytes go through Python's file object, whose errors carry the errno (numpy's own fast path
    reports a full disk as "691200 requested and 663424 written", without saying why)."""
    directory = Path(directory)
    stem = shard_stem(index)
    dtypes = {**ARRAY_DTYPES, **(extra or {})}
    paths = {key: directory / f"{stem}.{key}.npy" for key in dtypes}
    path = directory / stem  # the file being written, for the error message
    try:
        with ExitStack() as stack:
            files = {}
            for key, path in paths.items():
                files[key] = stack.enter_context(open(stack.enter_context(atomic_path(path)), "wb"))
            step = rows_per_write or WRITE_ROWS
            for start in range(0, max(count, 1), step):
                stop = min(start + step, count)
                arrays = fetch(start, stop)
                if check_arrays(arrays) != stop - start:
                    raise ValueError(f"fetched {len(arrays['labels'])} samples for rows {start}:{stop}")
                for key, dtype in dtypes.items():
                    path = paths[key]
                    array = np.ascontiguousarray(arrays[key], dtype=dtype)
                    if start == 0:  # the header of the whole shard, then every chunk's bytes after it
                        np.lib.format.write_array_header_1_0(files[key], {
                            "descr": np.lib.format.dtype_to_descr(array.dtype), "fortran_order": False,
                            "shape": (count, *array.shape[1:])})
                    files[key].write(memoryview(array).cast("B"))
    except OSError as exc:
        raise UserError(f"{path}: cannot write ({exc.strerror or exc})") from None
    return {"stem": stem, "count": count}


def count_by_type(labels: np.ndarray) -> dict[str, int]:
    labels = np.asarray(labels)
    return {name: int((labels == label).sum()) for label, name in LABEL_NAMES.items()}


def write_sample_set(directory: str | Path, arrays: dict[str, np.ndarray], manifest: dict[str, Any],
                     shard_size: int = 100_000) -> dict[str, Any]:
    """Write a whole sample set: shards of ``shard_size`` samples, then the manifest last."""
    n = check_arrays(arrays)
    return write_sample_chunks(directory, arrays["labels"], int(arrays["images"].shape[1]),
                               lambda start, stop: {key: value[start:stop] for key, value in arrays.items()},
                               manifest, shard_size)


def write_sample_chunks(directory: str | Path, labels: np.ndarray, crop_size: int,
                        chunk: Callable[[int, int], dict[str, np.ndarray]], manifest: dict[str, Any],
                        shard_size: int = 100_000, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """:func:`write_sample_set` with the samples fetched a few thousand at a time: ``chunk(start,
    stop)`` gives the arrays of samples ``start:stop`` (and the ``extra`` ones, key -> dtype), so
    at most :data:`WRITE_ROWS` crops are in memory at once; ``labels`` are all the samples' labels."""
    directory = Path(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"{directory}: cannot create the sample folder ({exc.strerror or exc})") from None
    n = len(labels)
    # An older set in the folder stops being a set before any of its shards is replaced: if this
    # write fails half-way (a full disk), no manifest vouches for the mix of old and new shards.
    (directory / MANIFEST).unlink(missing_ok=True)
    shards = []
    for index, first in enumerate(range(0, max(n, 1), shard_size)):
        shards.append(write_shard(directory, index, min(first + shard_size, n) - first,
                                  lambda start, stop, first=first: chunk(first + start, first + stop), extra))
    manifest = dict(manifest)
    manifest.update({
        "format_version": FORMAT_VERSION,
        "crop_size": crop_size,
        "num_samples": n,
        "counts": count_by_type(labels),
        "shards": shards,
    })
    atomic_write_json(directory / MANIFEST, manifest)
    return manifest


# --------------------------------------------------------------------------------------------
# Checks on a set read back from disk: a manifest or shard that was edited, damaged or swapped
# must give a one-line UserError, not a traceback (or a pickle load) deep inside training.

#: Shard names as :func:`shard_stem` writes them: a plain file name, never a path.
_STEM = re.compile(r"shard-\d{5,}")


def _is_count(value: Any) -> bool:
    """A whole number >= 0 from JSON (``True`` is an int in Python but not a count)."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def check_manifest(manifest: Any, manifest_path: Path) -> None:
    """The fields :class:`SampleSet` relies on are there and have the right types."""
    def refuse(problem: str) -> None:
        raise UserError(f"{manifest_path}: tampered or damaged manifest: {problem}")

    if not isinstance(manifest, dict):
        refuse(f"expected a JSON object, got {type(manifest).__name__}")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise UserError(f"{manifest_path}: unsupported sample format {manifest.get('format_version')!r}")
    crop_size = manifest.get("crop_size")
    if not _is_count(crop_size) or crop_size == 0:
        refuse(f"crop_size must be a positive whole number, got {crop_size!r}")
    shards = manifest.get("shards")
    if not isinstance(shards, list):
        refuse("'shards' must be a list")
    stems = set()
    for number, entry in enumerate(shards):
        if not isinstance(entry, dict) or not _is_count(entry.get("count")) or not isinstance(entry.get("stem"), str):
            refuse(f"shard entry {number} must hold a 'stem' name and a whole-number 'count'")
        if not _STEM.fullmatch(entry["stem"]):
            refuse(f"shard entry {number} names {entry['stem'][:60]!r}, not a shard-NNNNN file of this folder")
        if entry["stem"] in stems:
            refuse(f"shard {entry['stem']} is listed twice")
        stems.add(entry["stem"])
    total = sum(entry["count"] for entry in shards)
    if manifest.get("num_samples") != total:
        refuse(f"num_samples is {manifest.get('num_samples')!r} but the shards hold {total}")
    counts = manifest.get("counts")
    if not isinstance(counts, dict) or not all(name in LABEL_OF and _is_count(v) for name, v in counts.items()):
        refuse(f"'counts' must map sample types ({', '.join(LABEL_OF)}) to whole numbers")
    images = manifest.get("images", [])
    if not isinstance(images, list):
        refuse("'images' must be a list")


def _expected_shape(key: str, count: int, crop_size: int) -> tuple[int, ...]:
    rest = {"images": (crop_size, crop_size, 3), "boxes": (4,), "landmarks": (10,), "crops": (4,)}
    return (count, *rest.get(key, ()))


def check_array_header(path: Path, key: str, count: int, crop_size: int) -> None:
    """Read only the ``.npy`` header and compare dtype and shape with what the manifest implies."""
    expected_dtype, expected_shape = np.dtype(ARRAY_DTYPES[key]), _expected_shape(key, count, crop_size)
    try:
        with open(path, "rb") as fh:
            version = np.lib.format.read_magic(fh)
            if version == (1, 0):
                shape, _, dtype = np.lib.format.read_array_header_1_0(fh)
            elif version == (2, 0):
                shape, _, dtype = np.lib.format.read_array_header_2_0(fh)
            else:
                raise ValueError(f"unsupported .npy version {version}")
            data_start, file_size = fh.tell(), os.fstat(fh.fileno()).st_size
    except FileNotFoundError:
        raise UserError(f"{path}: shard file missing (the manifest lists it)") from None
    except (OSError, ValueError, EOFError, SyntaxError) as exc:
        raise UserError(f"{path}: unreadable shard ({first_line(exc)})") from None
    if dtype != expected_dtype:
        raise UserError(f"{path}: {key} array has dtype {dtype}, expected {expected_dtype}")
    if len(shape) >= 1 and shape[0] != count and len(shape) == len(expected_shape):
        raise UserError(f"{path}: holds {shape[0]} rows, the manifest says {count}")
    if tuple(shape) != expected_shape:
        raise UserError(f"{path}: {key} array has shape {tuple(shape)}, expected {expected_shape}")
    # The data must fill the file exactly: a truncated file (or a header announcing an absurd
    # shape that the manifest repeats) is refused before anything is allocated or mapped.
    data_bytes = math.prod(expected_shape) * expected_dtype.itemsize
    if file_size - data_start != data_bytes:
        raise UserError(f"{path}: holds {file_size - data_start} bytes of data, its header needs {data_bytes} "
                        "(truncated or damaged file)")


def check_folder_contents(shards: list[dict[str, np.ndarray]], manifest: dict[str, Any], manifest_path: Path) -> None:
    """The labels agree with the manifest's counts and every source names one of its images."""
    labels = [np.asarray(shard["labels"]) for shard in shards]
    found = count_by_type(np.concatenate(labels) if labels else np.zeros(0, np.int8))
    stated = {name: manifest["counts"].get(name, 0) for name in found}
    if found != stated:
        raise UserError(f"{manifest_path}: the manifest counts {stated} but the shards hold {found}")
    images = manifest.get("images")
    if images:
        for shard, entry in zip(shards, manifest["shards"]):
            sources = np.asarray(shard["sources"])
            if len(sources) and (sources.min() < 0 or sources.max() >= len(images)):
                raise UserError(f"{manifest_path}: shard {entry['stem']} has sources outside the "
                                f"{len(images)} listed images")


@dataclass
class SampleSet:
    """One or several sample directories read as one set.

    ``shards`` holds one dict of memory-mapped arrays per shard; :meth:`arrays` concatenates
    them (into memory) for training.  Sample indices run across the folders in the order given.
    """

    directories: list[Path]
    manifests: list[dict[str, Any]]
    shards: list[dict[str, np.ndarray]]

    @classmethod
    def open(cls, directories: str | Path | Iterable[str | Path], mmap: bool = True,
             allow_parts: bool = False) -> "SampleSet":
        """Open finished sample sets; a tampered or damaged set raises a one-line UserError.

        A ``--num-shards`` part (its selection pending) is refused unless ``allow_parts``: it is
        not a sample set until ``samples merge`` has joined all parts.

        The manifest is checked first (its shape, shard names, counts), then every array's
        ``.npy`` header against :data:`ARRAY_DTYPES`, the crop size and the shard's count before
        any data is read, so a wrong dtype, an object array or an absurd shape never loads.
        """
        if isinstance(directories, (str, Path)):
            directories = [directories]
        dirs = [Path(d) for d in directories]
        if not dirs:
            raise UserError("no sample directory given")
        manifests, shards = [], []
        crop_size = None
        for d in dirs:
            manifest_path = d / MANIFEST
            if not manifest_path.is_file():
                subsets = sorted(sub.parent.name for sub in d.glob(f"*/{MANIFEST}")) if d.is_dir() else []
                if subsets:  # e.g. a pipeline run's samples/ folder, one set per stage
                    raise UserError(f"{d}: holds sample sets in its subfolders ({', '.join(subsets)}); give one of them")
                raise UserError(f"{d}: not a finished sample set (no {MANIFEST}); run gen-samples again to finish it")
            try:
                manifest = json.loads(manifest_path.read_text())
            except (OSError, ValueError, RecursionError) as exc:
                raise UserError(f"{manifest_path}: unreadable manifest ({first_line(exc)})") from None
            check_manifest(manifest, manifest_path)
            if is_pending(manifest) and not allow_parts:
                parts = manifest.get("parts", {})
                raise UserError(f"{d}: part {parts.get('shard_index', 0) + 1} of {parts.get('num_shards')} of a sample "
                                "set (gen-samples --num-shards); run samples merge OUT PART... on all its parts first")
            if crop_size is not None and manifest["crop_size"] != crop_size:
                raise UserError(f"{d}: crop size {manifest['crop_size']} differs from {crop_size} of {dirs[0]}")
            crop_size = manifest["crop_size"]
            folder_shards = []
            for entry in manifest["shards"]:
                shard = {}
                for key in ARRAY_DTYPES:
                    path = d / f"{entry['stem']}.{key}.npy"
                    check_array_header(path, key, entry["count"], crop_size)
                    try:
                        shard[key] = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
                    except (OSError, ValueError, EOFError) as exc:
                        raise UserError(f"{path}: unreadable shard ({first_line(exc)})") from None
                    if not isinstance(shard[key], np.ndarray) or shard[key].ndim == 0:
                        raise UserError(f"{path}: not a single .npy array")
                    if len(shard[key]) != entry["count"]:
                        raise UserError(f"{path}: holds {len(shard[key])} rows, the manifest says {entry['count']}")
                folder_shards.append(shard)
            check_folder_contents(folder_shards, manifest, manifest_path)
            shards.extend(folder_shards)
            manifests.append(manifest)
        return cls(dirs, manifests, shards)

    @property
    def crop_size(self) -> int:
        return int(self.manifests[0]["crop_size"])

    def __len__(self) -> int:
        return sum(len(s["labels"]) for s in self.shards)

    def counts(self) -> dict[str, int]:
        total = {name: 0 for name in LABEL_NAMES.values()}
        for manifest in self.manifests:
            for name, count in manifest["counts"].items():
                total[name] += count
        return total

    def arrays(self) -> dict[str, np.ndarray]:
        """All samples in memory.  ``sources`` are offset per folder so they stay unique."""
        parts = []
        offset = 0
        for manifest_index, manifest in enumerate(self.manifests):
            for shard in self._shards_of(manifest_index):
                part = {key: np.asarray(value) for key, value in shard.items()}
                part["sources"] = part["sources"] + offset
                parts.append(part)
            offset += len(manifest.get("images", []))
        return concat_arrays(parts, self.crop_size)

    def _shards_of(self, manifest_index: int) -> list[dict[str, np.ndarray]]:
        start = sum(len(m["shards"]) for m in self.manifests[:manifest_index])
        return self.shards[start:start + len(self.manifests[manifest_index]["shards"])]


#: The contact sheet ``samples inspect`` draws into a sample folder.
CONTACT_SHEET = "contact_sheet.png"
#: Files that describe the sample set in their folder (beside its shards and manifest): the
#: config that made it (gen-samples), its contact sheet (samples inspect) and gen-samples' work folder.
SET_COMPANIONS = ("config.yaml", CONTACT_SHEET, ".work")


def remove_set_companions(directory: Path) -> None:
    """Drop the files that describe an older set in ``directory``, so none outlives it."""
    import shutil

    for name in SET_COMPANIONS:
        path = directory / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)


def merge_sample_sets(out_dir: str | Path, directories: Iterable[str | Path], shard_size: int = 100_000,
                      force: bool = False, merge_parts: Callable[..., dict[str, Any]] | None = None) -> dict[str, Any]:
    """Join finished sample sets, or the parts of a ``gen-samples --num-shards`` run made on
    several machines, into one set in ``out_dir``.

    Parts: ``merge_parts(out, parts, shard_size)`` (:func:`mtcnn_train.samples.generate.merge_samples`
    passes :func:`~mtcnn_train.samples.generate.merge_parts`) keeps the ratio over all parts'
    candidates, so the result is the set one whole run makes (same crops, same order).
    Finished sets: samples keep the order of the folders given; ``sources`` are re-based onto the concatenated
    ``images`` lists (as :meth:`SampleSet.arrays` does), so every sample still names its image.
    Each part's own manifest (without its image list) is kept under ``"parts"``.  A finished set
    already in ``out_dir`` is replaced only with ``force``, and then nothing of it stays (its
    shards, config and contact sheet go).
    """
    dirs = [Path(d) for d in directories]
    out = Path(out_dir)
    if any(d.resolve() == out.resolve() for d in dirs):
        raise UserError(f"{out}: the merged set must go to a folder other than its parts")
    if (out / MANIFEST).exists() and not force:
        raise UserError(f"{out}: holds a finished sample set; pass --force to replace it, or choose another folder")
    sample_set = SampleSet.open(dirs, allow_parts=True)
    pending = [is_pending(m) for m in sample_set.manifests]
    if any(pending):
        if not all(pending):
            raise UserError("samples merge: give either the --num-shards parts of one run or finished sample "
                            "sets, not both")
        if merge_parts is None:
            raise UserError("merging gen-samples --num-shards parts: use samples merge "
                            "(mtcnn_train.samples.generate.merge_samples)")
        (out / MANIFEST).unlink(missing_ok=True)
        remove_set_companions(out)
        return merge_parts(out, sample_set, shard_size)
    arrays = sample_set.arrays()
    images: list[str] = []
    split: dict[str, dict[str, None]] = {"train": {}, "val": {}}  # ordered sets
    parts = []
    for directory, manifest in zip(dirs, sample_set.manifests):
        images.extend(manifest.get("images", []))
        for key in split:
            split[key].update(dict.fromkeys(manifest.get("split", {}).get(key, [])))
        parts.append({"directory": str(directory),
                      **{k: v for k, v in manifest.items() if k not in ("images", "split", "shards", "problems")}})
    first = sample_set.manifests[0]
    manifest = {key: first[key] for key in ("stage", "seed") if key in first}
    manifest.update({"images": images, "split": {k: list(v) for k, v in split.items()}, "merged_from": parts})
    (out / MANIFEST).unlink(missing_ok=True)
    remove_set_companions(out)
    written = write_sample_set(out, arrays, manifest, shard_size=shard_size)
    keep = {entry["stem"] for entry in written["shards"]}
    for stale in out.glob("shard-*.npy"):
        if stale.name.split(".", 1)[0] not in keep:
            stale.unlink()
    return written
