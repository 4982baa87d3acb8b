"""One training loop for P-Net, R-Net and O-Net.

:func:`train_stage` is the entry point (the ``pnet``/``rnet``/``onet`` commands call it).  The
pieces, in the order a run uses them:

* :func:`prepare_run` opens the sample set (resident on the device when it fits), holds out a
  validation split by source image, builds the net, optimizer, schedule and loss weights;
* :func:`train_steps` is the hot loop: batch -> forward -> multi-task loss -> backward -> step,
  with metrics summed on the device (no per-step ``.item()``);
* :func:`evaluate` measures the validation split;
* :func:`train_stage` runs epochs, logs (tqdm, TensorBoard, ``metrics.jsonl``) and writes
  checkpoints, and resumes from ``last.pt``.

Exact resume: the batch order of an epoch is a pure function of ``(seed, epoch)`` and the
augmentation draws of a step a pure function of ``(seed, epoch, step, rank)``, so a run restarted
from a mid-epoch ``last.pt`` (model, optimizer, schedule, grad scaler, epoch, step in epoch, RNG
states) skips the steps already done and reaches bit-identical weights.

Run folder (several stages share one)::

    RUN_DIR/<stage>.pt                 best weights, written when the stage finishes (the detector loads it)
    RUN_DIR/<stage>/last.pt            full training state (resume)
    RUN_DIR/<stage>/best.pt            best weights so far (lowest validation loss, or as best_by says)
    RUN_DIR/<stage>/tb/                TensorBoard events
    RUN_DIR/<stage>/metrics.jsonl      one JSON line per epoch
    RUN_DIR/<stage>/config.yaml        the resolved config
"""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import math
import os
import random
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import torch
from torch import nn

from mtcnn_train.checkpoint import (check_state_dict, init_record, load_checkpoint, load_stage_net,
                                    save_checkpoint, stage_weights_path)
from mtcnn_train.config import Config, StageTrainConfig, config_from_dict, save_config
from mtcnn_train.stages import INPUT_SIZE, STAGES
from mtcnn_train.errors import UserError
from mtcnn_train.io import atomic_write_bytes, atomic_write_text, remove_stale_temp_files
from mtcnn_train.nets import build_net
from mtcnn_train.samples.shards import SampleSet
from mtcnn_train.training import distributed
from mtcnn_train.training.data import SampleTensors, split_by_source
from mtcnn_train.training.distributed import DistContext
from mtcnn_train.training.loss import LossTerms, LossWeights, flatten_outputs, multitask_loss
from mtcnn_train.training.metrics import MetricSums

#: Settings that may change when a run resumes (they do not change the arithmetic of training).
RUNTIME_FIELDS = ("device", "threads", "resident_max_gib", "checkpoint_every_steps", "log_every_steps")
#: Test hook: when set to a folder, every rank writes its final weights there as ``rank<N>.pt``.
DUMP_ENV = "MTCNN_TRAIN_DUMP_DIR"
#: Validation batches are this many times the training batch (no gradients to keep).
EVAL_BATCH_FACTOR = 4
#: Our P-Net training crops are exact pixel-edge squares, so the detector decodes the P-Net we
#: train with the ``exact`` window rule (``detector.WINDOW_RULES``); every checkpoint records it.
TRAINED_WINDOW_RULE = "exact"


@dataclass
class StageRun:
    """Everything one stage's training needs, built by :func:`prepare_run`."""

    stage: str
    cfg: Config
    train_cfg: StageTrainConfig
    ctx: DistContext
    device: torch.device
    data: SampleTensors
    train_indices: torch.Tensor   # int64 sample ids of the training split (host)
    val_indices: torch.Tensor     # int64 sample ids of the validation split (host)
    net: nn.Module                # the bare net (what checkpoints hold)
    model: nn.Module              # the net, wrapped in DistributedDataParallel under torchrun
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    scaler: torch.amp.GradScaler
    weights: LossWeights
    batch_size: int               # global batch (all ranks together)
    steps_per_epoch: int
    #: Where the starting weights came from (``init``: fine-tuning), saved in every checkpoint.
    initialised_from: dict[str, Any] | None = None

    def autocast(self) -> contextlib.AbstractContextManager:
        amp = self.train_cfg.amp
        if amp == "off":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if amp == "bf16" else torch.float16
        return torch.autocast(self.device.type, dtype=dtype)


# --------------------------------------------------------------------------------------------
# Pure helpers: order, seeds, schedule


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


def lr_factor(step: int, steps_per_epoch: int, cfg: StageTrainConfig) -> float:
    """Multiplier of the base learning rate after ``step`` optimizer steps (linear warm-up, then schedule)."""
    epoch = step / steps_per_epoch
    if cfg.warmup_epochs > 0 and epoch < cfg.warmup_epochs:
        return (step + 1) / (cfg.warmup_epochs * steps_per_epoch)
    if cfg.lr_schedule == "step":
        return cfg.lr_gamma ** sum(1 for milestone in cfg.lr_milestones if epoch >= milestone)
    if cfg.lr_schedule == "cosine":
        span = max(cfg.epochs - cfg.warmup_epochs, 1e-9)
        progress = min(max((epoch - cfg.warmup_epochs) / span, 0.0), 1.0)
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    return 1.0


def build_optimizer(net: nn.Module, cfg: StageTrainConfig) -> torch.optim.Optimizer:
    # foreach: one fused call per update instead of a Python loop over the parameters (torch uses
    # it by default on CUDA only; on the CPU it saves a few ms per step for these small nets).
    params = net.parameters()
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, foreach=True)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, foreach=True)
    return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay, foreach=True)


# --------------------------------------------------------------------------------------------
# Building a run


def open_samples(stage: str, sample_dirs: Iterable[str | Path]) -> SampleSet:
    """Open the sample folders and check their crops fit the stage's net."""
    dirs = [Path(d) for d in sample_dirs]
    sample_set = SampleSet.open(dirs)
    expected = INPUT_SIZE[stage]
    if sample_set.crop_size != expected:
        raise UserError(f"{dirs[0]}: holds {sample_set.crop_size}x{sample_set.crop_size} crops, but {stage} trains "
                        f"on {expected}x{expected}; make samples with 'mtcnn-train gen-samples --stage {stage}'")
    if len(sample_set) == 0:
        raise UserError(f"{dirs[0]}: the sample set is empty")
    return sample_set


def prepare_run(stage: str, cfg: Config, sample_dirs: Iterable[str | Path], ctx: DistContext | None = None,
                init: str | Path | None = None, device: torch.device | None = None) -> StageRun:
    """Open the samples, split them, build the net, optimizer and schedule (fresh state)."""
    if stage not in STAGES:
        raise UserError(f"unknown stage {stage!r}; expected one of {', '.join(STAGES)}")
    ctx = ctx or DistContext()
    train_cfg = cfg.stage(stage)
    device = device or distributed.select_device(train_cfg.device, ctx)
    if train_cfg.amp == "fp16" and device.type != "cuda":
        raise UserError(f"train.{stage}.amp: fp16 needs a CUDA device (use bf16 on the CPU)")
    if train_cfg.threads > 0:
        torch.set_num_threads(train_cfg.threads)

    sample_set = open_samples(stage, sample_dirs)
    counts = sample_set.counts()
    lacking = [name for name in ("positive", "negative") if not counts.get(name)]
    if train_cfg.alpha_det > 0 and lacking:
        # The face/non-face loss needs both; without them every accuracy is NaN and the net
        # that comes out detects nothing.
        shown = ", ".join(f"{name} {count}" for name, count in counts.items())
        raise UserError(f"{sample_set.directories[0]}: the sample set holds no {lacking[0]} samples ({shown}); "
                        f"{stage} cannot learn to tell faces from non-faces (was the box annotation file empty?)")
    data = SampleTensors(sample_set, device, train_cfg.resident_max_gib)
    train_ids, val_ids = split_by_source(data.sources, train_cfg.val_fraction, train_cfg.seed)
    batch_size = min(train_cfg.batch_size, len(train_ids))
    distributed.rank_slice(batch_size, ctx)  # refuses batches too small to split over the ranks

    torch.manual_seed(train_cfg.seed)  # the initial weights depend on the seed only
    net = build_net(stage)
    initialised_from = None
    if init is not None:
        net.load_state_dict(load_stage_net(init, stage).state_dict())
        initialised_from = init_record(init, stage)
    net = net.to(device)
    model: nn.Module = net
    if ctx.enabled:
        model = nn.parallel.DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None)
    optimizer = build_optimizer(net, train_cfg)
    steps_per_epoch = max(len(train_ids) // batch_size, 1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, steps_per_epoch, train_cfg))
    scaler = torch.amp.GradScaler(device.type, enabled=train_cfg.amp == "fp16")
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed input sizes: let cuDNN pick its fastest kernels
    return StageRun(stage, cfg, train_cfg, ctx, device, data, torch.from_numpy(train_ids).long(),
                    torch.from_numpy(val_ids).long(), net, model, optimizer, scheduler, scaler,
                    LossWeights.from_config(train_cfg), batch_size, steps_per_epoch, initialised_from)


# --------------------------------------------------------------------------------------------
# The loop


StepHook = Callable[[int, LossTerms], None]


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


def train_steps(run: StageRun, epoch: int, start: int, stop: int, sums: MetricSums,
                on_step: StepHook | None = None) -> None:
    """Train steps ``start .. stop-1`` of ``epoch``; ``on_step(step, loss_terms)`` after each."""
    cfg = run.train_cfg
    index_batches = epoch_index_batches(run, epoch, start, stop)
    seeds = [step_seed(cfg.seed, epoch, step, run.ctx.rank) for step in range(start, stop)]
    run.model.train()
    for step, batch in enumerate(run.data.batches(index_batches, cfg.augment, seeds), start):
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
        sums.add_batch(logits.detach(), box_pred.detach(), landmark_pred.detach(), batch.labels, batch.boxes,
                       batch.landmarks, terms)
        if on_step is not None:
            on_step(step, terms)


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
    run.net.eval()
    for batch in run.data.batches(chunks, augment=False):
        with run.autocast():
            outputs = run.net(batch.images)
        sums.add_batch(*flatten_outputs(outputs), batch.labels, batch.boxes, batch.landmarks)
    distributed.all_reduce_sum(sums.values, run.ctx)
    return sums.summary(run.weights)


# --------------------------------------------------------------------------------------------
# Checkpoint state


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


@dataclass
class Progress:
    """Where a run stands: what ``last.pt`` records besides the weights and optimizer."""

    epoch: int = 0                 # current epoch (0-based)
    step_in_epoch: int = 0         # optimizer steps done in it
    best_loss: float | None = None
    best_epoch: int | None = None
    history: list = dataclasses.field(default_factory=list)
    finished: bool = False


def training_state(run: StageRun, progress: Progress, train_sums: torch.Tensor) -> dict[str, Any]:
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
    }


def restore_training_state(run: StageRun, state: dict[str, Any], path: Path) -> tuple[Progress, torch.Tensor]:
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
    restore_rng_state(state["rng"])
    run.initialised_from = state.get("initialised_from")
    progress = Progress(state["epoch"], state["step_in_epoch"], state["best_loss"], state["best_epoch"],
                        list(state["history"]), bool(state["finished"]))
    return progress, state["train_sums"]


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


# --------------------------------------------------------------------------------------------
# Files of a stage


@dataclass(frozen=True)
class StagePaths:
    run_dir: Path
    stage: str

    @property
    def folder(self) -> Path:
        return self.run_dir / self.stage

    @property
    def weights(self) -> Path:
        return stage_weights_path(self.run_dir, self.stage)

    @property
    def last(self) -> Path:
        return self.folder / "last.pt"

    @property
    def best(self) -> Path:
        return self.folder / "best.pt"

    @property
    def tensorboard(self) -> Path:
        return self.folder / "tb"

    @property
    def metrics(self) -> Path:
        return self.folder / "metrics.jsonl"

    @property
    def config(self) -> Path:
        return self.folder / "config.yaml"


def decide_start(paths: StagePaths, resume: bool, force: bool) -> str:
    """``fresh``, ``resume`` or ``done`` (a finished stage resumed); refuses to overwrite finished work."""
    if resume and force:
        raise UserError("--resume and --force contradict each other; pass one")
    if paths.run_dir.exists() and not paths.run_dir.is_dir():
        raise UserError(f"{paths.run_dir}: exists and is not a folder")
    if force:
        return "fresh"
    if resume:
        if paths.last.is_file():
            return "resume"
        if paths.weights.is_file():
            raise UserError(f"{paths.weights}: {paths.stage} is trained but {paths.last} is missing, so there is "
                            f"nothing to resume; pass --force to train it again")
        return "fresh"
    if paths.weights.is_file():
        raise UserError(f"{paths.weights}: {paths.stage} is already trained in this run folder; pass --force to "
                        f"train it again or --resume to continue")
    if paths.last.is_file():
        raise UserError(f"{paths.last}: an unfinished {paths.stage} run is here; pass --resume to continue it or "
                        f"--force to start over")
    return "fresh"


def clear_stage_outputs(paths: StagePaths) -> None:
    """Remove what an earlier run of this stage wrote (``--force``); nothing else is touched."""
    for path in (paths.weights, paths.last, paths.best, paths.metrics, paths.config):
        path.unlink(missing_ok=True)
    if paths.tensorboard.is_dir():
        shutil.rmtree(paths.tensorboard)


def write_metrics_jsonl(path: Path, history: list[dict[str, Any]]) -> None:
    """Rewritten whole (atomically) from the history kept in ``last.pt``: never a torn or doubled line."""
    atomic_write_text(path, "".join(json.dumps(_json_safe(record)) + "\n" for record in history))


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def selection_score(best_by: str, metrics: dict[str, Any], epoch: int) -> float:
    """The number an epoch is ranked by (lower is better) under ``train.<stage>.best_by``.

    ``last`` ranks by minus the epoch, so every finished epoch becomes the best so far and the
    stage ends with the schedule's final weights.  ``detection`` ranks by minus the detection
    measure's ``score`` (``metrics["detection"]``, higher is better).  A NaN score (a loss with nothing to measure)
    never wins, so it falls back to the total loss.
    """
    if best_by == "last":
        return -float(epoch)
    if best_by == "detection":
        score = (metrics.get("detection") or {}).get("score")
        if score is not None and math.isfinite(score):
            return -float(score)  # higher recall or AP is better
    score = metrics.get(best_by)
    if score is None or not math.isfinite(score):
        score = metrics["loss"]
    return float(score)


def best_payload(run: StageRun, metrics: dict[str, Any], epoch: int) -> dict[str, Any]:
    return {"stage": run.stage, "model": run.net.state_dict(), "config": run.cfg.to_dict(),
            "metrics": metrics, "epoch": epoch, "window_rule": TRAINED_WINDOW_RULE,
            "initialised_from": run.initialised_from}


# --------------------------------------------------------------------------------------------
# Logging


class Logger:
    """TensorBoard scalars, the progress bar and console lines; silent on ranks other than 0."""

    def __init__(self, run: StageRun, paths: StagePaths, purge_step: int | None) -> None:
        self.run = run
        self.enabled = run.ctx.is_main
        self.writer = None
        if self.enabled:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(log_dir=str(paths.tensorboard), purge_step=purge_step)

    def scalars(self, prefix: str, values: dict[str, Any], step: int) -> None:
        if self.writer is None:
            return
        for name, value in values.items():
            if isinstance(value, (int, float)) and math.isfinite(value) and name != "samples":
                self.writer.add_scalar(f"{prefix}/{name}", value, step)

    def message(self, text: str) -> None:
        if self.enabled:
            from tqdm import tqdm

            tqdm.write(text, file=sys.stderr)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def _format_epoch(stage: str, record: dict[str, Any], epochs: int) -> str:
    train, val = record["train"], record.get("val") or {}
    text = f"{stage} epoch {record['epoch']}/{epochs}: loss {train['loss']:.4f} acc {train['accuracy']:.4f}"
    if val:
        text += (f" | val loss {val['loss']:.4f} acc {val['accuracy']:.4f} recall {val['recall']:.4f} "
                 f"precision {val['precision']:.4f} box {val['box_l2']:.4f} landmarks {val['landmark_l2']:.4f}")
    detection = record.get("detection")
    if detection:
        text += " | detection " + " ".join(f"{k} {v:.4f}" for k, v in detection.items() if k != "score")
    return text + f" | {record['samples_per_sec']:.0f} samples/s"


# --------------------------------------------------------------------------------------------
# Entry point


EpochScorer = Callable[[nn.Module], dict[str, float]]


def train_stage(stage: str, cfg: Config, sample_dirs: Iterable[str | Path], run_dir: str | Path,
                resume: bool = False, init: str | Path | None = None, force: bool = False,
                epoch_scorer: EpochScorer | None = None) -> dict[str, Any]:
    """Train one stage into ``run_dir`` and return its final metrics.

    Refuses to overwrite a finished stage (``RUN_DIR/<stage>.pt``) or an unfinished one
    (``last.pt``) unless ``force`` (start over) or ``resume`` (continue from ``last.pt``; the saved
    training settings win over ``cfg``, except the runtime ones in :data:`RUNTIME_FIELDS`).
    ``init`` fine-tunes from the ``stage`` weights of a run folder or ``.pt`` file.  Under
    ``torchrun`` every rank calls this; rank 0 writes the files.  ``epoch_scorer(net)``, when given,
    measures the net on detection after each epoch (``metrics["detection"]``); ``best_by:
    detection`` needs it (the pipeline builds it from the held-out WIDER images).
    """
    if cfg.stage(stage).best_by == "detection" and epoch_scorer is None:
        raise UserError(f"train.{stage}.best_by: detection needs the held-out WIDER images to measure on "
                        "(data.wider_root with data.val_fraction > 0, run through mtcnn-train pipeline or "
                        f"mtcnn-train {stage})")
    if stage not in STAGES:
        raise UserError(f"unknown stage {stage!r}; expected one of {', '.join(STAGES)}")
    ctx = distributed.context_from_env()
    paths = StagePaths(Path(run_dir), stage)
    start = decide_start(paths, resume, force)
    saved_state = None
    if start == "resume":
        saved_state = load_checkpoint(paths.last)
        if saved_state.get("stage") != stage:
            raise UserError(f"{paths.last}: holds {saved_state.get('stage')} training, expected {stage}")
        cfg, ignored = resumed_config(cfg, saved_state["config"], stage, paths.last)
        if ignored and ctx.is_main:
            print(f"note: resuming with the saved settings; ignoring changes to {', '.join(ignored)}", file=sys.stderr)
        if saved_state.get("finished"):
            start = "done"

    device = distributed.select_device(cfg.stage(stage).device, ctx)
    distributed.init_process_group(ctx, device)
    try:
        # Every rank has read the folder before rank 0 changes it.
        distributed.barrier(ctx)
        if ctx.is_main:
            paths.folder.mkdir(parents=True, exist_ok=True)
            remove_stale_temp_files(paths.folder)
            remove_stale_temp_files(paths.folder.parent)  # RUN_DIR/<stage>.pt is written there
            if force:
                clear_stage_outputs(paths)
        distributed.barrier(ctx)
        if start == "done":
            return _finish_done_stage(paths, saved_state, ctx)
        run = prepare_run(stage, cfg, sample_dirs, ctx, init=init if start == "fresh" else None, device=device)
        return _train(run, paths, saved_state, epoch_scorer)
    finally:
        distributed.shutdown(ctx)


def _finish_done_stage(paths: StagePaths, state: dict[str, Any], ctx: DistContext) -> dict[str, Any]:
    """A finished stage was resumed: make sure its weights file exists, then report."""
    if ctx.is_main and not paths.weights.is_file():
        atomic_write_bytes(paths.weights, paths.best.read_bytes())
    return _final_metrics(state["stage"], Progress(state["epoch"], 0, state["best_loss"], state["best_epoch"],
                                                   list(state["history"]), True))


def _final_metrics(stage: str, progress: Progress) -> dict[str, Any]:
    last = progress.history[-1] if progress.history else {}
    best = next((r for r in progress.history if r["epoch"] == progress.best_epoch), last)
    return {"stage": stage, "epoch": last.get("epoch"), "train": last.get("train"), "val": last.get("val"),
            "best_epoch": progress.best_epoch, "best_val": best.get("val"), "best_loss": progress.best_loss,
            "best_detection": best.get("detection")}


def _train(run: StageRun, paths: StagePaths, saved_state: dict[str, Any] | None,
           epoch_scorer: EpochScorer | None = None) -> dict[str, Any]:
    from tqdm import tqdm

    cfg, ctx = run.train_cfg, run.ctx
    sums = MetricSums(run.device)
    progress = Progress()
    if saved_state is not None:
        progress, saved_sums = restore_training_state(run, saved_state, paths.last)
        # The saved sums are every rank's together: rank 0 carries them on, the others restart at 0.
        if ctx.is_main:
            sums.values.copy_(saved_sums.to(run.device))
    global_step = progress.epoch * run.steps_per_epoch + progress.step_in_epoch
    logger = Logger(run, paths, purge_step=global_step if saved_state is not None else None)
    if ctx.is_main:
        save_config(run.cfg, paths.config)
    residency = "resident on" if run.data.resident else "streamed to"
    logger.message(f"{run.stage}: {len(run.train_indices)} training / {len(run.val_indices)} validation samples, "
                   f"{residency} {run.device}, batch {run.batch_size} x {run.steps_per_epoch} steps per epoch"
                   f"{f', {ctx.world_size} processes' if ctx.enabled else ''}"
                   f"{f', resuming at epoch {progress.epoch + 1} step {progress.step_in_epoch}' if saved_state else ''}")

    def save_last(step_sums: torch.Tensor) -> None:
        save_checkpoint(paths.last, training_state(run, progress, step_sums))

    try:
        for epoch in range(progress.epoch, cfg.epochs):
            progress.epoch = epoch
            first_step = progress.step_in_epoch
            bar = tqdm(total=run.steps_per_epoch, initial=first_step, desc=f"{run.stage} {epoch + 1}/{cfg.epochs}",
                       unit="step", disable=not ctx.is_main, leave=False, dynamic_ncols=True, file=sys.stderr)
            interval = {"start": time.perf_counter(), "sums": sums.values.clone(), "steps": 0}
            epoch_start = time.perf_counter()

            def on_step(step: int, terms: LossTerms) -> None:
                nonlocal global_step
                global_step += 1
                interval["steps"] += 1
                bar.update(1)
                if cfg.log_every_steps and global_step % cfg.log_every_steps == 0:
                    _log_interval(run, logger, bar, sums, interval, global_step)
                if cfg.checkpoint_every_steps and global_step % cfg.checkpoint_every_steps == 0 \
                        and step + 1 < run.steps_per_epoch:
                    progress.step_in_epoch = step + 1
                    total = distributed.all_reduce_sum(sums.values.clone(), ctx)
                    if ctx.is_main:
                        save_last(total)

            train_steps(run, epoch, first_step, run.steps_per_epoch, sums, on_step)
            bar.close()
            train_seconds = time.perf_counter() - epoch_start
            distributed.all_reduce_sum(sums.values, ctx)
            train_metrics = sums.summary()
            val_metrics = evaluate(run) if len(run.val_indices) else None
            done_steps = run.steps_per_epoch - first_step
            record = {
                "epoch": epoch + 1,
                "lr": run.optimizer.param_groups[0]["lr"],
                "samples_per_sec": done_steps * run.batch_size / max(train_seconds, 1e-9),
                "train": train_metrics,
                "val": val_metrics,
            }
            if epoch_scorer is not None:
                # Every rank measures (the cascade is deterministic), so all agree on the best epoch.
                record["detection"] = epoch_scorer(run.net)
            progress.history.append(record)
            logger.scalars("train", train_metrics, epoch + 1)
            if val_metrics:
                logger.scalars("val", val_metrics, epoch + 1)
            if record.get("detection"):
                logger.scalars("val_detection", record["detection"], epoch + 1)
            logger.scalars("epoch", {"lr": record["lr"], "samples_per_sec": record["samples_per_sec"]}, epoch + 1)
            logger.message(_format_epoch(run.stage, record, cfg.epochs))

            score = selection_score(cfg.best_by, {**(val_metrics or train_metrics), "detection": record.get("detection")},
                                    epoch + 1)
            improved = progress.best_loss is None or score < progress.best_loss
            if improved:
                progress.best_loss, progress.best_epoch = score, epoch + 1
            progress.epoch, progress.step_in_epoch = epoch + 1, 0
            progress.finished = epoch + 1 == cfg.epochs
            sums.reset()
            if ctx.is_main:
                if improved:
                    save_checkpoint(paths.best, best_payload(run, record, epoch + 1))
                save_last(sums.values)
                write_metrics_jsonl(paths.metrics, progress.history)
        if ctx.is_main:
            # The detector's file appears only once the stage is done.
            atomic_write_bytes(paths.weights, paths.best.read_bytes())
    finally:
        logger.close()
    _dump_for_tests(run)
    return _final_metrics(run.stage, progress)


def _log_interval(run: StageRun, logger: Logger, bar, sums: MetricSums, interval: dict, global_step: int) -> None:
    """Step-level scalars averaged over the last interval (one device read per interval)."""
    if not run.ctx.is_main:
        return
    now = time.perf_counter()
    delta = MetricSums(run.device, sums.values - interval["sums"]).summary()
    seconds = max(now - interval["start"], 1e-9)
    values = {key: delta[key] for key in ("loss", "loss_det", "loss_box", "loss_landmark", "accuracy")}
    values["lr"] = run.optimizer.param_groups[0]["lr"]
    values["samples_per_sec"] = interval["steps"] * run.batch_size / seconds
    logger.scalars("step", values, global_step)
    bar.set_postfix(loss=f"{values['loss']:.4f}", acc=f"{values['accuracy']:.3f}", refresh=False)
    interval.update(start=now, sums=sums.values.clone(), steps=0)


def _dump_for_tests(run: StageRun) -> None:
    """Test hook (:data:`DUMP_ENV`): each rank writes the weights it ended with."""
    folder = os.environ.get(DUMP_ENV)
    if folder:
        save_checkpoint(Path(folder) / f"rank{run.ctx.rank}.pt", {"stage": run.stage, "model": run.net.state_dict()})
