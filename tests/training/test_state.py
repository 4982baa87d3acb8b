"""Checkpoint state: RNG states survive a save and load, and which settings a resumed run keeps."""
from __future__ import annotations

import random

import numpy as np
import torch

from mtcnn_train.checkpoint import load_checkpoint, save_checkpoint
from mtcnn_train.config import load_config
from mtcnn_train.training.state import Progress, RUNTIME_FIELDS, restore_rng_state, resumed_config, rng_state


def _draws():
    return torch.rand(3).tolist(), np.random.rand(3).tolist(), [random.random() for _ in range(3)]


def test_rng_state_round_trips_through_a_weights_only_checkpoint(tmp_path):
    torch.manual_seed(1), np.random.seed(2), random.seed(3)
    save_checkpoint(tmp_path / "s.pt", {"stage": "pnet", "model": {}, "rng": rng_state()})
    expected = _draws()
    _draws()  # move every generator on
    restore_rng_state(load_checkpoint(tmp_path / "s.pt")["rng"])
    assert _draws() == expected


def test_resume_keeps_the_saved_training_settings_but_takes_the_runtime_ones(tmp_path):
    saved = load_config(None, ["train.rnet.lr=0.01", "train.rnet.threads=2"])
    now = load_config(None, ["train.rnet.lr=0.5", "train.rnet.threads=4", "train.pnet.lr=0.2"])
    merged, ignored = resumed_config(now, saved.to_dict(), "rnet", tmp_path / "last.pt")
    assert merged.train.rnet.lr == 0.01 and merged.train.rnet.threads == 4
    assert merged.train.pnet.lr == 0.2  # other stages are not this run's business
    assert ignored == ["train.rnet.lr"]
    assert "threads" in RUNTIME_FIELDS


def test_progress_from_a_saved_state():
    state = {"epoch": 3, "step_in_epoch": 5, "best_loss": 0.25, "best_epoch": 2, "history": ({"epoch": 1},),
             "finished": 0}
    assert Progress.from_state(state) == Progress(3, 5, 0.25, 2, [{"epoch": 1}], False)
