"""The step engine: which samples each step reads, one optimizer step after another, and evaluation.

Exact resume rests here: the batch order of an epoch is a pure function of ``(seed, epoch)``
(:func:`epoch_order`) and the augmentation draws of a step a pure function of
``(seed, epoch, step, rank)`` (:func:`step_seed`), so a run restarted mid-epoch can skip the steps
already done and reach bit-identical weights.  Metrics are summed on the device
(:class:`~mtcnn_train.training.metrics.MetricSums`), never read back per step.
"""
from __future__ import annotations

from typing import Iterator

import torch

from mtcnn_train.training import distributed
from mtcnn_train.training.loss import LossTerms, flatten_outputs, multitask_loss
from mtcnn_train.training.metrics import MetricSums
from mtcnn_train.training.stage_run import StageRun

#: Validation batches are this many times the training batch (no gradients to keep).
EVAL_BATCH_FACTOR = 4


def mix_seed(*parts: int) -> int:
    """Combine integers into one 63-bit seed (deterministic, no Python ``hash`` randomisation)."""
    value = 0x9E3779B97F4A7C15
    for part in parts:
        value = (value * 1_000_003 + int(part) + 0x632BE5AB) % (1 << 63)
    return value


def epoch_order(num_samples: int, seed: int, epoch: int) -> torch.Tensor:
    """The shuffled positions of one epoch: a pure function of ``(seed, epoch)``."""
    generator = torch.Generator().manual_seed(mix_seed(seed, epoch))
    return torch.randperm(num_samples, generator=generator)


def step_seed(seed: int, epoch: int, step: int, rank: int) -> int:
    """Seed of the augmentation draws of one step on one rank."""
    return mix_seed(seed, epoch, step, rank, 1)


def epoch_index_batches(run: StageRun, epoch: int, start: int, stop: int) -> list[torch.Tensor]:
    """This rank's sample ids for steps ``start .. stop-1`` of ``epoch`` (views of one device tensor)."""
    order = run.train_indices[epoch_order(len(run.train_indices), run.train_cfg.seed, epoch)]
    if run.data.resident:
        order = order.to(run.device)
    part = distributed.rank_slice(run.batch_size, run.ctx)
    batches = []
    for step in range(start, stop):
        global_batch = order[step * run.batch_size:(step + 1) * run.batch_size]
        batches.append(global_batch[part])
    return batches


def train_steps(run: StageRun, epoch: int, start: int, stop: int,
                sums: MetricSums) -> Iterator[tuple[int, LossTerms]]:
    """Train steps ``start .. stop-1`` of ``epoch``, yielding ``(step, loss_terms)`` after each.

    The caller's loop body (logging, mid-epoch checkpoints) runs between two steps.
    """
    cfg = run.train_cfg
    index_batches = epoch_index_batches(run, epoch, start, stop)
    seeds = [step_seed(cfg.seed, epoch, step, run.ctx.rank) for step in range(start, stop)]
    run.model.train()
    for step, batch in enumerate(run.data.batches(index_batches, cfg.augment, seeds, cfg.low_resolution_prob), start):
        with run.autocast():
            outputs = run.model(batch.images)
        logits, box_pred, landmark_pred = flatten_outputs(outputs)
        terms = multitask_loss(logits, box_pred, landmark_pred, batch.labels, batch.boxes, batch.landmarks,
                               run.weights)
        run.optimizer.zero_grad(set_to_none=True)
        run.scaler.scale(terms.total).backward()
        run.scaler.step(run.optimizer)
        run.scaler.update()
        run.scheduler.step()
        run.update_ema()
        sums.add_batch(logits.detach(), box_pred.detach(), landmark_pred.detach(), batch.labels, batch.boxes,
                       batch.landmarks, terms)
        yield step, terms


@torch.no_grad()
def evaluate(run: StageRun, indices: torch.Tensor | None = None) -> dict[str, float]:
    """Metrics and plain (no OHEM) losses over ``indices`` (default: the validation split), all ranks together."""
    indices = run.val_indices if indices is None else indices
    mine = indices[run.ctx.rank::run.ctx.world_size]
    if run.data.resident:
        mine = mine.to(run.device)
    size = run.batch_size * EVAL_BATCH_FACTOR
    chunks = [mine[i:i + size] for i in range(0, len(mine), size)]
    sums = MetricSums(run.device)
    net = run.eval_net
    net.eval()
    for batch in run.data.batches(chunks, augment=False):
        with run.autocast():
            outputs = net(batch.images)
        sums.add_batch(*flatten_outputs(outputs), batch.labels, batch.boxes, batch.landmarks)
    distributed.all_reduce_sum(sums.values, run.ctx)
    return sums.summary(run.weights)
