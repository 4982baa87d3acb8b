"""Evaluation commands: ``eval fddb`` and ``eval wider``."""
from __future__ import annotations

import click

from mtcnn_train.cli import cli
from mtcnn_train.cli.common import not_built


@cli.group("eval")
def eval_group() -> None:
    """Score a detector on FDDB (official protocol) or WIDER FACE (average precision)."""


@eval_group.command("fddb", context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
def eval_fddb() -> None:
    """FDDB ROC, scored like the official evaluate program."""
    not_built("eval fddb", "issue 6")


@eval_group.command("wider", context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
def eval_wider() -> None:
    """WIDER FACE average precision (official protocol)."""
    not_built("eval wider", "issue 6")
