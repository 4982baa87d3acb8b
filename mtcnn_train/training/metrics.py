"""Epoch metrics accumulated on the device: one small tensor of sums, read back once per epoch.

Reading a value back (``.item()``, ``.tolist()``) waits for the device to finish its queued work;
doing that every step would starve a GPU.  :class:`MetricSums` therefore adds each batch's counts
and sums into one float64 vector on the device, and :meth:`MetricSums.summary` turns it into plain
numbers when an epoch (or a logging interval) ends.  Sums also all-reduce exactly across ranks.

Reported metrics (face/non-face on positives and negatives only, at probability 0.5):

* ``accuracy``, ``recall`` (of positives), ``precision``;
* ``box_l2`` and ``landmark_l2``: mean squared Euclidean error ``||ŷ - y||²`` of the offsets, over
  the samples that have such targets (the loss's quantity, without OHEM);
* ``loss``, ``loss_det``, ``loss_box``, ``loss_landmark``: in training, the mean over steps of
  the batch losses (OHEM included); in validation, each task's plain mean over the whole split
  and their α-weighted sum.
"""
from __future__ import annotations

import math

import torch

from mtcnn_train.samples.labels import LABEL_POSITIVE
from mtcnn_train.training.loss import LossTerms, LossWeights, task_masks

# Slots of the sums vector.
_FIELDS = ("steps", "loss", "loss_det", "loss_box", "loss_landmark",
           "tp", "fp", "tn", "fn", "det_ce", "box_sq", "box_n", "landmark_sq", "landmark_n", "samples")
SLOT = {name: i for i, name in enumerate(_FIELDS)}


class MetricSums:
    """Running sums of one phase (train or validation) on ``device``."""

    def __init__(self, device: torch.device | str, values: torch.Tensor | None = None) -> None:
        self.device = torch.device(device)
        self.values = torch.zeros(len(_FIELDS), dtype=torch.float64, device=self.device)
        if values is not None:
            self.values.copy_(values.to(self.device, torch.float64))

    def reset(self) -> None:
        self.values.zero_()

    @torch.no_grad()
    def add_batch(self, logits: torch.Tensor, box_pred: torch.Tensor, landmark_pred: torch.Tensor,
                  labels: torch.Tensor, box_targets: torch.Tensor, landmark_targets: torch.Tensor,
                  terms: LossTerms | None = None) -> None:
        """Add one batch; ``terms`` (the batch's loss) is added as one step when given."""
        det_mask, box_mask, landmark_mask = task_masks(labels)
        logits = logits.float()
        predicted_face = logits[:, 1] > logits[:, 0]  # softmax probability > 0.5
        is_face = labels == LABEL_POSITIVE
        ce = torch.nn.functional.cross_entropy(logits, is_face.long(), reduction="none")
        box_err = _squared_error(box_pred, box_targets, box_mask)
        landmark_err = _squared_error(landmark_pred, landmark_targets, landmark_mask)
        batch = torch.stack([
            (predicted_face & is_face & det_mask).sum(),
            (predicted_face & ~is_face & det_mask).sum(),
            (~predicted_face & ~is_face & det_mask).sum(),
            (~predicted_face & is_face & det_mask).sum(),
        ]).to(torch.float64)
        values = self.values
        values[SLOT["tp"]:SLOT["fn"] + 1] += batch
        values[SLOT["det_ce"]] += torch.where(det_mask, ce, torch.zeros_like(ce)).sum().double()
        values[SLOT["box_sq"]] += box_err.double()
        values[SLOT["box_n"]] += box_mask.sum().double()
        values[SLOT["landmark_sq"]] += landmark_err.double()
        values[SLOT["landmark_n"]] += landmark_mask.sum().double()
        values[SLOT["samples"]] += labels.numel()
        if terms is not None:
            step = torch.stack([terms.total.detach(), terms.det.detach(), terms.box.detach(),
                                terms.landmark.detach()]).double()
            values[SLOT["loss"]:SLOT["loss_landmark"] + 1] += step
            values[SLOT["steps"]] += 1

    def summary(self, weights: LossWeights | None = None) -> dict[str, float]:
        """Plain numbers (one device sync).  With ``weights``, losses are recomputed as plain means
        over all samples (validation); without, they are the mean of the step losses (training)."""
        v = dict(zip(_FIELDS, self.values.tolist()))
        det_n = v["tp"] + v["fp"] + v["tn"] + v["fn"]
        out = {
            "accuracy": _ratio(v["tp"] + v["tn"], det_n),
            "recall": _ratio(v["tp"], v["tp"] + v["fn"]),
            "precision": _ratio(v["tp"], v["tp"] + v["fp"]),
            "box_l2": _ratio(v["box_sq"], v["box_n"]),
            "landmark_l2": _ratio(v["landmark_sq"], v["landmark_n"]),
            "samples": int(v["samples"]),
        }
        if weights is None:
            steps = max(v["steps"], 1.0)
            for key in ("loss", "loss_det", "loss_box", "loss_landmark"):
                out[key] = v[key] / steps
        else:
            # A task with no samples contributes 0, as in the batch loss.
            det = v["det_ce"] / det_n if det_n else 0.0
            box = out["box_l2"] if v["box_n"] else 0.0
            landmark = out["landmark_l2"] if v["landmark_n"] else 0.0
            out.update(loss_det=det, loss_box=box, loss_landmark=landmark,
                       loss=weights.det * det + weights.box * box + weights.landmark * landmark)
        return out


def _squared_error(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    target = torch.where(mask[:, None], target.float(), torch.zeros_like(pred, dtype=torch.float32))
    per_sample = (pred.float() - target).square().sum(1)
    return torch.where(mask, per_sample, torch.zeros_like(per_sample)).sum()


def _ratio(num: float, den: float) -> float:
    """``num / den``, NaN when there is nothing to measure (e.g. recall without positives)."""
    return num / den if den else math.nan
