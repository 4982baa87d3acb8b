"""The cascade on exported ONNX nets (onnxruntime) finds what the PyTorch cascade finds.

Same boxes (each matched one to one at IoU >= 0.99), scores and landmarks up to float rounding in
the nets, at every stage, on synthetic images and on real ones; and ``mtcnn-train detect --backend
onnx`` writes the same ``detections.json`` as ``--backend torch``, exporting ``.pt`` weights first.

The nets are seeded random ones with their face heads scaled up (as in tests/detection), so that
probabilities spread over (0, 1) and every stage keeps some candidates and drops others.
"""
from __future__ import annotations

import json
import sys

import cv2
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from conftest import shared_path
from mtcnn_train.cli import cli
from mtcnn_train.config import DetectionConfig
from mtcnn_train.stages import STAGES
from mtcnn_train.synthetic import wider_image
from mtcnn_train.detection.detect_files import detect_paths
from mtcnn_train.detection.cascade import Cascade, Detections
from mtcnn_train.errors import UserError
from mtcnn_train.detection.export import export_models
from mtcnn_train.detection.onnx_runtime import OnnxNet
from mtcnn_train.geometry import iou_matrix
from mtcnn_train.io import load_image, save_image
from tests.random_nets import save_random_run

pytest.importorskip("onnxruntime")

MIN_IOU = 0.99
SCORE_TOL = 1e-4
LANDMARK_TOL = 0.05  # px
#: Fewest boxes each stage must give over the test images, so that agreement means something.
MIN_BOXES = 20
CFG = DetectionConfig(min_face_size=24, thresholds=[0.7, 0.6, 0.5], device="cpu")
SETTINGS = ["--set", "detection.thresholds=[0.7,0.6,0.5]", "--set", "detection.min_face_size=24",
            "--set", "detection.device=cpu"]


#: One thread for torch, as onnxruntime gets (tests/detection/conftest.py).
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """(run folder with pnet.pt, rnet.pt, onet.pt; folder with their ONNX export)."""
    # As the trainer writes them: our P-Net decodes with the exact window rule.
    run = save_random_run(tmp_path_factory.mktemp("run"), window_rule="exact")
    onnx_dir = tmp_path_factory.mktemp("onnx")
    export_models(run, "onnx", onnx_dir)
    return run, onnx_dir


@pytest.fixture(scope="module")
def cascades(weights):
    run, onnx_dir = weights
    return Cascade.from_run_dir(run, CFG, device="cpu"), Cascade.from_onnx_dir(onnx_dir, CFG, threads=1)


def _shrink(image: np.ndarray, side: int) -> np.ndarray:
    """At most ``side`` px on the longer side: keeps the tests fast."""
    factor = side / max(image.shape[:2])
    if factor >= 1:
        return image
    size = (round(image.shape[1] * factor), round(image.shape[0] * factor))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def assert_same_detections(ours: Detections, onnx: Detections) -> None:
    assert len(onnx) == len(ours)
    if len(ours) == 0:
        return
    iou = iou_matrix(ours.boxes, onnx.boxes)
    partner = iou.argmax(1)
    assert len(set(partner.tolist())) == len(ours), "two boxes matched the same ONNX box"
    assert iou[np.arange(len(ours)), partner].min() >= MIN_IOU
    np.testing.assert_allclose(onnx.scores[partner], ours.scores, atol=SCORE_TOL, rtol=0)
    if ours.landmarks is None:
        assert onnx.landmarks is None
    else:
        np.testing.assert_allclose(onnx.landmarks[partner], ours.landmarks, atol=LANDMARK_TOL, rtol=0)


def _compare_every_stage(cascades, images: list[np.ndarray]) -> dict[str, int]:
    torch_cascade, onnx_cascade = cascades
    assert all(type(net) is OnnxNet for net in onnx_cascade.nets.values())
    assert onnx_cascade.stages == STAGES and onnx_cascade.device.type == "cpu"
    counts = dict.fromkeys(STAGES, 0)
    for image in images:
        for stage in STAGES:
            ours = torch_cascade.detect(image, stages=stage)
            assert_same_detections(ours, onnx_cascade.detect(image, stages=stage))
            counts[stage] += len(ours)
    # Every stage must have had something to agree on, and R-Net and O-Net must have dropped some.
    assert min(counts.values()) >= MIN_BOXES, counts
    assert counts["pnet"] > counts["rnet"] > counts["onet"], counts
    return counts


def test_the_window_rule_travels_with_the_export(cascades, weights):
    torch_cascade, onnx_cascade = cascades
    assert torch_cascade.pnet_window == onnx_cascade.pnet_window == "exact"
    assert json.loads((weights[1] / "export.json").read_text())["pnet_window"] == "exact"


def test_onnx_cascade_matches_torch_on_synthetic_images(cascades):
    images = [_shrink(wider_image(0, "wider_val", i)[1], 200) for i in range(3)]
    _compare_every_stage(cascades, images)


@pytest.mark.shared_data
def test_onnx_cascade_matches_torch_on_real_images(cascades):
    images = [load_image(shared_path("skimage_faces", "astronaut.png"))]
    wider = shared_path("wider_face", "WIDER_train", "images")
    images += [load_image(p) for p in sorted(wider.rglob("*.jpg"))[:2]]
    _compare_every_stage(cascades, [_shrink(image, 240) for image in images])


def test_from_onnx_dir_stages_and_errors(weights, tmp_path):
    _, onnx_dir = weights
    assert Cascade.from_onnx_dir(onnx_dir, CFG, stages="rnet").stages == ("pnet", "rnet")
    # cfg.device does not matter: the ONNX cascade runs on the CPU
    cuda_cfg = DetectionConfig(device="cuda")
    assert Cascade.from_onnx_dir(onnx_dir, cuda_cfg, stages="pnet").device.type == "cpu"
    with pytest.raises(UserError, match="not found"):
        Cascade.from_onnx_dir(tmp_path / "missing", CFG)
    (tmp_path / "pnet.onnx").write_bytes((onnx_dir / "pnet.onnx").read_bytes())
    with pytest.raises(UserError, match="no rnet.onnx"):
        Cascade.from_onnx_dir(tmp_path, CFG)
    assert Cascade.from_onnx_dir(tmp_path, CFG, stages=["pnet"]).stages == ("pnet",)


# --------------------------------------------------------------------------------------------
# mtcnn-train detect --backend onnx


def _detect(*args: str):
    return CliRunner().invoke(cli, ["detect", *map(str, args)])


def _faces(report: dict) -> list[Detections]:
    out = []
    for entry in report["images"]:
        faces = entry["faces"]
        out.append(Detections(np.array([f["box"] for f in faces], np.float32).reshape(-1, 4),
                              np.array([f["score"] for f in faces], np.float32),
                              np.array([f["landmarks"] for f in faces], np.float32).reshape(-1, 5, 2)))
    return out


def test_detect_command_onnx_backend(weights, tmp_path):
    run, onnx_dir = weights
    inputs = tmp_path / "in"
    for i in range(2):
        save_image(inputs / f"{i}.png", _shrink(wider_image(0, "wider_val", i)[1], 160))

    result = _detect(inputs, "--weights", run, "--out", tmp_path / "torch", "--no-annotate", *SETTINGS)
    assert result.exit_code == 0, result.output
    reference = json.loads((tmp_path / "torch" / "detections.json").read_text())
    assert reference["backend"] == "torch"
    assert sum(len(d) for d in _faces(reference)) >= 10

    # a folder of exported nets is used as it is
    result = _detect(inputs, "--weights", onnx_dir, "--out", tmp_path / "onnx", "--backend", "onnx",
                     "--no-annotate", *SETTINGS)
    assert result.exit_code == 0, result.output
    assert "exported" not in result.output
    report = json.loads((tmp_path / "onnx" / "detections.json").read_text())
    assert report["backend"] == "onnx" and report["onnx_models"] == str(onnx_dir) and not report["onnx_exported"]

    # a run folder of .pt weights is exported to OUT/onnx first, and says so in one line
    out = tmp_path / "auto"
    result = _detect(inputs, "--weights", run, "--out", out, "--backend", "onnx", *SETTINGS)
    assert result.exit_code == 0, result.output
    told = [line for line in result.output.splitlines() if "exported" in line]
    assert len(told) == 1 and str(out / "onnx") in told[0], result.output
    assert all((out / "onnx" / f"{stage}.onnx").is_file() for stage in STAGES)
    assert (out / "0.jpg").is_file()
    auto = json.loads((out / "detections.json").read_text())
    assert auto["backend"] == "onnx" and auto["onnx_exported"] and auto["onnx_models"] == str(out / "onnx")

    for other in (report, auto):
        assert [e["file"] for e in other["images"]] == [e["file"] for e in reference["images"]]
        assert other["detection"] == reference["detection"] and other["stages"] == reference["stages"]
        for ours, onnx in zip(_faces(reference), _faces(other)):
            assert_same_detections(ours, onnx)


def test_detect_onnx_backend_errors(weights, tmp_path, monkeypatch):
    run, onnx_dir = weights
    image = tmp_path / "a.png"
    save_image(image, _shrink(wider_image(0, "wider_val", 0)[1], 100))
    result = _detect(image, "--weights", run, "--out", tmp_path / "o", "--backend", "onnx", "--device", "cuda")
    assert isinstance(result.exception, UserError) and "CPU only" in str(result.exception)
    assert not (tmp_path / "o").exists()

    # an export folder without O-Net: say which file is missing, and how to stop before it
    partial = tmp_path / "partial"
    partial.mkdir()
    for stage in ("pnet", "rnet"):
        (partial / f"{stage}.onnx").write_bytes((onnx_dir / f"{stage}.onnx").read_bytes())
    with pytest.raises(UserError, match=r"no onet\.onnx \(nor onet\.pt\); pass --stages rnet"):
        detect_paths([image], partial, tmp_path / "o", CFG, backend="onnx")
    detect_paths([image], partial, tmp_path / "o", CFG, last_stage="rnet", backend="onnx", annotate=False)
    # the same for a run folder without onet.pt
    for stage in ("pnet", "rnet"):
        (partial / f"{stage}.pt").write_bytes((run / f"{stage}.pt").read_bytes())
        (partial / f"{stage}.onnx").unlink()
    with pytest.raises(UserError, match=r"no onet\.pt \(nor onet\.onnx\); pass --stages rnet"):
        detect_paths([image], partial, tmp_path / "o", CFG, backend="onnx")
    assert json.loads((tmp_path / "o" / "detections.json").read_text())["stages"] == ["pnet", "rnet"]

    # without onnxruntime: the one-line install hint, before anything is exported
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(UserError, match=r"pip install 'mtcnn-train\[onnx\]'"):
        detect_paths([image], run, tmp_path / "n", CFG, backend="onnx")
    assert not (tmp_path / "n").exists()
