"""The multi-task loss: hand-checked values, OHEM counts, which sample feeds which task."""
from __future__ import annotations

import math
from fractions import Fraction

import pytest
import torch

from mtcnn_train.nets import PNet
from mtcnn_train.samples.labels import LABEL_LANDMARK, LABEL_NEGATIVE, LABEL_PART, LABEL_POSITIVE
from mtcnn_train.geometry import box_offsets, iou_matrix
from mtcnn_train.training.loss import (LossWeights, flatten_outputs, multitask_loss, offsets_iou, ohem_keep_count,
                                       ohem_mean, part_face_targets, task_masks)

NAN = float("nan")


def _example():
    labels = torch.tensor([LABEL_NEGATIVE, LABEL_POSITIVE, LABEL_PART, LABEL_LANDMARK], dtype=torch.int8)
    logits = torch.tensor([[2.0, 0.0], [0.0, 0.0], [5.0, -5.0], [-3.0, 3.0]])
    box_pred = torch.tensor([[9.0, 9, 9, 9], [0, 0, 0, 0], [0.3, 0, 0, 0], [7, 7, 7, 7]])
    box_targets = torch.tensor([[NAN] * 4, [0.1, 0.2, -0.1, 0.0], [0.5, 0, 0, 0], [NAN] * 4])
    landmark_pred = torch.zeros(4, 10)
    landmark_pred[0] = 5.0
    landmark_targets = torch.full((4, 10), NAN)
    landmark_targets[3] = 0.1
    return logits, box_pred, landmark_pred, labels, box_targets, landmark_targets


def test_hand_checked_values_without_ohem():
    terms = multitask_loss(*_example(), LossWeights(1.0, 0.5, 0.5, ohem_keep_ratio=1.0))
    ce_negative = math.log(1 + math.exp(-2.0))  # logits (2, 0), class 0
    ce_positive = math.log(2.0)                 # logits (0, 0), class 1
    assert terms.det.item() == pytest.approx((ce_negative + ce_positive) / 2, rel=1e-6)
    # positive: 0.01 + 0.04 + 0.01; part: (0.5 - 0.3)^2 -> mean 0.05
    assert terms.box.item() == pytest.approx(0.05, rel=1e-6)
    assert terms.landmark.item() == pytest.approx(10 * 0.01, rel=1e-6)
    expected = (ce_negative + ce_positive) / 2 + 0.5 * 0.05 + 0.5 * 0.1
    assert terms.total.item() == pytest.approx(expected, rel=1e-6)


def test_hand_checked_values_with_ohem_and_onet_weights():
    # Two classification samples, keep ratio 0.7 -> floor(1.4) = 1: only the harder (log 2) counts.
    terms = multitask_loss(*_example(), LossWeights(1.0, 0.5, 1.0, ohem_keep_ratio=0.7))
    assert terms.det.item() == pytest.approx(math.log(2.0), rel=1e-6)
    assert terms.total.item() == pytest.approx(math.log(2.0) + 0.5 * 0.05 + 1.0 * 0.1, rel=1e-6)


def test_landmark_faces_classified_as_faces_when_asked():
    """``landmark_faces_classify``: the landmark sample (logits (-3, 3)) joins the face/non-face
    loss as a face; its landmark loss is unchanged and the part face still stays out."""
    weights = LossWeights(1.0, 0.5, 0.5, ohem_keep_ratio=1.0, landmark_faces_classify=True)
    terms = multitask_loss(*_example(), weights)
    ce_negative = math.log(1 + math.exp(-2.0))
    ce_positive = math.log(2.0)
    ce_landmark = math.log(1 + math.exp(-6.0))  # logits (-3, 3), class 1
    assert terms.det.item() == pytest.approx((ce_negative + ce_positive + ce_landmark) / 3, rel=1e-6)
    assert terms.landmark.item() == pytest.approx(10 * 0.01, rel=1e-6)
    det, box, landmark = task_masks(_example()[3], landmark_faces_classify=True)
    assert det.tolist() == [True, True, False, True] and landmark.tolist() == [False, False, False, True]


def test_part_faces_classified_with_soft_targets_when_asked():
    """``part_faces_classify``: the part face (IoU 0.5 with its face, logits (5, -5)) joins the
    face/non-face loss with target (0.5 - 0.3) / (0.65 - 0.3) as a KL divergence; nothing else moves."""
    weights = LossWeights(1.0, 0.5, 0.5, ohem_keep_ratio=1.0, part_faces_classify=True, part_target_band=(0.3, 0.65))
    terms = multitask_loss(*_example(), weights)
    plain = multitask_loss(*_example(), LossWeights(1.0, 0.5, 0.5, ohem_keep_ratio=1.0))
    target = (0.5 - 0.3) / (0.65 - 0.3)
    log_face, log_background = -math.log1p(math.exp(10.0)), -math.log1p(math.exp(-10.0))
    kl = -(target * log_face + (1 - target) * log_background) + target * math.log(target) + \
        (1 - target) * math.log(1 - target)
    ce_negative, ce_positive = math.log(1 + math.exp(-2.0)), math.log(2.0)
    assert terms.det.item() == pytest.approx((ce_negative + ce_positive + kl) / 3, rel=1e-5)
    assert terms.box.item() == plain.box.item() and terms.landmark.item() == plain.landmark.item()


def test_part_face_loss_is_zero_where_the_prediction_meets_its_target():
    labels = torch.tensor([LABEL_PART], dtype=torch.int8)
    box_targets = torch.tensor([[0.5, 0.0, 0.0, 0.0]])  # IoU 0.5 -> target 4/7
    target = 4 / 7
    logits = torch.tensor([[0.0, math.log(target / (1 - target))]])
    terms = multitask_loss(logits, torch.zeros(1, 4), torch.zeros(1, 10), labels, box_targets,
                           torch.full((1, 10), NAN), LossWeights(part_faces_classify=True, ohem_keep_ratio=1.0))
    assert abs(terms.det.item()) < 1e-6


def test_offsets_iou_is_the_crop_face_iou():
    generator = torch.Generator().manual_seed(3)
    corners = torch.rand((200, 2), generator=generator) * 50
    sides = 10 + torch.rand(200, generator=generator) * 50
    crops = torch.cat([corners, corners + sides[:, None]], 1).double().numpy()
    faces = crops + torch.randn((200, 4), generator=generator).double().numpy() * sides[:, None].numpy() * 0.3
    faces[:, 2:] = faces[:, 2:].clip(faces[:, :2] + 1)
    expected = [iou_matrix(c[None], f[None])[0, 0] for c, f in zip(crops, faces)]
    got = offsets_iou(torch.from_numpy(box_offsets(crops, faces)))
    assert got.tolist() == pytest.approx(expected, abs=1e-5)
    assert min(expected) < 0.3 < 0.65 < max(expected)  # the draw spans all the bands


def test_part_face_targets_rise_across_the_band():
    # Faces shifted right by d of the crop's side: IoU (1 - d) / (1 + d).
    shifts = torch.tensor([0.6, 0.45, 0.25, 0.1, 0.0])
    offsets = torch.stack([shifts, torch.zeros(5), shifts, torch.zeros(5)], 1)
    iou = (1 - shifts) / (1 + shifts)
    targets = part_face_targets(offsets, (0.3, 0.65))
    assert targets.tolist() == pytest.approx(((iou - 0.3) / 0.35).clamp(0, 1).tolist(), abs=1e-6)
    assert targets[0] == 0 and targets[-1] == 1 and bool((targets.diff() >= 0).all())
    assert 0 < targets[1] < targets[2] < 1


@pytest.mark.parametrize("ratio", [0.7, 0.5, 0.33, 0.9, 1.0])
def test_ohem_keep_count_is_exact_floor(ratio):
    for n in range(0, 200):
        expected = math.floor(Fraction(str(ratio)) * n)
        expected = max(expected, 1) if n > 0 else 0
        assert ohem_keep_count(torch.tensor(n), ratio).item() == expected, n


def test_ohem_keeps_exactly_the_hardest():
    generator = torch.Generator().manual_seed(0)
    for n in (1, 2, 3, 7, 10, 30, 64, 101):
        losses = torch.rand(n + 5, generator=generator)
        mask = torch.ones(n + 5, dtype=torch.bool)
        mask[-5:] = False  # samples outside the mask never count, even if they are the hardest
        losses[-5:] = 10.0
        keep = max(math.floor(Fraction(7, 10) * n), 1)
        expected = losses[:n].sort(descending=True).values[:keep].mean()
        assert ohem_mean(losses, mask, 0.7).item() == pytest.approx(expected.item(), rel=1e-6), n


def test_ohem_with_ties_keeps_exactly_k():
    losses = torch.ones(10)
    mask = torch.ones(10, dtype=torch.bool)
    losses.requires_grad_(True)
    ohem_mean(losses, mask, 0.7).backward()
    assert int((losses.grad != 0).sum()) == 7


def test_ohem_ratio_one_is_plain_mean_and_empty_mask_is_zero():
    losses = torch.tensor([1.0, 2.0, 3.0, 4.0])
    mask = torch.tensor([True, True, False, True])
    assert ohem_mean(losses, mask, 1.0).item() == pytest.approx(7 / 3)
    assert ohem_mean(losses, torch.zeros(4, dtype=torch.bool), 0.7).item() == 0.0


def test_task_masks_follow_labels():
    labels = torch.tensor([LABEL_NEGATIVE, LABEL_POSITIVE, LABEL_PART, LABEL_LANDMARK])
    det, box, landmark = task_masks(labels)
    assert det.tolist() == [True, True, False, False]
    assert box.tolist() == [False, True, True, False]
    assert landmark.tolist() == [False, False, False, True]


@pytest.mark.parametrize("label, feeds", [
    (LABEL_NEGATIVE, {"det"}),
    (LABEL_POSITIVE, {"det", "box"}),
    (LABEL_PART, {"box"}),
    (LABEL_LANDMARK, {"landmark"}),
])
def test_each_sample_type_feeds_only_its_tasks(label, feeds):
    """β: the gradient reaches exactly the heads a sample type trains, NaN targets included."""
    n = 6
    generator = torch.Generator().manual_seed(1)
    logits = torch.randn(n, 2, generator=generator, requires_grad=True)
    box_pred = torch.randn(n, 4, generator=generator, requires_grad=True)
    landmark_pred = torch.randn(n, 10, generator=generator, requires_grad=True)
    labels = torch.full((n,), label, dtype=torch.int8)
    box_targets = torch.rand(n, 4, generator=generator) if "box" in feeds else torch.full((n, 4), NAN)
    landmark_targets = torch.rand(n, 10, generator=generator) if "landmark" in feeds else torch.full((n, 10), NAN)
    terms = multitask_loss(logits, box_pred, landmark_pred, labels, box_targets, landmark_targets,
                           LossWeights(1.0, 0.5, 0.5, 0.7))
    terms.total.backward()
    grads = {"det": logits.grad, "box": box_pred.grad, "landmark": landmark_pred.grad}
    values = {"det": terms.det, "box": terms.box, "landmark": terms.landmark}
    for task, grad in grads.items():
        assert torch.isfinite(grad).all()
        assert torch.isfinite(values[task])
        if task in feeds:
            assert grad.abs().sum() > 0, task
            assert values[task] > 0, task
        else:
            assert grad.abs().sum() == 0, task
            assert values[task] == 0, task


def test_pnet_maps_flatten_to_rows():
    outputs = PNet()(torch.zeros(3, 3, 12, 12))
    assert [tuple(o.shape) for o in outputs] == [(3, 2, 1, 1), (3, 4, 1, 1), (3, 10, 1, 1)]
    assert [tuple(o.shape) for o in flatten_outputs(outputs)] == [(3, 2), (3, 4), (3, 10)]
