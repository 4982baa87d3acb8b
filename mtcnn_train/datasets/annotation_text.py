"""Reading annotation text files safely: lines with numbers, every problem named by file and line.

All dataset readers share these helpers so that they reject bad input the same way: a file that
is not UTF-8 text, a field that is not a number, NaN or infinity, absurdly large values, and
negative sizes each raise :class:`~mtcnn_train.errors.AnnotationError` with the file and the
1-based line.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from mtcnn_train.datasets.records import FaceRecord
from mtcnn_train.errors import AnnotationError
from mtcnn_train.io import resolve_inside

# The limits on coordinates, in pixels: the one place they are stated.
#: Largest coordinate an annotation reader accepts (every box, point and ellipse of a dataset).  The
#: biggest image the package loads is 16384 pixels on a side (io.MAX_IMAGE_PIXELS); anything far
#: beyond that is a corrupt file.
MAX_COORDINATE = 1_000_000.0
#: Largest coordinate a detection file may hold to be scored (evaluation/fddb.py draws detections
#: as regions): OpenCV takes drawing coordinates as 32-bit integers.  Looser than
#: :data:`MAX_COORDINATE` because a detector's boxes may reach far outside the image.
MAX_DRAWN_COORDINATE = 10_000_000.0
#: Largest attribute flag (WIDER's blur, occlusion, ...: 0..2 in the dataset) a reader accepts;
#: flags are kept as int32.
MAX_FLAG = 1_000_000


def _line_of(data: bytes, position: int) -> int:
    """The 1-based line of byte ``position``, counting every line ending (LF, CR LF, lone CR)."""
    head = data[:position]
    return head.count(b"\n") + head.replace(b"\r\n", b"").count(b"\r") + 1


def read_text_lines(path: str | Path) -> list[str]:
    """The lines of an annotation file, without line endings (``\\n``, ``\\r\\n``, or a lone ``\\r``
    as old Mac editors write).

    A missing file, a folder, unreadable bytes or binary content (not UTF-8, or NUL bytes) raise
    an :class:`AnnotationError` naming the file (and the line of the first bad byte).
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise AnnotationError(path, None, "annotation file not found") from None
    except IsADirectoryError:
        raise AnnotationError(path, None, "is a folder, expected an annotation file") from None
    except OSError as exc:
        raise AnnotationError(path, None, f"cannot read ({exc.strerror or exc})") from None
    if data.startswith(b"\xef\xbb\xbf"):  # a UTF-8 byte-order mark from Windows editors
        data = data[3:]
    nul = data.find(b"\x00")
    if nul >= 0:
        raise AnnotationError(path, _line_of(data, nul), "binary data (NUL byte); not a text file")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise AnnotationError(path, _line_of(data, exc.start), "not UTF-8 text (binary file?)") from None
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return lines


def is_number(token: str) -> bool:
    if "_" in token:  # Python reads "1_0" as 10; annotation files mean no such thing
        return False
    try:
        float(token)
    except ValueError:
        return False
    return True


def looks_numeric(line: str) -> bool:
    """True when the line is non-empty and every field is a number (a count or a face line)."""
    fields = line.split()
    return bool(fields) and all(is_number(f) for f in fields)


def parse_number(token: str, path: Path | str, line: int | None, what: str,
                 limit: float | None = MAX_COORDINATE) -> float:
    """One finite number of sane size read from text, or an AnnotationError naming ``what`` it was
    meant to be.  ``limit=None``: any finite number (e.g. a score)."""
    try:
        if "_" in token:  # Python reads "1_0" as 10
            raise ValueError(token)
        value = float(token)
    except ValueError:
        raise AnnotationError(path, line, f"{what}: {token!r} is not a number") from None
    return check_number(value, token, path, line, what, limit)


def check_number(value: float, written: Any, path: Path | str, line: int | None, what: str,
                 limit: float | None = MAX_COORDINATE) -> float:
    """The rule every reader applies to a number, read from text or JSON: finite, and at most
    ``limit`` in size; ``written`` is the value as the file wrote it, quoted in the error."""
    if not math.isfinite(value):
        raise AnnotationError(path, line, f"{what}: {written!r} is not a finite number")
    if limit is not None and abs(value) > limit:
        raise AnnotationError(path, line, f"{what}: {written!r} is out of range (limit {limit:g})")
    return value


def parse_numbers(tokens: list[str], path: Path | str, line: int, names: tuple[str, ...]) -> np.ndarray:
    """Parse ``tokens`` named ``names`` (same length, checked by the caller) into float64."""
    return np.array([parse_number(t, path, line, n) for t, n in zip(tokens, names)], dtype=np.float64)


def parse_count(token: str, path: Path | str, line: int, what: str = "face count") -> int:
    """A non-negative whole number (e.g. the face count of an image)."""
    try:
        if "_" in token:  # Python reads "1_0" as 10
            raise ValueError(token)
        value = int(token)
    except ValueError:
        raise AnnotationError(path, line, f"{what}: expected a whole number, got {token!r}") from None
    if value < 0:
        raise AnnotationError(path, line, f"{what}: must not be negative, got {value}")
    return value


def parse_flag(token: str, path: Path | str, line: int, what: str) -> int:
    """A small non-negative integer attribute (WIDER's blur, occlusion, invalid, ...)."""
    value = parse_number(token, path, line, what, limit=MAX_FLAG)
    if not value.is_integer() or value < 0:
        raise AnnotationError(path, line, f"{what}: expected a whole number >= 0, got {token!r}")
    return int(value)


def check_fields(fields: list[str], expected: int, path: Path | str, line: int, layout: str) -> None:
    if len(fields) != expected:
        raise AnnotationError(path, line, f"expected {expected} fields ({layout}), got {len(fields)}")


def check_box_size(box: np.ndarray, path: Path | str, line: int) -> None:
    """Refuse boxes whose x2 < x1 or y2 < y1 (zero size is allowed; FaceRecord.valid drops it)."""
    width, height = box[2] - box[0], box[3] - box[1]
    if width < 0 or height < 0:
        raise AnnotationError(path, line, f"negative box size (width {width:g}, height {height:g})")


def location(source: str) -> tuple[str, int | None]:
    """Split a FaceRecord.source ``file:line`` back into the file and the line."""
    path, _, line = source.rpartition(":")
    if path and line.isdigit():
        return path, int(line)
    return source, None


def refuse_duplicate_images(records: Iterable[FaceRecord]) -> None:
    """One image listed twice would be trained on twice, scored twice, or land in both the
    training and the validation split: an :class:`AnnotationError` naming both lines.

    Two entries are the same image when they resolve to the same file (``a/b.jpg`` and
    ``a//b.jpg`` too); records from several files (FDDB folds) are checked together.
    """
    refuse_duplicate_entries((str(record.image_path), record.source, record.name) for record in records)


def refuse_duplicate_entries(entries: Iterable[tuple[str, str, str]]) -> None:
    """:func:`refuse_duplicate_images` over ``(image path, source, name)`` triples (a table's rows)."""
    first: dict[str, str] = {}
    for key, source, name in entries:
        earlier = first.setdefault(key, source)
        if earlier != source:
            path, line = location(source)
            earlier_path, earlier_line = location(earlier)
            where = f"on line {earlier_line}" if earlier_path == path and earlier_line else f"at {earlier}"
            raise AnnotationError(path, line, f"image {name or key!r} is listed twice (also {where}); "
                                              "remove one of the entries")


def format_number(value: float) -> str:
    """Shortest text that reads back to the same float32 (``10`` for whole numbers)."""
    return np.format_float_positional(np.float32(value), trim="-")


class ImagePathResolver:
    """:func:`io.resolve_inside` for many names under one root, resolving each folder only once.

    Resolving every path in full costs about ten ``lstat`` calls per image, which adds up on
    CelebA's 202,599 lines.  Here each distinct folder is checked once with ``resolve_inside``
    and each file costs one ``lstat``; symlinked files, absolute paths and names ending in
    ``.``/``..`` take the full check, so the result and the errors are the same.
    """

    def __init__(self, root: str | Path, source: str | Path) -> None:
        self.root = Path(root)
        self.source = source
        self._folders: dict[str, Path] = {}

    def __call__(self, relative: str, line: int) -> Path:
        rel = relative.replace("\\", "/").strip()
        folder, _, base = rel.rpartition("/")
        if not base or base in (".", "..") or rel.startswith("/") or (len(rel) > 1 and rel[1] == ":"):
            return resolve_inside(self.root, relative, self.source, line)
        parent = self._folders.get(folder)
        if parent is None:
            try:
                parent = resolve_inside(self.root, folder or ".", self.source, line)
            except AnnotationError:  # report the whole name, as resolve_inside words it
                return resolve_inside(self.root, relative, self.source, line)
            self._folders[folder] = parent
        candidate = parent / base
        try:
            is_link = candidate.is_symlink()
        except OSError:  # e.g. a name too long for the file system: the full check words the error
            return resolve_inside(self.root, relative, self.source, line)
        if is_link:
            return resolve_inside(self.root, relative, self.source, line)
        return candidate
