"""Malformed input through the real command line: exit status 2, one line on stderr naming the
file and the line, never a traceback."""
from __future__ import annotations

from pathlib import Path

import pytest

from mtcnn_train.datasets.fddb import FOLDS, fold_paths

GOOD_WIDER = "ev/a.jpg\n1\n10 20 30 40 0 0 0 0 0 0 \n"
GOOD_FOLD = "2002/08/11/big/img_591\n1\n10 5 0 50 60  1\n"
LFW_LINE = "lfw_5590\\a.jpg 84 161 92 169 106 107 146 112 125 142 105 157 139 161\r\n"
CELEBA_HEADER = ("lefteye_x lefteye_y righteye_x righteye_y nose_x nose_y "
                 "leftmouth_x leftmouth_y rightmouth_x rightmouth_y")


def write(path: Path, content: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return path


def assert_one_line_error(result, path: Path, line: int) -> None:
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr + result.stdout
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert f"{path}:{line}: " in lines[0], lines[0]


def check(cli_runner, fmt: str, path: Path, *extra):
    return cli_runner("data", "check", "--format", fmt, path, *extra)


# Each case: (format, file name, content, line the error must name, extra text that must appear).
WIDER_CASES = {
    "truncated file": ("ev/a.jpg\n1\n10 20 30 40 0 0 0 0 0 0 \nev/b.jpg\n", 4, "missing face count"),
    "count larger than lines": ("ev/a.jpg\n3\n10 20 30 40 0 0 0 0 0 0 \n", 2, "face count 3"),
    "negative size": (GOOD_WIDER + "ev/b.jpg\n1\n10 20 -30 40 0 0 0 0 0 0 \n", 6, "negative box size"),
    # A PNG signature: its first NUL byte comes after two newlines, on line 5.
    "binary garbage": (b"ev/a.jpg\n0\n\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xd8", 5, "binary"),
    "not UTF-8": (b"ev/a.jpg\n0\nev/\xe9t\xe9.jpg\n0\n", 3, "not UTF-8"),
    "path escaping the root": ("ev/a.jpg\n0\n../../outside.jpg\n0\n", 3, "escapes the dataset root"),
}


@pytest.mark.parametrize("case", sorted(WIDER_CASES))
def test_wider_annotation_errors(cli_runner, tmp_path, case):
    content, line, text = WIDER_CASES[case]
    path = write(tmp_path / "gt.txt", content)
    result = check(cli_runner, "wider", path, "--images", tmp_path)
    assert_one_line_error(result, path, line)
    assert text in result.stderr


def test_missing_image_names_the_annotation_line_and_the_count(cli_runner, tmp_path):
    write(tmp_path / "ev" / "a.jpg", b"present")
    path = write(tmp_path / "gt.txt", GOOD_WIDER + "ev/b.jpg\n0\n0 0 0 0 0 0 0 0 0 0 \nev/c.jpg\n0\n")
    result = check(cli_runner, "wider", path, "--images", tmp_path)
    assert_one_line_error(result, path, 4)
    assert "b.jpg" in result.stderr and "2 of 3 images missing" in result.stderr
    # Counting instead of failing:
    counted = check(cli_runner, "wider", path, "--images", tmp_path, "--allow-missing")
    assert counted.returncode == 0, counted.stderr
    assert "3 images" in counted.stdout and "2 of them missing" in counted.stdout and "1 faces" in counted.stdout


def test_non_numeric_field_in_lfw_net(cli_runner, tmp_path):
    path = write(tmp_path / "trainImageList.txt", LFW_LINE + LFW_LINE.replace(" 146 ", " 14six "))
    result = check(cli_runner, "lfw-net", path)
    assert_one_line_error(result, path, 2)
    assert "'14six' is not a number" in result.stderr


def test_absolute_path_in_mtfl(cli_runner, tmp_path):
    path = write(tmp_path / "new_training.txt", "/etc/hosts 1 2 3 4 5 1 2 3 4 5\n")
    result = check(cli_runner, "mtfl", path)
    assert_one_line_error(result, path, 1)
    assert "absolute" in result.stderr


def test_wrong_field_count_in_mtfl(cli_runner, tmp_path):
    path = write(tmp_path / "new_training.txt", "a.jpg 1 2 3 4 5 1 2 3 4\n")
    result = check(cli_runner, "mtfl", path)
    assert_one_line_error(result, path, 1)
    assert "expected 11 fields" in result.stderr


def test_celeba_count_line_disagrees(cli_runner, tmp_path):
    write(tmp_path / "list_bbox_celeba.txt", "1\nimage_id x_1 y_1 width height\n000001.jpg 1 2 3 4\n")
    path = write(tmp_path / "list_landmarks_celeba.txt",
                 f"5\n{CELEBA_HEADER}\n000001.jpg 1 2 3 4 5 6 7 8 9 10\n")
    result = check(cli_runner, "celeba", path)
    assert_one_line_error(result, path, 1)
    assert "says 5 images but the file lists 1" in result.stderr


def make_fddb_root(root: Path, fold_3: str) -> Path:
    for fold in FOLDS:
        write(fold_paths(root, fold)[0], fold_3 if fold == 3 else GOOD_FOLD)
    return root


def test_nan_in_fddb(cli_runner, tmp_path):
    root = make_fddb_root(tmp_path, GOOD_FOLD + "2002/08/26/big/img_265\n1\n10 5 NaN 50 60  1\n")
    result = check(cli_runner, "fddb", root)
    assert_one_line_error(result, fold_paths(root, 3)[0], 6)
    assert "not a finite number" in result.stderr


def test_fddb_count_larger_than_lines(cli_runner, tmp_path):
    root = make_fddb_root(tmp_path, "2002/08/26/big/img_265\n4\n10 5 0 50 60  1\n")
    result = check(cli_runner, "fddb", root)
    assert_one_line_error(result, fold_paths(root, 3)[0], 2)


CONFIG_CASES = {
    "bad YAML": ("sampling:\n  neg_iou: [0.3\n  pos_iou: 0.6\n", 3, "invalid YAML"),
    "unknown key": ("data:\n  val_fraction: 0.1\n  wider_rot: x\n", 3, "unknown key 'data.wider_rot'"),
    "wrong type": ("train:\n  pnet:\n    lr: fast\n", 3, "expected a number"),
    "lower IoU band above the upper": ("sampling:\n  part_iou: 0.7\n  pos_iou: 0.65\n", 2, "sampling.part_iou"),
}


@pytest.mark.parametrize("case", sorted(CONFIG_CASES))
def test_config_errors_surface_in_data_check(cli_runner, tmp_path, case):
    content, line, text = CONFIG_CASES[case]
    config = write(tmp_path / "config.yaml", content)
    annotation = write(tmp_path / "gt.txt", GOOD_WIDER)
    result = check(cli_runner, "wider", annotation, "--images", tmp_path, "--config", config)
    assert_one_line_error(result, config, line)
    assert text in result.stderr


def test_bad_override_names_the_override(cli_runner, tmp_path):
    annotation = write(tmp_path / "gt.txt", GOOD_WIDER)
    result = check(cli_runner, "wider", annotation, "--set", "sampling.neg_iou=2")
    assert result.returncode == 2 and len(result.stderr.splitlines()) == 1
    assert "--set sampling.neg_iou=2" in result.stderr and "Traceback" not in result.stderr


def test_a_good_file_passes_with_a_summary(cli_runner, tmp_path):
    write(tmp_path / "ev" / "a.jpg", b"present")
    annotation = write(tmp_path / "gt.txt", GOOD_WIDER)
    result = check(cli_runner, "wider", annotation, "--images", tmp_path)
    assert result.returncode == 0 and result.stderr == ""
    assert "1 images" in result.stdout and "1 faces, 0 of them invalid" in result.stdout


def test_the_cli_offers_exactly_the_formats_the_readers_know():
    from mtcnn_train.cli.data import DATA_FORMATS
    from mtcnn_train.datasets import formats, landmarks

    assert formats.LANDMARK_FORMATS == landmarks.LANDMARK_FORMATS
    assert DATA_FORMATS == ("auto",) + formats.DATASET_FORMATS
