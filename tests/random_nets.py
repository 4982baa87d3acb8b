"""Seeded random-weight nets, and a run folder of them: the fixed detector of the detection,
evaluation, robustness and regression tests."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from mtcnn_train.checkpoint import save_checkpoint
from mtcnn_train.nets import ONet, PNet, RNet
from mtcnn_train.stages import STAGES


def make_random_nets(seed: int = 0) -> tuple[PNet, RNet, ONet]:
    """Seeded nets with their face heads scaled up, so probabilities spread over (0, 1) and
    thresholds in the middle keep some candidates and drop others."""
    torch.manual_seed(seed)
    nets = PNet(), RNet(), ONet()
    with torch.no_grad():
        for net, head in zip(nets, ("conv4_1", "dense5_1", "dense6_1")):
            getattr(net, head).weight.mul_(40.0)
    return tuple(net.eval() for net in nets)  # type: ignore[return-value]


def save_random_run(run_dir: Path, seed: int = 0, **extra: Any) -> Path:
    """:func:`make_random_nets` saved as a run folder (``pnet.pt``, ``rnet.pt``, ``onet.pt``) the way
    the trainer writes checkpoints; ``extra`` adds entries (e.g. ``window_rule="exact"``)."""
    for stage, net in zip(STAGES, make_random_nets(seed)):
        save_checkpoint(Path(run_dir) / f"{stage}.pt", {"stage": stage, "model": net.state_dict(), "config": {},
                                                        "metrics": {}, "epoch": 0, **extra})
    return Path(run_dir)
