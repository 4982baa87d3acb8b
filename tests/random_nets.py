"""Seeded random-weight nets for detector tests (shared by tests/detector and tests/export)."""
from __future__ import annotations

import torch

from mtcnn_train.nets import ONet, PNet, RNet


def make_random_nets(seed: int = 0) -> tuple[PNet, RNet, ONet]:
    """Seeded nets with their face heads scaled up, so probabilities spread over (0, 1) and
    thresholds in the middle keep some candidates and drop others."""
    torch.manual_seed(seed)
    nets = PNet(), RNet(), ONet()
    with torch.no_grad():
        for net, head in zip(nets, ("conv4_1", "dense5_1", "dense6_1")):
            getattr(net, head).weight.mul_(40.0)
    return tuple(net.eval() for net in nets)  # type: ignore[return-value]
