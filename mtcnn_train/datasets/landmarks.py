"""Five-point landmark lists: CelebA (in the wild and aligned), LFW+Net and MTFL.

Each reader yields one :class:`FaceRecord` per line, holding one face with a box and landmarks
``(1, 5, 2)`` in the package order (left eye, right eye, nose, left mouth corner, right mouth
corner).  Landmark values are kept as the files give them.

Formats (``fmt``):

``celeba``
    ``list_landmarks_celeba.txt`` (count line, header line, ``name lx ly rx ry nx ny mlx mly mrx
    mry``) joined by name with ``list_bbox_celeba.txt`` beside it (``name x_1 y_1 width height``).
    Images: ``img_celeba/`` in the list's folder, its parent, or the parent's ``Img/`` (CelebA
    ships the lists in ``Anno/`` beside ``Img/``).
``celeba-aligned``
    ``list_landmarks_align_celeba.txt`` (same layout, 178x218 aligned crops in
    ``img_align_celeba/``).  It has no boxes; the box comes from the landmarks by
    :func:`box_from_landmarks`.
``lfw-net``
    ``trainImageList.txt`` / ``testImageList.txt`` of Sun et al. 2013: ``dir\\file.jpg left right
    top bottom x1 y1 ... x5 y5`` (15 fields, Windows path).  Box = ``left, top, right, bottom``.
    Images: relative to the list's folder.
``mtfl``
    MTFL-style crop lists: ``path x1 x2 x3 x4 x5 y1 y2 y3 y4 y5`` (11 fields; all x, then all y).
    The face box is the whole image, so each image's size is read from its header; a missing
    image is an error naming the line unless ``default_size`` is given.  The official MTFL lists
    (``training.txt`` / ``testing.txt``) add ``gender smile glasses pose`` (15 fields) and show
    whole photos, so their box comes from the landmarks (:func:`box_from_landmarks`) and the four
    attributes become flags.  Images: relative to the list's folder.
"""
from __future__ import annotations

from array import array
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np

from mtcnn_train.datasets.annotation_text import (
    ImagePathResolver,
    check_box_size,
    check_fields,
    format_number,
    is_number,
    location,
    looks_numeric,
    parse_count,
    parse_flag,
    parse_numbers,
    read_text_lines,
    refuse_duplicate_entries,
)
from mtcnn_train.datasets.records import FaceRecord
from mtcnn_train.errors import AnnotationError, ImageError
from mtcnn_train.io import atomic_write_text, image_size

LANDMARK_FORMATS = ("celeba", "celeba-aligned", "lfw-net", "mtfl")

CELEBA_LANDMARKS_FILE = "list_landmarks_celeba.txt"
CELEBA_ALIGNED_LANDMARKS_FILE = "list_landmarks_align_celeba.txt"
CELEBA_BBOX_FILE = "list_bbox_celeba.txt"
CELEBA_LANDMARK_HEADER = ("lefteye_x lefteye_y righteye_x righteye_y nose_x nose_y "
                          "leftmouth_x leftmouth_y rightmouth_x rightmouth_y")
CELEBA_BBOX_HEADER = "image_id x_1 y_1 width height"
CELEBA_IMAGE_FOLDERS = {"celeba": "img_celeba", "celeba-aligned": "img_align_celeba"}

#: Landmark sets without usable boxes (MTFL crops, aligned CelebA) get a square box from their
#: points.  Let ``e`` be the mean of the two eyes, ``m`` the mean of the two mouth corners and
#: ``v = m - e``; the box is the square of side ``scale * |v|`` centred at
#: ``(e + m) / 2 + shift * v``.  Two rules, both measured:
#:
#: * the *detection* rule (the default) frames a face the way the cascade hands it to O-Net:
#:   on 800 MTFL training faces the published cascade's R-Net boxes, squared, have median side
#:   2.44 |v| and centre shift -0.14 along v (the box reaches up to the forehead, like WIDER
#:   boxes), and the published O-Net's landmark error on the AFLW test crops is lowest there
#:   (NME 0.067 against 0.073 at the hand-drawn rule).  Landmark training crops must use this
#:   framing: an O-Net trained on tighter crops mispredicts on the larger boxes it gets at
#:   detection time (ours: NME 0.091 on hand-drawn boxes, 0.131 on its own detections).
#: * the *hand-drawn* rule matches LFW+Net's hand-drawn boxes (medians of side/|v| 1.948 and
#:   of the centre shift -0.022 on its 10,000-face training list).
DETECTION_BOX_SCALE, DETECTION_CENTRE_SHIFT = 2.44, -0.14
HAND_DRAWN_BOX_SCALE, HAND_DRAWN_CENTRE_SHIFT = 1.95, -0.02

_POINT_NAMES = tuple(f"{p}_{axis}" for p in ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")
                     for axis in ("x", "y"))
_MTFL_NAMES = tuple(f"x{i}" for i in range(1, 6)) + tuple(f"y{i}" for i in range(1, 6))
_LFW_BOX_NAMES = ("left", "right", "top", "bottom")
#: Attribute columns of the official MTFL lists (gender 1 male / 2 female, smile and glasses
#: 1 yes / 2 no, pose 1 left profile .. 3 frontal .. 5 right profile), kept as record flags.
MTFL_ATTRIBUTES = ("gender", "smile", "glasses", "pose")


def box_from_landmarks(landmarks: np.ndarray,
                       scale: float = DETECTION_BOX_SCALE,
                       centre_shift: float = DETECTION_CENTRE_SHIFT) -> np.ndarray:
    """Square face boxes ``(N, 4)`` from ``(N, 5, 2)`` landmarks (rules above DETECTION_BOX_SCALE).

    The default is the detection rule; pass ``HAND_DRAWN_BOX_SCALE, HAND_DRAWN_CENTRE_SHIFT``
    for boxes like LFW+Net's hand-drawn ones (on its held-out test list, 3,466 faces, those
    have a median IoU of 0.82 with the drawn boxes; 94% exceed 0.65).
    """
    pts = np.asarray(landmarks, dtype=np.float64).reshape(-1, 5, 2)
    eyes = pts[:, 0:2].mean(axis=1)
    mouth = pts[:, 3:5].mean(axis=1)
    v = mouth - eyes
    centre = (eyes + mouth) / 2 + centre_shift * v
    half = scale * np.linalg.norm(v, axis=1, keepdims=True) / 2
    return np.concatenate([centre - half, centre + half], axis=1)


# --------------------------------------------------------------------------------------------
# Format detection


def _first_lines(lines: list[str], count: int) -> list[tuple[int, str]]:
    """The first ``count`` non-blank lines with their 1-based numbers."""
    out = []
    for number, line in enumerate(lines, 1):
        if line.strip():
            out.append((number, line))
            if len(out) == count:
                break
    return out


def _is_mtfl_attributes(tokens: list[str]) -> bool:
    return all(t in ("1", "2", "3", "4", "5") for t in tokens)


def detect_landmark_format(list_file: str | Path) -> str:
    """Tell celeba, celeba-aligned, lfw-net or mtfl apart, by file name and then by content.

    CelebA lists start with a count line and a header line; they are ``celeba`` when
    ``list_bbox_celeba.txt`` lies beside them (in-the-wild images need its boxes) and
    ``celeba-aligned`` otherwise or when the name says ``align``.  LFW+Net lines have 15 fields,
    MTFL crop lines 11, official MTFL lines 15 ending in four attribute codes from 1 to 5.
    """
    path = Path(list_file)
    lowered = path.name.lower()
    if lowered == CELEBA_ALIGNED_LANDMARKS_FILE:
        return "celeba-aligned"
    if lowered == CELEBA_LANDMARKS_FILE:
        return "celeba"
    head = _first_lines(read_text_lines(path), 2)
    if not head:
        raise AnnotationError(path, None, "empty landmark list")
    number, first = head[0]
    fields = first.split()
    if len(fields) == 1 and fields[0].isdigit() and len(head) > 1 and not looks_numeric(head[1][1]):
        if "align" in lowered or not (path.parent / CELEBA_BBOX_FILE).is_file():
            return "celeba-aligned"
        return "celeba"
    if len(fields) == 15 and looks_numeric(" ".join(fields[1:])):
        # Official MTFL lines end in four attribute codes (1..5); LFW+Net lines in coordinates.
        return "mtfl" if _is_mtfl_attributes(fields[11:]) else "lfw-net"
    if len(fields) == 11 and looks_numeric(" ".join(fields[1:])):
        return "mtfl"
    raise AnnotationError(path, number, f"cannot tell the landmark format from {len(fields)} fields; "
                                        f"pass the format ({', '.join(LANDMARK_FORMATS)})")


# --------------------------------------------------------------------------------------------
# CelebA


def _read_celeba_table(path: Path, value_names: tuple[str, ...]) -> tuple[list[int], list[str], np.ndarray]:
    """A CelebA list: count line, header line, then ``name v1 ... vk`` rows -> (lines, names, values (N, k))."""
    lines = read_text_lines(path)
    head = _first_lines(lines, 2)
    if len(head) < 2:
        raise AnnotationError(path, len(lines) or None, "file ends before the CelebA count and header lines")
    (count_line, count_text), (header_line, header) = head
    count = parse_count(count_text.strip(), path, count_line, what="CelebA image count")
    if any(is_number(t) for t in header.split()) or len(header.split()) not in (len(value_names), len(value_names) + 1):
        raise AnnotationError(path, header_line, f"expected a header line naming the {len(value_names)} columns "
                                                 f"({' '.join(value_names)}), got {header.strip()[:80]!r}")
    numbers, names, values = [], [], array("d")
    for number in range(header_line + 1, len(lines) + 1):
        fields = lines[number - 1].split()
        if not fields:
            continue
        check_fields(fields, 1 + len(value_names), path, number, "name " + " ".join(value_names))
        values.extend(parse_numbers(fields[1:], path, number, value_names).tolist())
        numbers.append(number)
        names.append(fields[0])
    if len(names) != count:
        raise AnnotationError(path, count_line, f"count line says {count} images but the file lists {len(names)}"
                              + (" (truncated file?)" if len(names) < count else ""))
    return numbers, names, np.frombuffer(values, np.float64).reshape(len(names), len(value_names))


def _celeba_images_root(list_path: Path, fmt: str) -> Path:
    """``img_celeba`` (or ``img_align_celeba``) in the list's folder, its parent, or the parent's
    ``Img/`` (the official download keeps ``Anno/`` and ``Img/`` side by side)."""
    folder = CELEBA_IMAGE_FOLDERS[fmt]
    candidates = [list_path.parent / folder, list_path.parent.parent / folder, list_path.parent.parent / "Img" / folder]
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    # Nothing there yet: CelebA's own layout keeps the lists in Anno/ beside the image folder.
    return candidates[1] if list_path.parent.name.lower() == "anno" else candidates[0]


def _read_celeba(path: Path, images_root: Path, aligned: bool) -> LandmarkTable:
    numbers, names, points = _read_celeba_table(path, _POINT_NAMES)
    row_of_name: dict[str, int] = {}
    bbox_path = path.parent / CELEBA_BBOX_FILE
    if not aligned:
        if not bbox_path.is_file():
            raise AnnotationError(path, None, f"CelebA in-the-wild needs {CELEBA_BBOX_FILE} beside the landmark "
                                              "list (for aligned crops use the celeba-aligned format)")
        box_numbers, box_names, box_values = _read_celeba_table(bbox_path, ("x_1", "y_1", "width", "height"))
        for row, (number, name, (x, y, w, h)) in enumerate(zip(box_numbers, box_names, box_values)):
            if w < 0 or h < 0:
                raise AnnotationError(bbox_path, number, f"negative box size (width {w:g}, height {h:g})")
            if row_of_name.setdefault(name, row) != row:
                raise AnnotationError(bbox_path, number, f"image {name!r} is listed twice")
        boxes = np.concatenate([box_values[:, :2], box_values[:, :2] + box_values[:, 2:]], axis=1)
    resolve = ImagePathResolver(images_root, path)
    table = LandmarkTableBuilder()
    for row, (number, name) in enumerate(zip(numbers, names)):
        if aligned:
            box = box_from_landmarks(points[row])[0]
        elif name in row_of_name:
            box = boxes[row_of_name[name]]
        else:
            raise AnnotationError(path, number, f"image {name!r} has no box in {bbox_path}")
        table.add(resolve(name, number), name, path, number, box, points[row])
    return table.build()


def _celeba_line(name: str, values: Iterable[float]) -> str:
    return name + " " + " ".join(format_number(v) for v in values)


def write_celeba(records: Iterable[FaceRecord], folder: str | Path) -> tuple[Path, Path]:
    """Write ``list_bbox_celeba.txt`` and ``list_landmarks_celeba.txt`` into ``folder``, atomically.

    Official CelebA layout: a count line, a header line, then ``name values...``.  Each record
    must hold exactly one face with landmarks; ``record.name`` is the image's file name, and
    :func:`read_landmarks` looks for it under ``folder/img_celeba/``.  Returns both paths.
    """
    folder = Path(folder)
    bbox_rows, landmark_rows = [], []
    for record in records:
        if record.num_faces != 1 or record.landmarks is None:
            raise ValueError(f"{record.image_path}: CelebA needs exactly one face with landmarks per image, "
                             f"got {record.num_faces} face(s)")
        if not record.name or len(record.name.split()) != 1:
            raise ValueError(f"{record.image_path}: CelebA needs an image name without spaces, got {record.name!r}")
        x1, y1, x2, y2 = (float(v) for v in record.boxes[0])
        bbox_rows.append(_celeba_line(record.name, (x1, y1, x2 - x1, y2 - y1)))
        landmark_rows.append(_celeba_line(record.name, record.landmarks[0].reshape(-1)))
    bbox_path, landmarks_path = folder / CELEBA_BBOX_FILE, folder / CELEBA_LANDMARKS_FILE
    for out, header, rows in ((bbox_path, CELEBA_BBOX_HEADER, bbox_rows),
                              (landmarks_path, CELEBA_LANDMARK_HEADER, landmark_rows)):
        atomic_write_text(out, "".join(f"{line}\n" for line in [str(len(rows)), header, *rows]))
    return bbox_path, landmarks_path


# --------------------------------------------------------------------------------------------
# LFW+Net and MTFL: one face per line, path first


def _data_lines(path: Path) -> Iterable[tuple[int, list[str]]]:
    for number, line in enumerate(read_text_lines(path), 1):
        fields = line.split()
        if fields:
            yield number, fields


def _read_lfw_net(path: Path, images_root: Path) -> LandmarkTable:
    resolve = ImagePathResolver(images_root, path)
    table = LandmarkTableBuilder()
    for number, fields in _data_lines(path):
        check_fields(fields, 15, path, number, "path left right top bottom x1 y1 ... x5 y5")
        left, right, top, bottom = parse_numbers(fields[1:5], path, number, _LFW_BOX_NAMES)
        box = np.array([left, top, right, bottom])
        check_box_size(box, path, number)
        points = parse_numbers(fields[5:], path, number, _POINT_NAMES)
        table.add(resolve(fields[0], number), fields[0], path, number, box, points)
    return table.build()


def _mtfl_image_box(image_path: Path, default_size: tuple[int, int] | None, path: Path, number: int) -> np.ndarray:
    """The whole image as the face box: ``0, 0, width, height`` from the image header."""
    if default_size is not None and not image_path.exists():
        width, height = default_size
    else:
        try:
            width, height = image_size(image_path)
        except ImageError as exc:
            raise AnnotationError(path, number, f"{exc} (the MTFL face box is the whole image, so its size is "
                                                "needed)") from None
    return np.array([0.0, 0.0, width, height])


def _read_mtfl(path: Path, images_root: Path, default_size: tuple[int, int] | None) -> LandmarkTable:
    resolve = ImagePathResolver(images_root, path)
    table = LandmarkTableBuilder()
    for number, fields in _data_lines(path):
        if len(fields) not in (11, 15):
            raise AnnotationError(path, number, f"expected 11 fields (path x1..x5 y1..y5) or 15 (official MTFL: "
                                                f"also {' '.join(MTFL_ATTRIBUTES)}), got {len(fields)}")
        values = parse_numbers(fields[1:11], path, number, _MTFL_NAMES)
        points = np.stack([values[:5], values[5:]], axis=1).reshape(1, 5, 2)
        image_path = resolve(fields[0], number)
        if len(fields) == 11:  # a face crop: the crop is the box
            box, flags = _mtfl_image_box(image_path, default_size, path, number), {}
        else:  # a whole photo: the box comes from the landmarks
            box = box_from_landmarks(points)[0]
            flags = {name: parse_flag(tok, path, number, name) for name, tok in zip(MTFL_ATTRIBUTES, fields[11:])}
        table.add(image_path, fields[0], path, number, box, points, flags)
    return table.build()


# --------------------------------------------------------------------------------------------


def read_landmarks(list_file: str | Path, images_root: str | Path | None = None, fmt: str = "auto", *,
                   default_size: tuple[int, int] | None = None, derive_boxes: bool = False) -> list[FaceRecord]:
    """Read a landmark list (format in the module docstring); one face per record.

    Args:
        list_file: the list (CelebA's landmark list, LFW+Net's or MTFL's image list).
        images_root: folder the image names are relative to; defaults per format (see module
            docstring).  Paths may not escape it.
        fmt: ``auto`` (:func:`detect_landmark_format`) or one of :data:`LANDMARK_FORMATS`.
        default_size: MTFL only: ``(width, height)`` used as the box of images that are missing.
        derive_boxes: replace the file's boxes with :func:`box_from_landmarks` (always on for
            celeba-aligned).  MTFL crops are much larger than the face (measured on the shared
            MTFL files: the crop side is about 4.9 eye-mouth distances in the training list and
            3.1 in the AFLW test list, against 2.44 for the boxes the cascade hands to O-Net), so
            this gives boxes framed like the detector's.

    :func:`read_landmark_table` reads the same list into arrays (what a sample run holds).
    """
    return read_landmark_table(list_file, images_root, fmt, default_size=default_size,
                               derive_boxes=derive_boxes).records()


def read_landmark_table(list_file: str | Path, images_root: str | Path | None = None, fmt: str = "auto", *,
                        default_size: tuple[int, int] | None = None, derive_boxes: bool = False) -> LandmarkTable:
    """:func:`read_landmarks` into a :class:`LandmarkTable` (about 150 bytes a face instead of 2.3 KB)."""
    path = Path(list_file)
    if fmt == "auto":
        fmt = detect_landmark_format(path)
    if fmt not in LANDMARK_FORMATS:
        raise ValueError(f"unknown landmark format {fmt!r}; expected auto or one of {LANDMARK_FORMATS}")
    if images_root is None:
        root = _celeba_images_root(path, fmt) if fmt in CELEBA_IMAGE_FOLDERS else path.parent
    else:
        root = Path(images_root)
    if fmt in CELEBA_IMAGE_FOLDERS:
        table = _read_celeba(path, root, aligned=fmt == "celeba-aligned")
    elif fmt == "lfw-net":
        table = _read_lfw_net(path, root)
    else:
        table = _read_mtfl(path, root, default_size)
    refuse_duplicate_entries((str(table.image_path(row)), table.source(row), table.names[row])
                             for row in range(len(table)))
    if derive_boxes:
        table.boxes = box_from_landmarks(table.landmarks).astype(np.float32)
    return table


# --------------------------------------------------------------------------------------------
# The list as arrays


@dataclass
class LandmarkTable:
    """A landmark list held as arrays, one face per row; rows become :class:`FaceRecord` on demand.

    A FaceRecord per face costs about 2.3 KB (a Path, three small arrays, a flags dict, two
    strings); CelebA's 202,599 faces would hold about 450 MB for the whole of a sample run.  Here a
    face costs its numbers, its file name and its name (about 150 bytes), and a sample run builds
    the records of one work unit at a time (:meth:`take`, :meth:`record`).

    Attributes:
        folders: the distinct image folders; ``folder_index`` (N,) picks each row's.
        files: each row's file name in its folder.
        names: each row's name as the list spells it (:attr:`FaceRecord.name`).
        list_files: the distinct list files; ``list_index`` (N,) and ``lines`` (N,) give each
            row's ``file:line`` (:attr:`FaceRecord.source`; line 0: the source is the file entry alone).
        boxes: ``(N, 4)`` float32; landmarks: ``(N, 5, 2)`` float32; flags: name -> ``(N,)`` int32,
            always with ``invalid``.
    """

    folders: list[str]
    folder_index: np.ndarray
    files: list[str]
    names: list[str]
    list_files: list[str]
    list_index: np.ndarray
    lines: np.ndarray
    boxes: np.ndarray
    landmarks: np.ndarray
    flags: dict[str, np.ndarray]

    def __len__(self) -> int:
        return len(self.files)

    def image_path(self, row: int) -> Path:
        return Path(self.folders[self.folder_index[row]]) / self.files[row]

    def source(self, row: int) -> str:
        where = self.list_files[self.list_index[row]]
        return f"{where}:{self.lines[row]}" if self.lines[row] else where

    def key(self, row: int) -> str:
        """:func:`~mtcnn_train.datasets.split.record_key` of the row's record, without building it."""
        return self.names[row] or str(self.image_path(row))

    def record(self, row: int) -> FaceRecord:
        return FaceRecord(image_path=self.image_path(row), boxes=self.boxes[row:row + 1].copy(),
                          landmarks=self.landmarks[row:row + 1].copy(),
                          flags={k: v[row:row + 1].copy() for k, v in self.flags.items()},
                          name=self.names[row], source=self.source(row))

    def records(self) -> list[FaceRecord]:
        return [self.record(row) for row in range(len(self))]

    def __getitem__(self, row: int) -> FaceRecord:
        if not -len(self) <= row < len(self):
            raise IndexError(row)
        return self.record(row % len(self))

    def __iter__(self) -> Iterator[FaceRecord]:
        return (self.record(row) for row in range(len(self)))

    def take(self, rows: Sequence[int] | np.ndarray) -> "LandmarkTable":
        """The table of the given rows (arrays copied; the strings shared, not copied)."""
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        return LandmarkTable(folders=self.folders, folder_index=self.folder_index[rows],
                             files=[self.files[r] for r in rows], names=[self.names[r] for r in rows],
                             list_files=self.list_files, list_index=self.list_index[rows], lines=self.lines[rows],
                             boxes=self.boxes[rows], landmarks=self.landmarks[rows],
                             flags={k: v[rows] for k, v in self.flags.items()})

    @classmethod
    def from_records(cls, records: Iterable[FaceRecord]) -> "LandmarkTable":
        """A table of one-face records with landmarks (e.g. a box set's faces with five points).

        Raises ValueError for a record that is not one face with landmarks: such a list stays a list."""
        builder = LandmarkTableBuilder()
        for record in records:
            if record.num_faces != 1 or record.landmarks is None:
                raise ValueError(f"{record.source or record.image_path}: a landmark table row is one face with "
                                 f"landmarks, got {record.num_faces} face(s)")
            where, line = location(record.source)
            builder.add(record.image_path, record.name, where, line or 0, record.boxes[0], record.landmarks[0],
                        {k: int(v[0]) for k, v in record.flags.items()})
        return builder.build()

    @classmethod
    def concat(cls, tables: Sequence["LandmarkTable"]) -> "LandmarkTable":
        """The rows of several tables, in order."""
        builder = LandmarkTableBuilder()
        for table in tables:
            for row in range(len(table)):
                builder.add(table.image_path(row), table.names[row], table.list_files[table.list_index[row]],
                            int(table.lines[row]), table.boxes[row], table.landmarks[row],
                            {k: int(v[row]) for k, v in table.flags.items()})
        return builder.build()


class LandmarkTableBuilder:
    """Rows appended one at a time into flat arrays (8 bytes a number while reading)."""

    def __init__(self) -> None:
        self._folders: dict[str, int] = {}
        self._list_files: dict[str, int] = {}
        self.folder_index, self.list_index, self.lines = array("i"), array("i"), array("i")
        self.files: list[str] = []
        self.names: list[str] = []
        self.boxes, self.points = array("d"), array("d")
        self.flags: dict[str, array] = {}

    def add(self, image_path: Path, name: str, list_file: str | Path, line: int, box: Sequence[float] | np.ndarray,
            points: Sequence[float] | np.ndarray, flags: dict[str, int] | None = None) -> None:
        image_path = Path(image_path)
        row = len(self.files)
        self.folder_index.append(self._folders.setdefault(str(image_path.parent), len(self._folders)))
        file = image_path.name
        self.files.append(name if file == name else file)  # share the string when they are equal
        self.names.append(name)
        self.list_index.append(self._list_files.setdefault(str(list_file), len(self._list_files)))
        self.lines.append(int(line))
        self.boxes.extend(np.asarray(box, np.float64).reshape(4).tolist())
        self.points.extend(np.asarray(points, np.float64).reshape(10).tolist())
        for flag, value in (flags or {}).items():
            self.flags.setdefault(flag, array("i", [0]) * row).append(int(value))
        for column in self.flags.values():  # flags a row did not give are 0
            if len(column) == row:
                column.append(0)

    def build(self) -> LandmarkTable:
        n = len(self.files)
        flags = {k: np.frombuffer(v, np.int32).copy() for k, v in self.flags.items()}
        flags.setdefault("invalid", np.zeros(n, np.int32))
        return LandmarkTable(folders=list(self._folders), folder_index=np.frombuffer(self.folder_index, np.int32).copy(),
                             files=self.files, names=self.names, list_files=list(self._list_files),
                             list_index=np.frombuffer(self.list_index, np.int32).copy(),
                             lines=np.frombuffer(self.lines, np.int32).copy(),
                             boxes=np.frombuffer(self.boxes, np.float64).astype(np.float32).reshape(n, 4),
                             landmarks=np.frombuffer(self.points, np.float64).astype(np.float32).reshape(n, 5, 2),
                             flags=flags)
