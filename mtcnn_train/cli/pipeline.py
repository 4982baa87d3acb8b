"""Whole-pipeline commands: ``demo`` and ``pipeline``."""
from __future__ import annotations

import click

from mtcnn_train.cli import cli
from mtcnn_train.cli.common import not_built


@cli.command("demo", context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
def demo() -> None:
    """Run the whole pipeline on the embedded synthetic data."""
    not_built("demo", "issue 7")


@cli.command("pipeline", context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
def pipeline() -> None:
    """Run every stage of a config in order, resuming where it stopped."""
    not_built("pipeline", "issue 7")
