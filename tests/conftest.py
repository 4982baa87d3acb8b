"""Shared fixtures.  The core suite builds its own data; tests marked ``shared_data`` read
``../shared/data`` (or ``$MTCNN_SHARED_DATA``) and skip with a clear reason when it is absent."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("MTCNN_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


def shared_path(*parts: str) -> Path:
    """A path under the shared research data; skips the test when it is not there."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"shared research data not found at {path} (set MTCNN_SHARED_DATA)")
    return path


@pytest.fixture
def cli_runner():
    """Run ``mtcnn-train`` in a subprocess, as a user would; returns CompletedProcess."""
    import subprocess

    def run(*args: str, check: bool = False, timeout: float = 600, env: dict | None = None):
        full_env = dict(os.environ, **(env or {}))
        return subprocess.run([sys.executable, "-m", "mtcnn_train", *map(str, args)], capture_output=True,
                              text=True, check=check, timeout=timeout, env=full_env)

    return run
