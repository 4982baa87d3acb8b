"""Two-process training with torchrun on the CPU (gloo): both ranks end with identical weights."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mtcnn_train.nets import build_net

from tests.training.conftest import write_tiny_samples


@pytest.mark.slow
def test_torchrun_two_processes_keep_identical_weights(tmp_path):
    samples = write_tiny_samples(tmp_path / "samples", count=400, size=12)
    out, dump = tmp_path / "run", tmp_path / "dump"
    sets = {"epochs": 2, "batch_size": 32, "threads": 1, "val_fraction": 0.2, "log_every_steps": 2,
            "checkpoint_every_steps": 3}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               str(Path(__file__).with_name("ddp_rank_dump.py")), "pnet", "--samples", str(samples), "--out", str(out),
               *[arg for key, value in sets.items() for arg in ("--set", f"train.pnet.{key}={value}")]]
    dump.mkdir()
    env = {**os.environ, "DUMP_DIR": str(dump), "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(Path(__file__).resolve().parents[2]), os.environ.get("PYTHONPATH")]))}
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-3000:]

    rank0 = torch.load(dump / "rank0.pt", weights_only=True)["model"]
    rank1 = torch.load(dump / "rank1.pt", weights_only=True)["model"]
    saved = torch.load(out / "pnet" / "last.pt", weights_only=True)
    assert saved["world_size"] == 2
    torch.manual_seed(0)
    initial = build_net("pnet").state_dict()
    for key, tensor in rank0.items():
        assert torch.equal(tensor, rank1[key]), key
        assert torch.equal(tensor, saved["model"][key]), key
    assert any(not torch.equal(rank0[k], initial[k]) for k in initial), "the weights never changed"
    # Only rank 0 writes: one summary line, one TensorBoard event file.
    assert result.stdout.count("pnet: trained") == 1
    assert len(list((out / "pnet" / "tb").glob("events.out.tfevents.*"))) == 1
