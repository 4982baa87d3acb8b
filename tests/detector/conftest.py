"""Fixtures for the detector tests: small random-weight nets whose scores actually vary."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from mtcnn_train.checkpoint import save_checkpoint
from mtcnn_train.config import DetectionConfig
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


@pytest.fixture
def random_nets():
    return make_random_nets(0)


@pytest.fixture
def test_cfg():
    # min face 24 keeps the pyramid short on the small test images
    return DetectionConfig(min_face_size=24, thresholds=[0.7, 0.6, 0.5], device="cpu")


@pytest.fixture
def random_run_dir(tmp_path, random_nets):
    run_dir = tmp_path / "run"
    for stage, net in zip(("pnet", "rnet", "onet"), random_nets):
        save_checkpoint(run_dir / f"{stage}.pt", {"stage": stage, "model": net.state_dict(), "config": {},
                                                  "metrics": {}, "epoch": 0})
    return run_dir


def random_image(seed: int, height: int = 60, width: int = 80) -> np.ndarray:
    """Smooth random blobs (not white noise), so neighbouring windows differ smoothly."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (height // 8 + 2, width // 8 + 2, 3)).astype(np.float32)
    import cv2

    big = cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)
    return np.clip(big + rng.normal(0, 8, big.shape), 0, 255).astype(np.uint8)
