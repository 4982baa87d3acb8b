"""In-process runs of the real ``mtcnn-train`` entry point (``cli.main``): same code path as the
console script without paying an interpreter start (and a torch import) per call."""
from __future__ import annotations

from types import SimpleNamespace

import pytest


@pytest.fixture
def run_cli(capsys):
    from mtcnn_train.cli import main

    def run(*args):
        capsys.readouterr()
        try:
            main([str(a) for a in args])
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        captured = capsys.readouterr()
        return SimpleNamespace(returncode=code, stdout=captured.out, stderr=captured.err)

    return run
