"""WIDER FACE reader and writer on small hand-written files."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mtcnn_train.datasets.records import FaceRecord
from mtcnn_train.datasets.wider import WIDER_FLAGS, missing_images, read_wider, wider_paths, write_wider
from mtcnn_train.errors import AnnotationError

# Official spelling: trailing space after each face line; a 0 count followed by an all-zero line.
OFFICIAL = """\
1--Handshaking/a.jpg
2
10 20 30 40 0 0 0 0 0 0 
100 50 8 9 2 1 1 0 2 1 
1--Handshaking/empty_official.jpg
0
0 0 0 0 0 0 0 0 0 0 
4--Dancing/empty_one_zero_box.jpg
1
0 0 0 0 0 0 0 0 0 0 
4--Dancing/empty_no_placeholder.jpg
0
4--Dancing/odd_faces.jpg
2
5 6 0 12 0 0 0 0 0 0 
7 8 20 10 0 0 0 1 0 0 
"""


def write(tmp_path: Path, text: str, name: str = "gt.txt", newline: str = "\n") -> Path:
    path = tmp_path / name
    path.write_bytes(text.replace("\n", newline).encode())
    return path


def test_reads_every_entry_with_exact_boxes_and_flags(tmp_path):
    records = read_wider(write(tmp_path, OFFICIAL), tmp_path / "images")
    assert [r.name for r in records] == ["1--Handshaking/a.jpg", "1--Handshaking/empty_official.jpg",
                                         "4--Dancing/empty_one_zero_box.jpg", "4--Dancing/empty_no_placeholder.jpg",
                                         "4--Dancing/odd_faces.jpg"]
    first = records[0]
    np.testing.assert_array_equal(first.boxes, [[10, 20, 40, 60], [100, 50, 108, 59]])
    assert first.boxes.dtype == np.float32
    assert {k: v.tolist() for k, v in first.flags.items()} == {
        "blur": [0, 2], "expression": [0, 1], "illumination": [0, 1], "invalid": [0, 0],
        "occlusion": [0, 2], "pose": [0, 1]}
    assert first.landmarks is None and first.ellipses is None
    assert first.image_path == (tmp_path / "images" / "1--Handshaking" / "a.jpg").resolve()
    assert first.source == f"{tmp_path / 'gt.txt'}:1"
    # All three spellings of an image without faces give zero faces.
    for empty in records[1:4]:
        assert empty.num_faces == 0 and empty.boxes.shape == (0, 4)
        assert set(empty.flags) == set(WIDER_FLAGS)
    assert [r.source.rsplit(":", 1)[1] for r in records] == ["1", "5", "8", "11", "13"]


def test_zero_size_and_invalid_faces_are_kept_but_not_valid(tmp_path):
    odd = read_wider(write(tmp_path, OFFICIAL), tmp_path)[-1]
    np.testing.assert_array_equal(odd.boxes, [[5, 6, 5, 18], [7, 8, 27, 18]])
    assert odd.flags["invalid"].tolist() == [0, 1]
    assert odd.valid.tolist() == [False, False]


def test_windows_line_endings_and_blank_lines_are_read_the_same(tmp_path):
    plain = read_wider(write(tmp_path, OFFICIAL), tmp_path)
    crlf = read_wider(write(tmp_path, "\n" + OFFICIAL + "\n\n", name="crlf.txt", newline="\r\n"), tmp_path)
    assert len(plain) == len(crlf)
    for a, b in zip(plain, crlf):
        assert a.name == b.name
        np.testing.assert_array_equal(a.boxes, b.boxes)


def test_wider_paths_follow_the_official_layout(tmp_path):
    annotation, images = wider_paths(tmp_path, "val")
    assert annotation == tmp_path / "wider_face_split" / "wider_face_val_bbx_gt.txt"
    assert images == tmp_path / "WIDER_val" / "images"
    assert wider_paths(tmp_path)[1] == tmp_path / "WIDER_train" / "images"


def test_missing_images_lists_only_absent_files(tmp_path):
    (tmp_path / "1--Handshaking").mkdir()
    (tmp_path / "1--Handshaking" / "a.jpg").write_bytes(b"x")
    records = read_wider(write(tmp_path, OFFICIAL), tmp_path)
    assert [r.name for r in missing_images(records)] == [r.name for r in records[1:]]


def test_writer_matches_the_official_text_byte_for_byte(tmp_path):
    records = read_wider(write(tmp_path, OFFICIAL), tmp_path)
    out = tmp_path / "out" / "written.txt"
    write_wider(records, out)
    # The 1-count zero-box and no-placeholder spellings come back in the official 0-count spelling.
    expected = OFFICIAL.replace("empty_one_zero_box.jpg\n1\n", "empty_one_zero_box.jpg\n0\n").replace(
        "empty_no_placeholder.jpg\n0\n", "empty_no_placeholder.jpg\n0\n0 0 0 0 0 0 0 0 0 0 \n")
    assert out.read_text() == expected
    assert not list(out.parent.glob(".tmp-*"))


def test_writer_keeps_fractional_boxes_exactly_and_defaults_missing_flags(tmp_path):
    record = FaceRecord(image_path=tmp_path / "e/x.jpg", boxes=[[1.25, 2.5, 11.75, 30.1]], name="e/x.jpg")
    write_wider([record], tmp_path / "gt.txt")
    back = read_wider(tmp_path / "gt.txt", tmp_path)[0]
    np.testing.assert_array_equal(back.boxes, record.boxes)
    assert all(back.flags[k].tolist() == [0] for k in WIDER_FLAGS)


def test_writer_refuses_records_without_a_name(tmp_path):
    with pytest.raises(ValueError, match="no name"):
        write_wider([FaceRecord(image_path=tmp_path / "x.jpg", boxes=np.zeros((0, 4)))], tmp_path / "gt.txt")


box_strategy = st.tuples(st.integers(0, 2000), st.integers(0, 2000), st.integers(0, 500), st.integers(0, 500))


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.lists(st.tuples(box_strategy, st.lists(st.integers(0, 2), min_size=6, max_size=6)),
                         max_size=4), min_size=1, max_size=5))
def test_write_then_read_gives_the_same_records(tmp_path, images):
    records = []
    for k, faces in enumerate(images):
        boxes = np.array([[x, y, x + w, y + h] for (x, y, w, h), _ in faces], dtype=np.float32).reshape(-1, 4)
        flags = np.array([f for _, f in faces], dtype=np.int32).reshape(-1, 6)
        records.append(FaceRecord(image_path=tmp_path / f"ev/{k}.jpg", boxes=boxes, name=f"ev/{k}.jpg",
                                  flags={name: flags[:, j] for j, name in enumerate(WIDER_FLAGS)}))
    write_wider(records, tmp_path / "gt.txt")
    back = read_wider(tmp_path / "gt.txt", tmp_path)
    assert len(back) == len(records)
    for a, b in zip(records, back):
        # A single all-zero face without flags is the documented "no faces" spelling.
        if a.num_faces == 1 and not a.boxes.any() and not any(v.any() for v in a.flags.values()):
            assert b.num_faces == 0
            continue
        np.testing.assert_array_equal(a.boxes, b.boxes)
        for name in WIDER_FLAGS:
            assert a.flags[name].tolist() == b.flags[name].tolist()


@pytest.mark.parametrize("text, line, reason", [
    ("a.jpg\n", 1, "missing face count"),
    ("a.jpg\n3\n1 2 3 4 0 0 0 0 0 0\n", 2, "face count 3 but only 1 lines follow"),
    ("a.jpg\n2\n1 2 3 4 0 0 0 0 0 0\nb.jpg\n1\n1 2 3 4 0 0 0 0 0 0\n", 4, "expected face 2 of 2"),
    ("a.jpg\n1\n1 2 3 4 0 0 0 0 0 0\n1 2 3 4 0 0 0 0 0 0\n", 4, "expected an image name"),
    ("a.jpg\nmany\n", 2, "expected a whole number"),
    ("a.jpg\n-1\n", 2, "must not be negative"),
    ("a.jpg\n1\n1 2 x 4 0 0 0 0 0 0\n", 3, "'x' is not a number"),
    ("a.jpg\n1\n1 2 3 4 0 0 0 0 0\n", 3, "expected 10 fields"),
    ("a.jpg\n1\n1 2 -3 4 0 0 0 0 0 0\n", 3, "negative box size"),
    ("a.jpg\n1\n1 nan 3 4 0 0 0 0 0 0\n", 3, "not a finite number"),
    ("a.jpg\n1\n1 2 3 inf 0 0 0 0 0 0\n", 3, "not a finite number"),
    ("a.jpg\n1\n1 2 1e12 4 0 0 0 0 0 0\n", 3, "out of range"),
    ("a.jpg\n1\n1 2 3 4 0.5 0 0 0 0 0\n", 3, "blur: expected a whole number"),
    ("a.jpg\n0\n1 2 3 4 0 0 0 0 0 0\n", 3, "face line after a face count of 0"),
    ("../../etc/passwd\n0\n", 1, "escapes the dataset root"),
    ("/etc/passwd\n0\n", 1, "is absolute"),
])
def test_malformed_entries_name_the_file_and_line(tmp_path, text, line, reason):
    path = write(tmp_path, text)
    with pytest.raises(AnnotationError, match=reason) as info:
        read_wider(path, tmp_path / "images")
    assert info.value.path == path and info.value.line == line
    assert str(info.value).startswith(f"{path}:{line}: ")


def test_binary_and_missing_files_are_one_clear_error(tmp_path):
    garbage = tmp_path / "garbage.txt"
    garbage.write_bytes(b"a.jpg\n1\n\xff\xfe\x00\x81binary")
    with pytest.raises(AnnotationError, match="binary") as info:
        read_wider(garbage, tmp_path)
    assert info.value.line == 3
    with pytest.raises(AnnotationError, match="not found"):
        read_wider(tmp_path / "absent.txt", tmp_path)


def test_symlink_leaving_the_root_is_refused(tmp_path):
    root = tmp_path / "images"
    (root / "ev").mkdir(parents=True)
    outside = tmp_path / "secret.jpg"
    outside.write_bytes(b"x")
    (root / "ev" / "link.jpg").symlink_to(outside)
    (root / "ev" / "inside.jpg").write_bytes(b"x")
    ok = write(tmp_path, "ev/inside.jpg\n0\n")
    assert read_wider(ok, root)[0].image_path == (root / "ev" / "inside.jpg").resolve()
    with pytest.raises(AnnotationError, match="escapes") as info:
        read_wider(write(tmp_path, "ev/inside.jpg\n0\nev/link.jpg\n0\n", name="link.txt"), root)
    assert info.value.line == 3


@pytest.mark.parametrize("name", ["a.jpg", "./a.jpg", "ev/a.jpg", "ev//a.jpg", "ev\\a.jpg", "ev/../b.jpg",
                                  "ev/sub/../../c.jpg", " ev/a.jpg ", "ev/."])
def test_the_cached_resolver_agrees_with_resolve_inside(tmp_path, name):
    from mtcnn_train.datasets.annotation_text import ImagePathResolver
    from mtcnn_train.io import resolve_inside

    (tmp_path / "root" / "ev" / "sub").mkdir(parents=True)
    resolver = ImagePathResolver(tmp_path / "root", "gt.txt")
    assert resolver(name, 1) == resolve_inside(tmp_path / "root", name, "gt.txt", 1)
    assert resolver(name, 2) == resolver(name, 3)  # cached folders give the same answer


@pytest.mark.parametrize("name", ["../x.jpg", "ev/../../x.jpg", "/abs/x.jpg", "C:\\x.jpg", ".."])
def test_the_cached_resolver_refuses_what_resolve_inside_refuses(tmp_path, name):
    from mtcnn_train.datasets.annotation_text import ImagePathResolver

    with pytest.raises(AnnotationError, match="escapes|absolute") as info:
        ImagePathResolver(tmp_path, "gt.txt")(name, 7)
    assert info.value.line == 7 and repr(name) in str(info.value)
