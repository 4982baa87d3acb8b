"""WIDER FACE ground truth in the official text layout (``wider_face_<split>_bbx_gt.txt``).

Layout, one entry per image::

    0--Parade/0_Parade_marchingband_1_849.jpg      image name, relative to WIDER_<split>/images
    1                                              number of faces
    449 330 122 149 0 0 0 0 0 0                    x1 y1 w h blur expression illumination invalid occlusion pose

Images without faces come in two spellings, both read as zero faces: the official file writes a
count of ``0`` followed by one all-zero face line, and some copies write a count of ``1`` with an
all-zero box.  A ``0`` count followed directly by the next image name is accepted too.

Boxes become ``x1, y1, x1 + w, y1 + h`` pixel edges (docs/CONVENTIONS.md).  Faces with zero size
or flagged ``invalid`` are kept with their flags; :attr:`FaceRecord.valid` leaves them out.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

import numpy as np

from mtcnn_train.datasets.annotation_text import (
    ImagePathResolver,
    check_fields,
    format_number,
    is_number,
    looks_numeric,
    parse_count,
    parse_flag,
    parse_numbers,
    read_text_lines,
    refuse_duplicate_images,
)
from mtcnn_train.datasets.records import FaceRecord
from mtcnn_train.errors import AnnotationError
from mtcnn_train.io import atomic_write_text

#: The attribute columns after ``x1 y1 w h``, in file order.
WIDER_FLAGS = ("blur", "expression", "illumination", "invalid", "occlusion", "pose")
FACE_FIELDS = 4 + len(WIDER_FLAGS)
_FACE_LAYOUT = "x1 y1 w h " + " ".join(WIDER_FLAGS)
_BOX_NAMES = ("x1", "y1", "w", "h")


def wider_paths(wider_root: str | Path, split: str = "train") -> tuple[Path, Path]:
    """The official annotation file and image folder of a WIDER FACE split under ``wider_root``."""
    root = Path(wider_root)
    return (root / "wider_face_split" / f"wider_face_{split}_bbx_gt.txt",
            root / f"WIDER_{split}" / "images")


def _is_all_zero_face(fields: list[str]) -> bool:
    return len(fields) == FACE_FIELDS and all(looks_numeric(f) and float(f) == 0 for f in fields)


def _parse_face(fields: list[str], path: Path, line: int) -> tuple[np.ndarray, list[int]]:
    """One face line -> (x1 y1 x2 y2 box, flag values)."""
    check_fields(fields, FACE_FIELDS, path, line, _FACE_LAYOUT)
    x, y, w, h = parse_numbers(fields[:4], path, line, _BOX_NAMES)
    if w < 0 or h < 0:
        raise AnnotationError(path, line, f"negative box size (w {w:g}, h {h:g})")
    flags = [parse_flag(tok, path, line, name) for tok, name in zip(fields[4:], WIDER_FLAGS)]
    return np.array([x, y, x + w, y + h]), flags


def read_wider(annotation_file: str | Path, images_root: str | Path) -> list[FaceRecord]:
    """Read a WIDER FACE ground-truth file; one :class:`FaceRecord` per image, in file order.

    Image paths are joined onto ``images_root`` and may not escape it.  Whether the images exist
    is not checked here (see :func:`missing_images`).  Every malformed entry raises
    :class:`AnnotationError` with the file and the 1-based line.
    """
    path = Path(annotation_file)
    lines = read_text_lines(path)
    resolve = ImagePathResolver(images_root, path)
    records: list[FaceRecord] = []
    i = 0
    while i < len(lines):
        name = lines[i].strip()
        name_line = i + 1
        if not name:  # blank lines between entries carry nothing
            i += 1
            continue
        if looks_numeric(name):
            raise AnnotationError(path, name_line, f"expected an image name, got numbers {name[:60]!r} "
                                                   "(does an earlier face count disagree with its face lines?)")
        image_path = resolve(name, name_line)
        if i + 1 >= len(lines):
            raise AnnotationError(path, name_line, f"file ends after image name {name!r}: missing face count")
        count_line = i + 2
        count = parse_count(lines[i + 1].strip(), path, count_line)
        i += 2
        remaining = len(lines) - i
        if count > remaining:
            raise AnnotationError(path, count_line, f"face count {count} but only {remaining} lines follow "
                                                    "(truncated file?)")
        boxes, flags = [], []
        if count == 0:
            # The official file follows a 0 count with one all-zero face line; swallow it.
            if i < len(lines) and looks_numeric(lines[i]):
                if not _is_all_zero_face(lines[i].split()):
                    raise AnnotationError(path, i + 1, "face line after a face count of 0 (expected the all-zero "
                                                       "placeholder or the next image name)")
                i += 1
        else:
            for k in range(count):
                line_no = i + k + 1
                fields = lines[i + k].split()
                if fields and not is_number(fields[0]):  # the next image's name: the count is too big
                    raise AnnotationError(path, line_no, f"expected face {k + 1} of {count} (count on line "
                                                         f"{count_line}), found {lines[i + k].strip()[:60]!r}")
                box, face_flags = _parse_face(fields, path, line_no)
                boxes.append(box)
                flags.append(face_flags)
            i += count
            if count == 1 and not boxes[0].any() and not any(flags[0]):
                boxes, flags = [], []  # the other spelling of an image without faces
        flag_array = np.array(flags, dtype=np.int32).reshape(-1, len(WIDER_FLAGS))
        records.append(FaceRecord(
            image_path=image_path,
            boxes=np.array(boxes, dtype=np.float32).reshape(-1, 4),
            flags={key: flag_array[:, j] for j, key in enumerate(WIDER_FLAGS)},
            name=name,
            source=f"{path}:{name_line}",
        ))
    refuse_duplicate_images(records)
    return records


def missing_images(records: Iterable[FaceRecord]) -> list[FaceRecord]:
    """The records whose image file does not exist."""
    return [r for r in records if not Path(r.image_path).is_file()]


def _face_line(box: np.ndarray, flags: list[int]) -> str:
    x1, y1, x2, y2 = (float(v) for v in box)
    numbers = [format_number(x1), format_number(y1), format_number(x2 - x1), format_number(y2 - y1)]
    # The official file ends every face line with a space; keep it byte-compatible.
    return " ".join(numbers + [str(int(f)) for f in flags]) + " "


def format_wider(records: Iterable[FaceRecord]) -> str:
    """The official text layout of ``records`` (see the module docstring)."""
    out: list[str] = []
    for record in records:
        if not record.name:
            raise ValueError(f"record for {record.image_path} has no name; WIDER needs 'event/file.jpg'")
        out.append(record.name)
        out.append(str(record.num_faces))
        if record.num_faces == 0:
            out.append(_face_line(np.zeros(4), [0] * len(WIDER_FLAGS)))
        for j in range(record.num_faces):
            face_flags = [int(record.flags[k][j]) if k in record.flags else 0 for k in WIDER_FLAGS]
            out.append(_face_line(record.boxes[j], face_flags))
    return "".join(line + "\n" for line in out)


def write_wider(records: Iterable[FaceRecord], annotation_file: str | Path) -> None:
    """Write ``records`` as an official WIDER ground-truth file, atomically.

    Whole-number boxes are written as integers like the official file; fractional ones keep the
    shortest decimals that read back to the same float32.  Images without faces get the official
    ``0`` count plus the all-zero placeholder line.
    """
    atomic_write_text(annotation_file, format_wider(records))
