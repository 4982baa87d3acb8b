"""``data check``: parse a dataset, make sure its images exist, and summarise it in one paragraph."""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mtcnn_train.datasets.annotation_text import location
from mtcnn_train.datasets.records import FaceRecord
from mtcnn_train.errors import AnnotationError, UserError

LANDMARK_FORMATS = ("celeba", "celeba-aligned", "lfw-net", "mtfl")  # as landmarks.LANDMARK_FORMATS
DATASET_FORMATS = ("wider",) + LANDMARK_FORMATS + ("fddb",)


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

    def describe(self) -> str:
        """One paragraph for people."""
        where = f" under {self.images_root}" if self.images_root is not None else ""
        missing = f", {self.missing_images:,} of them missing" if self.missing_images else ", all present"
        return (f"{self.fmt} {self.annotation}: {self.images:,} images{where}{missing}; "
                f"{self.faces:,} faces, {self.invalid_faces:,} of them invalid (flagged invalid or of zero "
                f"size), {self.landmark_faces:,} with landmarks.")


def read_dataset(fmt: str, path: str | Path, images_root: str | Path | None = None) -> list[FaceRecord]:
    """Read any supported dataset with the reader's default image folder unless ``images_root``.

    ``wider``: PATH is the annotation file or the WIDER root (``wider_face_split/`` and
    ``WIDER_<split>/images``); a file named ``wider_face_<split>_bbx_gt.txt`` finds its images in
    ``../WIDER_<split>/images``, any other file in its own folder.  ``fddb``: PATH is the FDDB
    root; every fold whose ellipse file is there is read.  Landmark formats: PATH is the list
    (see :func:`landmarks.read_landmarks`).
    """
    # Readers are imported on demand: the FDDB one pulls in torch (via geometry), which the
    # others do not need, and `data check` should answer fast.
    path = Path(path)
    if fmt == "wider":
        from mtcnn_train.datasets import wider

        if path.is_dir():
            path, default_root = wider.wider_paths(path)
        else:
            official = re.fullmatch(r"wider_face_(\w+)_bbx_gt\.txt", path.name)
            default_root = wider.wider_paths(path.parent.parent, official.group(1))[1] if official else path.parent
        return wider.read_wider(path, images_root or default_root)
    if fmt == "fddb":
        from mtcnn_train.datasets import fddb

        if images_root is not None:
            raise UserError("--images does not apply to fddb: images are read from FDDB_ROOT/originalPics")
        return fddb.read_fddb(path, fddb.present_folds(path))
    if fmt in LANDMARK_FORMATS:
        from mtcnn_train.datasets import landmarks

        return landmarks.read_landmarks(path, images_root, fmt)
    raise UserError(f"unknown dataset format {fmt!r}; expected one of {', '.join(DATASET_FORMATS)}")


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
                          landmark_faces=with_landmarks)


def check_dataset(fmt: str, path: str | Path, images_root: str | Path | None = None,
                  allow_missing: bool = False) -> DatasetSummary:
    """Parse the dataset, check that every referenced image exists, and summarise it.

    A missing image raises :class:`AnnotationError` naming the annotation file and the line of
    the first missing image (with the total count) unless ``allow_missing`` is set, in which
    case the summary counts them.
    """
    records = read_dataset(fmt, path, images_root)
    if not records:  # nothing to train or score on: a wrong file, or one cut off
        raise UserError(f"{path}: the {fmt} annotations list no images")
    missing = [r for r in records if not Path(r.image_path).is_file()]
    if missing and not allow_missing:
        source, line = location(missing[0].source)
        raise AnnotationError(source, line, f"image not found: {missing[0].image_path} ({len(missing):,} of "
                                            f"{len(records):,} images missing; --allow-missing to count them only)")
    return summarize(fmt, Path(path), records, missing)
