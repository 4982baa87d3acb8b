"""``eval fddb --detections`` end to end against output of the official ``evaluate`` program.

The expected ROC texts below were produced by the official FDDB program (evaluate.cpp and its
classes from FDDB's evaluation.tgz, compiled against OpenCV 4.6 with cvLoadImage replaced by
cv::imread) on exactly these files: blank JPEGs of the given sizes, the ellipses and the
detections.  The case has rotated faces, faces cut by the image border, two faces in one image,
duplicate detections, scores tied across images, an image without detections and a detection
wholly outside its image.  See docs/FDDB.md.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

SIZES = {"2002/07/19/big/img_1": (120, 160), "2002/07/19/big/img_2": (90, 70), "2003/01/13/big/img_3": (100, 100),
         "2003/01/13/big/img_4": (64, 48), "2003/01/13/big/img_5": (80, 120)}
FACES = {
    "2002/07/19/big/img_1": ["31.5 20.25 1.3962634 40.5 50.5 1", "25.1 18.9 -1.2217305 118.25 60.75 1"],
    "2002/07/19/big/img_2": ["40.7 25.3 1.5707963 10.4 45.6 1"],
    "2003/01/13/big/img_3": ["22.9 15.1 0.7853982 50 50 1", "12.6 9.4 2.6179939 85.5 15.5 1"],
    "2003/01/13/big/img_4": ["20.2 14.8 1.0471976 24.5 60.5 1"],
    "2003/01/13/big/img_5": ["18.5 12.5 -0.5235988 60.2 40.8 1"],
}
RECTANGLES = {
    "2002/07/19/big/img_1": ["22.4 28.9 36.2 44.7 0.99", "21.9 29.5 37.3 43.1 0.87", "96.6 40.2 41.3 42.8 0.87",
                             "130.5 2.5 25 25 0.31"],
    "2002/07/19/big/img_2": ["-15.5 16.25 50.5 62.5 0.87", "40 5 20 20 0.12"],
    "2003/01/13/big/img_3": [],
    "2003/01/13/big/img_4": ["8.5 42.5 33 30 0.64", "-60 -60 20 20 0.5"],
    "2003/01/13/big/img_5": ["44.5 27.5 31.5 27.5 0.4999", "44.5 27.5 31.5 27.5 0.4999", "200 10 30 30 0.99"],
}
ELLIPSES = {
    "2002/07/19/big/img_1": ["30 21 1.45 41 49.5 0.93", "24 19 -1.1 117.5 61.2 0.55", "10 5 0 140 20 0.31"],
    "2002/07/19/big/img_2": ["38 24 1.5 11.5 46.5 0.55"],
    "2003/01/13/big/img_3": ["20 14 0.5 52 49 0.7", "12 10 2.5 84.5 16.5 0.2"],
    "2003/01/13/big/img_4": [],
    "2003/01/13/big/img_5": ["18 12 -0.6 61 41 0.4"],
}
OFFICIAL = {
    "rectangles": (
        "0.714286 6 0.12\n0.714286 5 0.31\n0.714286 4 0.4999\n0.571429 3 0.5\n0.571429 2 0.64\n"
        "0.428571 2 0.87\n0.142857 1 0.99\n0 0 1.79769e+308\n",
        "0.545229 6\n0.545229 5\n0.545229 4\n0.435491 3\n0.435491 2\n0.329869 2\n0.109808 1\n0 0\n"),
    "ellipses": (
        "0.857143 1 0.2\n0.714286 1 0.31\n0.714286 0 0.4\n0.571429 0 0.55\n0.285714 0 0.7\n0.142857 0 0.93\n"
        "0 0 1.79769e+308\n",
        "0.750698 1\n0.640099 1\n0.640099 0\n0.508753 0\n0.242299 0\n0.132523 0\n0 0\n"),
}


def _records(rows: dict[str, list[str]]) -> str:
    return "".join(f"{name}\n{len(lines)}\n" + "".join(line + "\n" for line in lines) for name, lines in rows.items())


@pytest.fixture
def fddb_case(tmp_path: Path) -> Path:
    for name, (h, w) in SIZES.items():
        path = tmp_path / "originalPics" / f"{name}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(path), np.zeros((h, w, 3), np.uint8))
    (tmp_path / "list.txt").write_text("\n".join(SIZES) + "\n")
    (tmp_path / "ellipseList.txt").write_text(_records(FACES))
    (tmp_path / "rectangles.txt").write_text(_records(RECTANGLES))
    (tmp_path / "ellipses.txt").write_text(_records(ELLIPSES))
    return tmp_path


@pytest.mark.parametrize("kind", ["rectangles", "ellipses"])
def test_cli_reproduces_the_official_program(fddb_case, run_cli, cli_runner, kind):
    out = fddb_case / f"out-{kind}"
    args = ["eval", "fddb", "--detections", fddb_case / f"{kind}.txt", "--annotations", fddb_case / "ellipseList.txt",
            "--image-list", fddb_case / "list.txt", "--images", fddb_case / "originalPics", "--out", out]
    # One run as a real subprocess (the installed entry point), the other in-process.
    runner = cli_runner if kind == "rectangles" else run_cli
    result = runner(*args, *(["--ellipse"] if kind == "ellipses" else []))
    assert result.returncode == 0, result.stderr
    disc, cont = OFFICIAL[kind]
    assert (out / "DiscROC.txt").read_text() == disc
    assert (out / "ContROC.txt").read_text() == cont
    assert (out / "roc.png").stat().st_size > 0
    assert "TPR at   100 false positives" in result.stdout


def test_cli_compare_overlays_other_curves(fddb_case, run_cli):
    other = fddb_case / "official-rectanglesDiscROC.txt"
    other.write_text(OFFICIAL["rectangles"][0])
    base = ["eval", "fddb", "--annotations", fddb_case / "ellipseList.txt", "--image-list", fddb_case / "list.txt",
            "--images", fddb_case / "originalPics"]
    result = run_cli(*base, "--detections", fddb_case / "ellipses.txt", "--ellipse", "--out", fddb_case / "second",
                        "--compare", other, other, "--label", "ours")
    assert result.returncode == 0, result.stderr
    assert (fddb_case / "second" / "roc.png").exists()


def test_cli_errors_are_one_line(fddb_case, run_cli):
    result = run_cli("eval", "fddb", "--detections", fddb_case / "rectangles.txt", "--out", fddb_case / "o")
    assert result.returncode == 2 and result.stderr.strip().startswith("error: --detections needs")
    bad = fddb_case / "bad.txt"
    bad.write_text("2002/07/19/big/img_1\n1\n1 2 3\n")
    result = run_cli("eval", "fddb", "--detections", bad, "--annotations", fddb_case / "ellipseList.txt",
                        "--image-list", fddb_case / "list.txt", "--images", fddb_case / "originalPics", "--out",
                        fddb_case / "o")
    assert result.returncode == 2
    assert f"{bad}:3:" in result.stderr and "Traceback" not in result.stderr


def _fddb_root(case: Path) -> Path:
    """The case as an FDDB root: images 1-3 in fold 01, 4-5 in fold 02, pictures in originalPics/."""
    folds = case / "FDDB-folds"
    folds.mkdir()
    names = list(SIZES)
    for fold, members in ((1, names[:3]), (2, names[3:])):
        (folds / f"FDDB-fold-{fold:02d}-ellipseList.txt").write_text(_records({n: FACES[n] for n in members}))
        (folds / f"FDDB-fold-{fold:02d}.txt").write_text("\n".join(members) + "\n")
    return case


def test_cli_scores_a_detection_file_against_folds(fddb_case, run_cli):
    """--detections with --fddb-root --folds: the folds give the images and faces, as with --weights."""
    root = _fddb_root(fddb_case)
    result = _score_folds(fddb_case, run_cli, root, "1-2", "folds")
    assert result.returncode == 0, result.stderr
    assert (fddb_case / "folds" / "DiscROC.txt").read_text() == OFFICIAL["rectangles"][0]
    assert (fddb_case / "folds" / "ContROC.txt").read_text() == OFFICIAL["rectangles"][1]

    # One fold: the other fold's detections are ignored, and said so; the same as the official trio
    # on that fold's list.
    official = _score_official_list(fddb_case, run_cli, 3, "trio1")
    one = _score_folds(fddb_case, run_cli, root, "1", "fold1")
    assert official.returncode == 0 and one.returncode == 0, one.stderr
    assert (fddb_case / "fold1" / "DiscROC.txt").read_text() == (fddb_case / "trio1" / "DiscROC.txt").read_text()
    assert "2 image(s) in the detections are not among the scored images" in one.stdout

    # A missing picture is a counted skip: its faces leave the denominator, as in a --weights run.
    (root / "originalPics" / "2003/01/13/big/img_5.jpg").unlink()
    official = _score_official_list(fddb_case, run_cli, 4, "trio4")
    skipped = _score_folds(fddb_case, run_cli, root, "1-2", "skip")
    assert skipped.returncode == 0, skipped.stderr
    assert "skipped 1 image(s) not found" in skipped.stdout
    assert (fddb_case / "skip" / "DiscROC.txt").read_text() == (fddb_case / "trio4" / "DiscROC.txt").read_text()


def _score_official_list(case: Path, run_cli, count: int, out: str):
    """The official -a/-l/-i trio on a list of the case's first ``count`` images."""
    listed = case / f"list-{out}.txt"
    listed.write_text("\n".join(list(SIZES)[:count]) + "\n")
    return run_cli("eval", "fddb", "--detections", case / "rectangles.txt", "--annotations", case / "ellipseList.txt",
                   "--image-list", listed, "--images", case / "originalPics", "--out", case / out)


def _score_folds(case: Path, run_cli, root: Path, folds: str, out: str):
    return run_cli("eval", "fddb", "--detections", case / "rectangles.txt", "--fddb-root", root, "--folds", folds,
                   "--out", case / out)


def test_cli_detections_with_folds_refuses_the_official_trio(fddb_case, run_cli):
    root = _fddb_root(fddb_case)
    result = run_cli("eval", "fddb", "--detections", fddb_case / "rectangles.txt", "--fddb-root", root,
                     "--annotations", fddb_case / "ellipseList.txt", "--out", fddb_case / "o")
    assert result.returncode == 2 and "drop --annotations" in result.stderr
    assert not (fddb_case / "o").exists()


def test_cli_refuses_a_detection_file_that_scores_nothing_or_has_a_corrupt_count(fddb_case, run_cli):
    trio = ["--annotations", fddb_case / "ellipseList.txt", "--image-list", fddb_case / "list.txt",
            "--images", fddb_case / "originalPics"]
    wrong = fddb_case / "wrong.txt"
    wrong.write_text("".join(f"{name}.jpg\n0\n" for name in SIZES))  # names with .jpg never match
    empty = fddb_case / "empty.txt"
    empty.write_text("")
    for detections, found in ((wrong, "named like '2002/07/19/big/img_1.jpg'"), (empty, "it lists no image")):
        result = run_cli("eval", "fddb", "--detections", detections, *trio, "--out", fddb_case / f"o-{detections.stem}")
        assert result.returncode == 2 and "no scored image is in the detections" in result.stderr
        assert found in result.stderr
    huge = fddb_case / "huge.txt"
    huge.write_text("2002/07/19/big/img_1\n1000000000000000000\n1 2 3 4 0.5\n")
    result = run_cli("eval", "fddb", "--detections", huge, *trio, "--out", fddb_case / "o-huge")
    assert result.returncode == 2 and f"{huge}:3: image '2002/07/19/big/img_1': expected 1000000000000000000 " \
                                      "detections (count on line 2)" in result.stderr
