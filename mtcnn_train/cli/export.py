"""``export``: ONNX and TorchScript models."""
from __future__ import annotations

import click

from mtcnn_train.cli import cli
from mtcnn_train.cli.common import not_built


@cli.command("export", context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
def export() -> None:
    """Export the three nets as ONNX or TorchScript."""
    not_built("export", "issue 9")
