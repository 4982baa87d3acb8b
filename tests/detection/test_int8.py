"""INT8 export (onnxruntime static quantisation) of seeded random nets, calibrated on a tiny sample set.

The quantised nets give outputs close to the fp32 ones on crops like their calibration crops, the
int8 cascade runs every stage through ``Cascade.load`` and the CLI (``export --int8``, ``detect`` and
``eval wider`` with ``--backend onnx-int8``), ``export.json`` records which nets are int8, and bad
calibration input gives a one-line error.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import warnings

import cv2
import numpy as np
import pytest
import torch

from mtcnn_train.config import DetectionConfig
from mtcnn_train.datasets.records import FaceRecord
from mtcnn_train.datasets.wider import write_wider
from mtcnn_train.detection.cascade import Cascade
from mtcnn_train.detection.onnx_runtime import OnnxNet
from mtcnn_train.quantize import calibration_inputs, export_int8, parse_int8_stages
from mtcnn_train.errors import MtcnnWarning, UserError
from mtcnn_train.geometry import iou_matrix
from mtcnn_train.samples.labels import LABEL_NEGATIVE, LABEL_POSITIVE
from mtcnn_train.samples.shards import write_sample_set
from mtcnn_train.stages import INPUT_SIZE, STAGES
from mtcnn_train.synthetic import wider_image
from conftest import REPO_ROOT
from tests.random_nets import save_random_run

from .conftest import random_image

pytest.importorskip("onnxruntime")

CFG = DetectionConfig(min_face_size=24, thresholds=[0.7, 0.6, 0.5], device="cpu")
SETTINGS = ["--set", "detection.thresholds=[0.7,0.6,0.5]", "--set", "detection.min_face_size=24",
            "--set", "detection.device=cpu"]


def write_crop_set(directory, size: int, count: int = 120, seed: int = 0):
    """A sample set of ``count`` crops of smooth random images, area-resized to ``size``."""
    rng = np.random.default_rng(seed)
    images = np.stack([cv2.resize(random_image(seed * 1000 + i, 40, 40), (size, size), interpolation=cv2.INTER_AREA)
                       for i in range(count)])
    labels = rng.choice([LABEL_NEGATIVE, LABEL_POSITIVE], size=count).astype(np.int8)
    boxes = np.full((count, 4), np.nan, np.float32)
    boxes[labels == LABEL_POSITIVE] = 0.0
    arrays = {"images": images, "labels": labels, "boxes": boxes,
              "landmarks": np.full((count, 10), np.nan, np.float32),
              "sources": np.zeros(count, np.int32),
              "crops": np.tile(np.array([0, 0, size, size], np.float32), (count, 1))}
    write_sample_set(directory, arrays, {"images": ["img_0.jpg"]})
    return directory


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def int8_setup(tmp_path_factory):
    """(run folder, calibration folder with pnet/ rnet/ onet/ sets, fp32 export, int8 export of R and O)."""
    root = tmp_path_factory.mktemp("int8")
    run = save_random_run(root / "run", window_rule="exact")
    calibration = root / "samples"
    for seed, stage in enumerate(STAGES):
        write_crop_set(calibration / stage, INPUT_SIZE[stage], seed=seed)
    fp32 = root / "fp32"
    from mtcnn_train.detection.export import export_models

    export_models(run, "onnx", fp32)
    int8 = root / "int8"
    export_int8(run, int8, [calibration], count=100)
    return run, calibration, fp32, int8


def test_export_json_records_the_choice(int8_setup):
    _, calibration, _, int8 = int8_setup
    record = json.loads((int8 / "export.json").read_text())
    assert {s: m["precision"] for s, m in record["models"].items()} == {"pnet": "fp32", "rnet": "int8", "onet": "int8"}
    info = record["int8"]
    assert info["int8_nets"] == ["rnet", "onet"] and info["fp32_nets"] == ["pnet"]
    assert info["format"] == "QOperator" and info["per_channel_weights"] and "onnxruntime" in info["toolkit"]
    assert info["weights"] == "int8, 7-bit range"
    assert info["calibration"]["rnet"] == {"sources": [str(calibration / "rnet")], "crops": 100, "crop_size": 24,
                                           "seed": 0, "method": "minmax"}
    assert info["calibration"]["onet"]["method"] == "percentile 99.99"
    assert record["pnet_window"] == "exact"
    # The quantised files are int8 graphs; P-Net is left as exported.
    import onnx

    ops = {s: {n.op_type for n in onnx.load(str(int8 / f"{s}.onnx")).graph.node} for s in STAGES}
    assert "QLinearConv" in ops["rnet"] and "QLinearConv" in ops["onet"] and "QLinearConv" not in ops["pnet"]


@pytest.mark.parametrize("stage", ["rnet", "onet"])
def test_int8_net_outputs_close_to_fp32(int8_setup, stage):
    _, calibration, fp32, int8 = int8_setup
    # Crops like the calibration crops, but not the same ones.
    other = write_crop_set(fp32.parent / f"held_out_{stage}", INPUT_SIZE[stage], count=64, seed=7)
    x = torch.from_numpy(calibration_inputs([other], count=64))
    ref = OnnxNet(fp32 / f"{stage}.onnx", threads=1)(x)
    got = OnnxNet(int8 / f"{stage}.onnx", threads=1)(x)
    for r, g in zip(ref, got):
        spread = float(r.max() - r.min())
        assert float((r - g).abs().mean()) < 0.03 * spread
    p_ref, p_got = torch.softmax(ref[0], 1)[:, 1], torch.softmax(got[0], 1)[:, 1]
    assert float((p_ref - p_got).abs().median()) < 0.05


def test_int8_cascade_runs_and_agrees_with_fp32(int8_setup):
    _, _, fp32, int8 = int8_setup
    fp32_cascade = Cascade.load(fp32, CFG, backend="onnx")
    int8_cascade = Cascade.load(int8, CFG, backend="onnx-int8")
    assert int8_cascade.stages == STAGES and int8_cascade.pnet_window == "exact"
    matched = total = found = 0
    for i in range(3):
        image = cv2.resize(wider_image(0, "wider_val", i)[1], (200, 160), interpolation=cv2.INTER_AREA)
        ref, got = fp32_cascade.detect(image), int8_cascade.detect(image)
        assert got.landmarks is not None and got.landmarks.shape == (len(got), 5, 2)
        total, found = total + len(ref), found + len(got)
        if len(ref) and len(got):
            matched += int((iou_matrix(ref.boxes, got.boxes).max(1) >= 0.5).sum())
    # Random nets put many scores near the thresholds, where int8 rounding flips some decisions;
    # most boxes must still be found again.
    assert total >= 20 and matched >= 0.6 * total and 0.7 * total <= found <= 1.3 * total, (matched, total, found)


def test_loader_errors(int8_setup, tmp_path):
    run, _, fp32, _ = int8_setup
    with pytest.raises(UserError, match="not an int8 export"):
        Cascade.load(fp32, CFG, backend="onnx-int8")
    with pytest.raises(UserError, match="unknown backend"):
        Cascade.load(run, CFG, backend="tflite")
    with pytest.raises(UserError, match="CPU only"):
        Cascade.load(fp32, CFG, backend="onnx", device="cuda")
    assert Cascade.load(run, CFG).stages == STAGES  # torch: the run folder


def conv_weight_range(path) -> tuple[int, int]:
    """The smallest and largest int8 value among the QLinearConv weight tensors of an ONNX file."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(path)).graph
    initializers = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    weights = [initializers[n.input[3]] for n in graph.node if n.op_type == "QLinearConv"]
    assert weights and all(w.dtype == np.int8 for w in weights)
    return min(int(w.min()) for w in weights), max(int(w.max()) for w in weights)


def test_weights_use_seven_bits_unless_told(int8_setup, tmp_path, monkeypatch):
    """onnxruntime's non-VNNI kernels add u8 x s8 products in pairs in 16 bits; weights within
    [-64, 64] cannot overflow them (2 x 255 x 64 < 2^15), full-range ones can (and did, on the CI machine)."""
    run, calibration, fp32, int8 = int8_setup
    for stage in ("rnet", "onet"):
        low, high = conv_weight_range(int8 / f"{stage}.onnx")
        assert -64 <= low and high <= 64 and high - low > 100
    record = export_int8(run, tmp_path / "full", [calibration], int8_stages="rnet", count=50, weight_bits=8)
    assert record["int8"]["weights"] == "int8, 8-bit range"
    low, high = conv_weight_range(tmp_path / "full" / "rnet.onnx")
    assert low < -64 or high > 64
    with pytest.raises(UserError, match="7 or 8 bits of range, not 6"):
        export_int8(run, tmp_path / "six", [calibration], weight_bits=6)
    assert not (tmp_path / "six").exists()


    # Loading full-range weights on a CPU without VNNI warns; 7-bit weights, or VNNI, or a CPU that
    # cannot be told, do not.  Exports from before the 7-bit default (weights "int8") are full-range.
    from mtcnn_train.detection import onnx_runtime

    legacy = tmp_path / "legacy"
    shutil.copytree(tmp_path / "full", legacy)
    record["int8"]["weights"] = "int8"
    (legacy / "export.json").write_text(json.dumps(record))
    assert [onnx_runtime.int8_weight_bits(d) for d in (int8, tmp_path / "full", legacy, fp32)] == [7, 8, 8, None]
    for vnni, folder, warns in [(False, tmp_path / "full", True), (False, legacy, True), (False, int8, False),
                                (True, tmp_path / "full", False), (None, tmp_path / "full", False)]:
        monkeypatch.setattr(onnx_runtime, "cpu_has_vnni", lambda vnni=vnni: vnni)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            Cascade.load(folder, CFG, backend="onnx-int8")
        ours = [w for w in caught if issubclass(w.category, MtcnnWarning)]
        assert len(ours) == warns, (vnni, folder)
        if warns:
            assert str(ours[0].message).startswith(f"{folder}: its int8 weights use all 8 bits")


def test_cpu_flags_are_read(tmp_path):
    from mtcnn_train.detection.onnx_runtime import cpu_has_vnni

    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse avx2 avx512f\n\nprocessor\t: 1\nflags\t\t: fpu sse avx2\n")
    assert cpu_has_vnni(cpuinfo, "x86_64") is False
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512_vnni\n")
    assert cpu_has_vnni(cpuinfo, "x86_64") is True
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu avx2 avx_vnni\n")
    assert cpu_has_vnni(cpuinfo, "AMD64") is True
    assert cpu_has_vnni(cpuinfo, "aarch64") is None  # ARM's dot-product kernels are another matter
    assert cpu_has_vnni(tmp_path / "missing", "x86_64") is None
    cpuinfo.write_text("processor\t: 0\n")
    assert cpu_has_vnni(cpuinfo, "x86_64") is None


def test_calibration_errors(int8_setup, tmp_path):
    run, calibration, _, _ = int8_setup
    with pytest.raises(UserError, match="calibration folder not found"):
        export_int8(run, tmp_path / "a", [tmp_path / "missing"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="not a sample set"):
        export_int8(run, tmp_path / "b", [tmp_path / "empty"])
    with pytest.raises(UserError, match="no 48x48 crops to calibrate onet"):
        export_int8(run, tmp_path / "c", [calibration / "rnet"])
    with pytest.raises(UserError, match="needs calibration crops"):
        export_int8(run, tmp_path / "d", [])
    assert not (tmp_path / "c").exists()  # nothing written before the checks
    assert parse_int8_stages("onet, pnet") == ("pnet", "onet") and parse_int8_stages("none") == ()
    with pytest.raises(UserError):
        parse_int8_stages("qnet")


def test_cli_export_detect_and_eval(int8_setup, tmp_path, cli_runner):
    run, calibration, _, _ = int8_setup
    out = tmp_path / "int8"
    result = cli_runner("export", "--weights", run, "--format", "onnx", "--int8", "--int8-nets", "onet",
                        "--calibration", calibration / "onet", "--calibration-count", "50", "--int8-weight-bits", "8",
                        "--out", out)
    assert result.returncode == 0, result.stderr
    assert "onet.onnx  (dynamic: batch, int8)" in result.stdout
    assert "(dynamic: batch, height, width, fp32)" in result.stdout
    assert "WARNING" not in result.stderr and "histogram" not in result.stdout
    info = json.loads((out / "export.json").read_text())["int8"]
    assert info["int8_nets"] == ["onet"] and info["weights"] == "int8, 8-bit range"

    images = tmp_path / "images"
    images.mkdir()
    name, image, truth = wider_image(0, "wider_val", 0)
    factor = 200 / max(image.shape[:2])  # small, so the random nets' many boxes stay quick
    image = cv2.resize(image, (round(image.shape[1] * factor), round(image.shape[0] * factor)))
    cv2.imwrite(str(images / "a.jpg"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    result = cli_runner("detect", images, "--weights", out, "--backend", "onnx-int8", "--out", tmp_path / "det",
                        "--no-annotate", *SETTINGS)
    assert result.returncode == 0, result.stderr
    summary = json.loads((tmp_path / "det" / "detections.json").read_text())
    assert summary["backend"] == "onnx-int8" and summary["onnx_models"] == str(out)
    # The same export on a CPU without VNNI: the command says so in one line, and goes on.
    no_vnni = ("import sys, mtcnn_train.detection.onnx_runtime as o; o.cpu_has_vnni = lambda *a, **k: False; "
               "from mtcnn_train.cli import main; main(sys.argv[1:])")
    result = subprocess.run([sys.executable, "-c", no_vnni, "detect", str(images), "--weights", str(out),
                             "--backend", "onnx-int8", "--out", str(tmp_path / "det2"), "--no-annotate",
                             *SETTINGS], capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=str(REPO_ROOT)))
    assert result.returncode == 0, result.stderr
    warning_lines = [line for line in result.stderr.splitlines() if "warning" in line.lower()]
    assert warning_lines == [f"warning: {out}: its int8 weights use all 8 bits, which onnxruntime computes wrongly "
                             "on a CPU without VNNI like this one (faces lost); export again with the default "
                             "7-bit weights"]

    gt = tmp_path / "gt.txt"
    write_wider([FaceRecord(images / "a.jpg", truth.boxes * factor, flags=dict(truth.flags), name="a.jpg")], gt)
    result = cli_runner("eval", "wider", "--annotations", gt, "--images", images, "--weights", out,
                        "--backend", "onnx-int8", "--out", tmp_path / "ev", *SETTINGS)
    assert result.returncode == 0, result.stderr
    assert json.loads((tmp_path / "ev" / "detector.json").read_text())["backend"] == "onnx-int8"


@pytest.mark.parametrize("args, message", [
    (["--format", "torchscript", "--int8"], "--int8 needs --format onnx"),
    (["--format", "onnx", "--calibration", "x"], "--calibration belongs to --int8"),
    (["--format", "onnx", "--int8", "--calibration", "{tmp}/nowhere"], "{tmp}/nowhere: calibration folder not found"),
    (["--format", "onnx", "--int8", "--int8-nets", "", "--calibration", "{tmp}"],
     "--int8-nets names no net to quantise (give nets, or 'none' for an fp32 export in this layout)"),
])
def test_cli_export_errors_are_one_line(int8_setup, tmp_path, cli_runner, args, message):
    run = int8_setup[0]
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    result = cli_runner("export", "--weights", run, "--out", tmp_path / "o", *args)
    assert result.returncode != 0
    assert result.stderr.strip() == "error: " + message.replace("{tmp}", str(tmp_path))


def test_cli_detect_int8_needs_an_int8_export(int8_setup, tmp_path, cli_runner):
    run = int8_setup[0]
    (tmp_path / "images").mkdir()
    cv2.imwrite(str(tmp_path / "images" / "a.jpg"), random_image(0))
    result = cli_runner("detect", tmp_path / "images", "--weights", run, "--backend", "onnx-int8",
                        "--out", tmp_path / "det", *SETTINGS)
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [f"error: {run}: not an int8 export; the onnx-int8 backend runs "
                                                  "the folder that mtcnn-train export --format onnx --int8 "
                                                  "--calibration SAMPLES writes"]


def test_cli_export_int8_of_a_net_the_run_lacks(int8_setup, tmp_path, cli_runner):
    run = tmp_path / "run"
    shutil.copytree(int8_setup[0], run)
    (run / "rnet.pt").unlink()
    result = cli_runner("export", "--weights", run, "--out", tmp_path / "o", "--format", "onnx", "--int8",
                        "--int8-nets", "rnet", "--calibration", tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip() == f"error: {run}: no rnet.pt to quantise (--int8-nets asks for rnet)"
