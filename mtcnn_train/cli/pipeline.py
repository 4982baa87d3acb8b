"""Whole-pipeline commands: ``demo`` and ``pipeline``."""
from __future__ import annotations

import time
from pathlib import Path

import click

from mtcnn_train.cli.common import cli, config_options, get_config, lock_output_dir
from mtcnn_train.stages import STAGES, earlier_stages


@cli.command("demo")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("demo-out"), show_default=True,
              help="Folder for the synthetic data and the run; rerunning resumes.")
@click.option("--images", type=click.IntRange(min=8), default=200, show_default=True,
              help="Synthetic training images to render.")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--quiet", is_flag=True, help="No progress bars, only the stage lines and the table.")
@config_options
def demo(out: Path, images: int, seed: int, quiet: bool, config_path: Path | None, overrides: tuple[str, ...]) -> None:
    """Run the whole pipeline on the embedded synthetic data and print a table.

    Renders the synthetic set, cuts P-Net samples, trains P-Net, mines and trains R-Net and
    O-Net, then scores the cascade on the synthetic FDDB-format set (ROC PNG in OUT/run/eval/fddb).
    """
    from mtcnn_train.pipeline import run_demo

    lock_output_dir(out)
    report = run_demo(out, images=images, seed=seed, overrides=overrides, config_path=config_path,
                      progress=not quiet, echo=click.echo)
    click.echo("")
    click.echo(report.table())
    click.echo(f"ROC plot: {out / 'run' / 'eval' / 'fddb' / 'roc.png'}")


@cli.command("pipeline")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Run folder; rerunning the same command resumes where it stopped.")
@click.option("--stages", type=click.Choice(STAGES), default="onet", show_default=True,
              help="Last stage to train.")
@click.option("--eval/--no-eval", "evaluate", default=True, show_default=True,
              help="Score P, P+R and P+R+O with the WIDER protocol on the held-out validation images.")
@click.option("--init", type=click.Path(file_okay=False, path_type=Path), default=None, metavar="RUN_DIR",
              help="Fine-tune: each stage starts from RUN_DIR's weights (e.g. from import-weights); mining "
                   "uses the stages fine-tuned before it.  See configs/finetune-example.yaml.")
@click.option("--quiet", is_flag=True)
@config_options
def pipeline(out: Path, stages: str, evaluate: bool, init: Path | None, quiet: bool, config_path: Path | None,
             overrides: tuple[str, ...]) -> None:
    """Run every stage of a config in order (samples, P-Net, mining, R-Net, mining, O-Net, eval)."""
    from mtcnn_train.io import atomic_write_json
    from mtcnn_train.pipeline import evaluate_validation_split, run_pipeline

    cfg = get_config(config_path, overrides)
    chosen = (*earlier_stages(stages), stages)
    lock_output_dir(out)
    report = run_pipeline(cfg, out, stages=chosen, progress=not quiet, echo=click.echo, init=init)
    if evaluate:
        start = time.perf_counter()
        report.evaluation.update(evaluate_validation_split(cfg, out, chosen, echo=click.echo))
        report.seconds["eval"] = time.perf_counter() - start
        atomic_write_json(out / "summary.json", report.to_json())
    click.echo("")
    click.echo(report.table())
