"""One training loop for P-Net, R-Net and O-Net: the wiring.

:func:`train_stage` is the entry point (the ``pnet``/``rnet``/``onet`` commands and the pipeline
call it).  It decides how the run starts from what the run folder holds (:mod:`.run_folder`),
builds the run (:mod:`.stage_run`), restores ``last.pt`` when resuming (:mod:`.state`), then runs
epochs of the step engine (:mod:`.engine`), logs them (:mod:`.logs`), keeps the best epoch and
writes the checkpoints.  Under ``torchrun`` every rank runs this loop; rank 0 writes the files.
"""
from __future__ import annotations

import math
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterable

from torch import nn

from mtcnn_train.checkpoint import load_checkpoint, save_checkpoint
from mtcnn_train.config import Config, StageTrainConfig, save_config
from mtcnn_train.errors import UserError
from mtcnn_train.stages import check_stage
from mtcnn_train.training import distributed, engine
from mtcnn_train.training.logs import TrainingLog
from mtcnn_train.training.metrics import MetricSums
from mtcnn_train.training.run_folder import (StagePaths, clear_stage_outputs, decide_start, prepare_folder,
                                             publish_weights, write_metrics_jsonl)
from mtcnn_train.training.stage_run import StageRun, prepare_run
from mtcnn_train.training.state import (Progress, best_weights, restore_training_state, resumed_config,
                                        training_state)

EpochScorer = Callable[[nn.Module], dict[str, float]]


def train_stage(stage: str, cfg: Config, sample_dirs: Iterable[str | Path], run_dir: str | Path,
                resume: bool = False, init: str | Path | None = None, force: bool = False,
                epoch_scorer: EpochScorer | None = None) -> dict[str, Any]:
    """Train one stage into ``run_dir`` and return its final metrics.

    Refuses to overwrite a finished stage (``RUN_DIR/<stage>.pt``) or an unfinished one
    (``last.pt``) unless ``force`` (start over) or ``resume`` (continue from ``last.pt``; the saved
    training settings win over ``cfg``, except the runtime ones in
    :data:`~mtcnn_train.training.state.RUNTIME_FIELDS`).  ``init`` fine-tunes from the ``stage``
    weights of a run folder or ``.pt`` file.  Under ``torchrun`` every rank calls this; rank 0
    writes the files.  ``epoch_scorer(net)``, when given, measures the net on detection after each
    epoch (``metrics["detection"]``); ``best_by: detection`` needs it (the pipeline builds it from
    the held-out WIDER images).
    """
    check_stage(stage)
    if cfg.stage(stage).best_by == "detection" and epoch_scorer is None:
        raise UserError(f"train.{stage}.best_by: detection needs the held-out WIDER images to measure on "
                        "(data.wider_root with data.val_fraction > 0, run through mtcnn-train pipeline or "
                        f"mtcnn-train {stage})")
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

    device = distributed.rank_device(cfg.stage(stage).device, ctx)
    distributed.init_process_group(ctx, device)
    try:
        # Every rank has read the folder before rank 0 changes it.
        distributed.barrier(ctx)
        if ctx.is_main:
            prepare_folder(paths)
        distributed.barrier(ctx)
        if start == "done":
            # A finished stage was resumed: make sure its weights file exists, then report.
            if ctx.is_main and not paths.weights.is_file():
                publish_weights(paths)
            return final_metrics(stage, Progress.from_state(saved_state))
        run = prepare_run(stage, cfg, sample_dirs, ctx, init=init if start == "fresh" else None, device=device)
        # --force clears the old stage only now, once the samples and --init weights have loaded:
        # a run that cannot start leaves the finished stage as it was.
        distributed.barrier(ctx)
        if ctx.is_main and force:
            clear_stage_outputs(paths)
        distributed.barrier(ctx)
        return train(run, paths, saved_state, epoch_scorer)
    finally:
        distributed.shutdown(ctx)


def train(run: StageRun, paths: StagePaths, saved_state: dict[str, Any] | None = None,
          epoch_scorer: EpochScorer | None = None) -> dict[str, Any]:
    """Run (or continue, from ``saved_state``) the epochs of a built run; returns the final metrics."""
    cfg, ctx = run.train_cfg, run.ctx
    sums = MetricSums(run.device)
    progress = Progress()
    if saved_state is not None:
        progress, saved_sums = restore_training_state(run, saved_state, paths.last)
        # The saved sums are every rank's together: rank 0 carries them on, the others restart at 0.
        if ctx.is_main:
            sums.values.copy_(saved_sums.to(run.device))
    global_step = progress.epoch * run.steps_per_epoch + progress.step_in_epoch
    log = TrainingLog(run, paths.tensorboard, purge_step=global_step if saved_state is not None else None)
    if ctx.is_main:
        save_config(run.cfg, paths.config)
    residency = "resident on" if run.data.resident else "streamed to"
    log.message(f"{run.stage}: {len(run.train_indices)} training / {len(run.val_indices)} validation samples, "
                f"{residency} {run.device}, batch {run.batch_size} x {run.steps_per_epoch} steps per epoch"
                f"{f', {ctx.world_size} processes' if ctx.enabled else ''}"
                f"{f', resuming at epoch {progress.epoch + 1} step {progress.step_in_epoch}' if saved_state else ''}")
    try:
        for epoch in range(progress.epoch, cfg.epochs):
            progress.epoch = epoch
            first_step = progress.step_in_epoch
            log.start_epoch(epoch, first_step, sums)
            epoch_start = time.perf_counter()
            for step, _ in engine.train_steps(run, epoch, first_step, run.steps_per_epoch, sums):
                global_step += 1
                log.step_done(global_step, sums)
                every = cfg.checkpoint_every_steps
                if every and global_step % every == 0 and step + 1 < run.steps_per_epoch:
                    progress.step_in_epoch = step + 1
                    total = distributed.all_reduce_sum(sums.values.clone(), ctx)
                    if ctx.is_main:
                        save_checkpoint(paths.last, training_state(run, progress, total))
            log.end_epoch()
            train_seconds = time.perf_counter() - epoch_start

            distributed.all_reduce_sum(sums.values, ctx)
            train_metrics = sums.summary()
            if not math.isfinite(train_metrics["loss"]):
                # Nothing after this can be trusted; the epochs kept so far (best.pt, last.pt) stay.
                raise UserError(f"{run.stage}: training diverged in epoch {epoch + 1} (mean loss "
                                f"{train_metrics['loss']}); lower train.{run.stage}.lr (now {run.lr:g}) or check the "
                                "sample set's targets (mtcnn-train samples inspect)")
            val_metrics = engine.evaluate(run) if len(run.val_indices) else None
            record = {
                "epoch": epoch + 1,
                "lr": run.lr,
                "samples_per_sec": (run.steps_per_epoch - first_step) * run.batch_size / max(train_seconds, 1e-9),
                "train": train_metrics,
                "val": val_metrics,
            }
            if epoch_scorer is not None:
                # Every rank measures (the cascade is deterministic), so all agree on the best epoch.
                record["detection"] = epoch_scorer(run.eval_net)
            progress.history.append(record)
            log.epoch_record(record)

            score = selection_score(cfg.best_by, _ranked_metrics(record), epoch + 1)
            improved = replaces_kept_epoch(cfg, progress, record, score)
            if improved:
                progress.best_loss, progress.best_epoch = score, epoch + 1
            progress.epoch, progress.step_in_epoch = epoch + 1, 0
            progress.finished = epoch + 1 == cfg.epochs
            sums.reset()
            if ctx.is_main:
                if improved:
                    save_checkpoint(paths.best, best_weights(run, record, epoch + 1))
                save_checkpoint(paths.last, training_state(run, progress, sums.values))
                write_metrics_jsonl(paths.metrics, progress.history)
        if ctx.is_main:
            publish_weights(paths)
    finally:
        log.close()
    return final_metrics(run.stage, progress)


def _ranked_metrics(record: dict[str, Any]) -> dict[str, Any]:
    """What an epoch is ranked on: its validation metrics (training ones without a validation
    split) and its detection measure."""
    return {**(record.get("val") or record["train"]), "detection": record.get("detection")}


def replaces_kept_epoch(cfg: StageTrainConfig, progress: Progress, record: dict[str, Any], score: float) -> bool:
    """Whether the epoch of ``record`` (ranked ``score``, lower is better, already in
    ``progress.history``) becomes the kept one (``best.pt``).

    Without ``best_by_tolerance``: when its score beats the kept epoch's.  With it: when it beats
    the kept epoch's by more than the tolerance, or comes within the tolerance of both the kept
    epoch and the best epoch so far with a lower ``best_by_tie_break`` loss.  The kept epoch so
    always lies within the tolerance of the best score seen.  (O-Net's AP on 97 validation images
    moves by more than 0.005 from epoch to epoch while its landmark error keeps falling: ranked by
    AP alone, an early epoch with clearly worse landmarks can win by a face or two.)
    """
    if progress.best_loss is None:
        return True
    tolerance = cfg.best_by_tolerance
    if tolerance <= 0:
        return score < progress.best_loss
    if score < progress.best_loss - tolerance:
        return True
    best_so_far = min(selection_score(cfg.best_by, _ranked_metrics(r), r["epoch"]) for r in progress.history)
    if score > progress.best_loss + tolerance or score > best_so_far + tolerance:
        return False
    kept = next(r for r in progress.history if r["epoch"] == progress.best_epoch)
    tie_new, tie_kept = (_ranked_metrics(r).get(cfg.best_by_tie_break) for r in (record, kept))
    if tie_new is None or tie_kept is None or not (math.isfinite(tie_new) and math.isfinite(tie_kept)):
        return score < progress.best_loss
    return tie_new < tie_kept


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


def final_metrics(stage: str, progress: Progress) -> dict[str, Any]:
    """What :func:`train_stage` returns: the last epoch's metrics and the best epoch's."""
    last = progress.history[-1] if progress.history else {}
    best = next((r for r in progress.history if r["epoch"] == progress.best_epoch), last)
    return {"stage": stage, "epoch": last.get("epoch"), "train": last.get("train"), "val": last.get("val"),
            "best_epoch": progress.best_epoch, "best_val": best.get("val"), "best_loss": progress.best_loss,
            "best_detection": best.get("detection")}
