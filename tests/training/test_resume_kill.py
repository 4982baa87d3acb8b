"""A real SIGKILL in the middle of an epoch, then --resume: the same final weights as a run never stopped."""
from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.training.conftest import write_tiny_samples

SETTINGS = {"epochs": 2, "batch_size": 8, "checkpoint_every_steps": 10, "threads": 1, "val_fraction": 0.1,
            "log_every_steps": 20, "lr": 0.003}


def _command(samples: Path, out: Path, *extra: str) -> list[str]:
    sets = [arg for key, value in SETTINGS.items() for arg in ("--set", f"train.pnet.{key}={value}")]
    return [sys.executable, "-m", "mtcnn_train", "pnet", "--samples", str(samples), "--out", str(out), *sets, *extra]


def _read_state(path: Path):
    try:
        return torch.load(path, weights_only=True)
    except (OSError, RuntimeError, EOFError, ValueError, pickle.UnpicklingError):
        return None  # replaced while we read it; try again


def _kill_after_mid_epoch_checkpoint(command: list[str], last: Path, timeout: float = 300) -> dict:
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    seen_mtime = None
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise AssertionError(f"training ended before a mid-epoch checkpoint was seen:\n{process.stderr.read()}")
            if last.is_file() and last.stat().st_mtime_ns != seen_mtime:
                seen_mtime = last.stat().st_mtime_ns
                state = _read_state(last)
                if state is not None and state["step_in_epoch"] > 0:
                    os.kill(process.pid, signal.SIGKILL)
                    break
            time.sleep(0.005)
        else:
            raise AssertionError("no mid-epoch checkpoint within the time limit")
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()
    assert process.returncode == -signal.SIGKILL
    return torch.load(last, weights_only=True)


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_matches_the_uninterrupted_run(tmp_path):
    samples = write_tiny_samples(tmp_path / "samples", count=2000, size=12, images_per_source=20)

    full = tmp_path / "full"
    subprocess.run(_command(samples, full), check=True, capture_output=True, timeout=300)

    killed = tmp_path / "killed"
    state = _kill_after_mid_epoch_checkpoint(_command(samples, killed), killed / "pnet" / "last.pt")
    assert state["step_in_epoch"] > 0 and not state["finished"], "the kill should land mid-epoch"
    assert not (killed / "pnet.pt").exists()

    # Without --resume the unfinished run is protected.
    refused = subprocess.run(_command(samples, killed), capture_output=True, text=True, timeout=300)
    assert refused.returncode == 2 and "--resume" in refused.stderr

    resumed = subprocess.run(_command(samples, killed, "--resume"), capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr

    for name in ("pnet.pt", "pnet/last.pt", "pnet/best.pt"):
        a = torch.load(full / name, weights_only=True)
        b = torch.load(killed / name, weights_only=True)
        assert a["model"].keys() == b["model"].keys()
        for key, tensor in a["model"].items():
            assert torch.equal(tensor, b["model"][key]), f"{name}: {key} differs"
    a = torch.load(full / "pnet/last.pt", weights_only=True)
    b = torch.load(killed / "pnet/last.pt", weights_only=True)
    for index, param_state in a["optimizer"]["state"].items():
        for name, value in param_state.items():
            assert torch.equal(value, b["optimizer"]["state"][index][name])
    # The metrics of the interrupted epoch carry over exactly (only the measured speed differs).
    for record_a, record_b in zip(a["history"], b["history"], strict=True):
        assert record_a["train"] == record_b["train"] and record_a["val"] == record_b["val"]
    assert len((killed / "pnet/metrics.jsonl").read_text().splitlines()) == SETTINGS["epochs"]
