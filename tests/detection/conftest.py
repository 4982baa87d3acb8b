"""Fixtures for the detector tests: small random-weight nets whose scores actually vary."""
from __future__ import annotations

import numpy as np
import pytest

from mtcnn_train.config import DetectionConfig
from tests.random_nets import make_random_nets, save_random_run


@pytest.fixture
def random_nets():
    return make_random_nets(0)


@pytest.fixture
def test_cfg():
    # min face 24 keeps the pyramid short on the small test images
    return DetectionConfig(min_face_size=24, thresholds=[0.7, 0.6, 0.5], device="cpu")


@pytest.fixture(scope="module")
def one_torch_thread():
    """One thread for torch, as onnxruntime gets: the results do not depend on it, and on a
    loaded CI machine several threads per process made the ONNX tests ten times slower."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def random_run_dir(tmp_path):
    return save_random_run(tmp_path / "run")


def random_image(seed: int, height: int = 60, width: int = 80) -> np.ndarray:
    """Smooth random blobs (not white noise), so neighbouring windows differ smoothly."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (height // 8 + 2, width // 8 + 2, 3)).astype(np.float32)
    import cv2

    big = cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)
    return np.clip(big + rng.normal(0, 8, big.shape), 0, 255).astype(np.uint8)
