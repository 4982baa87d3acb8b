"""PNG plots of evaluation curves (matplotlib's Agg canvas; no display, no global pyplot state)."""
from __future__ import annotations

import io
from pathlib import Path
from typing import Sequence

import numpy as np

from mtcnn_train.io import atomic_write_bytes


def _figure(width: float = 7.0, height: float = 5.0):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: str | Path) -> None:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    atomic_write_bytes(path, buf.getvalue())


def _step_curve(roc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ROC rows ``(tpr, fp, ...)`` sorted by false positives, keeping the best TPR at each count."""
    roc = np.asarray(roc, dtype=np.float64)
    if len(roc) == 0:
        return np.zeros(0), np.zeros(0)
    order = np.lexsort((roc[:, 0], roc[:, 1]))
    fp, tpr = roc[order, 1], roc[order, 0]
    # Best rate reachable with at most this many false positives.
    return fp, np.maximum.accumulate(tpr)


def _finish(fig, ax, path: str | Path, *, xlim: tuple[float, float], ylim: tuple[float, float], xlabel: str,
            ylabel: str, title: str, legend: str | None) -> None:
    """Limits, labels, grid and legend (when there are curves), then write the PNG."""
    ax.set_xlim(*xlim)
    ax.set_ylim(*ylim)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    if legend:
        ax.legend(loc=legend)
    _save(fig, path)


def plot_roc(path: str | Path, curves: Sequence[tuple[str, np.ndarray]], title: str = "FDDB ROC",
             max_fp: float | None = None) -> None:
    """FDDB-style ROC: true positive rate against the number of false positives.

    ``curves`` are ``(label, rows)`` with rows ``(tpr, fp[, threshold])`` as in DiscROC files.
    The x axis ends at ``max_fp`` (default: the largest false-positive count, at most 2000, the
    range FDDB results are usually compared over).
    """
    fig = _figure()
    ax = fig.add_subplot(1, 1, 1)
    largest = 0.0
    for label, roc in curves:
        fp, tpr = _step_curve(roc)
        if len(fp):
            ax.step(fp, tpr, where="post", label=label, linewidth=1.8)
            largest = max(largest, float(fp.max()))
    _finish(fig, ax, path, xlim=(0, max_fp if max_fp is not None else min(max(10.0, largest * 1.05), 2000.0)),
            ylim=(0, 1), xlabel="False positives", ylabel="True positive rate", title=title,
            legend="lower right" if curves else None)


def plot_pr(path: str | Path, curves: Sequence[tuple[str, np.ndarray, np.ndarray, float]],
            title: str = "WIDER FACE precision-recall") -> None:
    """Precision-recall curves; ``curves`` are ``(label, precision, recall, ap)``."""
    fig = _figure()
    ax = fig.add_subplot(1, 1, 1)
    for label, precision, recall, ap in curves:
        precision = np.nan_to_num(np.asarray(precision, dtype=np.float64), nan=0.0)
        recall = np.asarray(recall, dtype=np.float64)
        name = f"{label} (AP {ap:.3f})" if ap == ap else f"{label} (no faces)"
        ax.plot(recall, precision, label=name, linewidth=1.8)
    _finish(fig, ax, path, xlim=(0, 1), ylim=(0, 1.01), xlabel="Recall", ylabel="Precision", title=title,
            legend="lower left" if curves else None)


def plot_ced(path: str | Path, curves: Sequence[tuple[str, np.ndarray]], max_error: float = 0.3,
             title: str = "Landmark cumulative error distribution") -> None:
    """Share of faces (y) whose normalised mean landmark error is at most x; ``curves`` are
    ``(label, per-face errors)``.  The legend gives each curve's mean error."""
    fig = _figure()
    ax = fig.add_subplot(1, 1, 1)
    for label, errors in curves:
        errors = np.sort(np.asarray(errors, dtype=np.float64))
        if len(errors) == 0:
            continue
        share = np.arange(1, len(errors) + 1) / len(errors)
        ax.step(np.concatenate([[0.0], errors]), np.concatenate([[0.0], share]), where="post",
                label=f"{label} (NME {errors.mean():.4f})", linewidth=1.8)
    _finish(fig, ax, path, xlim=(0, max_error), ylim=(0, 1), xlabel="Mean error / inter-ocular distance",
            ylabel="Share of faces", title=title, legend="lower right" if curves else None)


def plot_training_curves(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """Loss and validation accuracy per epoch of every stage in a run folder, as one PNG.

    Reads ``RUN_DIR/<stage>/metrics.jsonl`` (the same figures the TensorBoard scalars hold).
    """
    import json

    run_dir = Path(run_dir)
    stages = [s for s in ("pnet", "rnet", "onet") if (run_dir / s / "metrics.jsonl").is_file()]
    if not stages:
        from mtcnn_train.errors import UserError

        raise UserError(f"{run_dir}: no <stage>/metrics.jsonl to plot")
    fig = _figure(11.0, 4.0)
    loss_ax, acc_ax = fig.subplots(1, 2)
    for stage in stages:
        rows = [json.loads(line) for line in (run_dir / stage / "metrics.jsonl").read_text().splitlines() if line.strip()]
        epochs = [r["epoch"] for r in rows]
        loss_ax.plot(epochs, [r["train"]["loss"] for r in rows], label=f"{stage} train")
        loss_ax.plot(epochs, [r["val"]["loss"] for r in rows], "--", label=f"{stage} validation")
        acc_ax.plot(epochs, [r["val"]["accuracy"] for r in rows], marker="o", label=stage)
    loss_ax.set(xlabel="epoch", ylabel="weighted loss", title="loss")
    acc_ax.set(xlabel="epoch", ylabel="validation accuracy (positives vs negatives)", title="face accuracy")
    for ax in (loss_ax, acc_ax):
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    target = Path(out) if out is not None else run_dir / "training_curves.png"
    _save(fig, target)
    return target
