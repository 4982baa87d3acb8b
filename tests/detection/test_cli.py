"""``mtcnn-train detect`` and ``import-weights`` as a user runs them."""
from __future__ import annotations

import json

import cv2
import numpy as np
import torch

from mtcnn_train.checkpoint import load_stage_net
from mtcnn_train.nets import build_net

from .conftest import random_image
from .test_weights_import import fake_facenet_state_dict

THRESHOLDS = ["--set", "detection.thresholds=[0.7,0.6,0.5]", "--set", "detection.min_face_size=24",
              "--set", "detection.device=cpu"]


def test_detect_images_folder_and_bad_file(cli_runner, random_run_dir, tmp_path):
    inputs = tmp_path / "in"
    (inputs / "sub").mkdir(parents=True)
    cv2.imwrite(str(inputs / "a.png"), random_image(0)[:, :, ::-1])
    cv2.imwrite(str(inputs / "sub" / "b.jpg"), random_image(1)[:, :, ::-1])
    (inputs / "broken.jpg").write_bytes(b"not an image")
    out = tmp_path / "out"
    result = cli_runner("detect", inputs, "--weights", random_run_dir, "--out", out, "--per-image-json", *THRESHOLDS)
    assert result.returncode == 0, result.stderr
    assert "skipped 1 unreadable" in result.stderr
    report = json.loads((out / "detections.json").read_text())
    assert [e["annotated"] for e in report["images"]] == ["a.jpg", "sub/b.jpg"]
    assert len(report["skipped"]) == 1 and "broken.jpg" in report["skipped"][0]["file"]
    first = report["images"][0]
    assert (first["width"], first["height"]) == (80, 60)
    assert len(first["faces"]) > 0
    face = first["faces"][0]
    assert len(face["box"]) == 4 and 0.5 < face["score"] <= 1 and np.array(face["landmarks"]).shape == (5, 2)
    annotated = cv2.imread(str(out / "a.jpg"))
    assert annotated.shape == (60, 80, 3)
    assert json.loads((out / "sub" / "b.json").read_text())["file"].endswith("b.jpg")

    # --stages pnet: candidates only, no landmarks
    result = cli_runner("detect", inputs / "a.png", "--weights", random_run_dir, "--out", tmp_path / "p",
                        "--stages", "pnet", "--no-annotate", *THRESHOLDS)
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "p" / "detections.json").read_text())
    assert report["stages"] == ["pnet"] and report["images"][0]["faces"][0]["landmarks"] is None
    assert not (tmp_path / "p" / "a.jpg").exists()


def test_detect_video(cli_runner, random_run_dir, tmp_path):
    video = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 5, (80, 60))
    assert writer.isOpened()
    for k in range(3):
        writer.write(random_image(10 + k)[:, :, ::-1].copy())
    writer.release()
    out = tmp_path / "out"
    result = cli_runner("detect", video, "--weights", random_run_dir, "--out", out, *THRESHOLDS)
    assert result.returncode == 0, result.stderr
    report = json.loads((out / "detections.json").read_text())
    assert len(report["videos"]) == 1 and [f["frame"] for f in report["videos"][0]["frames"]] == [0, 1, 2]
    capture = cv2.VideoCapture(str(out / "clip.mp4"))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 3
    capture.release()


def test_detect_errors(cli_runner, random_run_dir, tmp_path):
    result = cli_runner("detect", tmp_path / "missing.jpg", "--weights", random_run_dir, "--out", tmp_path / "o")
    assert result.returncode == 2 and "missing.jpg: no such file" in result.stderr
    (random_run_dir / "onet.pt").unlink()
    cv2.imwrite(str(tmp_path / "a.png"), random_image(0))
    result = cli_runner("detect", tmp_path / "a.png", "--weights", random_run_dir, "--out", tmp_path / "o")
    assert result.returncode == 2 and "no onet.pt; pass --stages rnet" in result.stderr


def test_import_weights_command(cli_runner, tmp_path):
    source = tmp_path / "facenet_data"
    source.mkdir()
    for i, stage in enumerate(("pnet", "rnet", "onet")):
        torch.save(fake_facenet_state_dict(stage, seed=i), source / f"{stage}.pt")
    result = cli_runner("import-weights", "--from", "facenet-pytorch", source, "--out", tmp_path / "run")
    assert result.returncode == 0, result.stderr
    # The imported O-Net holds exactly the weights the facenet-pytorch layout was made from.
    torch.manual_seed(2)
    expected = build_net("onet").state_dict()
    imported = load_stage_net(tmp_path / "run", "onet").state_dict()
    assert imported.keys() == expected.keys()
    assert all(torch.equal(imported[k], v) for k, v in expected.items())
    result = cli_runner("import-weights", "--from", "facenet-pytorch", tmp_path / "nowhere", "--out", tmp_path / "r2")
    assert result.returncode == 2 and result.stderr.strip().count("\n") == 0 and "nowhere" in result.stderr
    # A run folder's weights are replaced only with --force, and a damaged source changes nothing.
    before = {p.name: p.read_bytes() for p in (tmp_path / "run").glob("*.pt")}
    result = cli_runner("import-weights", "--from", "facenet-pytorch", source, "--out", tmp_path / "run")
    assert result.returncode == 2 and "run/pnet.pt: exists" in result.stderr and "--force" in result.stderr
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    for stage in ("pnet", "rnet"):
        (damaged / f"{stage}.pt").write_bytes((source / f"{stage}.pt").read_bytes())
    (damaged / "onet.pt").write_bytes(b"junk")
    result = cli_runner("import-weights", "--from", "facenet-pytorch", damaged, "--out", tmp_path / "run", "--force")
    assert result.returncode == 2 and "onet.pt: cannot read" in result.stderr
    assert {p.name: p.read_bytes() for p in (tmp_path / "run").glob("*.pt")} == before
    result = cli_runner("import-weights", "--from", "facenet-pytorch", source / "pnet.pt", "--out", tmp_path / "r3")
    assert result.returncode == 2 and "pnet.pt: is a file; give the folder" in result.stderr
    assert cli_runner("import-weights", "--from", "facenet-pytorch", source, "--out", tmp_path / "run",
                      "--force").returncode == 0
