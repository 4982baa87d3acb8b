"""Options and helpers shared by the commands."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import click

from mtcnn_train import __version__
from mtcnn_train.config import Config, load_config
from mtcnn_train.errors import UserError
from mtcnn_train.folder_lock import LOCK_FILE, FolderLock


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="mtcnn-train")
def cli() -> None:
    """Train MTCNN face detectors end to end: samples, P-Net, R-Net, O-Net, evaluation."""


def config_options(func: Callable) -> Callable:
    """``--config FILE`` and repeatable ``--set section.key=value``, on every command."""
    func = click.option("--set", "overrides", multiple=True, metavar="SECTION.KEY=VALUE",
                        help="Override one config value (repeatable), e.g. --set train.pnet.lr=0.01.")(func)
    func = click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
                        help="YAML config (default: the paper's settings, configs/default.yaml).")(func)
    return func


def get_config(config_path: Path | None, overrides: tuple[str, ...]) -> Config:
    return load_config(config_path, list(overrides))


#: Locks this process holds on its output folders; released when the command ends (cli.main).
_held_locks: list[FolderLock] = []


def lock_output_dir(path: Path) -> Path:
    """Create the output folder and take its lock for the rest of the command.

    Two commands writing into one folder at once would mix or lose each other's work, so the
    second one stops with "folder in use by process N".  Under torchrun only rank 0 takes it:
    the other ranks of the same run write into the same folder by design.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UserError(f"{path}: exists and is not a folder")
    if os.environ.get("RANK", "0") == "0":
        lock = FolderLock(path)
        _held_locks.append(lock)
        context = click.get_current_context(silent=True)
        if context is not None:  # released when the command ends, also when called without main()
            context.call_on_close(lock.release)
    else:
        path.mkdir(parents=True, exist_ok=True)
    return path


def release_output_locks() -> None:
    while _held_locks:
        _held_locks.pop().release()


def prepare_output_dir(path: Path, force: bool, resume_ok: bool = True) -> Path:
    """Refuse to overwrite a non-empty output folder unless resuming is allowed or --force is given,
    then lock it (:func:`lock_output_dir`).

    Commands whose stages resume from what a folder holds pass ``resume_ok=True``: rerunning the
    same command continues the work.  Nothing is ever deleted here.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UserError(f"{path}: exists and is not a folder")
    held = path.is_dir() and any(p.name != LOCK_FILE for p in path.iterdir())
    if held and not (resume_ok or force):
        raise UserError(f"{path}: folder is not empty; pass --force to write into it")
    return lock_output_dir(path)
