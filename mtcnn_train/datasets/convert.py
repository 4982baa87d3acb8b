"""``data convert``: read a set in any format (:mod:`.formats`) and write it as WIDER, COCO or YOLO.

Boxes survive a round trip exactly: the COCO writer keeps every float32 box bit for bit, the YOLO
writer writes the quotients by the image size with all their digits, so WIDER's integer boxes
come back as the same integers.  What a target cannot hold is counted in the report: landmarks
in WIDER, flags other than ``invalid`` in YOLO (faces flagged invalid become class ``ignore``).

Several records of one image (a landmark list has a line per face) become one image with all
its faces.  Nothing is ever overwritten: the output file (WIDER, COCO) must not exist, the
output folder (YOLO) must not exist or be empty.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mtcnn_train.datasets.annotation_text import location
from mtcnn_train.datasets.formats import IMAGE_SUFFIXES, ReadOptions, read_dataset, resolve_format
from mtcnn_train.datasets.records import FaceRecord
from mtcnn_train.errors import AnnotationError, ImageError, UserError
from mtcnn_train.io import image_size

CONVERT_TARGETS = ("wider", "coco", "yolo")


@dataclass
class ConvertReport:
    source_format: str
    target: str
    out: Path
    images_root: Path | None = None
    images: int = 0
    faces: int = 0
    invalid_faces: int = 0
    landmark_faces: int = 0
    missing_images: list[str] = field(default_factory=list)

    def describe(self) -> str:
        text = (f"data convert: {self.images:,} images, {self.faces:,} faces ({self.invalid_faces:,} flagged invalid, "
                f"{self.landmark_faces:,} with five landmarks) from {self.source_format} to {self.target} {self.out}")
        if self.missing_images:
            text += f"; left out {len(self.missing_images):,} images that are missing (first: {self.missing_images[0]})"
        if self.target == "wider" and self.landmark_faces:
            text += "; WIDER holds no landmarks, so they were not written"
        if self.images_root is not None:
            hint = {"wider": f"read it with --images {self.images_root}",
                    "coco": f"its file names are relative to {self.images_root} (noted in its info)",
                    "yolo": f"read it with {self.out / 'data.yaml'}; images/ links to {self.images_root}"}
            text += f"; {hint[self.target]}"
        return text + "."


def image_name(record: FaceRecord) -> str:
    """The image's path relative to its dataset's images folder (``/`` separated, with suffix).

    The name the annotation spells, except that FDDB names leave out ``.jpg``.
    """
    name = (record.name or Path(record.image_path).name).replace("\\", "/").removeprefix("./")
    suffix = Path(record.image_path).suffix
    if Path(name).suffix.lower() not in IMAGE_SUFFIXES and suffix and Path(record.image_path).name == Path(name).name + suffix:
        name += suffix
    return name


def images_folder(records: list[FaceRecord], names: list[str]) -> Path | None:
    """The one folder every image's name is relative to; UserError when the images lie apart."""
    if not records:
        return None
    first = Path(records[0].image_path)
    root = first.parents[len(Path(names[0]).parts) - 1]
    for record, name in zip(records, names):
        if root / name != Path(record.image_path):
            raise UserError(f"{record.source}: {record.image_path} is not {name} under {root}; the images must "
                            "share one folder that their names are relative to")
    return root


def merge_by_image(records: list[FaceRecord]) -> list[FaceRecord]:
    """One record per image (first-seen order), holding the faces of every record of it."""
    groups: dict[Path, list[FaceRecord]] = {}
    for record in records:
        groups.setdefault(Path(record.image_path), []).append(record)
    merged = []
    for group in groups.values():
        if len(group) == 1:
            merged.append(group[0])
            continue
        keys = sorted({k for r in group for k in r.flags})
        with_points = any(r.landmarks is not None for r in group)
        merged.append(FaceRecord(
            image_path=group[0].image_path,
            boxes=np.concatenate([r.boxes for r in group]),
            landmarks=np.concatenate([r.landmarks if r.landmarks is not None else np.full((r.num_faces, 5, 2), np.nan)
                                      for r in group]) if with_points else None,
            flags={k: np.concatenate([r.flags.get(k, np.zeros(r.num_faces, np.int32)) for r in group]) for k in keys},
            name=group[0].name, source=group[0].source))
    return merged


def _check_output(target: str, out: Path, source: Path) -> None:
    if out.resolve() == source.resolve():
        raise UserError(f"{out}: is the input; data convert never writes over its input")
    if target == "yolo":
        if out.exists() and (not out.is_dir() or any(out.iterdir())):
            raise UserError(f"{out}: exists and is not an empty folder; data convert never overwrites")
    elif out.exists():
        raise UserError(f"{out}: exists; data convert never overwrites a file, choose a new name")


def _sizes(records: list[FaceRecord]) -> list[tuple[int, int]]:
    sizes = []
    for record in records:
        try:
            sizes.append(image_size(record.image_path))
        except ImageError as exc:
            path, line = location(record.source)
            raise AnnotationError(path, line, str(exc)) from None
    return sizes


def convert_dataset(source_format: str, source: str | Path, target: str, out: str | Path,
                    images_root: str | Path | None = None, options: ReadOptions = ReadOptions(),
                    skip_missing: bool = False) -> ConvertReport:
    """Read ``source`` (format ``source_format`` or ``auto``) and write it as ``target`` at ``out``.

    A missing image is an error naming its annotation (file and line or entry), unless
    ``skip_missing``: then the image is left out and counted.
    """
    if target not in CONVERT_TARGETS:
        raise UserError(f"--to {target}: expected one of {', '.join(CONVERT_TARGETS)}")
    source, out = Path(source), Path(out)
    fmt = resolve_format(source_format, source)
    _check_output(target, out, source)
    records = merge_by_image(read_dataset(fmt, source, images_root, options))
    report = ConvertReport(fmt, target, out)
    missing = [r for r in records if not Path(r.image_path).is_file()]
    if missing and not skip_missing:
        path, line = location(missing[0].source)
        raise AnnotationError(path, line, f"image not found: {missing[0].image_path} ({len(missing):,} of "
                                          f"{len(records):,} images missing; --skip-missing to leave them out)")
    report.missing_images = [str(r.image_path) for r in missing]
    records = [r for r in records if Path(r.image_path).is_file()]
    names = [image_name(r) for r in records]
    report.images_root = images_folder(records, names)
    report.images = len(records)
    report.faces = sum(r.num_faces for r in records)
    report.invalid_faces = sum(int((r.flags["invalid"] != 0).sum()) for r in records)
    report.landmark_faces = sum(int(np.isfinite(r.landmarks).all(axis=(1, 2)).sum()) for r in records
                                if r.landmarks is not None)
    if target == "wider":
        from mtcnn_train.datasets.wider import write_wider

        renamed = [FaceRecord(r.image_path, r.boxes, flags=r.flags, name=n, source=r.source)
                   for r, n in zip(records, names)]
        write_wider(renamed, out)
    elif target == "coco":
        from mtcnn_train.datasets.coco import write_coco

        write_coco(records, out, names, _sizes(records), report.images_root)
    else:
        from mtcnn_train.datasets.yolo import write_yolo

        if report.images_root is None:
            raise UserError(f"{source}: no images to convert")
        write_yolo(records, out, names, _sizes(records), report.images_root)
    return report
