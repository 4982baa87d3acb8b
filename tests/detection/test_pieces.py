"""The cascade's pieces against direct, per-box implementations of the reference arithmetic."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mtcnn_train import geometry as g
from mtcnn_train.detection.cascade import crop_windows, pnet_candidates, pyramid_scales, scaled_size
from mtcnn_train.imaging import crop_resize_area, resize_area, summed_area_table


def test_pyramid_scales_follow_the_reference_rule():
    scales = pyramid_scales(100, 250, min_face_size=20, factor=0.709)
    assert scales[0] == pytest.approx(0.6)
    assert all(b == pytest.approx(a * 0.709) for a, b in zip(scales, scales[1:]))
    # the shorter side (100) times each scale stays >= 12; one more step would go below
    assert 100 * scales[-1] >= 12 > 100 * scales[-1] * 0.709
    assert pyramid_scales(19, 500, 20, 0.709) == []  # 19 * 12/20 < 12: nothing to scan
    assert scaled_size(100, 250, 0.6) == (61, 151)  # int(side * scale + 1)


def test_pnet_candidates_from_a_synthetic_map():
    probs = torch.zeros(2, 5, 7)
    offsets = torch.zeros(2, 4, 5, 7)
    probs[0, 1, 3] = 0.9  # image 0, row 1, column 3
    probs[1, 4, 0] = 0.6  # exactly at the threshold: P-Net keeps p >= t
    probs[1, 2, 2] = 0.59
    offsets[0, :, 1, 3] = torch.tensor([0.1, -0.2, 0.3, 0.4])
    scale = 0.5
    index, windows, scores, cell_offsets = pnet_candidates(probs, offsets, scale, 0.6)
    assert index.tolist() == [0, 1]
    # cell (x=3, y=1): inclusive 1-based window floor((2x+1)/s) .. floor((2x+12)/s)
    assert windows[0].tolist() == [math.floor(7 / scale), math.floor(3 / scale), math.floor(18 / scale), math.floor(14 / scale)]
    assert windows[1].tolist() == [math.floor(1 / scale), math.floor(9 / scale), math.floor(12 / scale), math.floor(20 / scale)]
    np.testing.assert_allclose(scores.numpy(), [0.9, 0.6])
    np.testing.assert_allclose(cell_offsets[0].numpy(), [0.1, -0.2, 0.3, 0.4])
    # In pixel edges the window at scale 1 covers the 12 input pixels 2x .. 2x + 11.
    _, w1, _, _ = pnet_candidates(probs[:1], offsets[:1], 1.0, 0.6)
    np.testing.assert_allclose(g.inclusive_to_edges(w1).numpy(), [[6, 2, 18, 14]])


def test_edges_and_inclusive_round_trip():
    inclusive = np.array([[1, 1, 12, 12], [5.5, 3, 9, 20]], np.float32)
    edges = g.inclusive_to_edges(inclusive)
    np.testing.assert_allclose(edges, [[0, 0, 12, 12], [4.5, 2, 9, 20]])
    np.testing.assert_allclose(g.edges_to_inclusive(edges), inclusive)
    t = torch.from_numpy(inclusive)
    assert torch.equal(g.edges_to_inclusive(g.inclusive_to_edges(t)), t)


def _reference_rerec(b):  # facenet-pytorch's rerec, on inclusive boxes
    b = b.copy()
    h, w = b[:, 3] - b[:, 1], b[:, 2] - b[:, 0]
    side = np.maximum(w, h)
    b[:, 0] += w * 0.5 - side * 0.5
    b[:, 1] += h * 0.5 - side * 0.5
    b[:, 2:4] = b[:, :2] + side[:, None]
    return b


def _reference_bbreg(b, reg):  # facenet-pytorch's bbreg: widths with +1
    w = b[:, 2] - b[:, 0] + 1
    h = b[:, 3] - b[:, 1] + 1
    return b + reg * np.stack([w, h, w, h], 1)


def test_square_and_calibrate_on_edges_equal_the_reference_plus_one_arithmetic():
    rng = np.random.default_rng(1)
    inclusive = np.concatenate([rng.uniform(0, 100, (20, 2)), rng.uniform(0, 100, (20, 2)) + 120], 1)
    reg = rng.uniform(-0.3, 0.3, (20, 4))
    edges = g.inclusive_to_edges(inclusive)
    np.testing.assert_allclose(g.square(edges), g.inclusive_to_edges(_reference_rerec(inclusive)), atol=1e-9)
    np.testing.assert_allclose(g.calibrate(edges, reg), g.inclusive_to_edges(_reference_bbreg(inclusive, reg)), atol=1e-9)
    sq = g.square(edges)
    np.testing.assert_allclose(sq[:, 2] - sq[:, 0], sq[:, 3] - sq[:, 1])


def _reference_crop(image: torch.Tensor, box_edges: np.ndarray, size: int, clip: bool) -> torch.Tensor:
    """facenet-pytorch's pad() + slice + area resize, one box at a time (clip), or the same
    window zero-padded (the original MTCNN)."""
    _, _, height, width = image.shape
    x, y, ex, ey = (int(v) for v in np.trunc(g.edges_to_inclusive(box_edges[None].astype(np.float32))[0]))
    if clip:
        x, y, ex, ey = max(x, 1), max(y, 1), min(ex, width), min(ey, height)
        window = image[:, :, y - 1:ey, x - 1:ex]
    else:
        pad = 200
        padded = F.pad(image, (pad, pad, pad, pad))
        window = padded[:, :, y - 1 + pad:ey + pad, x - 1 + pad:ex + pad]
    return F.interpolate(window, size=(size, size), mode="area")


@pytest.mark.parametrize("clip", [True, False])
def test_batched_area_crops_match_per_box_reference(clip):
    rng = np.random.default_rng(2)
    images = torch.as_tensor(rng.integers(0, 256, (2, 3, 60, 80)), dtype=torch.uint8)
    boxes = np.array([[10.3, 5.7, 40.2, 35.6], [-7.4, -3.2, 20.8, 24.0], [60.5, 40.1, 95.3, 74.9],
                      [0.0, 0.0, 80.0, 60.0], [33.9, 20.1, 36.2, 22.8], [-15.6, 30.0, 5.5, 51.1]], np.float32)
    index = torch.tensor([0, 1, 0, 1, 1, 0])
    windows = crop_windows(torch.from_numpy(boxes), 80, 60, clip=clip)
    table = summed_area_table(images)
    for size in (24, 48):
        crops = crop_resize_area(table, index, windows, size)
        for k in range(len(boxes)):
            expected = _reference_crop(images[index[k]:index[k] + 1].float(), boxes[k], size, clip)
            torch.testing.assert_close(crops[k:k + 1], expected, atol=1e-3, rtol=0)


def test_whole_image_area_resize_matches_interpolate():
    rng = np.random.default_rng(3)
    images = torch.as_tensor(rng.integers(0, 256, (2, 3, 57, 83)), dtype=torch.uint8)
    table = summed_area_table(images)
    for size in [(57, 83), (35, 50), (12, 17), (80, 100)]:
        torch.testing.assert_close(resize_area(table, *size), F.interpolate(images.float(), size=size, mode="area"),
                                   atol=1e-3, rtol=0)


def test_summed_area_table_cpu_fast_path_equals_cumsum():
    rng = np.random.default_rng(4)
    images = torch.as_tensor(rng.integers(0, 256, (2, 3, 31, 29)), dtype=torch.uint8)
    fast = summed_area_table(images)  # cv2.integral path
    slow = summed_area_table(images.float())  # cumsum path
    assert torch.equal(fast.long(), slow.long())
    assert fast.shape == (2, 32, 30, 3) and int(fast[1, -1, -1, 2]) == int(images[1, 2].long().sum())


def _loop_nms(boxes, scores, threshold, mode):
    order = sorted(range(len(boxes)), key=lambda i: (-scores[i], i))
    keep = []
    for i in order:
        ok = True
        for j in keep:
            a, b = boxes[i], boxes[j]
            iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
            ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
            area_a = max(0.0, a[2] - a[0]) * max(0.0, a[3] - a[1])
            area_b = max(0.0, b[2] - b[0]) * max(0.0, b[3] - b[1])
            denom = min(area_a, area_b) if mode == "min" else area_a + area_b - iw * ih
            if denom > 0 and iw * ih / denom > threshold:
                ok = False
                break
        if ok:
            keep.append(i)
    return keep


@pytest.mark.parametrize("mode", ["union", "min"])
def test_sparse_nms_equals_the_textbook_loop(mode):
    rng = np.random.default_rng(5)
    for trial in range(40):
        n = int(rng.integers(1, 120))
        xy = rng.integers(0, 50, (n, 2)).astype(np.float32)
        wh = rng.integers(0, 25, (n, 2)).astype(np.float32)
        boxes = np.concatenate([xy, xy + wh], 1)
        scores = rng.integers(0, 10, n).astype(np.float32)  # many ties: the earlier box wins
        threshold = float(rng.choice([0.0, 0.3, 0.5, 0.7]))
        assert g.nms(boxes, scores, threshold, mode).tolist() == _loop_nms(boxes, scores, threshold, mode)
        groups = rng.integers(0, 3, n)
        kept = g.batched_nms(torch.from_numpy(boxes), torch.from_numpy(scores), torch.from_numpy(groups), threshold, mode)
        expected = []
        for gid in range(3):
            idx = np.flatnonzero(groups == gid)
            expected += idx[_loop_nms(boxes[idx], scores[idx], threshold, mode)].tolist()
        assert sorted(kept.tolist()) == sorted(expected)
        assert kept.tolist() == sorted(kept.tolist(), key=lambda i: (-scores[i], i))


def test_min_face_below_12_upsamples_like_the_reference():
    """min_face_size 10 (issue 21): the first level is the image grown by 12 / 10, area-resized as
    facenet-pytorch's ``F.interpolate(mode='area')`` does it."""
    scales = pyramid_scales(57, 83, min_face_size=10, factor=0.709)
    assert scales[0] == pytest.approx(1.2) and scales[1] == pytest.approx(1.2 * 0.709)
    assert scaled_size(57, 83, scales[0]) == (69, 100)
    rng = np.random.default_rng(5)
    images = torch.as_tensor(rng.integers(0, 256, (1, 3, 57, 83)), dtype=torch.uint8)
    size = scaled_size(57, 83, scales[0])
    torch.testing.assert_close(resize_area(summed_area_table(images), *size),
                               F.interpolate(images.float(), size=size, mode="area"), atol=1e-3, rtol=0)


@pytest.mark.parametrize("size", [(949, 615), (950, 614), (300, 1025), (37, 40), (1200, 21)])
def test_pnet_row_strips_give_the_whole_level_bit_for_bit(size):
    from mtcnn_train.detection.cascade import _pnet_maps, pnet_strips
    from tests.random_nets import make_random_nets

    pnet = make_random_nets(0)[0]
    level = torch.rand(1, *size, 3).mul(255).round().permute(0, 3, 1, 2)  # channels-last, as resize_area
    strips = pnet_strips(*size)
    assert strips[0][0] == 0 and strips[-1][1] == size[0]
    with torch.inference_mode():
        whole = pnet.face_and_box_from_pixels(level)
        parts = _pnet_maps(pnet, level)
    for a, b in zip(whole, parts):
        assert torch.equal(a, b)


def test_area_resize_in_row_blocks_gives_the_same_bits():
    rng = np.random.default_rng(6)
    images = torch.as_tensor(rng.integers(0, 256, (2, 3, 97, 131)), dtype=torch.uint8)
    table = summed_area_table(images)
    for size in [(60, 80), (97, 131), (13, 17), (150, 200)]:
        whole = resize_area(table, *size, block_bytes=2**30)
        for block_bytes in (1, 5000, 2**16):
            assert torch.equal(resize_area(table, *size, block_bytes=block_bytes), whole)
