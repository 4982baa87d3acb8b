"""``data check``: parse a dataset, make sure its images exist, and summarise it in one paragraph."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mtcnn_train.datasets.annotation_text import location
from mtcnn_train.datasets.formats import ReadOptions, read_dataset, resolve_format
from mtcnn_train.datasets.records import FaceRecord
from mtcnn_train.errors import AnnotationError, UserError


@dataclass
class DatasetSummary:
    fmt: str
    annotation: Path
    images_root: Path | None
    images: int
    missing_images: int
    faces: int
    invalid_faces: int
    landmark_faces: int
    #: Median height / width of the valid boxes (None without any): MTCNN's crops are square,
    #: so boxes far from square (FDDB's ellipse boxes: 1.5) give few positive crops.
    box_aspect: float | None = None

    def describe(self) -> str:
        """One paragraph for people."""
        where = f" under {self.images_root}" if self.images_root is not None else ""
        missing = f", {self.missing_images:,} of them missing" if self.missing_images else ", all present"
        return (f"{self.fmt} {self.annotation}: {self.images:,} images{where}{missing}; "
                f"{self.faces:,} faces, {self.invalid_faces:,} of them invalid (flagged invalid or of zero "
                f"size), {self.landmark_faces:,} with landmarks"
                + (f"; box height/width median {self.box_aspect:.2f}." if self.box_aspect is not None else "."))


def summarize(fmt: str, annotation: Path, records: list[FaceRecord], missing: list[FaceRecord]) -> DatasetSummary:
    # The deepest folder holding every image: where the reader looked for them.
    folders = sorted({str(Path(r.image_path).parent) for r in records})
    common = Path(os.path.commonpath(folders)) if folders else None
    faces = sum(r.num_faces for r in records)
    valid = sum(int(r.valid.sum()) for r in records)
    with_landmarks = sum(int(np.isfinite(r.landmarks).all(axis=(1, 2)).sum()) for r in records
                         if r.landmarks is not None)
    return DatasetSummary(fmt=fmt, annotation=annotation, images_root=common, images=len(records),
                          missing_images=len(missing), faces=faces, invalid_faces=faces - valid,
                          landmark_faces=with_landmarks, box_aspect=_median_aspect(records))


def _median_aspect(records: list[FaceRecord]) -> float | None:
    sizes = np.concatenate([r.boxes[r.valid, 2:] - r.boxes[r.valid, :2] for r in records]) if records else []
    return float(np.median(sizes[:, 1] / sizes[:, 0])) if len(sizes) else None


def check_dataset(fmt: str, path: str | Path, images_root: str | Path | None = None,
                  allow_missing: bool = False, options: ReadOptions = ReadOptions()) -> DatasetSummary:
    """Parse the dataset, check that every referenced image exists, and summarise it.

    A missing image raises :class:`AnnotationError` naming the annotation file and the line of
    the first missing image (with the total count) unless ``allow_missing`` is set, in which
    case the summary counts them.
    """
    fmt = resolve_format(fmt, path)
    records = read_dataset(fmt, path, images_root, options)
    if not records:  # nothing to train or score on: a wrong file, or one cut off
        raise UserError(f"{path}: the {fmt} annotations list no images")
    missing = [r for r in records if not Path(r.image_path).is_file()]
    if missing and not allow_missing:
        source, line = location(missing[0].source)
        raise AnnotationError(source, line, f"image not found: {missing[0].image_path} ({len(missing):,} of "
                                            f"{len(records):,} images missing; --allow-missing to count them only)")
    return summarize(fmt, Path(path), records, missing)
