"""The whole pipeline: samples -> P-Net -> mining -> R-Net -> mining -> O-Net -> evaluation.

:func:`run_pipeline` runs every stage of a config in order inside one run folder and resumes where
it stopped: a finished sample set or trained stage is kept, an interrupted one continues (sample
sets by work unit, training from ``last.pt``).  :func:`run_demo` renders the embedded synthetic
data first and scores the result on its FDDB-format set; it is ``mtcnn-train demo``.

Run folder::

    RUN_DIR/config.yaml                 the resolved config
    RUN_DIR/samples/{pnet,rnet,onet}/   sample sets (shards + manifest)
    RUN_DIR/{pnet,rnet,onet}.pt         trained weights; RUN_DIR/<stage>/ logs, TensorBoard, last.pt
    RUN_DIR/eval/                       evaluation reports and plots
    RUN_DIR/summary.json                the final table
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from mtcnn_train.config import Config, config_from_dict, load_config, save_config
from mtcnn_train.stages import STAGES
from mtcnn_train.errors import UserError
from mtcnn_train.io import atomic_write_json, json_safe
from mtcnn_train.samples.labels import SAMPLE_TYPES

DEMO_CONFIG = Path(__file__).resolve().parent / "configs" / "demo.yaml"


@dataclass
class PipelineReport:
    """What each step did: wall time, sample counts, validation metrics, evaluation figures."""

    run_dir: Path
    seconds: dict[str, float] = field(default_factory=dict)
    samples: dict[str, dict[str, int]] = field(default_factory=dict)
    mining: dict[str, dict[str, Any]] = field(default_factory=dict)
    metrics: dict[str, dict[str, Any]] = field(default_factory=dict)
    evaluation: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"run_dir": str(self.run_dir), "seconds": self.seconds, "samples": self.samples,
                "mining": self.mining, "metrics": self.metrics, "evaluation": self.evaluation}

    def table(self) -> str:
        """The final table: samples per type and accuracy per net, then the evaluation figures."""
        head = f"{'stage':<6} {'negative':>9} {'positive':>9} {'part':>7} {'landmark':>9} {'val acc':>8} " \
               f"{'recall':>7} {'seconds':>8}"
        lines = [head, "-" * len(head)]
        for stage in STAGES:
            if stage not in self.samples and stage not in self.metrics:
                continue
            counts = self.samples.get(stage, {})
            val = (self.metrics.get(stage) or {}).get("best_val") or {}
            acc = val.get("accuracy")
            rec = val.get("recall")
            secs = self.seconds.get(f"samples-{stage}", 0.0) + self.seconds.get(stage, 0.0)
            lines.append(f"{stage:<6} " + " ".join(f"{counts.get(t, 0):>{w}}" for t, w in zip(SAMPLE_TYPES, (9, 9, 7, 9)))
                         + f" {_fmt(acc, 8)} {_fmt(rec, 7)} {secs:>8.1f}")
        for name, figures in self.evaluation.items():
            lines.append(f"{name}: " + ", ".join(f"{k} {_fmt(v)}" for k, v in figures.items()))
        lines.append(f"total wall time {sum(self.seconds.values()):.1f} s")
        return "\n".join(lines)


def _fmt(value: Any, width: int = 0) -> str:
    text = "-" if value is None else (f"{value:.4f}" if isinstance(value, float) else str(value))
    return f"{text:>{width}}" if width else text


def validation_records(cfg: Config) -> list[Any]:
    """The box-set images held out of every sample set (``data.val_fraction``, ``data.val_seed``):
    where checkpoints are chosen and the stages are diagnosed."""
    from mtcnn_train.datasets.formats import read_box_set
    from mtcnn_train.datasets.split import split_train_val

    box_set = read_box_set(cfg)
    if box_set is None:
        raise UserError("evaluation on the validation split needs a box set (data.wider_root or data.boxes)")
    _, val = split_train_val(box_set[0], cfg.data.val_fraction, cfg.data.val_seed)
    if not val:
        raise UserError("the validation split is empty (data.val_fraction is 0)")
    return val


def landmark_validation_records(cfg: Config) -> list[Any]:
    """The landmark faces held out of every sample set (``data.landmarks_val_fraction``)."""
    from mtcnn_train.datasets.split import split_train_val
    from mtcnn_train.samples.inputs import read_landmark_list

    if not cfg.data.landmarks or cfg.data.landmarks_val_fraction <= 0:
        return []
    records, _ = read_landmark_list(cfg)
    return split_train_val(records, cfg.data.landmarks_val_fraction, cfg.data.val_seed)[1]


def detection_scorer(stage: str, cfg: Config, run_dir: str | Path) -> Callable[[Any], dict[str, float]] | None:
    """The per-epoch detection measure for ``train.<stage>.best_by: detection`` (else None): the
    cascade, with the earlier stages from ``run_dir``, over the held-out WIDER images."""
    if cfg.stage(stage).best_by != "detection":
        return None
    from mtcnn_train.evaluation.stages import epoch_scorer

    return epoch_scorer(stage, run_dir, validation_records(cfg), cfg.detection)


def train_or_resume(stage: str, cfg: Config, sample_dir: Path, run_dir: Path,
                    init: Path | None = None) -> dict[str, Any]:
    """Train ``stage`` unless it is finished; continue an interrupted run from ``last.pt``.
    ``init``: a fresh stage starts from that run's ``<stage>.pt`` (fine-tuning)."""
    from mtcnn_train.checkpoint import load_checkpoint
    from mtcnn_train.training.trainer import train_stage

    weights = run_dir / f"{stage}.pt"
    last = run_dir / stage / "last.pt"
    if weights.is_file() and not last.is_file():
        # Weights from elsewhere (imported or copied in): keep them, there is no training to resume.
        return dict(load_checkpoint(weights).get("metrics") or {})
    return train_stage(stage, cfg, [sample_dir], run_dir, resume=last.is_file(), init=init,
                       epoch_scorer=detection_scorer(stage, cfg, run_dir))


def check_init_dir(init: Path, stages: tuple[str, ...], run_dir: Path) -> None:
    """Every stage to train has its starting weights in ``init``, which is not the run itself."""
    from mtcnn_train.checkpoint import stage_weights_path

    if init.resolve() == run_dir.resolve():
        raise UserError(f"--init {init}: is the run folder itself; give the run to start from")
    missing = [str(stage_weights_path(init, s)) for s in stages if not stage_weights_path(init, s).is_file()]
    if missing:
        raise UserError(f"--init {init}: no {', '.join(missing)} (e.g. mtcnn-train import-weights --from "
                        f"facenet-pytorch --out {init})")


def run_pipeline(cfg: Config, run_dir: str | Path, *, stages: tuple[str, ...] = STAGES, progress: bool = True,
                 echo: Callable[[str], None] = print, report: PipelineReport | None = None,
                 init: str | Path | None = None) -> PipelineReport:
    """Samples, training and mining for ``stages`` in order, in ``run_dir``; resumable.

    ``init`` (a run folder) fine-tunes: each stage starts from that run's weights, and R-Net and
    O-Net samples are mined with the stages fine-tuned here before them.
    """
    from mtcnn_train.samples.generate import generate_samples

    run_dir = Path(run_dir)
    if init is not None:
        init = Path(init)
        check_init_dir(init, stages, run_dir)
    config_file = run_dir / "config.yaml"
    if config_file.exists():  # an earlier pipeline run's is rewritten; anything else is not ours to replace
        try:
            load_config(config_file)
        except UserError:
            raise UserError(f"{config_file}: exists and is not a config an earlier pipeline run wrote; choose "
                            "another --out") from None
    run_dir.mkdir(parents=True, exist_ok=True)
    save_config(cfg, config_file)
    report = report or PipelineReport(run_dir)
    for number, stage in enumerate(stages):
        sample_dir = run_dir / "samples" / stage
        start = time.perf_counter()
        samples = generate_samples(cfg, sample_dir, stage, run_dir if stage != "pnet" else None, progress=progress)
        report.seconds[f"samples-{stage}"] = time.perf_counter() - start
        report.samples[stage] = dict(samples.counts)
        if samples.mining:
            report.mining[stage] = samples.mining
        counts = ", ".join(f"{samples.counts.get(t, 0)} {t}" for t in SAMPLE_TYPES)
        what = "mined" if stage != "pnet" else "cut"
        echo(f"[{2 * number + 1}/{2 * len(stages)}] {stage} samples {what}: {counts} "
             f"({report.seconds[f'samples-{stage}']:.0f} s)" + samples.mining_summary().replace("\n", "; "))

        start = time.perf_counter()
        metrics = train_or_resume(stage, cfg, sample_dir, run_dir, init)
        report.seconds[stage] = time.perf_counter() - start
        report.metrics[stage] = json_safe(metrics)
        val = (metrics.get("best_val") or {})
        echo(f"[{2 * number + 2}/{2 * len(stages)}] {stage} trained: validation accuracy "
             f"{_fmt(val.get('accuracy'))}, recall {_fmt(val.get('recall'))}, precision {_fmt(val.get('precision'))} "
             f"({report.seconds[stage]:.0f} s)")
    from mtcnn_train.evaluation.plots import plot_training_curves

    plot_training_curves(run_dir)
    atomic_write_json(run_dir / "summary.json", report.to_json())
    return report


def evaluate_fddb_set(cfg: Config, run_dir: Path, fddb_root: Path, *, echo: Callable[[str], None] = print,
                      stages: tuple[str, ...] = STAGES) -> dict[str, Any]:
    """Score the cascade on every FDDB fold present under ``fddb_root``; returns TPR at fp_points."""
    from mtcnn_train.datasets.fddb import present_folds, read_fddb
    from mtcnn_train.detection.cascade import Cascade
    from mtcnn_train.evaluation.fddb import evaluate_fddb_with_detector
    from mtcnn_train.detection.runner import detector_fingerprint

    folds = present_folds(fddb_root)
    if not folds:
        raise UserError(f"{fddb_root}: no FDDB-folds/FDDB-fold-XX-ellipseList.txt found")
    records = read_fddb(fddb_root, folds)
    cascade = Cascade.from_run_dir(run_dir, cfg.detection, stages=stages[-1])
    out = run_dir / "eval" / "fddb"
    results = evaluate_fddb_with_detector(cascade, records, out, cfg, echo=echo,
                                          fingerprint=detector_fingerprint(run_dir, cfg.detection))
    rect = results["rectangles"]
    return {"faces": rect.num_faces, **{f"TPR@{fp}FP": tpr for fp, tpr in rect.tpr_at(cfg.evaluation.fp_points).items()},
            "roc_png": str(out / "roc.png")}


def run_demo(out_dir: str | Path, *, images: int = 200, seed: int = 0, overrides: tuple[str, ...] = (),
             config_path: str | Path | None = None, progress: bool = True,
             echo: Callable[[str], None] = print) -> PipelineReport:
    """``mtcnn-train demo``: synthetic data, the whole cascade, FDDB-protocol scoring, one table."""
    from mtcnn_train.synthetic import is_synthetic_set, make_synthetic, synthetic_config

    out_dir = Path(out_dir)
    data_dir = out_dir / "data"
    start = time.perf_counter()
    summary_file = data_dir / "summary.json"
    existing = json.loads(summary_file.read_text()) if is_synthetic_set(data_dir) else None
    if existing and existing.get("seed") == seed and existing.get("images") == images:
        echo(f"[0/6] synthetic data: already in {data_dir}")
    else:
        make_synthetic(data_dir, num_images=images, seed=seed, progress=progress)
        echo(f"[0/6] synthetic data rendered in {data_dir} ({time.perf_counter() - start:.0f} s)")
    seconds_data = time.perf_counter() - start

    base = load_config(config_path or DEMO_CONFIG, list(overrides))
    merged = base.to_dict()
    merged["data"].update(synthetic_config(data_dir)["data"])
    cfg = config_from_dict(merged, source=str(config_path or DEMO_CONFIG))
    run_dir = out_dir / "run"
    report = PipelineReport(run_dir)
    report.seconds["data"] = seconds_data
    run_pipeline(cfg, run_dir, progress=progress, echo=echo, report=report)

    start = time.perf_counter()
    report.evaluation["FDDB-format synthetic eval"] = evaluate_fddb_set(cfg, run_dir, Path(cfg.data.fddb_root), echo=echo)
    report.seconds["eval"] = time.perf_counter() - start
    atomic_write_json(run_dir / "summary.json", report.to_json())
    return report


def evaluate_validation_split(cfg: Config, run_dir: str | Path, stages: tuple[str, ...] = STAGES, *,
                              echo: Callable[[str], None] = print) -> dict[str, Any]:
    """WIDER-protocol AP on the held-out validation images for P, P+R and P+R+O cascades."""
    from mtcnn_train.datasets.wider import write_wider
    from mtcnn_train.detection.cascade import Cascade
    from mtcnn_train.detection.runner import detector_fingerprint
    from mtcnn_train.evaluation.wider import evaluate_wider_with_detector, ground_truth_from_records

    run_dir = Path(run_dir)
    val = validation_records(cfg)
    # The split written out in the official format, so `eval wider --annotations` can rescore it.
    write_wider(val, run_dir / "eval" / "wider_face_val_split_bbx_gt.txt")
    gt = ground_truth_from_records(val)
    results: dict[str, Any] = {}
    for k in range(1, len(stages) + 1):
        upto = stages[k - 1]
        name = "+".join(s[0].upper() for s in stages[:k])
        cascade = Cascade.from_run_dir(run_dir, cfg.detection, stages=upto)
        ap = evaluate_wider_with_detector(cascade, gt, run_dir / "eval" / f"wider_{upto}", cfg,
                                          fingerprint={**detector_fingerprint(run_dir, cfg.detection), "stages": upto},
                                          echo=echo)
        results[f"WIDER val AP ({name})"] = {setting: r.ap for setting, r in ap.items()}
    from mtcnn_train.evaluation.stages import diagnose_runs, write_report

    echo(write_report(run_dir / "eval" / "stages", diagnose_runs({"ours": run_dir}, val, cfg.detection,
                                                                  progress=False)))
    if "onet" in stages:
        from mtcnn_train.evaluation.landmarks import evaluate_landmark_records, evaluate_landmarks_run

        landmark_val = landmark_validation_records(cfg)
        if landmark_val:
            scores = evaluate_landmark_records(run_dir, landmark_val, run_dir / "eval" / "landmarks_val", cfg,
                                               source=f"{cfg.data.landmarks} (held-out validation faces)", echo=echo)
            for protocol, result in scores.items():
                results[f"landmark NME, validation split ({protocol} boxes)"] = {
                    "nme": result.nme, "failure_rate": result.failure_rate, "scored": result.scored,
                    "faces": result.faces}
        if cfg.data.landmarks_test:
            scores = evaluate_landmarks_run(run_dir, cfg.resolve_path(cfg.data.landmarks_test),
                                            run_dir / "eval" / "landmarks", cfg, fmt=cfg.data.landmarks_format,
                                            echo=echo)
            for protocol, result in scores.items():
                results[f"landmark NME, TEST set ({protocol} boxes)"] = {
                    "nme": result.nme, "failure_rate": result.failure_rate, "scored": result.scored,
                    "faces": result.faces}
    return results
