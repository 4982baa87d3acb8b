"""Building one stage's training run: samples, split, net, optimizer, learning-rate schedule.

:func:`prepare_run` opens the sample set (resident on the device when it fits), holds out a
validation split by source image, and builds the net, optimizer, schedule and loss weights into a
:class:`StageRun`, the one object the step engine, the checkpoint state and the loop share.
"""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from mtcnn_train.checkpoint import init_record, load_stage_net
from mtcnn_train.config import Config, StageTrainConfig
from mtcnn_train.errors import UserError
from mtcnn_train.nets import build_net
from mtcnn_train.samples.shards import SampleSet
from mtcnn_train.stages import INPUT_SIZE, check_stage
from mtcnn_train.training import distributed
from mtcnn_train.training.data import SampleTensors, split_by_source
from mtcnn_train.training.distributed import DistContext
from mtcnn_train.training.loss import LossWeights


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
    #: The moving average of the net's weights (``train.<stage>.ema_decay`` > 0), else None.
    ema: AveragedModel | None = None

    @property
    def eval_net(self) -> nn.Module:
        """The weights that are measured and saved: the moving average when there is one."""
        return self.ema.module if self.ema is not None else self.net

    def update_ema(self) -> None:
        """Fold the net's weights after an optimizer step into the moving average."""
        if self.ema is not None:
            self.ema.update_parameters(self.net)

    def autocast(self) -> contextlib.AbstractContextManager:
        amp = self.train_cfg.amp
        if amp == "off":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if amp == "bf16" else torch.float16
        return torch.autocast(self.device.type, dtype=dtype)

    @property
    def lr(self) -> float:
        """The current learning rate."""
        return self.optimizer.param_groups[0]["lr"]


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
    check_stage(stage)
    ctx = ctx or DistContext()
    train_cfg = cfg.stage(stage)
    device = device or distributed.rank_device(train_cfg.device, ctx)
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
    net = build_net(stage, train_cfg.dropout)
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
    # AveragedModel takes the weights after the first step as they are, then averages step by step.
    ema = (AveragedModel(net, multi_avg_fn=get_ema_multi_avg_fn(train_cfg.ema_decay), use_buffers=True)
           if train_cfg.ema_decay > 0 else None)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed input sizes: let cuDNN pick its fastest kernels
    return StageRun(stage, cfg, train_cfg, ctx, device, data, torch.from_numpy(train_ids).long(),
                    torch.from_numpy(val_ids).long(), net, model, optimizer, scheduler, scaler,
                    LossWeights.from_config(train_cfg, cfg.sampling), batch_size, steps_per_epoch, initialised_from, ema)
