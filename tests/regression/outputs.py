"""The outputs of a fixed run of the commands on the synthetic set, as digests to compare.

``record`` (``python -m tests.regression.outputs``) wrote ``expected_outputs.json`` on main before
the package was reorganised (issue 18); ``test_same_outputs.py`` runs the same commands and asserts
that nothing changed: files that integer code writes (rendered images, cut and mined crops) must be
byte-identical, trained weights, mined boxes and detected boxes equal to float rounding (they run
float arithmetic whose last bits may differ on another CPU).

Mined sets' crop boxes and regression targets come from the mining nets' float outputs, so they are
compared as numbers (``mined_floats``, added later on this machine, where the sets' digests still
matched the ones recorded before the reorganisation); their other files stay byte-identical.
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

REPO_ROOT = Path(__file__).resolve().parents[2]
EXPECTED = Path(__file__).with_name("expected_outputs.json")
# Random nets pass most windows: a larger minimum face and high thresholds keep mining small.
FIXED_NETS = ["--set", "detection.device=cpu", "--set", "detection.min_face_size=40",
              "--set", "sampling.mining_thresholds=[0.9,0.2]"]


def _cli(*args: object, cwd: Path) -> None:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
               CUDA_VISIBLE_DEVICES="", OMP_NUM_THREADS="1")
    result = subprocess.run([sys.executable, "-m", "mtcnn_train", *map(str, args)], cwd=cwd, env=env,
                            capture_output=True, text=True, timeout=600)
    if result.returncode != 0:
        raise RuntimeError(f"mtcnn-train {' '.join(map(str, args))} failed:\n{result.stderr[-2000:]}")


def _file_digests(folder: Path, pattern: str) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob(pattern)) if p.is_file()}


MINED_FLOAT_ARRAYS = ("boxes", "crops")


def _mined_set(folder: Path) -> tuple[dict[str, str], dict[str, list]]:
    """A mined set's digests (files of integer data) and its float arrays as numbers."""
    digests, floats = {}, {}
    for name, digest in _file_digests(folder, "*.npy").items():
        if name.split(".")[-2] in MINED_FLOAT_ARRAYS:
            floats[name] = np.load(folder / name).tolist()
        else:
            digests[name] = digest
    return digests, floats


def _weight_sums(checkpoint: Path) -> dict[str, list[float]]:
    """Per tensor: sum and sum of squares (float rounding tolerant, yet any real change shows)."""
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)["model"]
    return {name: [float(t.double().sum()), float((t.double() ** 2).sum())] for name, t in sorted(state.items())}


def produce(work: Path) -> dict:
    """Run the fixed command sequence in ``work``; return the digests of what it wrote."""
    from tests.random_nets import save_random_run

    work.mkdir(parents=True, exist_ok=True)
    syn = work / "syn"
    _cli("make-synthetic", "--images", 12, "--seed", 0, syn, cwd=work)
    inputs = ["--wider-root", syn / "wider", "--landmarks", syn / "celeba" / "Anno" / "list_landmarks_celeba.txt",
              "--workers", 1, "--quiet"]
    _cli("gen-samples", "--stage", "pnet", "--out", work / "s_pnet", *inputs, cwd=work)
    _cli("pnet", "--samples", work / "s_pnet", "--out", work / "trained", "--set", "train.pnet.epochs=2",
         "--set", "train.pnet.batch_size=64", "--set", "train.pnet.threads=1", "--set", "train.pnet.device=cpu",
         cwd=work)
    fixed = save_random_run(work / "fixed")  # fixed weights for mining and detection
    for stage in ("rnet", "onet"):
        _cli("gen-samples", "--stage", stage, "--out", work / f"s_{stage}", "--weights", fixed, *inputs,
             *FIXED_NETS, cwd=work)
    _cli("detect", syn / "wider" / "WIDER_val" / "images", "--weights", fixed, "--out", work / "detect",
         "--no-annotate", *FIXED_NETS, cwd=work)
    detections = json.loads((work / "detect" / "detections.json").read_text())
    rnet_samples, rnet_floats = _mined_set(work / "s_rnet")
    onet_samples, onet_floats = _mined_set(work / "s_onet")
    return {
        "synthetic_files": _file_digests(syn, "*"),
        "pnet_samples": _file_digests(work / "s_pnet", "*.npy"),
        "rnet_samples": rnet_samples,
        "onet_samples": onet_samples,
        "mined_floats": {"rnet": rnet_floats, "onet": onet_floats},
        "trained_pnet": _weight_sums(work / "trained" / "pnet.pt"),
        "detections": detections,
    }


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        digests = produce(Path(tmp))
    EXPECTED.write_text(json.dumps(digests, indent=1, sort_keys=True) + "\n")
    print(f"wrote {EXPECTED}")
