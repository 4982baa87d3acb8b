"""What a training run shows and records while it runs: the progress bar, console lines, TensorBoard.

Rank 0 only; the other ranks' :class:`TrainingLog` is silent.  Step-level scalars are averaged
over each ``log_every_steps`` interval from the device-side metric sums (one device read per
interval, never per step).
"""
from __future__ import annotations

import math
import sys
import time
from typing import Any

from mtcnn_train.training.metrics import MetricSums
from mtcnn_train.training.stage_run import StageRun

#: Step-level scalars written every ``log_every_steps`` steps.
STEP_SCALARS = ("loss", "loss_det", "loss_box", "loss_landmark", "accuracy")


class TrainingLog:
    """TensorBoard scalars, the progress bar and console lines; silent on ranks other than 0."""

    def __init__(self, run: StageRun, tensorboard_dir, purge_step: int | None) -> None:
        self.run = run
        self.enabled = run.ctx.is_main
        self.writer = None
        self.bar = None
        if self.enabled:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(log_dir=str(tensorboard_dir), purge_step=purge_step)
        # The running logging interval: when it began, the sums then, and its steps so far.
        self._interval_start = 0.0
        self._interval_sums = None
        self._interval_steps = 0

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

    def start_epoch(self, epoch: int, first_step: int, sums: MetricSums) -> None:
        """Open the epoch's progress bar (at ``first_step`` when resuming) and a logging interval."""
        from tqdm import tqdm

        run = self.run
        self.bar = tqdm(total=run.steps_per_epoch, initial=first_step,
                        desc=f"{run.stage} {epoch + 1}/{run.train_cfg.epochs}", unit="step",
                        disable=not self.enabled, leave=False, dynamic_ncols=True, file=sys.stderr)
        self._interval_start, self._interval_sums, self._interval_steps = time.perf_counter(), sums.values.clone(), 0

    def step_done(self, global_step: int, sums: MetricSums) -> None:
        """After each optimizer step: advance the bar; every ``log_every_steps`` steps, write step scalars."""
        self._interval_steps += 1
        self.bar.update(1)
        every = self.run.train_cfg.log_every_steps
        if every and global_step % every == 0 and self.enabled:
            self._log_interval(global_step, sums)

    def _log_interval(self, global_step: int, sums: MetricSums) -> None:
        """Step-level scalars averaged over the last interval (one device read per interval)."""
        run = self.run
        now = time.perf_counter()
        delta = MetricSums(run.device, sums.values - self._interval_sums).summary()
        seconds = max(now - self._interval_start, 1e-9)
        values = {key: delta[key] for key in STEP_SCALARS}
        values["lr"] = run.lr
        values["samples_per_sec"] = self._interval_steps * run.batch_size / seconds
        self.scalars("step", values, global_step)
        self.bar.set_postfix(loss=f"{values['loss']:.4f}", acc=f"{values['accuracy']:.3f}", refresh=False)
        self._interval_start, self._interval_sums, self._interval_steps = now, sums.values.clone(), 0

    def end_epoch(self) -> None:
        self.bar.close()

    def epoch_record(self, record: dict[str, Any]) -> None:
        """TensorBoard scalars and the console line of one finished epoch."""
        epoch = record["epoch"]
        self.scalars("train", record["train"], epoch)
        if record["val"]:
            self.scalars("val", record["val"], epoch)
        if record.get("detection"):
            self.scalars("val_detection", record["detection"], epoch)
        self.scalars("epoch", {"lr": record["lr"], "samples_per_sec": record["samples_per_sec"]}, epoch)
        self.message(format_epoch(self.run.stage, record, self.run.train_cfg.epochs))

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def format_epoch(stage: str, record: dict[str, Any], epochs: int) -> str:
    """The console line of one epoch."""
    train, val = record["train"], record.get("val") or {}
    text = f"{stage} epoch {record['epoch']}/{epochs}: loss {train['loss']:.4f} acc {train['accuracy']:.4f}"
    if val:
        text += (f" | val loss {val['loss']:.4f} acc {val['accuracy']:.4f} recall {val['recall']:.4f} "
                 f"precision {val['precision']:.4f} box {val['box_l2']:.4f} landmarks {val['landmark_l2']:.4f}")
    detection = record.get("detection")
    if detection:
        text += " | detection " + " ".join(f"{k} {v:.4f}" for k, v in detection.items() if k != "score")
    return text + f" | {record['samples_per_sec']:.0f} samples/s"
