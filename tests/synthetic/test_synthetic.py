"""The embedded synthetic set: exact ground truth through the real readers, determinism, variety, CLI."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from mtcnn_train.config import config_from_dict
from mtcnn_train import synthetic
from mtcnn_train.datasets.fddb import read_fddb
from mtcnn_train.datasets.landmarks import detect_landmark_format, read_landmarks
from mtcnn_train.datasets.wider import WIDER_FLAGS, read_wider, wider_paths
from mtcnn_train.geometry import ellipse_to_box
from mtcnn_train.io import load_image
from mtcnn_train.synthetic import faces, scenes
from mtcnn_train.synthetic.drawing import Painter
from mtcnn_train.synthetic.styles import SceneStyle

NUM_IMAGES = 12


def _all_files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def synthetic_set(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("synthetic") / "set"
    summary = synthetic.make_synthetic(out, num_images=NUM_IMAGES, seed=0)
    return out, summary


def test_split_sizes_follow_the_brief():
    assert synthetic.split_sizes(200) == {"wider_train": 200, "wider_val": 50, "celeba": 200, "fddb": 100}
    assert synthetic.split_sizes(1) == {"wider_train": 1, "wider_val": 1, "celeba": 1, "fddb": 2}


@pytest.mark.parametrize("split", ["train", "val"])
def test_wider_reads_back_exactly(synthetic_set, split):
    out, summary = synthetic_set
    annotation_file, images_root = wider_paths(out / "wider", split)
    records = read_wider(annotation_file, images_root)
    assert len(records) == synthetic.split_sizes(NUM_IMAGES)[f"wider_{split}"]
    for index, record in enumerate(records):
        name, image, truth = synthetic.wider_image(0, f"wider_{split}", index)
        assert record.name == name
        assert record.image_path == (images_root / name).resolve()
        np.testing.assert_array_equal(record.boxes, truth.boxes)
        for key in WIDER_FLAGS:
            np.testing.assert_array_equal(record.flags[key], truth.flags[key], err_msg=key)
        assert load_image(record.image_path).shape == image.shape
    assert sum(r.num_faces for r in records) == summary["splits"][f"wider_{split}"]["faces"]


def test_celeba_reads_back_exactly(synthetic_set):
    out, _ = synthetic_set
    list_file = out / synthetic.synthetic_paths(out)["celeba_landmarks"].relative_to(out)
    assert detect_landmark_format(list_file) == "celeba"
    records = read_landmarks(list_file)  # the default image folder: img_celeba beside Anno/
    assert len(records) == NUM_IMAGES
    for index, record in enumerate(records):
        name, image, truth = synthetic.celeba_image(0, index)
        assert record.name == name and truth.num_faces == 1
        assert record.image_path == (out / "celeba" / "img_celeba" / name).resolve()
        np.testing.assert_array_equal(record.boxes, truth.boxes)
        np.testing.assert_array_equal(record.landmarks, truth.landmarks)
        # CelebA stores integers: the renderer drew the features at whole-number positions.
        np.testing.assert_array_equal(truth.landmarks, np.round(truth.landmarks))
        assert load_image(record.image_path).shape == image.shape


def test_fddb_reads_back_exactly(synthetic_set):
    out, summary = synthetic_set
    records = read_fddb(out / "fddb", folds=summary["fddb_folds"])
    assert len(records) == synthetic.split_sizes(NUM_IMAGES)["fddb"]
    for index, record in enumerate(records):
        name, image, truth = synthetic.fddb_image(0, index)
        assert record.name == name and record.num_faces >= 1
        np.testing.assert_array_equal(record.ellipses, truth.ellipses)
        np.testing.assert_allclose(record.boxes, ellipse_to_box(truth.ellipses), atol=1e-4)
        assert load_image(record.image_path).shape == image.shape


def test_fddb_ellipses_cover_the_whole_head(synthetic_set):
    """FDDB's ellipses run from the chin to the top of the head: taller than the face box, upright."""
    for index in range(6):
        _, _, truth = synthetic.fddb_image(0, index)
        head = ellipse_to_box(truth.ellipses)
        face_h = truth.boxes[:, 3] - truth.boxes[:, 1]
        assert np.all(head[:, 1] <= truth.boxes[:, 1] + 1e-3)  # reaches above the forehead
        assert np.all(head[:, 3] - head[:, 1] >= face_h)
        assert np.all(truth.ellipses[:, 0] >= truth.ellipses[:, 1])  # major >= minor
        # the major axis is within 30 degrees (the largest roll) of vertical
        assert np.all(np.abs(np.abs(truth.ellipses[:, 2]) - math.pi / 2) <= math.radians(30) + 1e-6)


def test_same_seed_gives_identical_bytes_and_images_do_not_depend_on_count(synthetic_set, tmp_path):
    out, _ = synthetic_set
    again = tmp_path / "again"
    synthetic.make_synthetic(again, num_images=NUM_IMAGES, seed=0)
    first, second = _all_files(out), _all_files(again)
    assert sorted(first) == sorted(second)
    assert [k for k in first if first[k] != second[k]] == []

    small = tmp_path / "small"
    synthetic.make_synthetic(small, num_images=4, seed=0)
    small_files = _all_files(small)
    images = [k for k in small_files if k.endswith(".jpg")]
    assert images and all(small_files[k] == first[k] for k in images)


def test_different_seed_differs(synthetic_set, tmp_path):
    out, _ = synthetic_set
    other = tmp_path / "other"
    synthetic.make_synthetic(other, num_images=NUM_IMAGES, seed=1)
    first, second = _all_files(out), _all_files(other)
    assert first["wider/wider_face_split/wider_face_train_bbx_gt.txt"] != \
        second["wider/wider_face_split/wider_face_train_bbx_gt.txt"]
    common_images = [k for k in first if k.endswith(".jpg") and k in second]
    assert all(first[k] != second[k] for k in common_images)


def test_faces_vary_in_size_and_look(synthetic_set):
    out, summary = synthetic_set
    splits = summary["splits"]
    assert min(s["face_size_min"] for s in splits.values()) < 20
    assert max(s["face_size_max"] for s in splits.values()) > 150
    assert all(s["face_size_min"] >= faces.MIN_FACE for s in splits.values())
    train = splits["wider_train"]
    assert train["occluded_faces"] > 0 and train["blurred_faces"] > 0
    assert train["faces"] > NUM_IMAGES  # several faces per image on average


def test_distractors_exist_and_avoid_faces():
    kinds = set()
    for index in range(NUM_IMAGES):
        _, _, truth = synthetic.wider_image(0, "wider_train", index)
        kinds.update(truth.distractor_kinds)
        assert len(truth.distractor_kinds) == len(truth.distractor_boxes)
    assert len(kinds) >= 4 and kinds <= set(scenes.DISTRACTOR_KINDS)


def test_boxes_and_landmarks_are_consistent():
    for index in range(NUM_IMAGES):
        _, image, truth = synthetic.wider_image(0, "wider_train", index)
        height, width = image.shape[:2]
        boxes = truth.boxes
        np.testing.assert_array_equal(boxes, np.round(boxes))  # WIDER stores integers
        assert np.all(boxes[:, :2] >= 0) and np.all(boxes[:, 2] <= width) and np.all(boxes[:, 3] <= height)
        lm = truth.landmarks
        assert np.all(lm[:, :, 0] >= boxes[:, None, 0]) and np.all(lm[:, :, 0] <= boxes[:, None, 2])
        assert np.all(lm[:, :, 1] >= boxes[:, None, 1]) and np.all(lm[:, :, 1] <= boxes[:, None, 3])
        # eyes above the nose above the mouth, in the face's own frame (roll stays within 30 degrees)
        eyes_y, nose_y, mouth_y = lm[:, :2, 1].mean(1), lm[:, 2, 1], lm[:, 3:, 1].mean(1)
        assert np.all(eyes_y < nose_y) and np.all(nose_y < mouth_y)
        # left eye and left mouth corner are on the image's left
        assert np.all(lm[:, 0, 0] < lm[:, 1, 0]) and np.all(lm[:, 3, 0] < lm[:, 4, 0])
        # faces never overlap each other's box
        for i in range(len(boxes)):
            for j in range(i + 1, len(boxes)):
                a, b = boxes[i], boxes[j]
                assert not (a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3])


@pytest.mark.parametrize("w, h, roll_deg", [(12, 15, 0), (40, 50, 25), (37, 61, -30), (120, 151, 12), (300, 380, -7)])
def test_drawn_face_ellipse_fills_its_integer_box(w, h, roll_deg):
    """The rolled face ellipse, drawn at sub-pixel precision, has exactly the stored box as its tight box."""
    a, b, roll = faces.solve_face_ellipse(w, h, math.radians(roll_deg))
    tight_w, tight_h = faces._tight_box(a, b, roll)
    assert tight_w == pytest.approx(w) and tight_h == pytest.approx(h)
    x, y = 7, 11
    mask = np.zeros((h + 30, w + 30), np.uint8)
    Painter(mask).ellipse((x + w / 2, y + h / 2), (a, b), math.degrees(roll), 255)
    ys, xs = np.nonzero(mask >= 128)  # pixels at least half covered
    # pixel edges: the covered pixel columns x .. x + w - 1 give the box x .. x + w (1 pixel of anti-aliasing)
    assert abs(xs.min() - x) <= 1 and abs(xs.max() + 1 - (x + w)) <= 1
    assert abs(ys.min() - y) <= 1 and abs(ys.max() + 1 - (y + h)) <= 1


def test_rendering_a_face_changes_the_pixels_inside_its_box():
    """Faces are drawn where the box says (and an image with no faces has an empty truth)."""
    rng = synthetic.image_rng(3, "wider_train", 0)
    style = SceneStyle((1, 1), (60, 60), (0, 0), (0, 0), occlusion_prob=0.0, blur_probs=(1.0, 0.0, 0.0))
    image, truth = scenes.render_image(rng, 200, 200, style)
    assert truth.num_faces == 1
    x1, y1, x2, y2 = truth.boxes[0].astype(int)
    eye = truth.landmarks[0, 0].astype(int)
    # the iris is darker than the skin at the face centre
    centre = ((x1 + x2) // 2, (y1 + y2) // 2)
    assert image[eye[1], eye[0]].mean() < image[centre[1], centre[0]].mean()
    empty = SceneStyle((0, 0), (20, 20), (1, 1), (0, 0))
    _, nothing = scenes.render_image(synthetic.image_rng(3, "wider_train", 1), 100, 100, empty)
    assert nothing.num_faces == 0 and nothing.boxes.shape == (0, 4) and nothing.landmarks.shape == (0, 5, 2)


def test_summary_and_config(synthetic_set):
    out, summary = synthetic_set
    on_disk = json.loads((out / "summary.json").read_text())
    assert on_disk == summary and summary["generator"] == synthetic.GENERATOR and summary["seed"] == 0
    assert synthetic.is_synthetic_set(out)
    cfg = config_from_dict(synthetic.synthetic_config(out))
    assert cfg.resolve_path(cfg.data.wider_root) == out / "wider"
    assert Path(cfg.data.landmarks).is_file() and Path(cfg.data.fddb_root, "FDDB-folds").is_dir()


def test_negative_seed_is_refused(tmp_path):
    from mtcnn_train.errors import UserError

    with pytest.raises(UserError, match="seed"):
        synthetic.make_synthetic(tmp_path / "x", num_images=1, seed=-1)
    assert not (tmp_path / "x").exists()


def test_cli_writes_and_summarises(cli_runner, tmp_path):
    out = tmp_path / "syn"
    result = cli_runner("make-synthetic", out, "--images", "2", "--seed", "5")
    assert result.returncode == 0, result.stderr
    for word in ("wider train", "wider val", "celeba", "fddb", "short side", str(out / "wider")):
        assert word in result.stdout
    assert json.loads((out / "summary.json").read_text())["seed"] == 5
    # a folder holding a synthetic set may be rewritten
    assert cli_runner("make-synthetic", out, "--images", "1").returncode == 0


def test_cli_refuses_a_foreign_non_empty_folder(cli_runner, tmp_path):
    out = tmp_path / "busy"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    result = cli_runner("make-synthetic", out, "--images", "1")
    assert result.returncode == 2
    assert "not empty" in result.stderr and "--force" in result.stderr
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    forced = cli_runner("make-synthetic", out, "--images", "1", "--force")
    assert forced.returncode == 0, forced.stderr
    assert (out / "notes.txt").read_text() == "mine" and (out / "summary.json").is_file()


def test_full_size_simulation_options(tmp_path):
    """--faces wider (WIDER's face count and sizes) and --landmark-faces reusing rendered images."""
    out = tmp_path / "full"
    summary = synthetic.make_synthetic(out, num_images=12, seed=0, faces="wider", landmark_faces=30,
                                       celeba_images=4, eval_images=2)
    paths = synthetic.synthetic_paths(out)
    wider = read_wider(*wider_paths(out / "wider", "train"))
    assert len(wider) == 12 and summary["splits"]["wider_val"]["images"] == 1
    assert all(load_image(r.image_path).shape[1] == 1024 for r in wider[:2])
    counts = [r.num_faces for r in wider]
    assert min(counts) >= 1 and np.mean(counts) > 4  # the demo scenes hold 0 to 8
    records = read_landmarks(paths["celeba_landmarks"])
    assert len(records) == 30 and summary["splits"]["celeba"]["faces"] == 30
    assert len({r.name for r in records}) == 30
    # Entry k reuses rendered image k % 4: the same pixels, box and landmarks, its own name.
    assert records[5].image_path.samefile(records[1].image_path) and records[5].name != records[1].name
    assert np.array_equal(records[5].landmarks, records[1].landmarks)
    assert len(list(paths["celeba_images"].iterdir())) == 30
