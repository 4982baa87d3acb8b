"""The cascade on random-weight nets: shapes, stages, batching, loading."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from mtcnn_train.config import DetectionConfig
from mtcnn_train.detection.cascade import Cascade, Detections
from mtcnn_train.errors import UserError
from mtcnn_train.geometry import iou_matrix
from mtcnn_train.nets import PNet

from .conftest import random_image


def _same(a: Detections, b: Detections) -> None:
    assert len(a) == len(b)
    np.testing.assert_allclose(a.boxes, b.boxes, atol=1e-3)
    np.testing.assert_allclose(a.scores, b.scores, atol=1e-5)
    if a.landmarks is None:
        assert b.landmarks is None
    else:
        np.testing.assert_allclose(a.landmarks, b.landmarks, atol=1e-3)


def test_full_cascade_output_types(random_nets, test_cfg):
    cascade = Cascade(*random_nets, cfg=test_cfg)
    dets = cascade.detect(random_image(0))
    assert len(dets) > 0, "thresholds in the fixture should let some random-net candidates through"
    assert dets.boxes.dtype == np.float32 and dets.boxes.shape == (len(dets), 4)
    assert dets.scores.dtype == np.float32 and np.all(dets.scores > test_cfg.thresholds[2])
    assert dets.landmarks.shape == (len(dets), 5, 2) and dets.landmarks.dtype == np.float32
    assert np.all(np.diff(dets.scores) <= 0)  # highest score first
    # the final NMS uses the 'Min' overlap: no two kept boxes overlap above the threshold
    b = dets.boxes.astype(np.float64)
    iw = np.clip(np.minimum(b[:, None, 2], b[None, :, 2]) - np.maximum(b[:, None, 0], b[None, :, 0]), 0, None)
    ih = np.clip(np.minimum(b[:, None, 3], b[None, :, 3]) - np.maximum(b[:, None, 1], b[None, :, 1]), 0, None)
    area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    overlap = iw * ih / np.minimum(area[:, None], area[None, :])
    np.fill_diagonal(overlap, 0)
    assert overlap.max(initial=0) <= test_cfg.nms_onet + 1e-5


def test_batch_gives_the_same_as_one_by_one(random_nets, test_cfg):
    cascade = Cascade(*random_nets, cfg=test_cfg)
    stacked = Cascade(*random_nets, cfg=dataclasses.replace(test_cfg, batch_size=2), stack=True)
    assert not cascade.stack and stacked.stack  # on the CPU, stacking is opt-in
    images = [random_image(1), random_image(2), random_image(3, 50, 70), random_image(8)]  # grouped by size
    batched = stacked.detect_batch(images)
    for image, dets in zip(images, batched):
        _same(cascade.detect(image), dets)
    for a, b in zip(cascade.detect_batch(images), batched):
        _same(a, b)


def test_stopping_after_pnet_and_rnet(random_nets, test_cfg):
    cascade = Cascade(*random_nets, cfg=test_cfg)
    image = random_image(4)
    proposals = cascade.detect(image, stages="pnet")
    refined = cascade.detect(image, stages="rnet")
    final = cascade.detect(image, stages=("pnet", "rnet", "onet"))
    assert proposals.landmarks is None and refined.landmarks is None and final.landmarks is not None
    assert len(proposals) >= len(refined) > 0
    assert np.all(proposals.scores >= test_cfg.thresholds[0])
    assert np.all(refined.scores > test_cfg.thresholds[1])
    for dets in (proposals, refined):  # the next stage's inputs: squares
        np.testing.assert_allclose(dets.boxes[:, 2] - dets.boxes[:, 0], dets.boxes[:, 3] - dets.boxes[:, 1], atol=1e-3)
    # a cascade built without O-Net stops after R-Net by itself, with the same result
    _same(Cascade(random_nets[0], random_nets[1], cfg=test_cfg).detect(image), refined)
    _same(Cascade(random_nets[0], cfg=test_cfg).detect(image), proposals)
    with pytest.raises(UserError, match="only pnet"):
        Cascade(random_nets[0], cfg=test_cfg).detect(image, stages="onet")
    with pytest.raises(UserError, match="in order"):
        cascade.detect(image, stages=("pnet", "onet"))


def test_proposals_are_the_inputs_rnet_sees(random_nets, test_cfg):
    """P+R from scratch equals R-Net run on the P-only proposals' crops (cut with Cascade.crops)."""
    cascade = Cascade(*random_nets, cfg=test_cfg)
    image = random_image(5)
    proposals = cascade.detect(image, stages="pnet")
    crops = cascade.crops(image, proposals.boxes, 24)
    assert crops.shape == (len(proposals), 24, 24, 3) and crops.dtype == np.uint8
    with torch.no_grad():
        x = (torch.from_numpy(crops).permute(0, 3, 1, 2).float() - 127.5) / 128
        probs = torch.softmax(random_nets[1](x)[0], 1)[:, 1].numpy()
    refined = cascade.detect(image, stages="rnet")
    # crops() rounds to uint8, so compare decisions away from the threshold only
    passing = probs > test_cfg.thresholds[1] + 0.02
    assert passing.sum() > 0 and len(refined) > 0
    assert len(refined) <= (probs > test_cfg.thresholds[1] - 0.02).sum()


def test_small_blank_and_bad_images(random_nets, test_cfg):
    cascade = Cascade(*random_nets, cfg=test_cfg)
    tiny = np.zeros((10, 10, 3), np.uint8)  # smaller than the smallest face: no pyramid level
    dets = cascade.detect(tiny)
    assert len(dets) == 0 and dets.boxes.shape == (0, 4) and dets.landmarks.shape == (0, 5, 2)
    assert len(cascade.detect(tiny, stages="pnet")) == 0 and cascade.detect(tiny, stages="pnet").landmarks is None
    with pytest.raises(UserError, match="uint8"):
        cascade.detect(np.zeros((20, 20, 3), np.float32))
    with pytest.raises(UserError, match="H x W x 3"):
        cascade.detect(np.zeros((20, 20), np.uint8))


def test_from_run_dir(random_run_dir, random_nets, test_cfg):
    image = random_image(6)
    loaded = Cascade.from_run_dir(random_run_dir, test_cfg, device="cpu")
    assert loaded.stages == ("pnet", "rnet", "onet") and loaded.device.type == "cpu"
    _same(loaded.detect(image), Cascade(*random_nets, cfg=test_cfg).detect(image))
    p_only = Cascade.from_run_dir(random_run_dir, test_cfg, stages=("pnet",), device="cpu")
    assert p_only.stages == ("pnet",)
    (random_run_dir / "onet.pt").unlink()
    with pytest.raises(UserError, match="onet.pt"):
        Cascade.from_run_dir(random_run_dir, test_cfg)
    with pytest.raises(UserError, match="not found"):
        Cascade.from_run_dir(random_run_dir / "nowhere", test_cfg)


def test_zero_and_clip_borders_differ_only_at_the_border(random_nets, test_cfg):
    image = random_image(7)
    zero = Cascade(*random_nets, cfg=dataclasses.replace(test_cfg, crop_border="zero")).detect(image, stages="rnet")
    clip = Cascade(*random_nets, cfg=dataclasses.replace(test_cfg, crop_border="clip")).detect(image, stages="rnet")
    inside = lambda d: d.boxes[(d.boxes[:, 0] > 2) & (d.boxes[:, 1] > 2) & (d.boxes[:, 2] < 78) & (d.boxes[:, 3] < 58)]
    a, b = inside(zero), inside(clip)
    # boxes well inside the image were cut identically; R-Net calibration moved them the same way
    if len(a) and len(b):
        assert (iou_matrix(a, b).max(1) > 0.99).mean() > 0.8


class _FixedPointsONet(torch.nn.Module):
    """O-Net whose face scores come from a random net, with no box correction and the same
    landmark fractions for every crop: what the cascade does with them is then known exactly."""

    def __init__(self, onet: torch.nn.Module, points: torch.Tensor):
        super().__init__()
        self.onet, self.points = onet, points

    def forward(self, x):
        logits, box, _ = self.onet(x)
        return logits, torch.zeros_like(box), self.points.expand(len(x), 10)


def test_mirror_average_reads_landmarks_of_the_flipped_face_back_in_place(random_nets, test_cfg):
    pnet, rnet, onet = random_nets
    points = torch.tensor([[0.30, 0.35, 0.72, 0.40, 0.50, 0.55, 0.33, 0.80, 0.70, 0.78]])
    fixed = _FixedPointsONet(onet, points)
    image = random_image(2)
    plain = Cascade(pnet, rnet, fixed, cfg=test_cfg).detect(image)
    averaged = Cascade(pnet, rnet, fixed, cfg=dataclasses.replace(test_cfg, landmarks_mirror_average=True)).detect(image)
    assert len(plain) > 0
    np.testing.assert_allclose(averaged.boxes, plain.boxes)
    np.testing.assert_allclose(averaged.scores, plain.scores)

    def fractions(dets):
        size = (dets.boxes[:, 2:] - dets.boxes[:, :2])[:, None, :]
        return (dets.landmarks - dets.boxes[:, None, :2]) / size

    p = points.numpy().reshape(5, 2)
    np.testing.assert_allclose(fractions(plain), np.broadcast_to(p, (len(plain), 5, 2)), atol=1e-4)
    # The mirrored crop yields the same fractions p; read back, its left eye (0.30, 0.35) is the
    # right eye at x = 1 - 0.30, so the averaged right eye is ((0.72 + 0.70) / 2, (0.40 + 0.35) / 2).
    expected = np.array([[(0.30 + 0.28) / 2, (0.35 + 0.40) / 2], [(0.72 + 0.70) / 2, (0.40 + 0.35) / 2],
                         [0.50, 0.55], [(0.33 + 0.30) / 2, (0.80 + 0.78) / 2], [(0.70 + 0.67) / 2, (0.78 + 0.80) / 2]])
    np.testing.assert_allclose(fractions(averaged), np.broadcast_to(expected, (len(plain), 5, 2)), atol=1e-4)


def test_mirror_average_changes_only_the_landmarks(random_nets, test_cfg):
    image = random_image(3)
    plain = Cascade(*random_nets, cfg=test_cfg).detect(image)
    averaged = Cascade(*random_nets, cfg=dataclasses.replace(test_cfg, landmarks_mirror_average=True)).detect(image)
    assert len(plain) > 0
    np.testing.assert_allclose(averaged.boxes, plain.boxes)
    np.testing.assert_allclose(averaged.scores, plain.scores)
    # a random net is not mirror-symmetric, so the averaged points move
    assert np.abs(averaged.landmarks - plain.landmarks).max() > 1e-3


class _HalfReadingONet(torch.nn.Module):
    """An O-Net whose face logit is the mean brightness of the crop's left half and whose box
    offsets are fixed: the mirrored crop reads the right half, and ``(0.1, 0, 0.3, 0)`` back."""

    def __init__(self, onet):
        super().__init__()
        self.onet = onet

    def forward(self, x):
        _, _, points = self.onet(x)
        left = x[:, :, :, : x.shape[-1] // 2].mean((1, 2, 3))
        logits = torch.stack([-left, left], 1)
        return logits, torch.tensor([[0.1, 0.0, 0.3, 0.0]]).expand(len(x), 4), points


def test_faces_mirror_average_averages_the_flipped_reading_of_scores_and_boxes(random_nets, test_cfg):
    pnet, rnet, onet = random_nets
    half = _HalfReadingONet(onet)
    crops = torch.full((2, 3, 48, 48), 200.0)
    crops[:, :, :, :24] = 40.0  # a dark left half
    left, right = (40.0 - 127.5) / 128, (200.0 - 127.5) / 128
    plain = Cascade(pnet, rnet, half, cfg=test_cfg).run_onet(crops)
    averaged = Cascade(pnet, rnet, half, cfg=dataclasses.replace(test_cfg, faces_mirror_average=True)).run_onet(crops)
    np.testing.assert_allclose(plain[0][:, 1], [left, left], atol=1e-6)
    # the mirrored crop's left half is the bright one
    np.testing.assert_allclose(averaged[0][:, 1], [(left + right) / 2] * 2, atol=1e-6)
    # (0.1, 0, 0.3, 0) and its mirror reading (-0.3, 0, -0.1, 0): the box grows evenly both ways
    np.testing.assert_allclose(plain[1], [[0.1, 0.0, 0.3, 0.0]] * 2, atol=1e-6)
    np.testing.assert_allclose(averaged[1], [[-0.1, 0.0, 0.1, 0.0]] * 2, atol=1e-6)
    torch.testing.assert_close(averaged[2], plain[2])  # landmarks stay one reading


def test_faces_mirror_average_rescores_detections(random_nets, test_cfg):
    image = random_image(3)
    plain = Cascade(*random_nets, cfg=test_cfg).detect(image)
    averaged = Cascade(*random_nets, cfg=dataclasses.replace(test_cfg, faces_mirror_average=True)).detect(image)
    assert len(plain) > 0 and len(averaged) > 0
    # a random net is not mirror-symmetric, so the averaged scores differ
    assert not np.allclose(np.sort(averaged.scores)[-1], np.sort(plain.scores)[-1])


def _bright_window_pnet(threshold: float) -> PNet:
    """A P-Net whose face score says 'the whole 12 px window is bright': its conv1 takes minus the
    3x3 mean, so max pooling keeps the darkest corner, and the face logit rises above
    ``threshold`` (normalised brightness) only when every part of the window is white."""
    net = PNet()
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, (torch.nn.Conv2d, torch.nn.PReLU)):
                for tensor in module.parameters():
                    tensor.zero_()
        net.conv1.weight[0] = -1 / 27
        net.conv2.weight[0, 0] = 1 / 9
        net.conv3.weight[0, 0] = 1 / 9
        for prelu in (net.prelu1, net.prelu2, net.prelu3):
            prelu.weight.fill_(1)
        net.conv4_1.weight[1, 0] = -50
        net.conv4_1.bias[1] = -50 * threshold
    return net.eval()


def test_faces_smaller_than_pnet_window_need_min_face_below_12():
    """A 10 px face fills P-Net's 12 px window only on a level grown by 12 / 10 (issue 21)."""
    image = np.zeros((60, 80, 3), np.uint8)
    image[23:33, 31:41] = 255  # a 10 x 10 'face'
    found = {}
    for min_face in (10, 12, 20):
        cfg = DetectionConfig(min_face_size=min_face, thresholds=[0.5, 0.5, 0.5])
        found[min_face] = Cascade(_bright_window_pnet(0.8), cfg=cfg, device="cpu", pnet_window="exact").detect(image)
    assert len(found[12]) == 0 and len(found[20]) == 0
    assert len(found[10]) == 1
    np.testing.assert_allclose(found[10].boxes[0], [31, 23, 41, 33], atol=0.5)


def test_rnet_nms_after_regression_leaves_no_overlapping_rnet_boxes(random_nets, test_cfg):
    """With ``rnet_nms_after_regression`` R-Net's NMS runs on the boxes it hands on (regressed and
    squared), so no two of them overlap above ``nms_rnet``; the reference order (NMS first) only
    guarantees that for the boxes R-Net read."""
    from mtcnn_train.geometry import edges_to_inclusive

    cfg = dataclasses.replace(test_cfg, min_face_size=16, thresholds=[0.5, 0.3, 0.3], nms_rnet=0.3)
    after = Cascade(*random_nets, cfg=dataclasses.replace(cfg, rnet_nms_after_regression=True))
    before = Cascade(*random_nets, cfg=cfg)

    def largest_overlap(boxes: np.ndarray) -> float:
        inclusive = edges_to_inclusive(torch.from_numpy(boxes)).numpy()
        overlap = iou_matrix(inclusive, inclusive)
        np.fill_diagonal(overlap, 0)
        return overlap.max(initial=0)

    images = [random_image(seed, 120, 160) for seed in range(4)]
    assert sum(len(after.detect(image, stages="rnet")) for image in images) > 0
    assert max(largest_overlap(after.detect(image, stages="rnet").boxes) for image in images) <= cfg.nms_rnet + 1e-5
    assert max(largest_overlap(before.detect(image, stages="rnet").boxes) for image in images) > cfg.nms_rnet


def test_final_scores_weigh_rnet_into_onet():
    from mtcnn_train.detection.cascade import final_scores

    onet = torch.tensor([0.9, 0.25, -1.0, 0.0])
    rnet = torch.tensor([0.4, 1.0, 0.8, 0.9])
    assert torch.equal(final_scores(onet, rnet, 0.0), onet)  # the reference: O-Net's alone
    fused = final_scores(onet, rnet, 0.5)
    torch.testing.assert_close(fused, torch.tensor([0.6, 0.5, -1.0, 0.0]))  # geometric means; -1 stays
    torch.testing.assert_close(final_scores(onet, rnet, 0.25)[:1], torch.tensor([0.9 ** 0.75 * 0.4 ** 0.25]))


class _ConstantONet(torch.nn.Module):
    """An O-Net that reads every crop alike: face probability ``p``, no box move, fixed points."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.logit = float(np.log(p / (1 - p)))

    def forward(self, x):
        n = len(x)
        return torch.tensor([[0.0, self.logit]]).expand(n, 2), torch.zeros(n, 4), torch.full((n, 10), 0.5)


def test_rnet_score_weight_ranks_by_both_nets(random_nets, test_cfg):
    """With an O-Net that scores every face 0.64, the fused scores are R-Net's ranking: each final
    box is an R-Net box (no regression) scored sqrt(0.64 * p_R)."""
    pnet, rnet, _ = random_nets
    cfg = dataclasses.replace(test_cfg, thresholds=[0.7, 0.6, 0.0], rnet_score_weight=0.5, nms_onet=1.0)
    image = random_image(3)
    after_r = Cascade(pnet, rnet, cfg=cfg).detect(image, stages="rnet")
    final = Cascade(pnet, rnet, _ConstantONet(0.64), cfg=cfg).detect(image)
    assert len(final) == len(after_r) > 1
    order = np.argsort(-after_r.scores, kind="stable")
    np.testing.assert_allclose(final.boxes, after_r.boxes[order], atol=1e-4)
    np.testing.assert_allclose(final.scores, np.sqrt(0.64 * after_r.scores[order]), rtol=1e-5)
    plain = Cascade(pnet, rnet, _ConstantONet(0.64), cfg=dataclasses.replace(cfg, rnet_score_weight=0.0)).detect(image)
    np.testing.assert_allclose(plain.scores, 0.64, rtol=1e-5)
