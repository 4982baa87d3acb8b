"""The multi-task loss of MTCNN (Zhang et al. 2016, section 2.3), with online hard example mining.

Each sample feeds only the tasks its label allows (the paper's sample type indicator β)::

    label              face/non-face   box offsets   landmarks
    negative  (0)            x
    positive  (1)            x              x
    part face (-1)                          x
    landmark  (-2)                                        x

(``train.<stage>.landmark_faces_classify`` adds the landmark faces to the face/non-face loss as
faces: many more faces to learn from where the detection set's are few, at the cost of the
paper's β.  ``train.<stage>.part_faces_classify`` adds the part faces with a soft target that
grows with their IoU, :func:`part_face_targets`, so a crop covering half a face scores below one
on the whole face; also off by default.)

* face/non-face: softmax cross-entropy on the two logits; online hard example mining (OHEM)
  keeps the ``floor(keep_ratio * n)`` largest of the ``n`` per-sample losses in the batch (at least
  one) and averages those; ``keep_ratio = 1`` keeps them all;
* box offsets: the paper's squared Euclidean distance ``||ŷ - y||²`` summed over the 4 offsets,
  averaged over the samples that have box targets;
* landmarks: the same over the 10 landmark coordinates.

The total is ``α_det L_det + α_box L_box + α_landmark L_landmark``.  Everything stays a device
tensor (no ``.item()``), masks are multiplications rather than boolean indexing, so a batch with
no sample of some type still yields a finite zero for that task and a gradient (of zeros) for
every head, which is what DistributedDataParallel expects.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from mtcnn_train.geometry import calibrate, paired_overlap
from mtcnn_train.samples.labels import LABEL_LANDMARK, LABEL_NEGATIVE, LABEL_PART, LABEL_POSITIVE

#: OHEM ratios are applied in exact integer arithmetic with this many steps per unit, so that
#: ``floor(0.7 * 10)`` is 7 and never 6 through floating-point rounding.
_RATIO_STEPS = 1_000_000


@dataclass(frozen=True)
class LossWeights:
    """The α of each task and the OHEM keep ratio (from a :class:`StageTrainConfig`)."""

    det: float = 1.0
    box: float = 0.5
    landmark: float = 0.5
    ohem_keep_ratio: float = 0.7
    #: Landmark faces also feed the face/non-face loss as faces (off: the paper's β).
    landmark_faces_classify: bool = False
    #: Part faces also feed the face/non-face loss, with soft targets (off: the paper's β).
    part_faces_classify: bool = False
    #: The IoU band over which a part face's target rises from 0 to 1 (the sampling's negative
    #: and positive edges).
    part_target_band: tuple[float, float] = (0.3, 0.65)

    @classmethod
    def from_config(cls, stage_cfg, sampling_cfg) -> "LossWeights":
        band = (sampling_cfg.neg_iou, sampling_cfg.pos_iou)
        return cls(stage_cfg.alpha_det, stage_cfg.alpha_box, stage_cfg.alpha_landmark, stage_cfg.ohem_keep_ratio,
                   stage_cfg.landmark_faces_classify, stage_cfg.part_faces_classify, band)


@dataclass
class LossTerms:
    """The total and each task's loss, all 0-d tensors on the batch's device."""

    total: torch.Tensor
    det: torch.Tensor
    box: torch.Tensor
    landmark: torch.Tensor


def task_masks(labels: torch.Tensor, landmark_faces_classify: bool = False
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Boolean masks (N,) of the samples feeding the face/non-face, box and landmark losses
    (``landmark_faces_classify``: landmark faces feed the face/non-face loss too, as faces)."""
    det = (labels == LABEL_NEGATIVE) | (labels == LABEL_POSITIVE)
    if landmark_faces_classify:
        det = det | (labels == LABEL_LANDMARK)
    box = (labels == LABEL_POSITIVE) | (labels == LABEL_PART)
    landmark = labels == LABEL_LANDMARK
    return det, box, landmark


def offsets_iou(box_targets: torch.Tensor) -> torch.Tensor:
    """IoU of each crop with its face, from the box targets alone: the crop is ``[0, 0, 1, 1]`` in
    its own units and the face that crop calibrated by its targets (:func:`geometry.box_offsets`)."""
    unit = torch.tensor([0.0, 0.0, 1.0, 1.0], dtype=box_targets.dtype, device=box_targets.device).expand_as(box_targets)
    return paired_overlap(unit, calibrate(unit, box_targets))


def part_face_targets(box_targets: torch.Tensor, band: tuple[float, float]) -> torch.Tensor:
    """Soft face/non-face targets of part faces: 0 at the band's low edge (a negative's IoU), rising
    linearly to 1 at its high edge (a positive's), so the face score follows how well a crop
    covers the face.  Why: the paper's β leaves part faces out of this loss, so O-Net never learns
    that a box on half a face is worse than one on the whole face; such a box can then outscore
    the good one and, in the final NMS, suppress it."""
    low, high = band
    return ((offsets_iou(box_targets) - low) / (high - low)).clamp(0.0, 1.0)


def flatten_outputs(outputs: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    """P-Net returns ``(N, C, 1, 1)`` maps on 12x12 input; R-Net and O-Net ``(N, C)``: make all ``(N, C)``."""
    return tuple(out.flatten(1) for out in outputs)


def ohem_keep_count(count: torch.Tensor, keep_ratio: float) -> torch.Tensor:
    """``floor(keep_ratio * count)``, at least 1 when ``count > 0``; integer tensor math, no sync."""
    numerator = round(keep_ratio * _RATIO_STEPS)
    count = count.long()
    keep = count * numerator // _RATIO_STEPS
    return torch.maximum(keep, count.clamp(max=1))


def ohem_mean(losses: torch.Tensor, mask: torch.Tensor, keep_ratio: float) -> torch.Tensor:
    """Mean of the largest ``floor(keep_ratio * n)`` of ``losses`` where ``mask`` holds (n = mask count).

    Ties are broken by position (stable sort), so exactly that many samples are kept.  Returns 0
    when the mask is empty.
    """
    count = mask.sum()
    masked = torch.where(mask, losses, torch.zeros_like(losses))
    if keep_ratio >= 1.0:
        return masked.sum() / count.clamp(min=1)
    keep = ohem_keep_count(count, keep_ratio)
    # Losses are >= 0, so -1 sorts every masked-out sample behind the real ones.
    ranking_key = torch.where(mask, losses.detach(), torch.full_like(losses, -1.0))
    order = torch.argsort(ranking_key, descending=True, stable=True)
    rank = torch.empty_like(order)
    rank[order] = torch.arange(order.numel(), device=order.device)
    kept = (rank < keep) & mask
    return torch.where(kept, losses, torch.zeros_like(losses)).sum() / keep.clamp(min=1)


def masked_squared_l2(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over the masked samples of ``||pred - target||²`` (summed over coordinates); 0 if none.

    Unused targets are NaN in the sample shards: they are zeroed *before* the difference, since a
    NaN in the unselected branch of ``torch.where`` would still poison the gradient.
    """
    target = torch.where(mask[:, None], target, torch.zeros_like(target))
    per_sample = (pred - target).square().sum(1)
    per_sample = torch.where(mask, per_sample, torch.zeros_like(per_sample))
    return per_sample.sum() / mask.sum().clamp(min=1)


def multitask_loss(logits: torch.Tensor, box_pred: torch.Tensor, landmark_pred: torch.Tensor,
                   labels: torch.Tensor, box_targets: torch.Tensor, landmark_targets: torch.Tensor,
                   weights: LossWeights) -> LossTerms:
    """The weighted MTCNN loss of one batch.

    Args:
        logits: ``(N, 2)`` raw face/non-face scores (P-Net maps flattened first).
        box_pred, landmark_pred: ``(N, 4)`` and ``(N, 10)`` predicted offsets.
        labels: ``(N,)`` integer labels (``samples.labels.LABEL_*``).
        box_targets, landmark_targets: ``(N, 4)`` and ``(N, 10)``; NaN (or anything) where unused.
    """
    logits, box_pred, landmark_pred = logits.float(), box_pred.float(), landmark_pred.float()
    det_mask, box_mask, landmark_mask = task_masks(labels, weights.landmark_faces_classify)
    # Part (and unless classified, landmark) samples get class 0 here only to keep cross_entropy's
    # input valid; the mask removes them.
    det_targets = (labels == LABEL_POSITIVE) | (weights.landmark_faces_classify & (labels == LABEL_LANDMARK))
    det_targets = det_targets.long()
    ce = F.cross_entropy(logits, det_targets, reduction="none")
    if weights.part_faces_classify:
        part = labels == LABEL_PART
        soft = part_face_targets(torch.where(part[:, None], box_targets.float(), torch.zeros_like(box_targets)),
                                 weights.part_target_band)
        log_probs = F.log_softmax(logits, dim=1)
        # KL divergence rather than cross-entropy (same gradient): it is 0 when the prediction meets
        # the target, so OHEM ranks parts by how wrong they are, not by their target's entropy.
        entropy = -(torch.xlogy(soft, soft) + torch.xlogy(1.0 - soft, 1.0 - soft))
        soft_kl = -(soft * log_probs[:, 1] + (1.0 - soft) * log_probs[:, 0]) - entropy
        ce = torch.where(part, soft_kl, ce)
        det_mask = det_mask | part
    det = ohem_mean(ce, det_mask, weights.ohem_keep_ratio)
    box = masked_squared_l2(box_pred, box_targets.float(), box_mask)
    landmark = masked_squared_l2(landmark_pred, landmark_targets.float(), landmark_mask)
    total = weights.det * det + weights.box * box + weights.landmark * landmark
    return LossTerms(total, det, box, landmark)
