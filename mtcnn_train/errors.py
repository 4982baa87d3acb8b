"""Errors a user can act on.

Every problem with user input (annotation files, images, configs, command-line values) is raised
as a :class:`UserError`.  The CLI prints ``error: <message>`` on one line and exits with status 2,
never a traceback.  Messages name the file and, where there is one, the line.
"""
from __future__ import annotations

from pathlib import Path


class UserError(Exception):
    """A problem with the user's input: printed as one line, no traceback."""

    def __init__(self, message: str = "") -> None:
        # Values quoted from user input may hold line breaks; escape them to keep one line.
        message = str(message).replace("\r", "\\r").replace("\n", "\\n")
        super().__init__(message)


class MtcnnWarning(UserWarning):
    """Something the user should know that does not stop the run: the CLI prints ``warning: <message>``
    on one line (other libraries' warnings keep Python's format)."""


def at(path: str | Path, line: int | None = None) -> str:
    """Format a location as ``path:line`` (or just ``path``) for error messages."""
    return f"{path}:{line}" if line is not None else str(path)


def first_line(exc: BaseException, limit: int = 200) -> str:
    """The first line of an exception's message (at most ``limit`` characters), or its class name:
    how a library's multi-line error is quoted inside one of ours."""
    text = str(exc).strip()
    return text.splitlines()[0][:limit] if text else exc.__class__.__name__


def os_error_message(exc: OSError) -> str:
    """One line for a failed file operation: the path(s) and the system's reason (errno text)."""
    reason = exc.strerror or str(exc) or exc.__class__.__name__
    paths = [str(p) for p in (exc.filename, exc.filename2) if p is not None]
    return f"{' -> '.join(paths)}: {reason}" if paths else reason


class AnnotationError(UserError):
    """A malformed annotation file; names the file and the 1-based line."""

    def __init__(self, path: str | Path, line: int | None, message: str):
        self.path = Path(path)
        self.line = line
        self.reason = message
        super().__init__(f"{at(path, line)}: {message}")


class ConfigError(UserError):
    """A config file or ``--set`` override that does not validate."""


class ImageError(UserError):
    """An image that cannot be used (missing, corrupt, unsupported)."""
