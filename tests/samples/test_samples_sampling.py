"""The pure parts of P-Net sampling: cutting, candidate draws, the labelling rule, the mix, the split."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from mtcnn_train.config import SamplingConfig
from mtcnn_train.datasets.records import FaceRecord
from mtcnn_train.datasets.split import split_train_val
from mtcnn_train.geometry import calibrate, iou_matrix, landmark_offsets, landmarks_from_offsets
from mtcnn_train import imaging
from mtcnn_train.imaging import crop_resize_numpy
from mtcnn_train.samples import sampling as smp
from mtcnn_train.samples.labels import LABEL_NEGATIVE, LABEL_PART, LABEL_POSITIVE


def smooth_image(shape, seed=0):
    rng = np.random.default_rng(seed)
    return cv2.GaussianBlur(rng.integers(0, 256, shape, dtype=np.uint8), (7, 7), 2)


def random_boxes(rng, n, width, height, low=4, high=300, margin=30):
    side = rng.integers(low, high, n)
    x = rng.integers(-margin, width, n)
    y = rng.integers(-margin, height, n)
    return np.stack([x, y, x + side, y + side], 1).astype(np.float64)


@pytest.mark.parametrize("shape", [(301, 457, 3), (256, 320, 3)])
def test_fast_cut_matches_the_tensor_crop_resize(shape):
    image = smooth_image(shape)
    boxes = random_boxes(np.random.default_rng(1), 300, shape[1], shape[0])
    boxes[:5] = [[0, 0, 12, 12], [10.5, 20.25, 40.5, 50.25], [-20, -20, 40, 40], [shape[1] - 30, 5, shape[1] + 10, 45],
                 [0, 0, shape[1], shape[0]]]
    ours = imaging.crop_resize_fast(image, boxes, 12).astype(int)
    reference = crop_resize_numpy(image, boxes.astype(np.float32), 12).astype(int)
    diff = np.abs(ours - reference)
    assert ours.shape == (300, 12, 12, 3)
    assert diff.max() <= 8 and diff.mean() < 0.6
    # Wholly outside the image reads as zeros (zero padding).
    assert imaging.crop_resize_fast(image, np.array([[-50, -50, -20, -20]]), 12).max() == 0


def test_mosaic_batching_changes_nothing():
    rng = np.random.default_rng(2)
    images = [smooth_image((80, 80, 3), seed=i) for i in range(30)] + [smooth_image((45, 61, 3), seed=99)]
    boxes = [smp.squares_around_faces(rng, np.array([[15.0, 12.0, 63.0, 70.0]]), 6)[0] for _ in images]
    boxes[4] = np.zeros((0, 4))
    batched = imaging.crop_resize_many(images, boxes, 12)
    for image, box, crops in zip(images, boxes, batched):
        assert np.array_equal(crops, imaging.crop_resize_fast(image, box, 12))


def test_candidate_draws_are_squares_of_whole_pixels_and_stay_inside():
    rng = np.random.default_rng(3)
    random = smp.random_squares(rng, 200, 150, 500)
    assert len(random) == 500
    faces = np.array([[10.0, 10.0, 40.0, 50.0], [150.0, 90.0, 190.0, 140.0]])
    near = smp.squares_near_faces(rng, faces, 50, 200, 150)
    for boxes in (random, near):
        side_w, side_h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
        assert np.array_equal(side_w, side_h) and (side_w >= smp.MIN_CROP_SIDE).all()
        assert np.array_equal(boxes, np.round(boxes))
        assert (boxes[:, :2] >= 0).all() and (boxes[:, 2] <= 200).all() and (boxes[:, 3] <= 150).all()
    around, owner = smp.squares_around_faces(rng, faces, 40)
    assert np.array_equal(np.bincount(owner), [40, 40])
    # Drawn around their face: high overlap is common, and sides follow the 0.8x..1.25x rule.
    side = around[:, 2] - around[:, 0]
    assert (side[owner == 0] >= 24).all() and (side[owner == 0] <= 63).all()
    assert np.median(iou_matrix(around[owner == 1], faces[1:])) > 0.4
    assert len(smp.random_squares(rng, 10, 8, 5)) == 0  # image smaller than a crop


def test_detection_labels_follow_the_max_iou_rule():
    rng = np.random.default_rng(4)
    # Face 0 usable, face 1 flagged invalid (must still repel negatives), face 2 tiny.
    faces = np.array([[40.0, 30.0, 100.0, 100.0], [90.0, 40.0, 150.0, 110.0], [200.0, 20.0, 210.0, 30.0]])
    usable = np.array([True, False, False])
    s = SamplingConfig(random_negatives_per_image=200, negatives_per_face=30, crops_per_face=300)
    plan = smp.plan_detection_crops(rng, 260, 180, faces, usable, s)
    iou = iou_matrix(plan.crops, faces)
    best = iou.max(axis=1)
    negative = plan.labels == LABEL_NEGATIVE
    assert negative.sum() >= 200 and (best[negative] < 0.3).all()
    assert np.isnan(plan.boxes[negative]).all()
    positive, part = plan.labels == LABEL_POSITIVE, plan.labels == LABEL_PART
    assert positive.sum() > 10 and part.sum() > 10
    assert (best[positive] > 0.65).all()
    assert ((best[part] >= 0.4) & (best[part] <= 0.65)).all()
    # Every positive/part crop targets the usable face, which is also its max-IoU face.
    assert (iou[positive | part].argmax(axis=1) == 0).all()
    back = calibrate(plan.crops[positive | part], plan.boxes[positive | part].astype(np.float64))
    assert np.allclose(back, faces[0], atol=1e-3)
    assert ((plan.crops[:, :2] >= 0) & (plan.crops[:, 2:] <= [260, 180])).all()


def test_no_usable_face_gives_no_positives():
    rng = np.random.default_rng(5)
    faces = np.array([[40.0, 30.0, 55.0, 45.0]])  # 15 px: under min_face_size
    plan = smp.plan_detection_crops(rng, 120, 100, faces, np.array([False]), SamplingConfig())
    assert set(plan.labels.tolist()) <= {LABEL_NEGATIVE}


def test_landmark_crops_overlap_their_face_and_mirror_consistently():
    rng = np.random.default_rng(6)
    face = np.array([20.0, 22.0, 60.0, 62.0])
    points = np.array([[30, 35], [50, 35], [40, 45], [32, 55], [48, 55]], np.float64)
    plan = smp.plan_landmark_crops(rng, face, points, 40, smp.Bands())
    assert 20 <= len(plan) <= 40 and 0 < plan.mirrored.sum() < len(plan)
    assert (iou_matrix(plan.crops, face[None])[:, 0] > 0.65).all()
    fractions = plan.landmarks.reshape(-1, 5, 2)
    assert ((fractions > 0) & (fractions < 1)).all()
    plain = ~plan.mirrored
    assert np.allclose(landmarks_from_offsets(plan.crops[plain], plan.landmarks[plain].astype(np.float64)), points, atol=1e-4)
    # A mirrored crop's left eye is the source's right eye, reflected inside the crop.
    crop = plan.crops[plan.mirrored][0]
    mirrored_points = landmarks_from_offsets(crop[None], plan.landmarks[plan.mirrored][:1].astype(np.float64))[0]
    assert np.allclose(mirrored_points[0], [crop[0] + crop[2] - points[1, 0], points[1, 1]], atol=1e-4)
    assert np.allclose(mirrored_points[3], [crop[0] + crop[2] - points[4, 0], points[4, 1]], atol=1e-4)
    face_back = calibrate(crop[None], plan.boxes[plan.mirrored][:1].astype(np.float64))[0]
    assert np.allclose(face_back, [crop[0] + crop[2] - face[2], face[1], crop[0] + crop[2] - face[0], face[3]], atol=1e-4)


def test_upright_crop_rotated_matches_the_upright_cut():
    image = smooth_image((80, 80, 3), seed=7)
    crops = np.array([[10.0, 8.0, 70.0, 68.0], [-6.0, 4.0, 50.0, 60.0], [20.0, 20.0, 44.0, 44.0]])
    upright = imaging.crop_resize_fast(image, crops, 48).astype(np.int16)
    turned = imaging.crop_rotated(image, crops, np.zeros(3), 48).astype(np.int16)
    assert turned.shape == upright.shape
    # Different interpolation (area pyramid vs area resize + bilinear), same picture.
    assert np.abs(turned - upright).mean() < 3.0


@pytest.mark.parametrize("angle", [-30.0, 12.5, 90.0])
def test_rotated_crops_show_the_points_where_their_targets_say(angle):
    # Five coloured dots on a dark image: each must appear in the turned crop at its target.
    image = np.zeros((120, 120, 3), np.uint8)
    points = np.array([[45, 50], [75, 48], [60, 62], [48, 80], [72, 82]], np.float64)
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (0, 255, 255)]
    for (x, y), colour in zip(points, colours):
        cv2.circle(image, (int(x), int(y)), 3, colour, -1)
    crops = np.array([[20.0, 25.0, 100.0, 105.0]])  # 80 px -> 48 px: also exercises the shrink
    fractions = smp.rotated_point_fractions(crops, np.array([angle]), points[None])[0]
    crop = imaging.crop_rotated(image, crops, np.array([angle]), 48)[0].astype(np.float64)
    for (fx, fy), colour in zip(fractions, colours):
        # Dot centres sit at pixel centres (x + 0.5 in edge coordinates); the target must land
        # within a pixel of the brightest spot of that colour.
        match = -np.abs(crop - np.array(colour)).sum(axis=2)
        y, x = np.unravel_index(match.argmax(), match.shape)
        assert abs((x + 0.5) - fx * 48) < 1.6 and abs((y + 0.5) - fy * 48) < 1.6
    # A quarter turn really turns: the eyes, side by side upright, stand one above the other.
    if angle == 90.0:
        assert abs(fractions[0, 0] - fractions[1, 0]) < 0.05 and abs(fractions[0, 1] - fractions[1, 1]) > 0.3


def test_rotated_point_fractions_at_zero_angle_are_the_plain_offsets():
    rng = np.random.default_rng(3)
    crops = random_boxes(rng, 6, 200, 200)
    points = rng.uniform(0, 200, (6, 5, 2))
    turned = smp.rotated_point_fractions(crops, np.zeros(6), points)
    assert np.allclose(turned, landmark_offsets(crops, points), atol=1e-5)


def test_landmark_crops_turn_within_the_asked_range_and_keep_points_inside():
    face = np.array([20.0, 22.0, 60.0, 62.0])
    points = np.array([[30, 35], [50, 35], [40, 45], [32, 55], [48, 55]], np.float64)
    upright = smp.plan_landmark_crops(np.random.default_rng(6), face, points, 40, smp.Bands())
    assert not upright.angles.any()
    plan = smp.plan_landmark_crops(np.random.default_rng(6), face, points, 40, smp.Bands(), max_rotation=20.0)
    assert len(plan) >= 20 and np.abs(plan.angles).max() <= 20.0 and np.abs(plan.angles).std() > 3.0
    # The upright draws are unchanged by asking for rotation (angles are drawn last).
    assert np.array_equal(plan.crops[:5], upright.crops[:5])
    fractions = plan.landmarks.reshape(-1, 5, 2)
    assert ((fractions > 0) & (fractions < 1)).all()
    plain = ~plan.mirrored
    expected = smp.rotated_point_fractions(plan.crops[plain], plan.angles[plain],
                                           np.broadcast_to(points, (plain.sum(), 5, 2)))
    assert np.allclose(fractions[plain], expected, atol=1e-5)
    # The eye line tilts by the crop's angle (the face turns the other way in the crop).
    eyes = fractions[plain][:, 1] - fractions[plain][:, 0]
    tilt = np.degrees(np.arctan2(eyes[:, 1], eyes[:, 0]))
    assert np.allclose(tilt, -plan.angles[plain], atol=1e-3)


def test_target_counts_and_selection():
    ratio = {"negative": 3, "positive": 1, "part": 1, "landmark": 2}
    available = {"negative": 1000, "positive": 120, "part": 900, "landmark": 5000}
    assert smp.target_counts(available, ratio, 0) == {"negative": 360, "positive": 120, "part": 120, "landmark": 240}
    assert smp.target_counts(available, ratio, 700) == {"negative": 300, "positive": 100, "part": 100, "landmark": 200}
    # Asking for more than there is keeps what there is.
    assert smp.target_counts(available, ratio, 7000)["positive"] == 120
    assert smp.target_counts(available, {"negative": 1, "positive": 0, "part": 0, "landmark": 0}, 0) == {
        "negative": 1000, "positive": 0, "part": 0, "landmark": 0}
    labels = np.random.default_rng(0).choice([0, 1, -1, -2], 5000).astype(np.int8)
    targets = {"negative": 100, "positive": 50, "part": 50, "landmark": 100}
    chosen = smp.select_by_ratio(labels, targets, seed=1)
    assert np.all(np.diff(chosen) > 0)
    assert {0: 100, 1: 50, -1: 50, -2: 100} == {k: int((labels[chosen] == k).sum()) for k in (0, 1, -1, -2)}
    assert np.array_equal(chosen, smp.select_by_ratio(labels, targets, seed=1))
    assert not np.array_equal(chosen, smp.select_by_ratio(labels, targets, seed=2))


def records(names):
    return [FaceRecord(image_path=f"/data/{n}", boxes=np.zeros((0, 4)), name=n) for n in names]


def test_split_holds_out_whole_images_spread_over_events():
    names = [f"{e}--Event/img_{i}.jpg" for e in range(5) for i in range(20 + 10 * e)]
    train, val = split_train_val(records(names), 0.1, seed=0)
    assert len(val) == round(0.1 * len(names)) and len(train) + len(val) == len(names)
    assert {r.name for r in train}.isdisjoint({r.name for r in val})
    per_event = {e: sum(r.name.startswith(f"{e}--") for r in val) for e in range(5)}
    assert all(count >= 2 for count in per_event.values())  # every event gives its share
    # Input order is kept, and the choice depends on names and seed, not on the order.
    assert [r.name for r in train] == [n for n in names if n in {r.name for r in train}]
    _, val_reversed = split_train_val(records(names[::-1]), 0.1, seed=0)
    assert {r.name for r in val_reversed} == {r.name for r in val}
    _, val_other = split_train_val(records(names), 0.1, seed=1)
    assert {r.name for r in val_other} != {r.name for r in val}
    assert split_train_val(records(names), 0.0, seed=0)[1] == []
    with pytest.raises(ValueError):
        split_train_val(records(names), 1.0, seed=0)
