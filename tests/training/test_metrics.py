"""The accuracy, recall, precision and regression errors the README and the epoch lines quote,
against counts worked out by hand."""
from __future__ import annotations

import math

import pytest
import torch

from mtcnn_train.samples.labels import LABEL_LANDMARK, LABEL_NEGATIVE, LABEL_PART, LABEL_POSITIVE
from mtcnn_train.training.loss import LossTerms, LossWeights
from mtcnn_train.training.metrics import MetricSums

FACE, NOT_FACE = [0.0, 2.0], [2.0, 0.0]  # logits: face probability above / below 0.5

# Three positives (two found), two negatives (both rejected), a part face and a landmark face that
# the classifier calls faces: they must not count in accuracy, recall or precision.
LABELS = torch.tensor([LABEL_POSITIVE, LABEL_POSITIVE, LABEL_POSITIVE, LABEL_NEGATIVE, LABEL_NEGATIVE,
                       LABEL_PART, LABEL_LANDMARK])
LOGITS = torch.tensor([FACE, FACE, NOT_FACE, NOT_FACE, NOT_FACE, FACE, FACE])


def _batch(n: int = 7):
    box_pred = torch.zeros(n, 4)
    box_target = torch.zeros(n, 4)
    landmark_pred = torch.zeros(n, 10)
    landmark_target = torch.zeros(n, 10)
    return box_pred, box_target, landmark_pred, landmark_target


def test_face_metrics_count_positives_and_negatives_only():
    box_pred, box_target, landmark_pred, landmark_target = _batch()
    sums = MetricSums("cpu")
    sums.add_batch(LOGITS, box_pred, landmark_pred, LABELS, box_target, landmark_target)
    out = sums.summary()
    # tp 2, fn 1, tn 2, fp 0
    assert out["accuracy"] == pytest.approx(4 / 5)
    assert out["recall"] == pytest.approx(2 / 3)
    assert out["precision"] == pytest.approx(1.0)
    assert out["samples"] == 7


def test_a_tie_is_not_a_face():
    box_pred, box_target, landmark_pred, landmark_target = _batch(2)
    sums = MetricSums("cpu")
    sums.add_batch(torch.tensor([[1.0, 1.0], [1.0, 1.0]]), box_pred, landmark_pred,
                   torch.tensor([LABEL_POSITIVE, LABEL_NEGATIVE]), box_target, landmark_target)
    out = sums.summary()
    assert out["recall"] == 0.0 and out["accuracy"] == 0.5 and math.isnan(out["precision"])


def test_box_and_landmark_errors_are_mean_squared_distances_over_their_samples():
    box_pred, box_target, landmark_pred, landmark_target = _batch()
    box_pred[0] = torch.tensor([0.1, 0.0, 0.0, 0.0])    # positive: 0.01
    box_pred[5] = torch.tensor([0.0, 0.3, 0.4, 0.0])    # part face: 0.25
    box_pred[3] = torch.tensor([9.0, 9.0, 9.0, 9.0])    # negative: no box target, ignored
    landmark_pred[6] = 0.1                               # landmark face: 10 x 0.01
    landmark_pred[0] = 5.0                               # positive: no landmark target, ignored
    sums = MetricSums("cpu")
    sums.add_batch(LOGITS, box_pred, landmark_pred, LABELS, box_target, landmark_target)
    out = sums.summary()
    # Box targets: the three positives and the part face.
    assert out["box_l2"] == pytest.approx((0.01 + 0.25) / 4)
    assert out["landmark_l2"] == pytest.approx(0.1)


def test_nothing_to_measure_is_nan():
    box_pred, box_target, landmark_pred, landmark_target = _batch(2)
    sums = MetricSums("cpu")
    labels = torch.tensor([LABEL_NEGATIVE, LABEL_NEGATIVE])
    sums.add_batch(torch.tensor([NOT_FACE, NOT_FACE]), box_pred, landmark_pred, labels, box_target, landmark_target)
    out = sums.summary()
    assert out["accuracy"] == 1.0
    assert math.isnan(out["recall"]) and math.isnan(out["precision"])
    assert math.isnan(out["box_l2"]) and math.isnan(out["landmark_l2"])


def test_batches_add_up_to_the_whole():
    box_pred, box_target, landmark_pred, landmark_target = _batch()
    box_pred.normal_(generator=torch.Generator().manual_seed(0))
    whole, parts = MetricSums("cpu"), MetricSums("cpu")
    whole.add_batch(LOGITS, box_pred, landmark_pred, LABELS, box_target, landmark_target)
    for part in (slice(0, 3), slice(3, 7)):
        parts.add_batch(LOGITS[part], box_pred[part], landmark_pred[part], LABELS[part], box_target[part],
                        landmark_target[part])
    assert parts.summary() == pytest.approx(whole.summary(), nan_ok=True)
    assert torch.equal(MetricSums("cpu", parts.values).values, parts.values)
    parts.reset()
    assert parts.summary()["samples"] == 0


def test_training_losses_are_the_mean_of_the_step_losses():
    box_pred, box_target, landmark_pred, landmark_target = _batch()
    sums = MetricSums("cpu")
    for total in (1.0, 3.0):
        terms = LossTerms(torch.tensor(total), torch.tensor(total / 2), torch.tensor(0.25), torch.tensor(0.0))
        sums.add_batch(LOGITS, box_pred, landmark_pred, LABELS, box_target, landmark_target, terms)
    out = sums.summary()
    assert (out["loss"], out["loss_det"], out["loss_box"], out["loss_landmark"]) == pytest.approx((2.0, 1.0, 0.25, 0.0))


def test_validation_losses_are_plain_means_weighted_by_alpha():
    box_pred, box_target, landmark_pred, landmark_target = _batch()
    box_pred[0] = torch.tensor([0.2, 0.0, 0.0, 0.0])
    landmark_pred[6] = 0.1
    sums = MetricSums("cpu")
    sums.add_batch(LOGITS, box_pred, landmark_pred, LABELS, box_target, landmark_target)
    weights = LossWeights(det=1.0, box=0.5, landmark=2.0)
    out = sums.summary(weights)
    det_mask = torch.tensor([True, True, True, True, True, False, False])
    det = torch.nn.functional.cross_entropy(LOGITS[det_mask], (LABELS[det_mask] == LABEL_POSITIVE).long()).item()
    assert out["loss_det"] == pytest.approx(det)
    assert out["loss_box"] == pytest.approx(0.04 / 4) and out["loss_landmark"] == pytest.approx(0.1)
    assert out["loss"] == pytest.approx(det + 0.5 * 0.04 / 4 + 2.0 * 0.1)
