"""Exact counts on the real research files in ../shared/data (skipped when they are absent)."""
from __future__ import annotations

import numpy as np
import pytest

from conftest import shared_path
from mtcnn_train.datasets.fddb import read_fddb
from mtcnn_train.datasets.landmarks import (
    HAND_DRAWN_BOX_SCALE,
    HAND_DRAWN_CENTRE_SHIFT,
    box_from_landmarks,
    detect_landmark_format,
    read_landmarks,
)
from mtcnn_train.datasets.wider import missing_images, read_wider, wider_paths
from mtcnn_train.geometry import iou_matrix

pytestmark = pytest.mark.shared_data


def test_wider_subset_counts_and_first_entry():
    records = read_wider(*wider_paths(shared_path("wider_face")))
    assert len(records) == 970
    assert sum(r.num_faces for r in records) == 5683
    assert missing_images(records) == []
    # Faces flagged invalid in the file (counted independently with awk: column 8 == 1).
    assert sum(int(r.flags["invalid"].sum()) for r in records) == 10
    first = records[0]
    assert first.name == "1--Handshaking/1_Handshaking_Handshaking_1_409.jpg"
    np.testing.assert_array_equal(first.boxes, [[467, 95, 467 + 112, 95 + 150]])


@pytest.mark.parametrize("name, count", [("new_training.txt", 7650), ("new_testing.txt", 2995)])
def test_mtfl_counts_and_whole_crop_boxes(name, count):
    path = shared_path("mtfl_80x80", name)
    assert detect_landmark_format(path) == "mtfl"
    records = read_landmarks(path)
    assert len(records) == count
    assert all(r.num_faces == 1 for r in records)
    np.testing.assert_array_equal(np.concatenate([r.boxes for r in records]), np.tile([0, 0, 80, 80], (count, 1)))
    points = np.concatenate([r.landmarks for r in records])
    assert ((points >= 0) & (points <= 80)).all()  # SOURCE.md: every landmark lies inside the crop


@pytest.mark.parametrize("name, count", [("trainImageList.txt", 10000), ("testImageList.txt", 3466)])
def test_lfw_net_counts(name, count):
    path = shared_path("lfw_net_5pt_annotations", name)
    assert detect_landmark_format(path) == "lfw-net"
    records = read_landmarks(path)
    assert len(records) == count
    assert all(r.valid.all() for r in records)
    assert all(r.image_path.parent.name in ("lfw_5590", "net_7876") for r in records)


def test_landmark_box_rule_on_the_held_out_lfw_net_list():
    """The hand-drawn box rule was fitted on the training list; check it on the test list."""
    records = read_landmarks(shared_path("lfw_net_5pt_annotations", "testImageList.txt"))
    boxes = np.concatenate([r.boxes for r in records])
    derived = box_from_landmarks(np.concatenate([r.landmarks for r in records]),
                                 HAND_DRAWN_BOX_SCALE, HAND_DRAWN_CENTRE_SHIFT)
    overlap = np.array([iou_matrix(a, b)[0, 0] for a, b in zip(boxes, derived)])
    assert np.median(overlap) > 0.8
    assert (overlap > 0.65).mean() > 0.9


def test_fddb_all_folds():
    records = read_fddb(shared_path("fddb"))
    assert len(records) == 2845
    assert sum(r.num_faces for r in records) == 5171
    per_fold = np.bincount([int(r.source.split("FDDB-fold-")[1][:2]) for r in records])[1:]
    assert per_fold.tolist() == [290, 285, 274, 302, 298, 302, 279, 276, 259, 280]
    # The shared copy holds the images of folds 01-05, all but 37 (its SOURCE.md).
    present = [int(r.source.split("FDDB-fold-")[1][:2]) for r in records if r.image_path.is_file()]
    assert np.bincount(present, minlength=11)[1:].tolist() == [282, 279, 270, 295, 286, 0, 0, 0, 0, 0]


def test_data_check_on_the_wider_subset(cli_runner):
    root = shared_path("wider_face")
    result = cli_runner("data", "check", "--format", "wider", root)
    assert result.returncode == 0, result.stderr
    assert "970 images" in result.stdout and "5,683 faces" in result.stdout and "all present" in result.stdout
