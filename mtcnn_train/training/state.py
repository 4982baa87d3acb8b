"""What a checkpoint holds and how a run resumes from it.

``last.pt`` is the full training state (:func:`training_state`: model, optimizer, schedule, grad
scaler, the weight average if any, :class:`Progress`, the epoch's metric sums, the global RNG
states and the resolved config); ``best.pt`` holds the best weights so far (the average's with
``ema_decay``; :func:`best_weights`).  :func:`restore_training_state` loads ``last.pt`` into a
freshly built run after checking it fits, and :func:`resumed_config` decides which settings a
resumed run keeps (the saved ones, except :data:`RUNTIME_FIELDS`).  Everything is stored as
tensors and plain values so checkpoints load with ``weights_only=True``.
"""
from __future__ import annotations

import copy
import dataclasses
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mtcnn_train.checkpoint import check_state_dict
from mtcnn_train.config import Config, StageTrainConfig, config_from_dict
from mtcnn_train.errors import UserError
from mtcnn_train.training.stage_run import StageRun

#: Settings that may change when a run resumes (they do not change the arithmetic of training).
RUNTIME_FIELDS = ("device", "threads", "resident_max_gib", "checkpoint_every_steps", "log_every_steps")
#: Our P-Net training crops are exact pixel-edge squares, so the detector decodes the P-Net we
#: train with the ``exact`` window rule (``detector.WINDOW_RULES``); every checkpoint records it.
TRAINED_WINDOW_RULE = "exact"


@dataclass
class Progress:
    """Where a run stands: what ``last.pt`` records besides the weights and optimizer."""

    epoch: int = 0                 # current epoch (0-based)
    step_in_epoch: int = 0         # optimizer steps done in it
    best_loss: float | None = None
    best_epoch: int | None = None
    history: list = dataclasses.field(default_factory=list)
    finished: bool = False

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Progress:
        return cls(state["epoch"], state["step_in_epoch"], state["best_loss"], state["best_epoch"],
                   list(state["history"]), bool(state["finished"]))


def rng_state() -> dict[str, Any]:
    """Global RNG states as tensors and plain values (loadable with ``weights_only=True``)."""
    np_state = np.random.get_state()
    py_version, py_internal, py_gauss = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"name": np_state[0], "keys": torch.from_numpy(np_state[1].astype(np.int64)),
                  "pos": int(np_state[2]), "has_gauss": int(np_state[3]), "cached_gaussian": float(np_state[4])},
        "python": {"version": py_version, "internal": torch.tensor(py_internal, dtype=torch.int64), "gauss": py_gauss},
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["internal"].tolist()), p["gauss"]))
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def training_state(run: StageRun, progress: Progress, train_sums: torch.Tensor) -> dict[str, Any]:
    """The payload of ``last.pt``; ``train_sums`` are the epoch's metric sums of every rank together."""
    return {
        "stage": run.stage,
        "model": run.net.state_dict(),
        "optimizer": run.optimizer.state_dict(),
        "scheduler": run.scheduler.state_dict(),
        "scaler": run.scaler.state_dict(),
        "epoch": progress.epoch,
        "step_in_epoch": progress.step_in_epoch,
        "global_step": progress.epoch * run.steps_per_epoch + progress.step_in_epoch,
        "steps_per_epoch": run.steps_per_epoch,
        "world_size": run.ctx.world_size,
        "num_samples": len(run.data),
        "train_sums": train_sums.detach().cpu(),
        "best_loss": progress.best_loss,
        "best_epoch": progress.best_epoch,
        "history": progress.history,
        "finished": progress.finished,
        "metrics": progress.history[-1] if progress.history else {},
        "rng": rng_state(),
        "config": run.cfg.to_dict(),
        "window_rule": TRAINED_WINDOW_RULE,
        "initialised_from": run.initialised_from,
        **({"ema": run.ema.state_dict()} if run.ema is not None else {}),
    }


def best_weights(run: StageRun, metrics: dict[str, Any], epoch: int) -> dict[str, Any]:
    """The payload of ``best.pt`` (and so of ``RUN_DIR/<stage>.pt``): weights, config, the epoch's metrics."""
    return {"stage": run.stage, "model": run.eval_net.state_dict(), "config": run.cfg.to_dict(),
            "metrics": metrics, "epoch": epoch, "window_rule": TRAINED_WINDOW_RULE,
            "initialised_from": run.initialised_from}


def restore_training_state(run: StageRun, state: dict[str, Any], path: Path) -> tuple[Progress, torch.Tensor]:
    """Load ``last.pt``'s ``state`` into ``run``; returns the progress and the saved metric sums."""
    if state.get("num_samples", len(run.data)) != len(run.data):
        raise UserError(f"{path}: trained on {state['num_samples']} samples, the given sample folders hold "
                        f"{len(run.data)}; resume with the same --samples or pass --force to start over")
    if state.get("steps_per_epoch") != run.steps_per_epoch or state.get("world_size", 1) != run.ctx.world_size:
        raise UserError(f"{path}: saved with {state.get('steps_per_epoch')} steps per epoch on "
                        f"{state.get('world_size', 1)} process(es); this run has {run.steps_per_epoch} on "
                        f"{run.ctx.world_size} (different samples or batch size?); pass --force to start over")
    check_state_dict(state["model"], path, run.stage)
    run.net.load_state_dict(state["model"])
    run.optimizer.load_state_dict(state["optimizer"])
    run.scheduler.load_state_dict(state["scheduler"])
    run.scaler.load_state_dict(state["scaler"])
    if run.ema is not None:
        if "ema" not in state:
            raise UserError(f"{path}: holds no weight average although train.{run.stage}.ema_decay is set; "
                            "pass --force to start over")
        run.ema.load_state_dict(state["ema"])
    restore_rng_state(state["rng"])
    run.initialised_from = state.get("initialised_from")
    return Progress.from_state(state), state["train_sums"]


def resumed_config(cfg: Config, saved: dict[str, Any], stage: str, path: Path) -> tuple[Config, list[str]]:
    """The saved config, with this invocation's runtime settings; also the ignored changes."""
    saved_cfg = config_from_dict(saved, source=str(path))
    current, previous = cfg.stage(stage), saved_cfg.stage(stage)
    merged_stage = copy.deepcopy(previous)
    for name in RUNTIME_FIELDS:
        setattr(merged_stage, name, getattr(current, name))
    ignored = [f"train.{stage}.{f.name}" for f in dataclasses.fields(StageTrainConfig)
               if f.name not in RUNTIME_FIELDS and getattr(current, f.name) != getattr(previous, f.name)]
    merged = copy.deepcopy(cfg)
    setattr(merged.train, stage, merged_stage)
    return merged, ignored
