"""Options and helpers shared by the commands."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import click

from mtcnn_train.config import Config, load_config
from mtcnn_train.errors import UserError


def config_options(func: Callable) -> Callable:
    """``--config FILE`` and repeatable ``--set section.key=value``, on every command."""
    func = click.option("--set", "overrides", multiple=True, metavar="SECTION.KEY=VALUE",
                        help="Override one config value (repeatable), e.g. --set train.pnet.lr=0.01.")(func)
    func = click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
                        help="YAML config (default: the paper's settings, configs/default.yaml).")(func)
    return func


def get_config(config_path: Path | None, overrides: tuple[str, ...]) -> Config:
    return load_config(config_path, list(overrides))


def not_built(name: str, issue: str) -> None:
    """Commands whose issue has not landed yet say so and exit 2."""
    raise UserError(f"'{name}' is not built yet ({issue})")


def prepare_output_dir(path: Path, force: bool, resume_ok: bool = True) -> Path:
    """Refuse to overwrite a non-empty output folder unless resuming is allowed or --force is given.

    Commands whose stages resume from what a folder holds pass ``resume_ok=True``: rerunning the
    same command continues the work.  Nothing is ever deleted here.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UserError(f"{path}: exists and is not a folder")
    if path.is_dir() and any(path.iterdir()) and not (resume_ok or force):
        raise UserError(f"{path}: folder is not empty; pass --force to write into it")
    path.mkdir(parents=True, exist_ok=True)
    return path
