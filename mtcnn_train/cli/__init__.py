"""The ``mtcnn-train`` command line: a thin layer over library functions.

Each command parses its options, loads the config and calls one library function; the logic lives
in the package so that a notebook can call it too.  Every :class:`~mtcnn_train.errors.UserError`
ends the command with one line on stderr and exit status 2, never a traceback.
"""
from __future__ import annotations

import sys

import click

from mtcnn_train import __version__
from mtcnn_train.errors import UserError


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="mtcnn-train")
def cli() -> None:
    """Train MTCNN face detectors end to end: samples, P-Net, R-Net, O-Net, evaluation."""


# Each module registers its commands on ``cli`` when imported.
from mtcnn_train.cli import data, samples, train, detect, evaluate, export, pipeline  # noqa: E402,F401


def main(argv: list[str] | None = None) -> None:
    try:
        cli.main(args=argv, prog_name="mtcnn-train", standalone_mode=False)
    except UserError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)
    sys.exit(0)
