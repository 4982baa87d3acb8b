"""FDDB matching: the official solver reproduced, and the optimal alternative.

The official ``evaluate`` program's Hungarian solver (libhungarian) does not always find the
matching of largest total overlap (docs/FDDB.md, "Matching").  ``matching="official"`` must give
exactly its answers; ``matching="optimal"`` the true optimum.

Expected values here were produced by the official code, compiled (docs/FDDB.md):
* the assignments in ``TIED_MATRICES`` by its solver (Hungarian.cpp) alone;
* the ROC texts in ``CASES`` by the whole ``evaluate`` program, run on exactly these files (blank
  JPEGs of the given sizes, faces written ``major minor angle cx cy 1``, detections as given).
  Most cases were picked at random among those where the official and the optimal matchings give
  different curves, then shrunk; ``optimal_differs`` says which (checked below, so the cases
  really tell the two apart).
"""
from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment

from mtcnn_train.errors import UserError
from mtcnn_train.evaluation import fddb
from mtcnn_train.evaluation.fddb_matching import (assignment, kuhn_libhungarian, official_assignment,
                                                  optimal_assignment)

# The case of docs/FDDB.md, as the official solver sees it (3 detections x 4 faces).
DOC_MATRIX = np.array([[.091, .2768, .3077, .5701], [0, .4947, 0, .4051], [.0043, .4697, .1535, .7383]])


def test_the_documented_case_official_vs_optimal():
    rows, cols = official_assignment(DOC_MATRIX)
    assert rows.tolist() == [0, 1, 2] and cols.tolist() == [0, 1, 3]  # total 1.324, as the official solver
    rows, cols = optimal_assignment(DOC_MATRIX)
    assert rows.tolist() == [0, 1, 2] and cols.tolist() == [2, 1, 3]  # total 1.5407
    assert DOC_MATRIX[rows, cols].sum() == pytest.approx(1.5407)


@pytest.mark.parametrize("matching, cont", [("official", 0.091 + 0.4947 + 0.7383), ("optimal", 0.3077 + 0.4947 + 0.7383)])
def test_the_documented_case_through_the_per_image_loop(matching, cont):
    # In the scorer's orientation (4 faces x 3 detections): more faces than detections, so the
    # official program transposes the matrix, which gives DOC_MATRIX.
    curve = fddb.image_curve(DOC_MATRIX.T, np.array([0.5, 0.5, 0.5]), matching=matching)
    assert curve.tp_cont[0] == pytest.approx(cont)
    assert curve.tp_disc[0] == 1  # only 0.7383 is above 0.5 either way


# (matrix as the solver sees it, official assignment (column of each row), tied with SciPy's)
TIED_MATRICES = [
    ([[0, 0, .25], [0, .25, 0], [.5, 0, .75]], [0, 1, 2]),  # official: 1 pair above 0.5, SciPy's: none
    ([[.25, .5, .5], [0, 0, .5], [.25, 0, .75]], [1, 0, 2]),
    ([[0, .5, 0, 0], [0, 0, .75, .25], [.25, .75, 0, 0]], [0, 2, 1]),
    ([[.75, 0, .5], [.75, .75, 0], [1, 1, 0]], [2, 0, 1]),
    ([[.5, .25], [.25, 0]], [1, 0]),
]


@pytest.mark.parametrize("matrix, expected", TIED_MATRICES)
def test_ties_are_broken_like_the_official_solver(matrix, expected):
    matrix = np.array(matrix, dtype=np.float64)
    assert kuhn_libhungarian(matrix).tolist() == expected
    r, c = linear_sum_assignment(matrix, maximize=True)
    assert c.tolist() != expected  # a different choice ...
    assert matrix[r, c].sum() == pytest.approx(matrix[np.arange(len(expected)), expected].sum())  # ... of equal total


def test_ties_can_change_the_true_positive_count():
    rows, cols = official_assignment(np.array(TIED_MATRICES[0][0]))
    assert (rows.tolist(), cols.tolist()) == ([1, 2], [1, 2])  # the 0-overlap pair (0, 0) is not a match
    rows, cols = optimal_assignment(np.array(TIED_MATRICES[0][0]))
    assert (rows.tolist(), cols.tolist()) == ([0, 1, 2], [2, 1, 0])


def test_official_is_optimal_except_on_non_square_column_started_matrices():
    # The root cause (docs/FDDB.md): the solver can stop short only when it has more columns than
    # rows and started its cover on the columns (their maxima add up to less than the rows').
    rng = np.random.default_rng(0)
    short = 0
    for _ in range(300):
        m = int(rng.integers(1, 6))
        n = int(rng.integers(m, 8))
        matrix = rng.random((m, n)) * (rng.random((m, n)) < 0.4)
        # No all-zero row or column, so that the solver sees this very matrix (not reduced).
        matrix[np.arange(m), rng.integers(0, n, m)] += 0.01
        matrix[rng.integers(0, m, n), np.arange(n)] += 0.01
        rows, cols = official_assignment(matrix)
        r, c = optimal_assignment(matrix)
        loss = matrix[r, c].sum() - matrix[rows, cols].sum()
        column_start = matrix.max(axis=0).sum() < matrix.max(axis=1).sum()
        if m == n or not column_start:
            assert loss == pytest.approx(0, abs=1e-12)
        short += loss > 1e-12
        assert len(set(cols.tolist())) == len(cols)  # one to one
    assert short > 0  # and it does stop short on some


def test_reduction_transposition_and_order_follow_the_official_program():
    # 4 faces x 3 detections with an untouched face (row 1) and an untouched detection (col 0):
    # 3 faces x 2 detections remain, so the solver sees it transposed (detections as rows) and
    # the pairs come out by detection.
    overlaps = np.array([[0, .6, 0], [0, 0, 0], [0, .7, .2], [0, 0, .9]])
    for method in ("official", "optimal"):
        rows, cols = assignment(overlaps, method)
        assert rows.tolist() == [2, 3] and cols.tolist() == [1, 2]
    assert [a.tolist() for a in official_assignment(np.zeros((2, 3)))] == [[], []]
    assert [a.tolist() for a in official_assignment(np.zeros((0, 3)))] == [[], []]


def test_unknown_matching_is_refused(run_cli, tmp_path):
    with pytest.raises(ValueError, match="unknown matching"):
        assignment(DOC_MATRIX, "greedy")
    with pytest.raises(UserError, match="unknown FDDB matching"):
        fddb.score_fddb([], {}, {}, matching="greedy")
    result = run_cli("eval", "fddb", "--detections", tmp_path / "d.txt", "--matching", "greedy", "--out", tmp_path / "o")
    assert result.returncode == 2 and "greedy" in result.stderr


# ---- whole program: official evaluate output on small cases ------------------------------------


class Image(NamedTuple):
    height: int
    width: int
    faces: str  # "major minor angle cx cy; ..."
    detections: str  # "left top width height score; ..." or "major minor angle cx cy score; ..."


class Case(NamedTuple):
    ellipse: bool
    optimal_differs: bool
    images: list[Image]
    disc: str
    cont: str


CASES = [
    Case(False, False, [
        Image(93, 74,
            "7.9 5.7 1.2 0.4 76.4; 15.4 12.1 -0.63 20.6 23.7; 10.8 8.7 0.17 73.7 73.7; 13.1 13 -0.91 11.9 57",
            "-20 66 17 15 0.6"),
        Image(42, 55,
            "8.2 5 -0.98 38.1 8.4; 9.8 5.9 1.06 8.5 11.2; 16.4 13.2 1.11 35.2 31.2",
            "27 10 17 11 0.4; -1 6 15 22 0.8; -1 -2 15 19 0.5; 4 8 14 19 0.5"),
    ], '0.142857 4 0.4\n0.142857 3 0.5\n0 2 0.6\n0 1 0.8\n',
       '0.0973043 4\n0.0729483 3\n0.0543093 2\n0.0543093 1\n'),
    Case(False, False, [
        Image(91, 61,
            "14.9 14.4 -1.12 56.9 0.5; 14.8 13.7 -1.16 25.6 74.2; 5.2 4.4 0.94 31.3 66.1; "
            "7.9 5.4 -0.44 10.9 31.5; 17.3 14.3 -0.51 16.6 86.6",
            "5 52 50 46 0.6; 26 57 12 6 0.8; 15 59 35 32 0.6; 17 56 29 24 0.9"),
        Image(50, 43,
            "16.9 15.8 -1.24 26 24; 12.7 11 -0.62 41.3 23.3; 13.2 11.3 -1.01 2.7 20.6",
            "-1 10 52 49 0.9; -13 10 17 17 0.95"),
    ], '0.125 5 0.6\n0 4 0.8\n0 3 0.9\n0 1 0.95\n',
       '0.195085 5\n0.159746 4\n0.148692 3\n0.0347222 1\n'),
    Case(True, False, [
        Image(90, 58,
            "13.1 8.8 -0.21 51.3 33.8; 14.2 9.1 0.73 45 74.3; 13.8 10.3 -1.39 30.1 68.2; "
            "7.5 5.3 0.12 43.4 80.7",
            "10.3 12.8 -1.55 21 76 0.2; 17.6 12.6 -1.35 31.2 66.9 0.95; 9 6.2 0.34 43.1 77.8 0.9; "
            "18.1 9.4 0.76 43.3 68.8 0.2; 9.5 7.1 0.03 42.3 81.2 0.5; 5.4 6.2 0.47 39.5 83.6 0.95"),
        Image(80, 99,
            "7.3 6.1 -0.17 74.3 15.2",
            "5.6 7.4 -0.25 69.1 16.8 0.6"),
    ], '0.6 4 0.2\n0.4 3 0.5\n0.2 3 0.6\n0.2 2 0.9\n0.2 1 0.95\n',
       '0.427402 4\n0.380892 3\n0.339308 3\n0.278439 2\n0.205015 1\n'),
    Case(False, False, [
        Image(63, 58,
            "10.9 6.8 1.59 51.5 57.7; 8.2 6.2 -0.87 7.2 2.1; 11.5 7.5 -1.04 49.9 30.5",
            "36 19 21 25 0.4; 38 21 29 17 0.8; 46 40 11 19 0.2; 30 17 15 19 0.4; -2 -9 13 12 0.8; "
            "30 22 30 31 0.9"),
        Image(60, 58,
            "14.8 9.9 1.34 34.6 19.8; 17.2 11.4 0.05 5.3 57.9",
            "18 0 40 39 0.8; -7 44 39 27 0.95"),
    ], '0.2 7 0.2\n0.2 6 0.4\n0.2 4 0.8\n0 2 0.9\n0 1 0.95\n',
       '0.440567 7\n0.362547 6\n0.362547 4\n0.149461 2\n0.0954545 1\n'),
    Case(True, False, [
        Image(78, 57,
            "18 13.3 -0.17 21.2 45.4; 17.3 16.5 -0.39 15.2 69",
            "20.7 8.8 -0.57 14.5 49.1 0.6; 22.7 13 -0.31 28.2 31.3 0.9; 13.2 14.1 -0.82 13.8 61.5 0.6; "
            "22.6 12.7 -0.33 16.8 35.9 0.9"),
        Image(61, 78,
            "13.3 9.4 -0.08 40.9 38.5; 7.6 7.5 -0.67 23.9 15.6",
            "12.5 11.4 -0.5 43.9 38 0.2; 16.2 9.3 -0.46 39.7 35.8 0.5; 9.1 6.6 -0.64 17.2 12.5 0.9"),
    ], '0.5 5 0.2\n0.5 4 0.5\n0.25 4 0.6\n0 3 0.9\n',
       '0.489974 5\n0.477356 4\n0.317595 4\n0.137094 3\n'),
    Case(False, True, [
        Image(53, 46,
            "14.9 12 -1.08 9.9 20.1; 9.3 5.8 -0.3 20.6 15.2; 10 7.3 -0.39 28.5 26.4",
            "-3 -2 21 15 0.8; -8 4 26 37 0.95"),
    ], '0.333333 1 0.8\n0.333333 0 0.95\n',
       '0.199746 1\n0.199746 0\n'),
    Case(False, True, [
        Image(53, 94,
            "16.5 15.2 -0.38 49.7 9.2; 14.9 14.2 -1.09 70 36.8; 5.5 5.3 -0.07 25.3 1.6",
            "26 -9 49 46 0.5; 32 -9 43 45 0.8"),
    ], '0 2 0.5\n0 1 0.8\n',
       '0.146366 2\n0.140868 1\n'),
    Case(False, True, [
        Image(40, 90,
            "16.9 12.5 -0.68 58.9 7.9; 10 7 0.13 26.6 32.8; 12.7 9.2 0.98 54.7 5.3",
            "7 5 19 32 0.9; 12 22 10 15 0.5; 16 32 12 20 0.95; 43 -17 38 33 0.6"),
    ], '0.333333 3 0.5\n0.333333 2 0.6\n0 2 0.9\n0 1 0.95\n',
       '0.252511 3\n0.310757 2\n0.108108 2\n0.108108 1\n'),
    Case(False, True, [
        Image(64, 47,
            "14 8.9 -0.44 15.6 29; 14.8 9.4 1.36 22.4 23.4; 14.1 10 0.68 19.5 30.6; 7.5 5.1 1.16 27.1 27; "
            "15.1 14.6 -1.09 46.9 0.9",
            "2 20 19 18 0.9; 32 -15 41 29 0.95; -1 9 25 35 0.5; 31 -10 26 25 0.6"),
    ], '0.4 2 0.5\n0.4 1 0.6\n0.4 0 0.9\n0.2 0 0.95\n',
       '0.332005 2\n0.27779 1\n0.27779 0\n0.158974 0\n'),
    Case(False, True, [
        Image(50, 43,
            "15.1 12.3 0.53 41.6 48.9; 13.3 12.1 1.15 39.3 14.4; 9.3 6.3 0.14 40.7 37.9",
            "21 42 29 21 0.5; 6 24 38 47 0.4"),
    ], '0 2 0.4\n0 1 0.5\n',
       '0.174125 2\n0.165278 1\n'),
    Case(False, True, [
        Image(53, 61,
            "5.9 5.8 1.47 50.7 24.8; 10.8 8.2 -0.13 13.5 42.4; 17.7 15.4 1.48 44.3 36.8",
            "20 10 59 50 0.9; 24 10 56 57 0.8"),
    ], '0 2 0.8\n0 1 0.9\n',
       '0.0286516 2\n0.158253 1\n'),
    Case(False, True, [
        Image(50, 80,
            "11.6 7.4 0.95 25.3 13.2; 9.4 7.3 -0.8 20.1 20.8; 15.2 12.2 1.07 8.9 14.5",
            "-2 -1 23 25 0.95; 0 -2 43 38 0.5"),
    ], '0 2 0.5\n0.333333 0 0.95\n',
       '0.100527 2\n0.26864 0\n'),
    Case(False, True, [
        Image(94, 47,
            "11.9 9.9 -0.41 41.8 52.4; 16.1 14.1 0.57 31.5 72.9; 16.1 12.8 -1.6 28.2 81.2",
            "16 56 24 41 0.6; 17 75 25 18 0.8"),
    ], '0.333333 1 0.6\n0.333333 0 0.8\n',
       '0.226951 1\n0.214286 0\n'),
    Case(False, True, [
        Image(57, 75,
            "13.1 11.1 1.59 31 44.2; 15.6 12.9 -1.17 2.9 22.7; 15.7 15.6 0.83 16.9 51.1",
            "9 31 31 30 0.95; 21 31 24 24 0.95"),
    ], '0.333333 1 0.95\n',
       '0.24096 1\n'),
    Case(False, True, [
        Image(80, 60,
            "8.9 7.7 0.63 30 55.5; 15.3 14.6 1.06 6.5 68.9; 10.8 7 -1.18 26.6 77.9",
            "15 64 18 27 0.95; 13 60 31 37 0.9"),
    ], '0 2 0.9\n0 1 0.95\n',
       '0.163443 2\n0.145299 1\n'),
    Case(False, True, [
        Image(93, 86,
            "8.3 8.1 0.15 43.9 72; 16.9 11.9 -1.21 72.1 41.1; 12.2 9.7 1.21 48.9 65.5; 15 9 0.19 52 9.7",
            "39 1 15 24 0.4; 45 -12 19 31 0.2; 33 48 34 27 0.6"),
    ], '0.25 2 0.2\n0 2 0.4\n0 1 0.6\n',
       '0.206921 2\n0.197895 2\n0.0860861 1\n'),
    Case(True, True, [
        Image(41, 61,
            "16.6 13.2 1.32 5.5 6.2; 17.6 17.2 0.62 20.4 29.3; 5 3.7 1.13 13.9 5.3",
            "22.3 21 0.61 22.4 30 0.8; 9.2 6.1 0.98 23.6 27.5 0.6"),
    ], '0 2 0.6\n0.333333 0 0.8\n',
       '0.0343104 2\n0.236238 0\n'),
    Case(False, True, [
        Image(67, 57,
            "5.6 3.4 1.04 10.5 29.4; 17.9 16.4 0.32 11.9 50.4; 12.2 9.4 0.27 8.8 62.5",
            "-3 43 21 38 0.95; 4 46 13 14 0.4; 9 21 14 11 0.8; 3 25 12 8 0.95"),
    ], '0.333333 3 0.4\n0.333333 2 0.8\n0.333333 1 0.95\n',
       '0.318553 3\n0.321625 2\n0.321625 1\n'),
    Case(False, True, [
        Image(77, 47,
            "7.8 5.4 0.48 16.9 63.8; 5.1 5 0.63 14.8 31.6; 16.5 16.2 -0.66 31.1 36.5",
            "9 20 32 38 0.95; 16 19 31 43 0.4"),
    ], '0 2 0.4\n0.333333 0 0.95\n',
       '0.0298869 2\n0.181447 0\n'),
    Case(False, True, [
        Image(40, 45,
            "7.6 7.1 0.14 10 23; 16.3 10.6 0.22 43 8.7; 16.7 11.8 0.23 30.1 3.2",
            "12 -16 21 34 0.5; 19 -8 42 50 0.4"),
    ], '0 2 0.4\n0 1 0.5\n',
       '0.0978276 2\n0.141769 1\n'),
]


def _write_case(root: Path, case: Case) -> dict:
    """Write the case's files; returns the ``evaluate_fddb_file`` arguments naming them."""
    names, faces, dets = [], [], []
    for k, image in enumerate(case.images, 1):
        name = f"2002/08/{k:02d}/big/img_{k}"
        path = root / "originalPics" / f"{name}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(path), np.zeros((image.height, image.width, 3), np.uint8))
        face_lines = [f.strip() + " 1" for f in image.faces.split(";")]
        det_lines = [d.strip() for d in image.detections.split(";")]
        names.append(name)
        faces += [name, str(len(face_lines))] + face_lines
        dets += [name, str(len(det_lines))] + det_lines
    (root / "list.txt").write_text("\n".join(names) + "\n")
    (root / "ellipseList.txt").write_text("\n".join(faces) + "\n")
    (root / "detections.txt").write_text("\n".join(dets) + "\n")
    return {"detections_file": root / "detections.txt", "annotations_file": root / "ellipseList.txt",
            "image_list": root / "list.txt", "images_dir": root / "originalPics", "ellipse": case.ellipse}


def _cli_args(files: dict) -> list:
    return (["--detections", files["detections_file"], "--annotations", files["annotations_file"],
             "--image-list", files["image_list"], "--images", files["images_dir"]]
            + (["--ellipse"] if files["ellipse"] else []))


@pytest.mark.parametrize("index", range(len(CASES)))
def test_cli_reproduces_the_official_program_case_by_case(index, tmp_path, run_cli):
    case = CASES[index]
    files = _write_case(tmp_path, case)
    result = run_cli("eval", "fddb", *_cli_args(files), "--out", tmp_path / "official")  # official is the default
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "official" / "DiscROC.txt").read_text() == case.disc
    assert (tmp_path / "official" / "ContROC.txt").read_text() == case.cont
    optimal = fddb.evaluate_fddb_file(**files, out_dir=tmp_path / "optimal", echo=lambda *_: None, matching="optimal")
    differs = (fddb.format_roc(optimal.disc), fddb.format_roc(optimal.cont)) != (case.disc, case.cont)
    assert differs == case.optimal_differs


def test_cli_optimal_flag_reaches_the_scorer(tmp_path, run_cli):
    case = next(c for c in CASES if c.optimal_differs)
    files = _write_case(tmp_path, case)
    result = run_cli("eval", "fddb", *_cli_args(files), "--matching", "optimal", "--out", tmp_path / "optimal")
    assert result.returncode == 0, result.stderr
    written = tuple((tmp_path / "optimal" / name).read_text() for name in ("DiscROC.txt", "ContROC.txt"))
    assert written != (case.disc, case.cont)
    assert '"matching": "optimal"' in (tmp_path / "optimal" / "summary.json").read_text()
