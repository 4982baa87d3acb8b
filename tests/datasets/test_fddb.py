"""FDDB fold reader and writer on small hand-written folds."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from mtcnn_train.datasets.fddb import (
    fold_paths,
    present_folds,
    read_fddb,
    read_fddb_fold,
    read_fold_list,
    write_fddb_fold,
)
from mtcnn_train.datasets.records import FaceRecord
from mtcnn_train.errors import AnnotationError

FOLD_1 = """\
2002/08/11/big/img_591
1
123.583300 85.549500 1.265839 269.693400 161.781200  1
2002/08/26/big/img_265
2
40.000000 20.000000 0.000000 100.000000 80.000000  1
30.000000 10.000000 1.570796 200.000000 90.000000  1
"""
FOLD_2 = """\
2003/01/01/big/img_1
1
10 5 0 50 60 1
"""


def make_root(root: Path) -> Path:
    for fold, text in ((1, FOLD_1), (2, FOLD_2)):
        ellipses, names = fold_paths(root, fold)
        ellipses.parent.mkdir(parents=True, exist_ok=True)
        ellipses.write_text(text)
        names.write_text("".join(line + "\n" for line in text.splitlines() if "/" in line))
    return root


def test_fold_reads_ellipses_names_paths_and_tight_boxes(tmp_path):
    ellipse_file, _ = fold_paths(make_root(tmp_path), 1)
    records = read_fddb_fold(ellipse_file, tmp_path / "originalPics")
    assert [r.name for r in records] == ["2002/08/11/big/img_591", "2002/08/26/big/img_265"]
    assert records[0].image_path == (tmp_path / "originalPics" / "2002/08/11/big/img_591.jpg").resolve()
    np.testing.assert_array_equal(records[0].ellipses, [[123.5833, 85.5495, 1.265839, 269.6934, 161.7812]])
    # Axis-aligned ellipse: half-width = major radius, half-height = minor radius.
    np.testing.assert_allclose(records[1].boxes[0], [60, 60, 140, 100])
    # Turned by pi/2: the major radius runs vertically.
    np.testing.assert_allclose(records[1].boxes[1], [190, 60, 210, 120], atol=1e-4)
    assert records[1].ellipses.dtype == np.float64 and records[1].boxes.dtype == np.float32
    assert records[1].source.endswith("FDDB-fold-01-ellipseList.txt:4")
    assert records[1].landmarks is None and records[1].flags["invalid"].tolist() == [0, 0]


def test_read_fddb_joins_folds_in_order(tmp_path):
    root = make_root(tmp_path)
    records = read_fddb(root, folds=[2, 1])
    assert [r.name for r in records] == ["2003/01/01/big/img_1", "2002/08/11/big/img_591", "2002/08/26/big/img_265"]
    assert sum(r.num_faces for r in records) == 4
    with pytest.raises(AnnotationError, match="not found"):
        read_fddb(root, folds=[3])


def test_present_folds_lists_the_ellipse_files_there(tmp_path):
    assert present_folds(make_root(tmp_path / "fddb")) == [1, 2]
    with pytest.raises(AnnotationError, match="no FDDB-fold-XX-ellipseList.txt"):
        present_folds(tmp_path / "empty")


def test_fold_list_must_agree_with_the_ellipse_file(tmp_path):
    root = make_root(tmp_path)
    _, names = fold_paths(root, 1)
    assert read_fold_list(names) == ["2002/08/11/big/img_591", "2002/08/26/big/img_265"]
    names.write_text("2002/08/11/big/img_591\n\n2002/08/26/big/img_999\n")
    with pytest.raises(AnnotationError, match="img_999") as info:
        read_fddb(root, folds=[1])
    assert info.value.path == names and info.value.line == 3
    names.write_text("2002/08/11/big/img_591\n")
    with pytest.raises(AnnotationError, match="lists 1 images but the ellipse file has 2"):
        read_fddb(root, folds=[1])
    names.write_text("2002/08/11/big/img_591 extra\n")
    with pytest.raises(AnnotationError, match="one image name per line"):
        read_fold_list(names)


def test_write_fold_round_trip_and_box_only_records(tmp_path):
    root = make_root(tmp_path)
    records = read_fddb_fold(fold_paths(root, 1)[0], root / "originalPics")
    boxed = FaceRecord(image_path=root / "originalPics" / "x/y.jpg", boxes=[[10, 20, 30, 60]], name="x/y")
    out, names = tmp_path / "out" / "fold-ellipseList.txt", tmp_path / "out" / "fold.txt"
    write_fddb_fold(records + [boxed], out, names)
    assert out.read_text().startswith(FOLD_1)  # the official spelling, byte for byte
    assert read_fold_list(names) == ["2002/08/11/big/img_591", "2002/08/26/big/img_265", "x/y"]
    back = read_fddb_fold(out, root / "originalPics")
    for a, b in zip(records, back):
        np.testing.assert_allclose(a.ellipses, b.ellipses, atol=1e-6)
    # box_to_ellipse: upright ellipse, minor radius half the width, major 1.2 x half the height.
    np.testing.assert_allclose(back[-1].ellipses, [[24, 10, math.pi / 2, 20, 36]], atol=1e-6)


@pytest.mark.parametrize("text, line, reason", [
    ("a/b\n", 1, "missing face count"),
    ("a/b\n2\n10 5 0 50 60 1\n", 2, "face count 2 but only 1 lines follow"),
    ("a/b\n2\n10 5 0 50 60 1\nc/d\n1\n10 5 0 50 60 1\n", 4, "expected ellipse 2 of 2"),
    ("a/b\n1\n10 5 0 50 60 1\n10 5 0 50 60 1\n", 4, "expected an image name"),
    ("a/b\n1\n10 5 0 50 60\n", 3, "expected 6 fields"),
    ("a/b\n1\n10 -5 0 50 60 1\n", 3, "negative ellipse radius"),
    ("a/b\n1\n10 5 0 50 60 0.7\n", 3, "must be 1"),
    ("a/b\n1\n10 5 nan 50 60 1\n", 3, "not a finite number"),
    ("a/b\n1\n10 5 0 5e300 60 1\n", 3, "out of range"),
    ("a/b\n1\n10 5 zero 50 60 1\n", 3, "'zero' is not a number"),
    ("a/b\none\n", 2, "expected a whole number"),
    ("../../x\n0\n", 1, "escapes the dataset root"),
])
def test_malformed_folds_name_the_file_and_line(tmp_path, text, line, reason):
    path = tmp_path / "fold.txt"
    path.write_text(text)
    with pytest.raises(AnnotationError, match=reason) as info:
        read_fddb_fold(path, tmp_path / "originalPics")
    assert info.value.path == path and info.value.line == line
