"""SIGKILL at seeded random points, rerun the same command, and end with the uninterrupted output.

For every long stage (P-Net sampling, R-Net mining, P/R/O-Net training, FDDB evaluation) the same
command is run once without interruption (the reference), then again in a fresh folder where each
attempt is killed with a real SIGKILL, either at a seeded random fault point (``MTCNN_FAULT_KILL_AT``:
the process kills itself with a temp file written but not yet renamed, the most dangerous moment)
or after a seeded random delay, and the command is rerun until it finishes.  At least 10 kills per
stage.  The final outputs must equal the reference's: no finished work lost, no sample duplicated,
no half-written file trusted.
"""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from mtcnn_train.checkpoint import save_checkpoint
from mtcnn_train.nets import build_net

pytestmark = pytest.mark.slow
KILLS_PER_STAGE = 10


def _run(args, env=None, timeout=300):
    full_env = dict(os.environ, **(env or {}))
    return subprocess.run([sys.executable, "-m", "mtcnn_train", *map(str, args)], capture_output=True, text=True,
                          env=full_env, timeout=timeout)


def _kill_after(args, delay: float) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "mtcnn_train", *map(str, args)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        proc.wait(timeout=delay)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        proc.wait()


def interrupted_run(args, seed: int, fault_points: int, duration: float) -> dict:
    """Kill the command KILLS_PER_STAGE times (fault points and delays), then let it finish."""
    rng = random.Random(seed)
    kills = {"fault_point": 0, "delay": 0}
    points = sorted(rng.sample(range(1, fault_points + 1), min(fault_points, KILLS_PER_STAGE // 2 + 1))) if fault_points else []
    for k in points:
        result = _run(args, env={"MTCNN_FAULT_KILL_AT": str(k)})
        if result.returncode == -signal.SIGKILL:
            kills["fault_point"] += 1
        else:
            assert result.returncode == 0, result.stderr[-2000:]
    while sum(kills.values()) < KILLS_PER_STAGE:
        # Delays past Python's start-up (about 2 s here), spread over the rest of the run.
        _kill_after(args, rng.uniform(1.5, max(2.0, duration)))
        kills["delay"] += 1
    final = _run(args)
    assert final.returncode == 0, final.stderr[-2000:]
    return kills


def _timed(args):
    start = time.perf_counter()
    result = _run(args)
    assert result.returncode == 0, result.stderr[-2000:]
    return time.perf_counter() - start


def _fault_points_of(args) -> int:
    """How many fault points one uninterrupted run passes (kill at a point it never reaches)."""
    from mtcnn_train import io as mio

    code = ("import os, sys, mtcnn_train.io as m, atexit;"
            "atexit.register(lambda: open(os.environ['FP_OUT'], 'w').write(str(m._fault_count)));"
            "from mtcnn_train.cli import main; sys.argv=['mtcnn-train'] + sys.argv[1:]; main()")
    out = Path(args[args.index("--out") + 1]).parent / "fault_points.txt" if "--out" in args else Path("fp.txt")
    env = dict(os.environ, MTCNN_FAULT_KILL_AT="1000000000", FP_OUT=str(out))
    result = subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True, env=env,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert mio  # imported for the attribute name above
    return int(out.read_text())


def _same_files(a: Path, b: Path, pattern: str) -> list[str]:
    names = sorted(p.name for p in a.glob(pattern))
    assert names and names == sorted(p.name for p in b.glob(pattern)), (names, list(b.glob(pattern)))
    for name in names:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    return names


def _check_stage(tmp_path, make_args, outputs_equal, seed):
    ref_args = make_args(tmp_path / "ref")
    duration = _timed(ref_args)
    test_args = make_args(tmp_path / "killed")
    points = _fault_points_of(make_args(tmp_path / "count"))
    kills = interrupted_run(test_args, seed, points, duration)
    assert sum(kills.values()) >= KILLS_PER_STAGE
    outputs_equal(tmp_path / "ref", tmp_path / "killed")
    assert not list((tmp_path / "killed").rglob(".tmp-*")), "temp files left behind"
    return kills


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    from mtcnn_train.synthetic import make_synthetic, synthetic_config

    root = tmp_path_factory.mktemp("syn")
    make_synthetic(root / "data", num_images=8, seed=5)
    data = synthetic_config(root / "data")["data"]
    return ["--set", f"data.wider_root={data['wider_root']}", "--set", f"data.landmarks={data['landmarks']}",
            "--set", "data.val_fraction=0", "--set", "sampling.landmark_crops_per_face=3", "--set", "sampling.workers=1"], data


def _samples_equal(a, b):
    _same_files(a, b, "shard-*.npy")
    ma, mb = (json.loads((d / "manifest.json").read_text()) for d in (a, b))
    assert ma["counts"] == mb["counts"] and ma["images"] == mb["images"]


def test_gen_samples_pnet_survives_kills(tmp_path, synthetic):
    sets, _ = synthetic
    kills = _check_stage(tmp_path, lambda out: ["gen-samples", "--stage", "pnet", "--out", out, "--quiet", *sets],
                         _samples_equal, seed=11)
    print("gen-samples pnet kills:", kills)


def _face_loving(stage):
    net = build_net(stage)
    head = getattr(net, {"pnet": "conv4_1", "rnet": "dense5_1", "onet": "dense6_1"}[stage])
    with torch.no_grad():
        head.weight.mul_(0.1)
        head.bias.copy_(torch.tensor([-2.0, 2.0]))
    return net


def test_mining_survives_kills(tmp_path, synthetic):
    sets, _ = synthetic
    run = tmp_path / "weights"
    torch.manual_seed(0)
    save_checkpoint(run / "pnet.pt", {"stage": "pnet", "model": _face_loving("pnet").state_dict()})
    mining_sets = [*sets, "--set", "detection.min_face_size=48"]
    kills = _check_stage(tmp_path, lambda out: ["gen-samples", "--stage", "rnet", "--weights", run, "--out", out,
                                                "--quiet", *mining_sets], _samples_equal, seed=12)
    print("mining kills:", kills)


def _tiny_samples(folder: Path, size: int, n: int = 600) -> Path:
    from mtcnn_train.samples.shards import empty_arrays, write_sample_set

    rng = np.random.default_rng(size)
    arrays = empty_arrays(size)
    arrays["images"] = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
    arrays["labels"] = rng.choice(np.array([0, 1, -1, -2], np.int8), n)
    arrays["boxes"] = np.where(np.isin(arrays["labels"], [1, -1])[:, None], rng.normal(0, 0.1, (n, 4)), np.nan).astype(np.float32)
    arrays["landmarks"] = np.where((arrays["labels"] == -2)[:, None], rng.random((n, 10)), np.nan).astype(np.float32)
    arrays["sources"] = rng.integers(0, 60, n).astype(np.int32)
    arrays["crops"] = np.zeros((n, 4), np.float32)
    write_sample_set(folder, arrays, {"images": [f"img{i}" for i in range(60)]})
    return folder


@pytest.mark.parametrize("stage, size", [("pnet", 12), ("rnet", 24), ("onet", 48)])
def test_training_survives_kills(tmp_path, stage, size):
    samples = _tiny_samples(tmp_path / "samples", size, n=400 if stage == "onet" else 800)
    sets = ["--set", f"train.{stage}.epochs=3", "--set", f"train.{stage}.batch_size=64",
            "--set", f"train.{stage}.checkpoint_every_steps=2", "--set", f"train.{stage}.threads=1"]

    def weights_equal(a, b):
        wa = torch.load(a / f"{stage}.pt", weights_only=True)["model"]
        wb = torch.load(b / f"{stage}.pt", weights_only=True)["model"]
        assert wa.keys() == wb.keys()
        for key in wa:
            assert torch.equal(wa[key], wb[key]), key

    def command(out):
        # The first attempt starts the run; every rerun continues it, as a user would after a crash.
        args = [stage, "--samples", samples, "--out", out, *sets]
        return args + (["--resume"] if out.name != "count" else [])

    kills = _check_stage(tmp_path, command, weights_equal, seed={"pnet": 21, "rnet": 22, "onet": 23}[stage])
    print(f"{stage} training kills:", kills)


def test_fddb_evaluation_survives_kills(tmp_path, synthetic):
    _, data = synthetic
    run = tmp_path / "weights"
    torch.manual_seed(1)
    for stage in ("pnet", "rnet", "onet"):
        save_checkpoint(run / f"{stage}.pt", {"stage": stage, "model": _face_loving(stage).state_dict()})
    args = lambda out: ["eval", "fddb", "--fddb-root", data["fddb_root"], "--weights", run, "--out", out,
                        "--folds", "1-2", "--set", "detection.min_face_size=40", "--set", "detection.batch_size=1"]

    def reports_equal(a, b):
        _same_files(a, b, "*ROC.txt")
        _same_files(a, b, "detections.txt")

    kills = _check_stage(tmp_path, args, reports_equal, seed=31)
    print("eval kills:", kills)
