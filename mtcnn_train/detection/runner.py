"""The one loop that runs a cascade over a set of images: images in, detections out.

Used by every consumer that detects over many images: FDDB and WIDER evaluation (through
:func:`detect_images`, resumable), landmark evaluation and the ``detect`` command (through
:func:`detect_batches`).  Owns:

* :func:`detect_batches` -- read the images of a batch (unreadable ones are reported to
  ``on_skip`` and left out, never stopping the run), run ``cascade.detect_batch`` on the rest,
  reading the next batch in a background thread meanwhile;
* :class:`DetectionLog` and :func:`detector_fingerprint` -- the append-only record of finished
  images that lets an interrupted evaluation continue, trusted only for the same detector;
* :func:`detect_images` -- the two together, giving ``left top width height score`` rows (the
  row layout of both the FDDB detection file and WIDER's prediction files).
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence, TypeVar

import numpy as np
from tqdm import tqdm

from mtcnn_train.errors import ImageError, UserError
from mtcnn_train.io import atomic_write_json, atomic_write_text, fault_point, load_image

Item = TypeVar("Item")

_PARTIAL_NAME = "detections.partial.jsonl"
_FINGERPRINT_NAME = "detector.json"


def _read_batch(chunk: list[Item], load: Callable[[Item], np.ndarray]
                ) -> tuple[list[Item], list[np.ndarray], list[tuple[Item, ImageError]]]:
    """Load a batch's images: (items read, their images, (item, error) for those that failed)."""
    read, images, failed = [], [], []
    for item in chunk:
        try:
            images.append(load(item))
            read.append(item)
        except ImageError as exc:
            failed.append((item, exc))
    return read, images, failed


def detect_batches(cascade: Any, items: Sequence[Item], load: Callable[[Item], np.ndarray], batch_size: int, *,
                   stages: str | None = None, on_skip: Callable[[Item, ImageError], None] | None = None,
                   read_ahead: bool = True) -> Iterator[tuple[list[Item], list[tuple[Item, np.ndarray, Any]]]]:
    """Run ``cascade.detect_batch`` over ``items``, ``batch_size`` at a time (up to ``stages``).

    ``load(item)`` reads an item's ``H x W x 3`` RGB image; an :class:`ImageError` skips the item
    (told to ``on_skip``).  Yields, per batch, the items tried and ``(item, image, detections)``
    for those read, in order.  With ``read_ahead`` the next batch is read in a background thread
    while this one is detected (``load`` must then be safe to call from another thread, as
    :func:`mtcnn_train.io.load_image` is): decoding releases the GIL, so on a machine with a core
    to spare reading costs no detection time (``benchmarks/read_ahead.py``).  Skips are reported
    in order either way, before the batch's detections.
    """
    step = max(1, int(batch_size))
    chunks = [list(items[start:start + step]) for start in range(0, len(items), step)]
    executor = None
    if read_ahead and len(chunks) > 1:
        from concurrent.futures import ThreadPoolExecutor

        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="read-ahead")
    try:
        pending = executor.submit(_read_batch, chunks[0], load) if executor is not None else None
        for index, chunk in enumerate(chunks):
            if pending is not None:
                read, images, failed = pending.result()
                pending = (executor.submit(_read_batch, chunks[index + 1], load)
                           if index + 1 < len(chunks) else None)
            else:
                read, images, failed = _read_batch(chunk, load)
            if on_skip is not None:
                for item, exc in failed:
                    on_skip(item, exc)
            if not images:
                outputs = []
            else:  # without stages, the call any cascade-like object takes (test doubles too)
                outputs = cascade.detect_batch(images) if stages is None else cascade.detect_batch(images, stages=stages)
            yield chunk, list(zip(read, images, outputs))
    finally:  # a consumer that stops early (or an error) leaves no thread reading behind
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)


def ltwh_rows(boxes: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Our ``x1 y1 x2 y2`` boxes and scores -> ``left top width height score`` rows (FDDB, WIDER)."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1, 1)
    return np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2], scores], 1)


def detector_fingerprint(weights: str | Path | None, detection_cfg: Any) -> dict[str, Any]:
    """What the detections depend on: the checkpoints or ONNX files (path, size, mtime) and detection settings."""
    files = {}
    if weights is not None and Path(weights).is_dir():
        for p in sorted([*Path(weights).glob("*.pt"), *Path(weights).glob("*.onnx")]):
            st = p.stat()
            files[p.name] = [st.st_size, st.st_mtime_ns]
    settings = dataclasses.asdict(detection_cfg) if dataclasses.is_dataclass(detection_cfg) else dict(detection_cfg or {})
    return {"weights": str(Path(weights).resolve()) if weights is not None else None, "checkpoints": files,
            "detection": settings}


class DetectionLog:
    """Append-only record of finished images, so that an interrupted evaluation resumes.

    One JSON line per image (name, image size, raw rows); a torn last line from a crash is
    dropped on reading.  The log is only trusted when ``fingerprint`` (the detector and its
    settings) is the one it was started with; otherwise it is started afresh.
    """

    def __init__(self, folder: str | Path, fingerprint: dict[str, Any]):
        self.path = Path(folder) / _PARTIAL_NAME
        self.stamp = Path(folder) / _FINGERPRINT_NAME
        self.fingerprint = json.loads(json.dumps(fingerprint))

    def load(self) -> dict[str, tuple[np.ndarray, tuple[int, int]]]:
        try:
            if json.loads(self.stamp.read_text()) != self.fingerprint:
                return {}
            lines = self.path.read_text(encoding="utf-8").splitlines()
        except (OSError, ValueError):
            return {}
        done = {}
        for line in lines:
            try:
                entry = json.loads(line)
                rows = np.asarray(entry["rows"], dtype=np.float64).reshape(-1, len(entry["rows"][0]) if entry["rows"] else 5)
                done[str(entry["name"])] = (rows, (int(entry["size"][0]), int(entry["size"][1])))
            except (ValueError, KeyError, TypeError, IndexError):
                continue  # torn or foreign line
        return done

    def start(self) -> None:
        atomic_write_json(self.stamp, self.fingerprint)
        atomic_write_text(self.path, "")

    def append(self, batch: Mapping[str, tuple[np.ndarray, tuple[int, int]]]) -> None:
        text = "".join(json.dumps({"name": n, "size": list(size), "rows": rows.tolist()}) + "\n"
                       for n, (rows, size) in batch.items())
        try:
            with open(self.path, "a", encoding="utf-8") as fh:
                fh.write(text)
                fh.flush()
        except OSError as exc:  # a write error names no file; say which (load() drops a torn last line)
            raise UserError(f"{self.path}: cannot write ({exc.strerror or exc})") from None
        fault_point()

    def finish(self) -> None:
        self.path.unlink(missing_ok=True)


def detect_images(cascade: Any, items: Sequence[tuple[str, Path]], batch_size: int, desc: str,
                  log: DetectionLog | None = None) -> tuple[dict[str, tuple[np.ndarray, tuple[int, int]]], list[str]]:
    """Run the cascade over ``(name, image path)`` items, resuming from ``log``.

    Returns name -> (``left top width height score`` rows, ``(height, width)``) for every image
    done (now or in an earlier run with the same detector), and the names of images that could
    not be read (counted and skipped, as long stages do).
    """
    done = log.load() if log is not None else {}
    if log is not None and not done:
        log.start()
    wanted = {name for name, _ in items}
    results = {name: value for name, value in done.items() if name in wanted}
    todo = [(n, p) for n, p in items if n not in results]
    skipped: list[str] = []
    bar = tqdm(total=len(items), initial=len(items) - len(todo), desc=desc, unit="img")
    for chunk, found in detect_batches(cascade, todo, lambda item: load_image(item[1]), batch_size,
                                       on_skip=lambda item, exc: skipped.append(item[0])):
        batch = {name: (ltwh_rows(det.boxes, det.scores), tuple(image.shape[:2])) for (name, _), image, det in found}
        results.update(batch)
        if log is not None and batch:
            log.append(batch)
        bar.update(len(chunk))
    bar.close()
    return results, skipped
