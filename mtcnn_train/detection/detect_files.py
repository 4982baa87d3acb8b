"""Run the cascade over image files, folders and videos: JSON results and annotated copies.

The library side of ``mtcnn-train detect``::

    DIR/detections.json       every image (file, width, height, faces) and video (per-frame faces)
    DIR/<name>.jpg            each image with its boxes, scores and landmarks drawn
    DIR/<name>.mp4            each video, annotated frame by frame (mp4v)
    DIR/<name>.json           one JSON per image, with ``per_image_json``
    DIR/onnx/                 with ``backend='onnx'`` and only ``.pt`` weights: the nets exported to ONNX

``backend='onnx'`` runs the nets in onnxruntime on the CPU (:meth:`Cascade.from_onnx_dir`), from
``pnet.onnx`` etc. in the weights folder, or exported there first from its ``pnet.pt`` etc.
``backend='onnx-int8'`` runs the folder written by ``export --format onnx --int8`` (int8 R-Net and
O-Net, :mod:`mtcnn_train.quantize`); quantising needs calibration crops, so it is never
done on the fly here.

Unreadable images and videos are counted and listed under ``skipped``; they never stop the run,
but a run that could read none of its inputs fails.  A video whose frames stop decoding before
the end keeps the frames that did decode and is listed under ``skipped`` too.

Outputs never replace inputs or files of the user's: an output folder that holds one of the
inputs is refused, and so is a run that would write over a file an earlier ``detect`` did not
write (what an earlier run wrote is listed in its ``detections.json``).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from itertools import groupby
from pathlib import Path
from typing import Callable, Iterator, Sequence

import cv2
import numpy as np
from tqdm import tqdm

from mtcnn_train.checkpoint import stage_weights_path
from mtcnn_train.config import DetectionConfig
from mtcnn_train.detection import BACKENDS
from mtcnn_train.detection.cascade import Cascade, Detections
from mtcnn_train.detection.export import export_models
from mtcnn_train.detection.onnx_runtime import is_int8_export, require_onnxruntime
from mtcnn_train.errors import ImageError, UserError
from mtcnn_train.detection.runner import detect_batches
from mtcnn_train.io import atomic_path, atomic_write_json, load_image, save_image
from mtcnn_train.stages import STAGES, check_stage

SUMMARY_FILE = "detections.json"
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".pgm", ".ppm", ".pbm"}
VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv"}


@dataclass
class DetectSummary:
    images: int = 0
    videos: int = 0
    frames: int = 0
    faces: int = 0
    skipped: list[dict] = field(default_factory=list)
    output: Path | None = None
    backend: str = "torch"
    #: The ONNX files the cascade ran from (``backend='onnx'``).
    onnx_dir: Path | None = None
    #: Whether they were exported by this run (the weights folder held only ``.pt`` files).
    exported: bool = False


@dataclass
class _Input:
    path: Path
    name: str  # output name without suffix, relative to the output folder
    kind: str  # "image" or "video"


def collect_inputs(paths: Sequence[str | Path], exclude: Path | None = None) -> list[_Input]:
    """Files named directly, and the images and videos inside named folders (recursively, sorted).

    Output names are the file stem, or the path relative to the named folder; a clash gets
    ``-2``, ``-3``.  Files under ``exclude`` (the output folder) are left out.
    """
    found: list[_Input] = []
    taken: set[str] = {Path(SUMMARY_FILE).stem}  # an image named so would write over the summary

    def add(path: Path, name: str) -> None:
        suffix = path.suffix.lower()
        kind = "video" if suffix in VIDEO_SUFFIXES else "image"
        unique, k = name, 1
        while unique in taken:
            k += 1
            unique = f"{name}-{k}"
        taken.add(unique)
        found.append(_Input(path, unique, kind))

    excluded = exclude.resolve() if exclude is not None else None
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            for child in sorted(p for p in path.rglob("*") if p.is_file()):
                if excluded is not None and excluded in child.resolve().parents:
                    continue
                if child.suffix.lower() in IMAGE_SUFFIXES | VIDEO_SUFFIXES:
                    add(child, child.relative_to(path).with_suffix("").as_posix())
        elif path.exists():
            add(path, path.stem)
        else:
            raise UserError(f"{path}: no such file or folder")
    return found


def refuse_inputs_inside(paths: Sequence[str | Path], out_dir: Path) -> None:
    """An output folder that holds an input (or is one) would get annotated copies written over
    the user's files: refuse it before anything is read or written."""
    out = out_dir.resolve()
    for raw in paths:
        path = Path(raw).resolve()
        if path == out or out in path.parents:
            raise UserError(f"{out_dir}: holds the input {raw}; detect writes its annotated copies there, so "
                            "choose an --out folder that holds no input")


def _earlier_outputs(out_dir: Path) -> set[str]:
    """The files (relative to ``out_dir``) that an earlier detect wrote there, from its summary."""
    summary = out_dir / SUMMARY_FILE
    if not summary.exists():
        return set()
    try:
        record = json.loads(summary.read_text(encoding="utf-8"))
        entries = list(record["images"]) + list(record["videos"])
    except (OSError, ValueError, TypeError, KeyError):
        raise UserError(f"{summary}: exists and is not the summary of an earlier detect; move it or choose "
                        "another --out") from None
    owned = {SUMMARY_FILE}
    for entry in entries:
        if not isinstance(entry, dict):
            continue
        for key in ("annotated", "json"):
            if isinstance(entry.get(key), str):
                owned.add(entry[key])
        if isinstance(entry.get("annotated"), str):  # per-image JSON beside it (summaries without "json")
            owned.add(str(Path(entry["annotated"]).with_suffix(".json")))
    return owned


def refuse_foreign_outputs(inputs: Sequence[_Input], out_dir: Path, annotate: bool, per_image_json: bool) -> None:
    """Every file this run will write either does not exist yet or was written by an earlier detect."""
    planned = []
    for item in inputs:
        if annotate:
            planned.append(f"{item.name}.{'mp4' if item.kind == 'video' else 'jpg'}")
        if per_image_json and item.kind == "image":
            planned.append(f"{item.name}.json")
    owned = _earlier_outputs(out_dir)
    for name in planned:
        if name not in owned and (out_dir / name).exists():
            raise UserError(f"{out_dir / name}: exists and was not written by detect; this run would replace it, "
                            "so move it or choose another --out")


def faces_json(dets: Detections) -> list[dict]:
    faces = []
    for i in range(len(dets)):
        face = {"box": [round(float(v), 2) for v in dets.boxes[i]], "score": round(float(dets.scores[i]), 5)}
        face["landmarks"] = ([[round(float(x), 2), round(float(y), 2)] for x, y in dets.landmarks[i]]
                             if dets.landmarks is not None else None)
        faces.append(face)
    return faces


def draw_detections(image_rgb: np.ndarray, dets: Detections) -> np.ndarray:
    """A copy of the image with boxes (green), scores and landmarks (red) drawn."""
    out = np.ascontiguousarray(image_rgb).copy()
    thickness = max(1, round(max(out.shape[:2]) / 500))
    for i in range(len(dets)):
        x1, y1, x2, y2 = (int(round(float(v))) for v in dets.boxes[i])
        cv2.rectangle(out, (x1, y1), (x2, y2), (0, 255, 0), thickness)
        cv2.putText(out, f"{dets.scores[i]:.2f}", (x1, max(0, y1 - 3)), cv2.FONT_HERSHEY_SIMPLEX,
                    0.4 * thickness, (0, 255, 0), thickness)
        if dets.landmarks is not None:
            radius = max(1, min(thickness + 1, round((x2 - x1) / 25)))  # small faces get small dots
            for x, y in dets.landmarks[i]:
                cv2.circle(out, (int(round(float(x))), int(round(float(y)))), radius, (255, 0, 0), -1)
    return out


def _frames(capture: cv2.VideoCapture, batch: int) -> Iterator[list[np.ndarray]]:
    frames: list[np.ndarray] = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
        if len(frames) == batch:
            yield frames
            frames = []
    if frames:
        yield frames


def _detect_frames(cascade: Cascade, capture: cv2.VideoCapture, item: _Input, last: str,
                   record: dict, video_path: Path | None) -> None:
    """Detect in every frame (batches of equal-size frames); write annotated frames to ``video_path``."""
    writer = None
    total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) or None
    bar = tqdm(total=total, desc=item.path.name, unit="frame", leave=False)
    try:
        for frames in _frames(capture, cascade.cfg.batch_size):
            height, width = frames[0].shape[:2]
            record.setdefault("width", width)
            record.setdefault("height", height)
            if video_path is not None and writer is None:
                writer = cv2.VideoWriter(str(video_path), cv2.VideoWriter_fourcc(*"mp4v"), record["fps"], (width, height))
                if not writer.isOpened():
                    raise UserError(f"{video_path}: cannot write an mp4v video here")
            for frame, dets in zip(frames, cascade.detect_batch(frames, stages=last)):
                record["frames"].append({"frame": len(record["frames"]), "faces": faces_json(dets)})
                if writer is not None:
                    writer.write(cv2.cvtColor(draw_detections(frame, dets), cv2.COLOR_RGB2BGR))
            bar.update(len(frames))
    finally:
        bar.close()
        if writer is not None:
            writer.release()
    if not record["frames"]:
        raise ImageError(f"{item.path}: no readable frames")
    # The container's frame count is exact for most files and an estimate from the duration for
    # some, so a frame or two (2%) short is not a failure; more is a video that stopped decoding.
    if total and total - len(record["frames"]) > max(1, total // 50):
        record["undecoded"] = f"{item.path}: only {len(record['frames'])} of {total} frames decoded"


def _detect_video(cascade: Cascade, item: _Input, out_dir: Path, last: str, annotate: bool) -> dict:
    capture = cv2.VideoCapture(str(item.path))
    try:
        if not capture.isOpened():
            raise ImageError(f"{item.path}: cannot open as a video")
        record: dict = {"file": str(item.path), "fps": capture.get(cv2.CAP_PROP_FPS) or 25.0, "frames": []}
        if not annotate:
            _detect_frames(cascade, capture, item, last, record, None)
            return record
        target = out_dir / f"{item.name}.mp4"
        with atomic_path(target) as tmp:
            _detect_frames(cascade, capture, item, last, record, tmp)
        record["annotated"] = target.name
        return record
    finally:
        capture.release()


def _onnx_cascade(weights: Path, out_dir: Path, cfg: DetectionConfig, wanted: tuple[str, ...],
                  summary: DetectSummary, echo: Callable[[str], None] | None) -> Cascade:
    """The ONNX cascade from ``weights/*.onnx``, or from ``.pt`` weights exported to ``out_dir/onnx``."""
    require_onnxruntime()  # before exporting anything
    if all((weights / f"{stage}.onnx").is_file() for stage in wanted):
        summary.onnx_dir = weights
    else:
        summary.onnx_dir = out_dir / "onnx"
        export_models(weights, "onnx", summary.onnx_dir, stages=wanted)
        summary.exported = True
        if echo is not None:
            echo(f"exported {', '.join(f'{s}.pt' for s in wanted)} from {weights} to ONNX in {summary.onnx_dir}")
    return Cascade.from_onnx_dir(summary.onnx_dir, cfg, stages=wanted)


def detect_paths(paths: Sequence[str | Path], weights: str | Path, out_dir: str | Path,
                 cfg: DetectionConfig, last_stage: str | None = None, per_image_json: bool = False,
                 annotate: bool = True, device: str = "auto", backend: str = "torch",
                 echo: Callable[[str], None] | None = None) -> DetectSummary:
    """Detect faces in every image and video under ``paths`` with the weights in ``weights``.

    ``backend='onnx'`` runs the nets with onnxruntime on the CPU: from ``weights/pnet.onnx`` etc.
    when all the stages asked for are there, otherwise from ``weights/pnet.pt`` etc. exported to
    ``out_dir/onnx`` first (``echo`` is told so, in one line).
    """
    weights = Path(weights)
    out_dir = Path(out_dir)
    last = last_stage or "onet"
    check_stage(last)
    wanted = STAGES[:STAGES.index(last) + 1]
    _check_weights_for_backend(weights, wanted, backend, device)
    refuse_inputs_inside(paths, out_dir)
    inputs = collect_inputs(paths, exclude=out_dir)
    if not inputs:
        raise UserError(f"no images or videos found in {', '.join(map(str, paths))}")
    refuse_foreign_outputs(inputs, out_dir, annotate, per_image_json)
    summary = DetectSummary(output=out_dir / SUMMARY_FILE, backend=backend)
    if backend == "onnx":
        cascade = _onnx_cascade(weights, out_dir, cfg, wanted, summary, echo)
    elif backend == "onnx-int8":
        summary.onnx_dir = weights
        cascade = Cascade.load(weights, cfg, backend=backend, stages=wanted)
    else:
        cascade = Cascade.from_run_dir(weights, cfg, stages=wanted, device=device)
    out_dir.mkdir(parents=True, exist_ok=True)
    images, videos = [], []

    def skip(item: _Input, exc: ImageError) -> None:
        summary.skipped.append({"file": str(item.path), "error": str(exc)})

    bar = tqdm(total=len(inputs), desc="detect", unit="file")
    # Inputs in the order given: runs of images go through the shared loop one at a time (an
    # image's detections do not depend on its batch), videos frame batch by frame batch.
    for is_video, run in groupby(inputs, key=lambda item: item.kind == "video"):
        run = list(run)
        if is_video:
            for item in run:
                bar.update(1)
                try:
                    record = _detect_video(cascade, item, out_dir, last, annotate)
                except ImageError as exc:
                    skip(item, exc)
                    continue
                if "undecoded" in record:
                    summary.skipped.append({"file": str(item.path), "error": record.pop("undecoded")})
                videos.append(record)
                summary.videos += 1
                summary.frames += len(record["frames"])
                summary.faces += sum(len(f["faces"]) for f in record["frames"])
            continue
        for tried, found in detect_batches(cascade, run, lambda item: load_image(item.path), 1, stages=last,
                                           on_skip=skip):
            for item, image, dets in found:
                images.append(_image_record(item, image, dets, out_dir, annotate, per_image_json))
                summary.images += 1
                summary.faces += len(dets)
            bar.update(len(tried))
    bar.close()
    if not images and not videos:
        raise UserError(f"none of the {len(inputs)} input(s) could be read; first: {summary.skipped[0]['error']}")
    atomic_write_json(summary.output, {
        "weights": str(weights),
        "backend": backend,
        **({"onnx_models": str(summary.onnx_dir), "onnx_exported": summary.exported} if backend != "torch" else {}),
        "stages": list(wanted),
        "detection": {k: getattr(cfg, k) for k in cfg.__dataclass_fields__},
        "images": images,
        "videos": videos,
        "skipped": summary.skipped,
    })
    return summary


def _check_weights_for_backend(weights: Path, wanted: Sequence[str], backend: str, device: str) -> None:
    """Refuse, before any input is read, a backend that cannot run here or a weights folder that
    lacks a stage asked for (naming the first missing file)."""
    if backend not in BACKENDS:
        raise UserError(f"unknown backend {backend!r}; expected one of {', '.join(BACKENDS)}")
    if backend != "torch" and str(device).startswith("cuda"):
        raise UserError(f"the {backend} backend runs on the CPU only (device {device} asked for); "
                        f"pass --device cpu, or --backend torch to run on the GPU")
    if backend == "onnx-int8" and not is_int8_export(weights):
        raise UserError(f"{weights}: not an int8 export; the onnx-int8 backend runs the folder that "
                        "mtcnn-train export --format onnx --int8 --calibration SAMPLES writes")
    missing = [s + ".pt" for s in wanted if not stage_weights_path(weights, s).is_file()]
    if backend == "onnx-int8":
        missing = [s + ".onnx" for s in wanted if not (weights / f"{s}.onnx").is_file()]
    if backend == "onnx" and missing:
        # Neither a full set of .pt nor of .onnx files: name the first gap of the set that goes further.
        missing_onnx = [s + ".onnx" for s in wanted if not (weights / f"{s}.onnx").is_file()]
        missing = missing_onnx and max(missing, missing_onnx, key=lambda m: STAGES.index(m[0].split(".")[0]))
    if missing:
        stage, suffix = missing[0].split(".")
        hint = f"; pass --stages {STAGES[STAGES.index(stage) - 1]} to stop before it" if stage != "pnet" else ""
        also = f" (nor {stage}.{'onnx' if suffix == 'pt' else 'pt'})" if backend == "onnx" else ""
        raise UserError(f"{weights}: no {missing[0]}{also}{hint}")


def _image_record(item: _Input, image: np.ndarray, dets: Detections, out_dir: Path, annotate: bool,
                  per_image_json: bool) -> dict:
    """One image's entry in ``detections.json``, writing its annotated copy and own JSON as asked."""
    height, width = image.shape[:2]
    record = {"file": str(item.path), "width": width, "height": height, "faces": faces_json(dets)}
    if annotate:
        save_image(out_dir / f"{item.name}.jpg", draw_detections(image, dets))
        record["annotated"] = f"{item.name}.jpg"
    if per_image_json:
        record["json"] = f"{item.name}.json"
        atomic_write_json(out_dir / record["json"], record)
    return record
