"""``io.load_image`` / ``io.image_size`` on every kind of image a dataset may hold.

The rule (docs/CONVENTIONS.md, "Images"): the result is always ``H x W x 3`` uint8 RGB (gray
replicated, alpha dropped, palette expanded, 16 bit scaled, CMYK converted, EXIF orientation
applied), or an :class:`ImageError` with a one-line message naming the file (missing, empty,
corrupt, truncated, zero-size, over ``MAX_IMAGE_PIXELS``, checked from the header before any
decoding).
"""
from __future__ import annotations

import io
import struct
import subprocess
import sys
import textwrap
import warnings
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from mtcnn_train import io as mio
from mtcnn_train.errors import ImageError
from mtcnn_train.io import MAX_IMAGE_PIXELS, image_size, load_image

REPO_ROOT = Path(__file__).resolve().parents[2]


def pattern(height: int = 32, width: int = 48) -> np.ndarray:
    """RGB blocks aligned to JPEG's 8x8 grid, so lossy formats keep them almost exactly and
    every turn or flip of the image is told apart."""
    image = np.zeros((height, width, 3), np.uint8)
    image[:8, :16] = (250, 20, 20)     # red block at the top left
    image[8:24, 32:] = (20, 220, 20)   # green block on the right
    image[24:, :8] = (30, 30, 240)     # blue block at the bottom left
    image[16:24, 8:24] = (200, 200, 40)
    return image


def encode_pil(image: Image.Image, fmt: str, **params) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


def encode_cv2(array: np.ndarray, ext: str) -> bytes:
    """Encode with OpenCV: gray, RGB (turned to OpenCV's BGR here) or BGRA as given."""
    if array.ndim == 3 and array.shape[2] == 3:
        array = cv2.cvtColor(array, cv2.COLOR_RGB2BGR)
    ok, buffer = cv2.imencode(ext, array)
    assert ok
    return buffer.tobytes()


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_header_only(width: int, height: int, depth: int = 8, color_type: int = 2) -> bytes:
    """A PNG whose header announces ``width x height`` pixels, with no pixel data at all."""
    ihdr = struct.pack(">IIBBBBB", width, height, depth, color_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IEND", b"")


def jpeg_header_only(width: int, height: int) -> bytes:
    """A small real JPEG whose frame header (SOF0) is rewritten to announce ``width x height``."""
    data = bytearray(encode_pil(Image.new("RGB", (16, 16), (1, 2, 3)), "JPEG"))
    sof = data.find(b"\xff\xc0")
    data[sof + 5:sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def assert_image_error(path: Path, match: str = "") -> ImageError:
    with pytest.raises(ImageError) as info:
        load_image(path)
    message = str(info.value)
    assert len(message.splitlines()) == 1 and str(path) in message, message
    assert match in message, message
    return info.value


def assert_rgb(image: np.ndarray, shape: tuple[int, int]) -> None:
    assert image.dtype == np.uint8 and image.shape == (*shape, 3), (image.dtype, image.shape)


# --------------------------------------------------------------------------------------------
# Conversions: every kind becomes H x W x 3 uint8 RGB with the right pixels

SOURCE = pattern()
GRAY = cv2.cvtColor(SOURCE, cv2.COLOR_RGB2GRAY)


def _conversion_cases() -> dict[str, tuple[bytes, np.ndarray, int]]:
    """name -> (file bytes, expected RGB pixels, largest allowed difference)."""
    rgb = Image.fromarray(SOURCE)
    deep_gray = GRAY.astype(np.uint16) * 257 + 100  # low byte set, so >> 8 is what is checked
    deep_rgb = SOURCE.astype(np.uint16) * 257 + 100
    palette = rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=8)
    palette_with_transparency = palette.copy()
    palette_with_transparency.info["transparency"] = 0
    bilevel = Image.fromarray(np.where(GRAY > 100, 255, 0).astype(np.uint8)).convert("1")
    gray3 = np.repeat(GRAY[:, :, None], 3, axis=2)
    return {
        "rgb png": (encode_pil(rgb, "PNG"), SOURCE, 0),
        "gray png": (encode_pil(Image.fromarray(GRAY), "PNG"), gray3, 0),
        "gray + alpha png": (encode_pil(Image.fromarray(GRAY).convert("LA"), "PNG"), gray3, 0),
        "rgba png (alpha dropped)": (encode_pil(rgb.convert("RGBA"), "PNG"), SOURCE, 0),
        "rgba png, transparent pixels keep their colour": (
            encode_cv2(np.dstack([SOURCE, np.zeros_like(GRAY)])[:, :, [2, 1, 0, 3]], ".png"), SOURCE, 0),
        "palette png": (encode_pil(palette, "PNG"), np.asarray(palette.convert("RGB")), 0),
        "palette png with transparency": (encode_pil(palette_with_transparency, "PNG"),
                                          np.asarray(palette.convert("RGB")), 0),
        "1-bit png": (encode_pil(bilevel, "PNG"), np.repeat(np.asarray(bilevel.convert("L"))[:, :, None], 3, 2), 0),
        "16-bit gray png": (encode_pil(Image.fromarray(deep_gray), "PNG"),
                            np.repeat((deep_gray >> 8).astype(np.uint8)[:, :, None], 3, 2), 0),
        "16-bit rgb png": (encode_cv2(deep_rgb, ".png"), (deep_rgb >> 8).astype(np.uint8), 0),
        "16-bit gray tiff": (encode_pil(Image.fromarray(deep_gray), "TIFF"),
                             np.repeat((deep_gray >> 8).astype(np.uint8)[:, :, None], 3, 2), 0),
        "16-bit rgb tiff": (encode_cv2(deep_rgb, ".tiff"), (deep_rgb >> 8).astype(np.uint8), 0),
        "8-bit tiff": (encode_pil(rgb, "TIFF"), SOURCE, 0),
        "gray jpeg": (encode_pil(Image.fromarray(GRAY), "JPEG", quality=100), gray3, 4),
        "rgb jpeg": (encode_pil(rgb, "JPEG", quality=100, subsampling=0), SOURCE, 6),
        "progressive jpeg": (encode_pil(rgb, "JPEG", quality=100, subsampling=0, progressive=True), SOURCE, 6),
        "cmyk jpeg": (encode_pil(rgb.convert("CMYK"), "JPEG", quality=100, subsampling=0), SOURCE, 8),
        "bmp": (encode_cv2(SOURCE, ".bmp"), SOURCE, 0),
        "webp lossless": (encode_pil(rgb, "WEBP", lossless=True), SOURCE, 0),
        "gif": (encode_pil(palette, "GIF"), np.asarray(palette.convert("RGB")), 0),
        "animated gif (first frame)": (encode_pil(palette, "GIF", save_all=True,
                                                  append_images=[Image.fromarray(255 - SOURCE).convert("P")]),
                                       np.asarray(palette.convert("RGB")), 0),
    }


CONVERSIONS = _conversion_cases()


@pytest.mark.parametrize("name", sorted(CONVERSIONS))
def test_every_kind_of_image_becomes_rgb_uint8(tmp_path, name):
    data, expected, tolerance = CONVERSIONS[name]
    path = write(tmp_path / "image.bin", data)
    image = load_image(path)
    assert_rgb(image, expected.shape[:2])
    difference = np.abs(image.astype(int) - expected.astype(int)).max()
    assert difference <= tolerance, (name, difference)
    assert image_size(path) == (expected.shape[1], expected.shape[0])


# EXIF orientation -> the transform that shows the stored pixels upright (EXIF 2.3, tag 0x0112).
ORIENTATIONS = {
    1: lambda a: a,
    2: lambda a: a[:, ::-1],                     # mirrored left-right
    3: lambda a: a[::-1, ::-1],                  # turned 180 degrees
    4: lambda a: a[::-1],                        # mirrored top-bottom
    5: lambda a: a.transpose(1, 0, 2),           # mirrored along the main diagonal
    6: lambda a: np.rot90(a, -1),                # stored turned left: turn 90 degrees clockwise
    7: lambda a: np.rot90(a, 2).transpose(1, 0, 2),  # mirrored along the other diagonal
    8: lambda a: np.rot90(a, 1),                 # turn 90 degrees counter-clockwise
}


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "TIFF"])
@pytest.mark.parametrize("orientation", sorted(ORIENTATIONS))
def test_exif_orientation_is_applied(tmp_path, orientation, fmt):
    exif = Image.Exif()
    exif[0x0112] = orientation
    params = {"quality": 100, "subsampling": 0} if fmt == "JPEG" else {"lossless": True} if fmt == "WEBP" else {}
    path = write(tmp_path / f"rotated.{fmt.lower()}", encode_pil(Image.fromarray(SOURCE), fmt, exif=exif, **params))
    image = load_image(path)
    expected = ORIENTATIONS[orientation](SOURCE)
    assert image.shape == expected.shape
    assert np.abs(image.astype(int) - expected.astype(int)).max() <= (6 if fmt == "JPEG" else 0)
    # The header size agrees with the pixels load_image returns (width and height swap on a turn).
    assert image_size(path) == (expected.shape[1], expected.shape[0])


# --------------------------------------------------------------------------------------------
# Unusable files: ImageError naming the file, never another exception


def test_missing_empty_garbage_and_folders(tmp_path):
    assert_image_error(tmp_path / "missing.jpg", "not found")
    assert_image_error(write(tmp_path / "empty.jpg", b""))
    assert_image_error(write(tmp_path / "garbage.png", b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4))
    assert_image_error(write(tmp_path / "text.jpg", b"not an image at all\n"))
    (tmp_path / "folder.jpg").mkdir()
    assert_image_error(tmp_path / "folder.jpg", "a folder, not an image")
    assert_image_error(tmp_path / ("x" * 300 + ".jpg"), "not found")  # a name too long for the file system
    with pytest.raises(ImageError, match="empty.jpg"):
        image_size(tmp_path / "empty.jpg")


@pytest.mark.parametrize("width,height", [(0, 20), (20, 0), (0, 0)])
def test_zero_size_headers(tmp_path, width, height):
    assert_image_error(write(tmp_path / "zero.png", png_header_only(width, height)))
    assert_image_error(write(tmp_path / "zero.jpg", jpeg_header_only(width, height)))


def test_unsupported_pixel_types_are_refused(tmp_path):
    floats = Image.fromarray(GRAY.astype(np.float32) / 255)
    assert_image_error(write(tmp_path / "float.tif", encode_pil(floats, "TIFF")))
    int32 = Image.fromarray(GRAY.astype(np.int32) * 1000)
    assert_image_error(write(tmp_path / "int32.tif", encode_pil(int32, "TIFF")))


TRUNCATION_FORMATS = {
    "png": lambda: encode_cv2(SOURCE, ".png"),
    "jpeg": lambda: encode_pil(Image.fromarray(SOURCE), "JPEG", quality=90),
    "progressive jpeg": lambda: encode_pil(Image.fromarray(SOURCE), "JPEG", quality=90, progressive=True),
    "bmp": lambda: encode_cv2(SOURCE, ".bmp"),
    "tiff": lambda: encode_cv2(SOURCE, ".tiff"),
    "webp": lambda: encode_pil(Image.fromarray(SOURCE), "WEBP", quality=80),
    "gif": lambda: encode_pil(Image.fromarray(SOURCE).convert("P"), "GIF"),
    "16-bit png": lambda: encode_cv2(SOURCE.astype(np.uint16) * 257, ".png"),
}


@pytest.mark.parametrize("fmt", sorted(TRUNCATION_FORMATS))
def test_truncated_images_are_refused(tmp_path, fmt):
    """Every cut gives an ImageError, except cuts that lose nothing (a PNG's IEND chunk): those
    must give exactly the full pixels, never a half-decoded image."""
    data = TRUNCATION_FORMATS[fmt]()
    full = load_image(write(tmp_path / "full", data))
    refused, complete = 0, 0
    path = tmp_path / "cut"
    for cut in sorted(set(np.linspace(0, len(data) - 1, 60).astype(int))):
        path.unlink(missing_ok=True)
        write(path, data[:cut])
        try:
            image = load_image(path)
        except ImageError as exc:
            assert len(str(exc).splitlines()) == 1 and str(path) in str(exc)
            refused += 1
            continue
        assert np.array_equal(image, full), f"cut at {cut} of {len(data)} bytes gave a partial image"
        complete += 1
    assert refused >= 55, (refused, complete)


# --------------------------------------------------------------------------------------------
# Oversized images: refused from the header, before any pixel memory is taken


@pytest.mark.parametrize("name,data", [
    ("20000x20000.png", png_header_only(20000, 20000)),
    ("100000x100000.png", png_header_only(100000, 100000)),
    ("16385x16384.png", png_header_only(16385, 16384)),
    ("20000x20000.jpg", jpeg_header_only(20000, 20000)),
    ("65535x65535.jpg", jpeg_header_only(65535, 65535)),
    ("20000x20000 16-bit.png", png_header_only(20000, 20000, depth=16)),
])
def test_oversized_headers_are_refused(tmp_path, name, data):
    path = write(tmp_path / name, data)
    assert_image_error(path, "image too large")


def test_our_pixel_limit_decides_not_pillows(tmp_path):
    """Pillow refuses more than about 179 M pixels by default and warns above 89 M; our limit
    (16384 x 16384 = 268 M) is the one that applies, with no warning below it."""
    at_limit = write(tmp_path / "at_limit.png", png_header_only(16384, 16384))
    between = write(tmp_path / "between.png", png_header_only(15000, 15000))  # over Pillow's error limit
    over_pillow_warning = write(tmp_path / "warned.png", png_header_only(10000, 10000))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a DecompressionBombWarning would fail the test
        assert image_size(at_limit) == (16384, 16384)
        assert image_size(between) == (15000, 15000)
        assert image_size(over_pillow_warning) == (10000, 10000)
    # Within the limit the header alone passes; the missing pixel data is what is refused.
    error = assert_image_error(between)
    assert "too large" not in str(error)
    assert MAX_IMAGE_PIXELS == 16384 * 16384


MEMORY_PROBE = textwrap.dedent("""
    import resource, sys
    limit = 1536 * 2**20
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    from mtcnn_train.errors import ImageError
    from mtcnn_train.io import load_image
    outcomes = []
    for path in sys.argv[1:]:
        try:
            load_image(path)
            outcomes.append("loaded")
        except ImageError as exc:
            outcomes.append("ImageError: " + str(exc))
    print("\\n".join(outcomes))
    # VmHWM is this process image's own peak: ru_maxrss would carry the parent's peak across exec.
    hwm = [line.split()[1] for line in open("/proc/self/status") if line.startswith("VmHWM:")]
    print("peak_rss_kb", hwm[0] if hwm else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
""")


def test_huge_headers_use_little_memory(tmp_path):
    """In a process limited to 1.5 GB of address space, huge headers give a clean ImageError
    (decoding 100000 x 100000 RGB pixels would need 30 GB) and the peak stays small."""
    paths = [write(tmp_path / "a.png", png_header_only(20000, 20000)),
             write(tmp_path / "b.png", png_header_only(100000, 100000)),
             write(tmp_path / "c.jpg", jpeg_header_only(20000, 20000)),
             write(tmp_path / "d.jpg", jpeg_header_only(65535, 65535))]
    result = subprocess.run([sys.executable, "-c", MEMORY_PROBE, *map(str, paths)], capture_output=True, text=True,
                            timeout=120, cwd=REPO_ROOT)
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.splitlines()
    assert len(lines) == len(paths) + 1, result.stdout
    for path, line in zip(paths, lines):
        assert line.startswith(f"ImageError: {path}: image too large"), line
    peak_mb = int(lines[-1].split()[1]) / 1024
    assert peak_mb < 400, f"peak resident memory {peak_mb:.0f} MB"


# --------------------------------------------------------------------------------------------
# Mutated files of every format


SEEDS = {name: make() for name, make in TRUNCATION_FORMATS.items()}


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(fmt=st.sampled_from(sorted(SEEDS)), data=st.data())
def test_mutated_images_never_crash(tmp_path, monkeypatch, fmt, data):
    # A flipped header byte can announce a big image that is still within the limit; a smaller
    # limit keeps each example's decoding buffer small.
    monkeypatch.setattr(mio, "MAX_IMAGE_PIXELS", 2048 * 2048)
    content = bytearray(SEEDS[fmt])
    for _ in range(data.draw(st.integers(1, 4))):
        kind = data.draw(st.sampled_from(["flip", "set", "insert", "delete", "cut"]))
        # Most of the interesting structure is in the first hundred bytes (headers).
        at = data.draw(st.one_of(st.integers(0, min(100, len(content) - 1)), st.integers(0, len(content) - 1)))
        if kind == "flip":
            content[at] ^= 1 << data.draw(st.integers(0, 7))
        elif kind == "set":
            content[at] = data.draw(st.sampled_from([0, 1, 0x7F, 0x80, 0xFF]))
        elif kind == "insert":
            content[at:at] = data.draw(st.binary(min_size=1, max_size=8))
        elif kind == "delete":
            del content[at:at + data.draw(st.integers(1, 8))]
        else:
            del content[at:]
        if not content:
            break
    path = tmp_path / f"mutant.{fmt.split()[-1]}"
    path.unlink(missing_ok=True)
    path.write_bytes(bytes(content))
    try:
        size = image_size(path)
        assert len(size) == 2 and all(isinstance(v, int) for v in size)
    except ImageError as exc:
        assert len(str(exc).splitlines()) == 1 and str(path) in str(exc)
    try:
        image = load_image(path)
    except ImageError as exc:
        assert len(str(exc).splitlines()) == 1 and str(path) in str(exc)
    else:
        assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
        assert image.shape[0] * image.shape[1] <= 2048 * 2048
