"""The step engine: the epoch order and step seeds behind exact resume."""
from __future__ import annotations

import torch

from mtcnn_train.training.engine import epoch_order, step_seed


def test_epoch_order_is_a_pure_function_of_seed_and_epoch():
    assert torch.equal(epoch_order(100, 0, 3), epoch_order(100, 0, 3))
    assert not torch.equal(epoch_order(100, 0, 3), epoch_order(100, 0, 4))
    assert not torch.equal(epoch_order(100, 1, 3), epoch_order(100, 0, 3))
    assert sorted(epoch_order(100, 0, 3).tolist()) == list(range(100))


def test_step_seeds_differ_by_epoch_step_and_rank():
    seeds = {step_seed(0, epoch, step, rank) for epoch in range(3) for step in range(5) for rank in range(2)}
    assert len(seeds) == 3 * 5 * 2
    assert step_seed(7, 1, 2, 0) == step_seed(7, 1, 2, 0)
