"""File input and output shared by every stage: atomic writes, safe paths, image loading.

Image rule (docs/CONVENTIONS.md): every image is returned as ``H x W x 3`` uint8 **RGB**.
Grayscale is replicated to three channels, the alpha channel of RGBA is dropped, 16-bit images are
scaled to 8 bits, EXIF orientation is applied.  Missing, unreadable, corrupt, truncated, empty,
zero-size or oversized images raise :class:`~mtcnn_train.errors.ImageError`; long-running stages
catch it, count the image as skipped and report the count at the end.
"""
from __future__ import annotations

import errno
import json
import math
import os
import tempfile
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import cv2
import numpy as np

from mtcnn_train.errors import AnnotationError, ImageError, UserError, first_line

#: Images with more pixels than this are refused before decoding (a 20000x20000 header would
#: otherwise ask for 1.2 GB).  About 16k x 16k.
MAX_IMAGE_PIXELS = 16384 * 16384


# --------------------------------------------------------------------------------------------
# Atomic writes: a reader never sees a half-written file, a crash leaves only a temp file that
# no reader trusts (temp names start with '.tmp-').


# Fault injection for the kill-and-resume tests (tests/robustness/test_kill_resume.py): with
# MTCNN_FAULT_KILL_AT=k in the environment, the process SIGKILLs itself at its k-th fault point,
# i.e. at the most dangerous moments: a temp file fully written but not yet renamed into place.
_FAULT_ENV = "MTCNN_FAULT_KILL_AT"
_fault_count = 0


def fault_point() -> None:
    """Count a point where a crash must not lose or corrupt work; die there if the test says so."""
    global _fault_count
    target = os.environ.get(_FAULT_ENV)
    if not target:
        return
    _fault_count += 1
    if _fault_count == int(target):
        import signal

        os.kill(os.getpid(), signal.SIGKILL)


def _process_umask() -> int:
    """The process's umask, read once at import (setting it to read it is not thread-safe)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


#: Files we write get the mode a plain ``open(path, "w")`` gives (0666 less the umask), not
#: mkstemp's private 0600: results, checkpoints and sample sets are meant to be shared.
_FILE_MODE = 0o666 & ~_process_umask()


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path in the target's folder; rename it onto ``path`` on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=path.suffix, dir=path.parent)
    try:
        os.fchmod(fd, _FILE_MODE)
    except OSError:  # file systems without Unix modes (FAT, some network mounts): keep theirs
        pass
    finally:
        os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as fh:
            os.fsync(fh.fileno())
        fault_point()
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    # The temp file, the write, the fsync and the rename can each fail (a full disk shows up at
    # the fsync on some file systems): every one is a one-line UserError naming the file.
    try:
        with atomic_path(path) as tmp:
            tmp.write_bytes(data)
    except OSError as exc:
        raise UserError(f"{path}: cannot write ({exc.strerror or exc})") from None


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def json_safe(value: Any) -> Any:
    """``value`` as plain JSON: keys as text, tuples as lists, tensors and NumPy scalars as Python
    numbers, and NaN or infinite floats as ``null`` (JSON has no NaN; a metric with nothing to
    measure is NaN, e.g. recall without positives)."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def remove_stale_temp_files(folder: str | Path) -> int:
    """Delete ``.tmp-*`` leftovers of an interrupted run; returns how many were removed."""
    count = 0
    for tmp in Path(folder).glob(".tmp-*"):
        tmp.unlink(missing_ok=True)
        count += 1
    return count


# --------------------------------------------------------------------------------------------
# Paths from annotation files must stay inside the dataset root.


def resolve_inside(root: str | Path, relative: str, source: str | Path, line: int | None) -> Path:
    """Join ``relative`` (from an annotation file) onto ``root``, refusing escapes.

    Absolute paths, ``..`` that climbs out of the root and symlinks pointing outside are
    refused with an :class:`AnnotationError` naming the annotation file and line; so are symlink
    loops and names too long for the file system (both would fail later with a traceback).
    """
    rel = relative.replace("\\", "/").strip()
    if not rel:
        raise AnnotationError(source, line, "empty image path")
    if rel.startswith("/") or (len(rel) > 1 and rel[1] == ":"):
        raise AnnotationError(source, line, f"image path {relative!r} is absolute; it must be relative to {root}")
    try:
        root_resolved = Path(root).resolve()
    except (RuntimeError, OSError) as exc:
        raise UserError(f"{root}: cannot resolve the dataset root ({first_line(exc)})") from None
    try:
        candidate = (root_resolved / rel).resolve()
    except (RuntimeError, OSError) as exc:  # Python < 3.13 raises RuntimeError on a symlink loop
        raise AnnotationError(source, line, f"image path {relative!r} cannot be resolved "
                                            f"({first_line(exc)})") from None
    if candidate != root_resolved and root_resolved not in candidate.parents:
        raise AnnotationError(source, line, f"image path {relative!r} escapes the dataset root {root}")
    _check_name_length(candidate, relative, source, line)
    return candidate


def _check_name_length(candidate: Path, relative: str, source: str | Path, line: int | None) -> None:
    """Refuse a name the file system can never hold: every later ``is_file()`` would raise on it."""
    try:
        os.lstat(candidate)
    except OSError as exc:
        if exc.errno == errno.ENAMETOOLONG:
            shown = f"{relative[:80]!r}..." if len(relative) > 80 else repr(relative)
            raise AnnotationError(source, line, f"image path {shown} is too long for the file system") from None


# --------------------------------------------------------------------------------------------
# Images


def image_size(path: str | Path) -> tuple[int, int]:
    """(width, height) from the file header, without decoding the pixels.

    The size is the one :func:`load_image` returns: EXIF orientations 5 to 8 (a quarter turn)
    swap width and height.  Images up to twice :data:`MAX_IMAGE_PIXELS` are measured (and
    :func:`load_image` refuses those over the limit with their size); beyond that Pillow's own
    check raises, and so does this, with an :class:`ImageError` saying the image is too large.
    """
    from PIL import Image

    _raise_pil_pixel_limit(Image)
    try:
        with warnings.catch_warnings():
            # Pillow warns about damaged headers (corrupt EXIF, short tags) and between its pixel
            # limit and twice it; our own checks decide, and print nothing per image.
            warnings.simplefilter("ignore")
            with Image.open(path) as im:
                width, height = im.size
                # Pillow already turns the size of TIFF images; other formats keep the stored size.
                if im.format != "TIFF" and _exif_orientation(im) in (5, 6, 7, 8):
                    width, height = height, width
                return width, height
    except FileNotFoundError:
        raise ImageError(f"{path}: image not found") from None
    except IsADirectoryError:
        raise ImageError(f"{path}: a folder, not an image") from None
    except Image.DecompressionBombError:  # over twice our limit (see _raise_pil_pixel_limit)
        raise ImageError(f"{path}: image too large (over {2 * MAX_IMAGE_PIXELS} pixels; "
                         f"limit {MAX_IMAGE_PIXELS})") from None
    except Exception as exc:  # noqa: BLE001 - Pillow's format plugins raise many types on hostile headers
        raise ImageError(f"{path}: not a readable image ({exc.__class__.__name__})") from None


def _raise_pil_pixel_limit(pil_image_module: Any) -> None:
    """Lift Pillow's decompression-bomb limit (about 89 M pixels, an error over twice that) to
    ours where it is lower, so that Pillow never refuses an image our rule accepts; the images
    over our limit are refused by :func:`load_image` with their size.  A limit the user has
    raised or switched off (``None``) is left alone."""
    limit = pil_image_module.MAX_IMAGE_PIXELS
    if limit is not None and limit < MAX_IMAGE_PIXELS:
        pil_image_module.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS


def _exif_orientation(im: Any) -> int:
    """The EXIF orientation tag (1 = upright); 1 when the EXIF block is missing or unreadable."""
    try:
        value = im.getexif().get(0x0112, 1)
        return int(value) if isinstance(value, int) else 1
    except Exception:  # noqa: BLE001 - a broken EXIF block only means no rotation
        return 1


def to_rgb_uint8(image: np.ndarray, source: str | Path = "image") -> np.ndarray:
    """Apply the image rule to an array decoded by OpenCV (BGR / BGRA / gray, 8 or 16 bit)."""
    if image is None or image.size == 0:
        raise ImageError(f"{source}: empty image")
    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)
    elif image.dtype in (np.float32, np.float64):
        image = np.clip(image * (255.0 if image.max() <= 1.0 else 1.0), 0, 255).astype(np.uint8)
    elif image.dtype != np.uint8:
        raise ImageError(f"{source}: unsupported pixel type {image.dtype}")
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    if image.ndim == 3 and image.shape[2] == 1:
        return cv2.cvtColor(image[:, :, 0], cv2.COLOR_GRAY2RGB)
    if image.ndim == 3 and image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2RGB)
    if image.ndim == 3 and image.shape[2] == 3:
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    raise ImageError(f"{source}: unsupported image shape {image.shape}")


def load_image(path: str | Path) -> np.ndarray:
    """Read an image as ``H x W x 3`` uint8 RGB, by the rule in the module docstring."""
    path = Path(path)
    try:
        is_file, is_dir = path.is_file(), path.is_dir()
    except OSError:  # e.g. a name too long for the file system
        is_file = is_dir = False
    if not is_file:
        raise ImageError(f"{path}: {'a folder, not an image' if is_dir else 'image not found'}")
    width, height = image_size(path)
    if width <= 0 or height <= 0:
        raise ImageError(f"{path}: zero-size image")
    if width * height > MAX_IMAGE_PIXELS:
        raise ImageError(f"{path}: image too large ({width}x{height} pixels; limit {MAX_IMAGE_PIXELS})")
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as exc:
        raise ImageError(f"{path}: cannot read ({exc.strerror or exc.__class__.__name__})") from None
    # IMREAD_ANYDEPTH keeps 16-bit data; IMREAD_COLOR applies EXIF orientation.
    flags = cv2.IMREAD_COLOR | cv2.IMREAD_ANYDEPTH
    try:
        image = cv2.imdecode(data, flags)
    except cv2.error:
        image = None
    if image is None:
        raise ImageError(f"{path}: corrupt or truncated image")
    return to_rgb_uint8(image, path)


def save_image(path: str | Path, image_rgb: np.ndarray, quality: int = 95) -> None:
    """Write an RGB image atomically (format from the suffix)."""
    path = Path(path)
    params = [cv2.IMWRITE_JPEG_QUALITY, quality] if path.suffix.lower() in (".jpg", ".jpeg") else []
    ok, buf = cv2.imencode(path.suffix or ".png", cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR), params)
    if not ok:
        raise ImageError(f"{path}: cannot encode image")
    atomic_write_bytes(path, buf.tobytes())
