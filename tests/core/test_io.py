import os

import cv2
import numpy as np
import pytest

from mtcnn_train.errors import AnnotationError, ImageError
from mtcnn_train.io import atomic_path, atomic_write_text, load_image, remove_stale_temp_files, resolve_inside


def _write(path, image, ext=".png"):
    ok, buf = cv2.imencode(ext, image)
    assert ok
    path.write_bytes(buf.tobytes())
    return path


def test_color_gray_rgba_16bit_become_rgb_uint8(tmp_path):
    bgr = np.zeros((4, 5, 3), np.uint8)
    bgr[..., 0] = 200  # blue in OpenCV's BGR
    img = load_image(_write(tmp_path / "c.png", bgr))
    assert img.shape == (4, 5, 3) and img.dtype == np.uint8 and img[0, 0].tolist() == [0, 0, 200]
    gray = load_image(_write(tmp_path / "g.png", np.full((4, 5), 77, np.uint8)))
    assert gray.shape == (4, 5, 3) and np.all(gray == 77)
    bgra = np.dstack([bgr, np.full((4, 5), 10, np.uint8)])
    rgba = load_image(_write(tmp_path / "a.png", bgra))
    assert rgba.shape == (4, 5, 3) and rgba[0, 0].tolist() == [0, 0, 200]
    deep = load_image(_write(tmp_path / "d.png", np.full((4, 5), 65535, np.uint16)))
    assert deep.dtype == np.uint8 and np.all(deep == 255)


def test_bad_images_raise_one_line_errors(tmp_path):
    with pytest.raises(ImageError, match="not found"):
        load_image(tmp_path / "missing.jpg")
    (tmp_path / "garbage.jpg").write_bytes(b"not an image at all")
    with pytest.raises(ImageError, match="garbage.jpg"):
        load_image(tmp_path / "garbage.jpg")
    good = _write(tmp_path / "t.jpg", np.full((64, 64, 3), 128, np.uint8), ".jpg")
    (tmp_path / "trunc.jpg").write_bytes(good.read_bytes()[:40])
    with pytest.raises(ImageError):
        load_image(tmp_path / "trunc.jpg")
    (tmp_path / "empty.jpg").write_bytes(b"")
    with pytest.raises(ImageError):
        load_image(tmp_path / "empty.jpg")


def test_huge_header_is_refused_before_decoding(tmp_path):
    # A valid PNG header announcing 20000 x 20000 pixels followed by almost no data.
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = chunk(b"IHDR", struct.pack(">IIBBBBB", 20000, 20000, 8, 2, 0, 0, 0))
    (tmp_path / "huge.png").write_bytes(b"\x89PNG\r\n\x1a\n" + header + chunk(b"IEND", b""))
    with pytest.raises(ImageError, match="too large"):
        load_image(tmp_path / "huge.png")


def test_resolve_inside_refuses_escapes(tmp_path):
    root = tmp_path / "root"
    (root / "a").mkdir(parents=True)
    assert resolve_inside(root, "a\\b.jpg", "list.txt", 3) == (root / "a" / "b.jpg").resolve()
    for bad in ("../x.jpg", "a/../../x.jpg", "/etc/passwd", "C:\\x.jpg", ""):
        with pytest.raises(AnnotationError, match=r"list\.txt:7"):
            resolve_inside(root, bad, "list.txt", 7)
    os.symlink(tmp_path, root / "link")
    with pytest.raises(AnnotationError, match="escapes"):
        resolve_inside(root, "link/x.jpg", "list.txt", 1)


def test_atomic_write_leaves_nothing_half_written(tmp_path):
    target = tmp_path / "out.txt"
    atomic_write_text(target, "first")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash mid-write")
    assert target.read_text() == "first"
    assert not list(tmp_path.glob(".tmp-*"))
    (tmp_path / ".tmp-leftover.npy").write_text("x")
    assert remove_stale_temp_files(tmp_path) == 1


def test_json_safe_makes_plain_strict_json():
    import math

    import numpy as np
    import torch

    from mtcnn_train.io import json_safe

    value = {"a": math.nan, 1: (np.float32(0.5), torch.tensor(2)), "b": [math.inf, None, "x"], "c": {"d": -math.inf}}
    assert json_safe(value) == {"a": None, "1": [0.5, 2], "b": [None, None, "x"], "c": {"d": None}}


def test_atomic_writes_get_the_mode_of_a_plain_write(tmp_path):
    """Not mkstemp's private 0600: others can read results the way they read any file we make."""
    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    atomic_write_text(tmp_path / "atomic.txt", "x")
    with atomic_path(tmp_path / "shard.npy") as tmp:
        tmp.write_bytes(b"x")
    expected = plain.stat().st_mode & 0o777
    assert (tmp_path / "atomic.txt").stat().st_mode & 0o777 == expected
    assert (tmp_path / "shard.npy").stat().st_mode & 0o777 == expected


def test_a_folder_where_an_image_should_be_is_named_so(tmp_path):
    (tmp_path / "a.jpg").mkdir()
    with pytest.raises(ImageError, match=r"a\.jpg: a folder, not an image"):
        load_image(tmp_path / "a.jpg")
    with pytest.raises(ImageError, match=r"b\.jpg: image not found"):
        load_image(tmp_path / "b.jpg")
