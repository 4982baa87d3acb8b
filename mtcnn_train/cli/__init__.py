"""The ``mtcnn-train`` command line: a thin layer over library functions.

Each command parses its options, loads the config and calls one library function; the logic lives
in the package so that a notebook can call it too.  Every :class:`~mtcnn_train.errors.UserError`
ends the command with one line on stderr and exit status 2, never a traceback; so does every
expected failure of the machine rather than the code (:func:`expected_failure`): a file operation
refused by the system (an unwritable or missing folder, a full disk, a read-only mount) and
running out of memory.  A traceback means a bug.
"""
from __future__ import annotations

import errno
import sys
import warnings
from typing import TextIO

import click

from mtcnn_train.cli.common import cli, release_output_locks
from mtcnn_train.errors import MtcnnWarning, UserError, first_line, os_error_message

# Each module registers its commands on the ``cli`` group of cli/common.py when imported.
from mtcnn_train.cli import data, samples, train, detect, evaluate, export, pipeline  # noqa: E402,F401


def expected_failure(exc: BaseException) -> str | None:
    """The one-line message of a failure the user can act on, or None for a bug (a traceback).

    ``OSError`` (which ``torch`` and ``numpy`` raise for their file operations too) names the
    path and the system's reason; out of memory (host or GPU) says so.
    """
    if isinstance(exc, OSError):
        message = os_error_message(exc)
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            message += "; free some space and run the same command again"
        return message
    if isinstance(exc, MemoryError):
        return "out of memory; use fewer workers, smaller batches or a larger machine"
    torch = sys.modules.get("torch")
    out_of_memory = getattr(torch, "OutOfMemoryError", None) if torch is not None else None
    if out_of_memory is not None and isinstance(exc, out_of_memory):
        return f"out of GPU memory ({first_line(exc) if str(exc) else 'no detail'}); lower the batch size"
    return None


def _close_progress_bars() -> None:
    """End the progress bars a failed command left open, so its error starts on a line of its own."""
    tqdm = sys.modules.get("tqdm")
    for bar in list(getattr(getattr(tqdm, "tqdm", None), "_instances", None) or ()):
        bar.close()


def _fail(message: object) -> None:
    _close_progress_bars()
    click.echo(f"error: {message}", err=True)
    sys.exit(2)


def _show_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                  file: TextIO | None = None, line: str | None = None) -> None:
    """Our warnings as one ``warning: ...`` line on stderr; other libraries' in Python's format."""
    if issubclass(category, MtcnnWarning):
        click.echo(f"warning: {message}", err=True)
    else:
        _python_show_warning(message, category, filename, lineno, file, line)


_python_show_warning = warnings.showwarning


def main(argv: list[str] | None = None) -> None:
    warnings.showwarning = _show_warning
    try:
        _run(argv)
    finally:
        release_output_locks()
    sys.exit(0)


def _run(argv: list[str] | None) -> None:
    try:
        cli.main(args=argv, prog_name="mtcnn-train", standalone_mode=False)
    except UserError as exc:
        _fail(exc)
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
    except Exception as exc:  # noqa: BLE001 - sorted into expected failures and bugs
        message = expected_failure(exc)
        if message is None:
            raise
        _fail(UserError(message))
