"""Building a run: the learning-rate schedule and the optimizer chosen by the config."""
from __future__ import annotations

import pytest
import torch

from mtcnn_train.config import load_config
from mtcnn_train.nets import build_net
from mtcnn_train.training.stage_run import build_optimizer, lr_factor


def test_learning_rate_schedules():
    cfg = load_config(None, ["train.pnet.epochs=10", "train.pnet.lr_schedule=cosine"]).train.pnet
    assert lr_factor(0, 100, cfg) == 1.0
    assert lr_factor(500, 100, cfg) == pytest.approx(0.5)
    assert lr_factor(1000, 100, cfg) == pytest.approx(0.0, abs=1e-12)
    cfg = load_config(None, ["train.pnet.lr_schedule=step", "train.pnet.lr_milestones=[2,4]",
                             "train.pnet.lr_gamma=0.1"]).train.pnet
    assert [lr_factor(s, 10, cfg) for s in (0, 19, 20, 39, 40)] == pytest.approx([1, 1, 0.1, 0.1, 0.01])
    cfg = load_config(None, ["train.pnet.warmup_epochs=1", "train.pnet.lr_schedule=constant"]).train.pnet
    assert lr_factor(0, 10, cfg) == pytest.approx(0.1) and lr_factor(9, 10, cfg) == pytest.approx(1.0)
    assert lr_factor(50, 10, cfg) == 1.0


@pytest.mark.parametrize("name, cls", [("adam", torch.optim.Adam), ("adamw", torch.optim.AdamW), ("sgd", torch.optim.SGD)])
def test_the_configured_optimizer_is_built(name, cls):
    cfg = load_config(None, [f"train.pnet.optimizer={name}", "train.pnet.lr=0.02"]).train.pnet
    optimizer = build_optimizer(build_net("pnet"), cfg)
    assert type(optimizer) is cls and optimizer.param_groups[0]["lr"] == 0.02
