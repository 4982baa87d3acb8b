import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from mtcnn_train import geometry as g


def test_iou_hand_computed():
    a = np.array([[0, 0, 10, 10]])
    b = np.array([[5, 0, 15, 10], [0, 0, 10, 10], [20, 20, 30, 30], [0, 0, 5, 5]])
    np.testing.assert_allclose(g.iou_matrix(a, b), [[50 / 150, 1.0, 0.0, 25 / 100]])


def test_iou_empty_and_degenerate():
    assert g.iou_matrix(np.zeros((0, 4)), np.zeros((3, 4))).shape == (0, 3)
    # zero-size boxes have no area: IoU 0, never NaN
    out = g.iou_matrix([[5, 5, 5, 5]], [[5, 5, 5, 5], [0, 0, 10, 10]])
    assert np.all(out == 0)


def _boxes(n_min=0, n_max=30):
    # Multiples of 1/8 px: exact in float32, so NumPy float64 checks agree with float32 NMS.
    coords = st.integers(-400, 4000).map(lambda v: v / 8)
    sizes = st.integers(0, 1600).map(lambda v: v / 8)
    return st.lists(st.tuples(coords, coords, sizes, sizes), min_size=n_min, max_size=n_max).map(
        lambda rows: np.array([[x, y, x + w, y + h] for x, y, w, h in rows], dtype=np.float64).reshape(-1, 4))


@settings(max_examples=150, deadline=None)
@given(_boxes(), _boxes())
def test_iou_invariants(a, b):
    m = g.iou_matrix(a, b)
    assert m.shape == (len(a), len(b))
    assert np.all((m >= 0) & (m <= 1 + 1e-9))
    np.testing.assert_allclose(m, g.iou_matrix(b, a).T, atol=1e-12)
    self_iou = np.diag(g.iou_matrix(a, a))
    positive = g.box_area(a) > 0
    np.testing.assert_allclose(self_iou[positive], 1.0)


@settings(max_examples=100, deadline=None)
@given(_boxes(1, 40), st.floats(0.05, 0.95), st.sampled_from(["union", "min"]))
def test_nms_invariants(boxes, threshold, mode):
    scores = np.random.default_rng(len(boxes)).random(len(boxes)).astype(np.float32)
    keep = g.nms(boxes, scores, threshold, mode)
    assert len(set(keep.tolist())) == len(keep)
    assert keep[0] == int(np.argmax(scores))  # the best box always survives
    assert np.all(np.diff(scores[keep]) <= 0)  # highest score first
    kept = boxes[keep]
    overlap = g.iou_matrix(kept, kept) if mode == "union" else _min_overlap(kept)
    np.fill_diagonal(overlap, 0)
    assert np.all(overlap <= threshold + 1e-5)  # no two kept boxes overlap above the threshold
    # every suppressed box overlaps some kept box with a higher score above the threshold
    for i in set(range(len(boxes))) - set(keep.tolist()):
        ov = (g.iou_matrix(boxes[i:i + 1], kept) if mode == "union" else _min_overlap(np.vstack([boxes[i:i + 1], kept]))[0, 1:])
        assert np.any(np.asarray(ov).ravel() > threshold - 1e-5)


def _min_overlap(b):
    area = g.box_area(b)
    ix = np.clip(np.minimum(b[:, None, 2], b[None, :, 2]) - np.maximum(b[:, None, 0], b[None, :, 0]), 0, None)
    iy = np.clip(np.minimum(b[:, None, 3], b[None, :, 3]) - np.maximum(b[:, None, 1], b[None, :, 1]), 0, None)
    denom = np.minimum(area[:, None], area[None, :])
    return np.where(denom > 0, ix * iy / np.where(denom > 0, denom, 1), 0)


def test_nms_hand_case_and_torch():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30], [0, 0, 4, 4]], np.float32)
    scores = np.array([0.9, 0.8, 0.7, 0.95], np.float32)
    assert g.nms(boxes, scores, 0.5).tolist() == [3, 0, 2]
    # 'min' overlap: the small box lies inside box 0, so it suppresses box 0 at 0.7
    assert g.nms(boxes, scores, 0.7, "min").tolist() == [3, 1, 2]
    keep_t = g.nms(torch.from_numpy(boxes), torch.from_numpy(scores), 0.5)
    assert isinstance(keep_t, torch.Tensor) and keep_t.tolist() == [3, 0, 2]
    assert g.nms(np.zeros((0, 4)), np.zeros(0), 0.5).shape == (0,)


def test_nms_tests_overlaps_chunk_by_chunk_with_the_same_result(monkeypatch):
    """A dense grid of windows (a P-Net level at a low threshold) has far more x-overlapping pairs
    than overlapping ones; they are filtered chunk by chunk, so they never exist all at once.
    Tiny chunks must give the same kept boxes and the same pairs as one big chunk."""
    ys, xs = np.meshgrid(np.arange(0, 120, 2.0), np.arange(0, 120, 2.0), indexing="ij")
    boxes = torch.from_numpy(np.stack([xs, ys, xs + 12, ys + 12], -1).reshape(-1, 4)).float()
    scores = torch.from_numpy(np.random.default_rng(0).random(len(boxes))).float()
    groups = torch.arange(len(boxes)) % 3
    whole_pairs = g._x_overlapping_pairs(boxes, groups)
    whole_keep = g.batched_nms(boxes, scores, groups, 0.3)
    calls = []

    def keep(first, second):
        calls.append(len(first))
        return g._pair_overlap(boxes, first, second, "union") > 0.3

    monkeypatch.setattr(g, "_PAIR_CHUNK", 1000)
    first, second = g._x_overlapping_pairs(boxes, groups, keep)
    assert len(calls) > 10 and max(calls) < 1000 + 200  # many chunks, none much above the limit
    hit = g._pair_overlap(boxes, *whole_pairs, "union") > 0.3
    assert sorted(zip(first.tolist(), second.tolist())) == sorted(zip(whole_pairs[0][hit].tolist(),
                                                                       whole_pairs[1][hit].tolist()))
    assert g.batched_nms(boxes, scores, groups, 0.3).tolist() == whole_keep.tolist()


def _greedy_walk(hi, lo, n):
    """The textbook greedy pass: boxes in score order, each kept one suppresses its partners."""
    kept = np.ones(n, dtype=bool)
    for box in range(n):
        if kept[box]:
            kept[lo[hi == box]] = False
    return kept


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 60), st.lists(st.tuples(st.integers(0, 59), st.integers(0, 59)), max_size=300))
def test_vectorised_greedy_pass_equals_the_walk(n, pairs):
    pairs = np.array([(min(a, b), max(a, b)) for a, b in pairs if a != b and max(a, b) < n], dtype=np.int64).reshape(-1, 2)
    hi, lo = pairs[:, 0], pairs[:, 1]
    np.testing.assert_array_equal(g._greedy_pass(hi, lo, n), _greedy_walk(hi, lo, n))


def test_greedy_pass_settles_a_long_chain_by_walking(monkeypatch):
    """Box k suppresses box k + 1: every other box is kept, and each round settles one more box,
    so a chain longer than the rounds allowed falls back to the walk, with the same answer."""
    n = 200
    hi, lo = np.arange(n - 1), np.arange(1, n)
    expected = np.arange(n) % 2 == 0
    np.testing.assert_array_equal(g._greedy_pass(hi, lo, n), expected)
    monkeypatch.setattr(g, "_GREEDY_ROUNDS", 3)
    np.testing.assert_array_equal(g._greedy_pass(hi, lo, n), expected)
    np.testing.assert_array_equal(g._greedy_pass(hi[:2], lo[:2], n), _greedy_walk(hi[:2], lo[:2], n))


def test_batched_nms_keeps_groups_apart():
    boxes = torch.tensor([[0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 10, 10.0]])
    scores = torch.tensor([0.9, 0.8, 0.7])
    keep = g.batched_nms(boxes, scores, torch.tensor([0, 1, 0]), 0.5)
    assert sorted(keep.tolist()) == [0, 1]


@settings(max_examples=100, deadline=None)
@given(_boxes(1, 20), _boxes(1, 20))
def test_offsets_roundtrip(crops, faces):
    n = min(len(crops), len(faces))
    crops, faces = crops[:n], faces[:n]
    ok = (crops[:, 2] - crops[:, 0] > 1) & (crops[:, 3] - crops[:, 1] > 1)
    crops, faces = crops[ok], faces[ok]
    offsets = g.box_offsets(crops, faces)
    np.testing.assert_allclose(g.calibrate(crops, offsets.astype(np.float64)), faces, atol=1e-2)
    pts = np.stack([faces[:, :2]] * 5, 1)
    back = g.landmarks_from_offsets(crops, g.landmark_offsets(crops, pts).astype(np.float64))
    np.testing.assert_allclose(back, pts, atol=1e-2)


def test_calibrate_hand_case_numpy_and_torch():
    box = np.array([[10.0, 20.0, 30.0, 60.0]])
    off = np.array([[0.1, -0.25, 0.5, 0.0]])
    np.testing.assert_allclose(g.calibrate(box, off), [[12, 10, 40, 60]])
    out = g.calibrate(torch.tensor(box), torch.tensor(off))
    assert torch.allclose(out, torch.tensor([[12.0, 10, 40, 60]], dtype=torch.float64))


@settings(max_examples=100, deadline=None)
@given(_boxes(1, 20))
def test_square_invariants(boxes):
    sq = g.square(boxes)
    w, h = sq[:, 2] - sq[:, 0], sq[:, 3] - sq[:, 1]
    np.testing.assert_allclose(w, h, atol=1e-6)
    np.testing.assert_allclose(w, np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]), atol=1e-6)
    np.testing.assert_allclose(sq[:, :2] + sq[:, 2:], boxes[:, :2] + boxes[:, 2:], atol=1e-6)  # same centre


def test_clip():
    np.testing.assert_allclose(g.clip_boxes([[-5, 3, 120, 50]], 100, 40), [[0, 3, 100, 40]])


@settings(max_examples=100, deadline=None)
@given(st.floats(1, 200), st.floats(1, 200), st.floats(-math.pi, math.pi), st.floats(-100, 100), st.floats(-100, 100))
def test_ellipse_box_contains_ellipse_points(a, b, theta, cx, cy):
    box = g.ellipse_to_box([[a, b, theta, cx, cy]])[0]
    t = np.linspace(0, 2 * np.pi, 721)
    x = cx + a * np.cos(t) * np.cos(theta) - b * np.sin(t) * np.sin(theta)
    y = cy + a * np.cos(t) * np.sin(theta) + b * np.sin(t) * np.cos(theta)
    tol = 1e-6 * (1 + abs(a) + abs(b))
    assert x.min() >= box[0] - tol and x.max() <= box[2] + tol
    assert y.min() >= box[1] - tol and y.max() <= box[3] + tol
    # tight: the extreme points touch the box (within the sampling resolution)
    assert x.min() - box[0] < 0.01 * (a + b) and box[3] - y.max() < 0.01 * (a + b)


def test_ellipse_axis_aligned_and_box_to_ellipse():
    np.testing.assert_allclose(g.ellipse_to_box([[20, 10, 0, 50, 60]]), [[30, 50, 70, 70]])
    np.testing.assert_allclose(g.ellipse_to_box([[20, 10, math.pi / 2, 50, 60]]), [[40, 40, 60, 80]], atol=1e-9)
    e = g.box_to_ellipse([[10, 20, 50, 70]])[0]
    major, minor, angle, cx, cy = e
    assert major == pytest.approx(30) and minor == pytest.approx(20) and angle == pytest.approx(math.pi / 2)
    assert cx == pytest.approx(30)
    assert cy + major == pytest.approx(70)  # the chin stays where the box ends


def test_mirror_point_fractions_follow_the_flipped_pixels():
    # a 10-pixel-wide crop: the point at x = 2.5 px (fraction 0.25) lands at 10 - 2.5 = 7.5 px
    points = np.array([[[0.25, 0.3], [0.75, 0.32], [0.5, 0.6], [0.3, 0.8], [0.72, 0.79]]], np.float32)
    out = g.mirror_point_fractions(points)
    np.testing.assert_allclose(out, [[[0.25, 0.32], [0.75, 0.3], [0.5, 0.6], [0.28, 0.79], [0.7, 0.8]]], atol=1e-6)
    np.testing.assert_allclose(g.mirror_point_fractions(out), points, atol=1e-6)  # its own inverse
    flat = torch.from_numpy(points.reshape(1, 10))
    np.testing.assert_allclose(g.mirror_point_fractions(flat).numpy(), out.reshape(1, 10), atol=1e-6)


def test_mirror_box_offsets_calibrate_the_flipped_crop_to_the_flipped_face():
    from mtcnn_train.geometry import mirror_boxes

    crop, face = np.array([[20.0, 10, 60, 50]]), np.array([[25.0, 12, 58, 49]])
    width = 100
    # What a net reads on the flipped crop: the offsets of the flipped face from the flipped crop.
    flipped = g.box_offsets(mirror_boxes(crop, width), mirror_boxes(face, width))
    read_back = g.mirror_box_offsets(flipped)
    np.testing.assert_allclose(read_back, g.box_offsets(crop, face), atol=1e-9)
    np.testing.assert_allclose(g.calibrate(crop, read_back), face, atol=1e-9)
    np.testing.assert_allclose(g.mirror_box_offsets(read_back), flipped)  # its own inverse
    as_torch = g.mirror_box_offsets(torch.from_numpy(flipped))
    np.testing.assert_allclose(as_torch.numpy(), read_back, atol=1e-9)


def test_mirror_boxes_flips_pixel_edges_and_is_its_own_inverse():
    from mtcnn_train.geometry import mirror_boxes

    boxes = np.array([[0, 5, 10, 20], [90, 0, 100, 7]], float)
    # Columns 0-9 of a 100-pixel-wide image become columns 90-99, and the other way round.
    np.testing.assert_array_equal(mirror_boxes(boxes, 100), [[90, 5, 100, 20], [0, 0, 10, 7]])
    np.testing.assert_array_equal(mirror_boxes(mirror_boxes(boxes, 100), 100), boxes)
    assert mirror_boxes(np.zeros((0, 4)), 10).shape == (0, 4)
    # The IoU of two boxes is the IoU of their mirror images.
    a, b = np.array([[3, 4, 30, 40]], float), np.array([[10, 0, 35, 33]], float)
    assert g.iou_matrix(mirror_boxes(a, 64), mirror_boxes(b, 64))[0, 0] == pytest.approx(g.iou_matrix(a, b)[0, 0])
