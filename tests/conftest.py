"""Shared fixtures.  The core suite builds its own data; tests marked ``shared_data`` read
``../shared/data`` (or ``$MTCNN_SHARED_DATA``) and skip with a clear reason when it is absent.

No test may change an input: the data the tests read from outside their temporary folders (the
tests' own files, the packaged configs, the shared data when present) is hashed before the first
test and after the last, and the session fails if any file changed, appeared or went away.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from tests.file_hashes import changed_files, tree_digest

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
        # This checkout's code, whatever copy of the package the interpreter has installed.
        full_env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), full_env.get("PYTHONPATH")]))
        return subprocess.run([sys.executable, "-m", "mtcnn_train", *map(str, args)], capture_output=True,
                              text=True, check=check, timeout=timeout, env=full_env)

    return run


@pytest.fixture(scope="session", autouse=True)
def test_data_unchanged():
    """Hash the test data before the first test and after the last (see the module docstring)."""
    roots = [REPO_ROOT / "tests", REPO_ROOT / "mtcnn_train" / "configs"]
    if SHARED_DATA.is_dir():
        roots.append(SHARED_DATA)
    before = tree_digest(*roots)
    yield
    changed = changed_files(before, tree_digest(*roots))
    assert not changed, f"the tests changed {len(changed)} input file(s): {changed[:5]}"
