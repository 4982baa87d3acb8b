"""FDDB (Jain & Learned-Miller 2010): ten folds of face ellipses.

Layout under the FDDB root::

    FDDB-folds/FDDB-fold-01-ellipseList.txt     ellipses of fold 1
    FDDB-folds/FDDB-fold-01.txt                 the same images, names only, same order
    originalPics/2002/07/19/big/img_414.jpg     images (names in the lists have no ``.jpg``)

An ellipse file holds, per image, the name, the number of faces and one line per face::

    2002/08/11/big/img_591
    1
    123.583300 85.549500 1.265839 269.693400 161.781200  1

``major_axis_radius minor_axis_radius angle_rad center_x center_y 1``.  Records keep the ellipses
``(N, 5)`` as written and carry their tight boxes (:func:`geometry.ellipse_to_box`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

import numpy as np

from mtcnn_train.datasets.annotation_text import (
    ImagePathResolver,
    check_fields,
    is_number,
    looks_numeric,
    parse_count,
    parse_numbers,
    read_text_lines,
    refuse_duplicate_images,
)
from mtcnn_train.datasets.records import FaceRecord
from mtcnn_train.errors import AnnotationError
from mtcnn_train.geometry import box_to_ellipse, ellipse_to_box
from mtcnn_train.io import atomic_write_text

FOLDS = range(1, 11)
_ELLIPSE_NAMES = ("major_axis_radius", "minor_axis_radius", "angle", "center_x", "center_y", "detection flag")
_ELLIPSE_LAYOUT = "major_axis_radius minor_axis_radius angle center_x center_y 1"


def fold_paths(fddb_root: str | Path, fold: int) -> tuple[Path, Path]:
    """(ellipse file, image list) of fold ``fold`` (1..10) under ``fddb_root``."""
    folds = Path(fddb_root) / "FDDB-folds"
    return folds / f"FDDB-fold-{fold:02d}-ellipseList.txt", folds / f"FDDB-fold-{fold:02d}.txt"


def present_folds(fddb_root: str | Path) -> list[int]:
    """The folds (1..10) whose ellipse file exists under ``fddb_root``; an error when there is none."""
    folds = [fold for fold in FOLDS if fold_paths(fddb_root, fold)[0].exists()]  # a folder there: read_fddb says so
    if not folds:
        raise AnnotationError(Path(fddb_root) / "FDDB-folds", None,
                              "no FDDB-fold-XX-ellipseList.txt here; expected an FDDB root holding FDDB-folds/")
    return folds


def _parse_ellipse(fields: list[str], path: Path, line: int) -> np.ndarray:
    check_fields(fields, 6, path, line, _ELLIPSE_LAYOUT)
    values = parse_numbers(fields, path, line, _ELLIPSE_NAMES)
    if values[0] < 0 or values[1] < 0:
        raise AnnotationError(path, line, f"negative ellipse radius ({values[0]:g}, {values[1]:g})")
    if values[5] != 1:
        raise AnnotationError(path, line, f"the last field of a ground-truth ellipse must be 1, got {fields[5]!r}")
    return values[:5]


def read_fddb_fold(ellipse_file: str | Path, images_root: str | Path) -> list[FaceRecord]:
    """Read one ``FDDB-fold-XX-ellipseList.txt``; images are ``images_root/<name>.jpg``."""
    path = Path(ellipse_file)
    lines = read_text_lines(path)
    resolve = ImagePathResolver(images_root, path)
    records = []
    i = 0
    while i < len(lines):
        name = lines[i].strip()
        name_line = i + 1
        if not name:
            i += 1
            continue
        if looks_numeric(name):
            raise AnnotationError(path, name_line, f"expected an image name, got numbers {name[:60]!r} "
                                                   "(does an earlier face count disagree with its ellipse lines?)")
        image_path = resolve(name + ".jpg", name_line)
        if i + 1 >= len(lines):
            raise AnnotationError(path, name_line, f"file ends after image name {name!r}: missing face count")
        count_line = i + 2
        count = parse_count(lines[i + 1].strip(), path, count_line)
        i += 2
        if count > len(lines) - i:
            raise AnnotationError(path, count_line, f"face count {count} but only {len(lines) - i} lines follow "
                                                    "(truncated file?)")
        ellipses = []
        for k in range(count):
            text = lines[i + k]
            if text.split() and not is_number(text.split()[0]):  # the next image's name: the count is too big
                raise AnnotationError(path, i + k + 1, f"expected ellipse {k + 1} of {count} (count on line "
                                                       f"{count_line}), found {text.strip()[:60]!r}")
            ellipses.append(_parse_ellipse(text.split(), path, i + k + 1))
        i += count
        ellipse_array = np.array(ellipses, dtype=np.float64).reshape(-1, 5)
        records.append(FaceRecord(image_path=image_path, boxes=ellipse_to_box(ellipse_array),
                                  ellipses=ellipse_array, name=name, source=f"{path}:{name_line}"))
    refuse_duplicate_images(records)
    return records


def read_fold_list(list_file: str | Path) -> list[str]:
    """Image names of a ``FDDB-fold-XX.txt`` list, in order (blank lines skipped)."""
    path = Path(list_file)
    names = []
    for number, line in enumerate(read_text_lines(path), 1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 1:
            raise AnnotationError(path, number, f"expected one image name per line, got {len(fields)} fields")
        names.append(fields[0])
    return names


def _check_fold_list(records: list[FaceRecord], list_file: Path) -> None:
    """The fold's image list must name the same images in the same order as its ellipse file."""
    names = read_fold_list(list_file)
    listed_lines = [n for n, line in enumerate(read_text_lines(list_file), 1) if line.split()]
    for k, (record, name) in enumerate(zip(records, names)):
        if record.name != name:
            raise AnnotationError(list_file, listed_lines[k], f"lists {name!r} where the ellipse file has "
                                                              f"{record.name!r} ({record.source})")
    if len(names) != len(records):
        raise AnnotationError(list_file, None, f"lists {len(names)} images but the ellipse file has {len(records)}")


def read_fddb(fddb_root: str | Path, folds: Iterable[int] = FOLDS) -> list[FaceRecord]:
    """Read the ellipse files of ``folds`` under ``fddb_root`` (images in ``originalPics/``).

    Where a fold's image list ``FDDB-fold-XX.txt`` is present it must agree with the ellipse
    file (same names, same order).
    """
    root = Path(fddb_root)
    records: list[FaceRecord] = []
    for fold in folds:
        ellipse_file, list_file = fold_paths(root, fold)
        fold_records = read_fddb_fold(ellipse_file, root / "originalPics")
        if list_file.is_file():
            _check_fold_list(fold_records, list_file)
        records.extend(fold_records)
    refuse_duplicate_images(records)  # within and across folds
    return records


def write_fddb_fold(records: Iterable[FaceRecord], ellipse_file: str | Path, list_file: str | Path) -> None:
    """Write an ellipse file and its image list in the official layout, atomically.

    Records without ellipses get :func:`geometry.box_to_ellipse` of their boxes.  ``record.name``
    is the image path relative to ``originalPics/`` without ``.jpg``.
    """
    names, out = [], []
    for record in records:
        if not record.name or len(record.name.split()) != 1:
            raise ValueError(f"{record.image_path}: FDDB needs an image name without spaces, got {record.name!r}")
        ellipses = record.ellipses if record.ellipses is not None else box_to_ellipse(record.boxes)
        names.append(record.name)
        out.append(record.name)
        out.append(str(len(ellipses)))
        out.extend(" ".join(f"{v:.6f}" for v in e) + "  1" for e in ellipses)
    atomic_write_text(ellipse_file, "".join(f"{line}\n" for line in out))
    atomic_write_text(list_file, "".join(f"{name}\n" for name in names))
