"""Tiny sample sets for the training tests, written with the real shard writer."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mtcnn_train.config import load_config
from mtcnn_train.samples.shards import write_sample_set
from mtcnn_train.samples.labels import LABEL_LANDMARK, LABEL_NEGATIVE, LABEL_PART, LABEL_POSITIVE


def write_tiny_samples(directory: Path, count: int = 400, size: int = 12, seed: int = 0,
                       images_per_source: int = 8, shard_size: int = 100_000) -> Path:
    """Random crops with all four labels; positives carry a bright centre square so a net can
    tell them from negatives (the training tests check that it learns)."""
    rng = np.random.default_rng(seed)
    labels = rng.choice([LABEL_NEGATIVE, LABEL_POSITIVE, LABEL_PART, LABEL_LANDMARK], size=count,
                        p=[0.4, 0.25, 0.15, 0.2]).astype(np.int8)
    images = rng.integers(0, 120, size=(count, size, size, 3), dtype=np.uint8)
    lo, hi = size // 4, size - size // 4
    images[labels == LABEL_POSITIVE, lo:hi, lo:hi] = 230
    boxes = np.full((count, 4), np.nan, np.float32)
    has_box = (labels == LABEL_POSITIVE) | (labels == LABEL_PART)
    boxes[has_box] = rng.uniform(-0.3, 0.3, size=(int(has_box.sum()), 4))
    landmarks = np.full((count, 10), np.nan, np.float32)
    has_landmarks = labels == LABEL_LANDMARK
    landmarks[has_landmarks] = rng.uniform(0.1, 0.9, size=(int(has_landmarks.sum()), 10))
    num_sources = max(count // images_per_source, 1)
    sources = rng.integers(0, num_sources, size=count).astype(np.int32)
    crops = np.tile(np.array([0, 0, size, size], np.float32), (count, 1))
    arrays = {"images": images, "labels": labels, "boxes": boxes, "landmarks": landmarks,
              "sources": sources, "crops": crops}
    manifest = {"images": [f"img_{i}.jpg" for i in range(num_sources)], "note": "random test data"}
    write_sample_set(directory, arrays, manifest, shard_size=shard_size)
    return directory


def tiny_config(stage: str = "pnet", **overrides):
    """The paper defaults with a small, fast, single-thread training setup for ``stage``."""
    settings = {"epochs": 2, "batch_size": 32, "val_fraction": 0.2, "threads": 1, "log_every_steps": 2,
                "lr": 0.01}
    settings.update(overrides)
    return load_config(None, [f"train.{stage}.{key}={value}" for key, value in settings.items()])


@pytest.fixture
def pnet_samples(tmp_path: Path) -> Path:
    return write_tiny_samples(tmp_path / "samples12", count=400, size=12)
