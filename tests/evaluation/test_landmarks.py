"""Landmark error normalised by the inter-ocular distance: the measure, the matching of
detections to faces, both protocols end to end, and the ``eval landmarks`` command."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch
from torch import nn

from mtcnn_train.checkpoint import save_checkpoint
from mtcnn_train.datasets.landmarks import box_from_landmarks
from mtcnn_train.datasets.records import FaceRecord
from mtcnn_train.detection.cascade import Cascade, Detections
from mtcnn_train.evaluation.landmarks import (
    best_detection, evaluate_landmarks, normalized_errors, summarise)
from mtcnn_train.nets import PNet, RNet, build_net

# Left eye, right eye, nose, mouth left, mouth right: eyes 20 px apart.
POINTS = np.array([[40, 40], [60, 40], [50, 50], [42, 60], [58, 60]], np.float32)


def test_normalized_errors_divide_by_the_eye_distance():
    truth = POINTS[None]
    assert np.allclose(normalized_errors(truth, truth), 0)
    shifted = truth + np.array([3.0, 4.0], np.float32)  # 5 px off everywhere
    assert np.allclose(normalized_errors(shifted, truth), 5 / 20)
    one_point = truth.copy()
    one_point[0, 2] += [0, 10]
    assert np.allclose(normalized_errors(one_point, truth), [[0, 0, 0.5, 0, 0]])
    # The scale is each face's own: the same pixel error on a face twice as large is half the error.
    big = truth * 2
    assert np.allclose(normalized_errors(big + [3, 4], big), 5 / 40)


def test_normalized_errors_reject_bad_input():
    with pytest.raises(ValueError, match="shape"):
        normalized_errors(np.zeros((2, 5, 2)), np.zeros((1, 5, 2)))
    same_eyes = POINTS.copy()
    same_eyes[1] = same_eyes[0]
    with pytest.raises(ValueError, match="same point"):
        normalized_errors(same_eyes[None], same_eyes[None])


def test_summarise_counts_failures_and_points():
    errors = np.array([[0.05] * 5, [0.2] * 5, [0.0, 0.0, 0.0, 0.0, 0.5]])
    result = summarise("reference", faces=4, point_errors=errors)
    assert result.scored == 3 and result.faces == 4
    assert result.nme == pytest.approx((0.05 + 0.2 + 0.1) / 3)
    assert result.failure_rate == pytest.approx(1 / 3)  # 0.1 exactly is not a failure; 0.2 is
    assert result.per_point["mouth_right"] == pytest.approx((0.05 + 0.2 + 0.5) / 3)
    empty = summarise("detected", faces=2, point_errors=np.zeros((0, 5)))
    assert empty.scored == 0 and np.isnan(empty.nme)


def test_best_detection_takes_the_largest_overlap_above_the_bar():
    reference = np.array([10, 10, 50, 50], np.float32)
    detections = np.array([[100, 100, 140, 140], [14, 12, 52, 50], [10, 10, 30, 30]], np.float32)
    assert best_detection(detections, reference, 0.4) == 1
    assert best_detection(detections[[0, 2]], reference, 0.4) is None  # the small box has IoU 0.25
    assert best_detection(detections[[0, 2]], reference, 0.2) == 1
    assert best_detection(np.zeros((0, 4), np.float32), reference, 0.0) is None


class FixedOffsetsONet(nn.Module):
    """An O-Net whose landmark head always answers ``offsets`` (fractions of the input box)."""

    def __init__(self, offsets: np.ndarray):
        super().__init__()
        self.register_buffer("offsets", torch.as_tensor(offsets, dtype=torch.float32).reshape(1, 10))

    def forward(self, x):
        n = len(x)
        return torch.zeros(n, 2), torch.zeros(n, 4), self.offsets.expand(n, 10)


def _write_image(path, size=(100, 100)):
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full((*size, 3), 128, np.uint8))
    return path


def test_both_protocols_end_to_end(tmp_path, monkeypatch):
    reference = box_from_landmarks(POINTS[None])[0].astype(np.float32)
    side = reference[2] - reference[0]
    exact = (POINTS - reference[:2]) / side
    bias = np.array([0.05, 0.0], np.float32)  # every point 0.05 box sides to the right
    onet = FixedOffsetsONet(exact + bias)
    cascade = Cascade(PNet(), RNet(), onet, device="cpu", stack=True)

    records = [FaceRecord(_write_image(tmp_path / f"face{i}.png"), reference, POINTS[None], name=f"face{i}")
               for i in range(3)]
    records.append(FaceRecord(tmp_path / "missing.png", reference, POINTS[None]))  # counted skip
    records.append(FaceRecord(_write_image(tmp_path / "no_points.png"), reference, None))  # not scored
    nan_points = np.full((1, 5, 2), np.nan, np.float32)
    records.append(FaceRecord(_write_image(tmp_path / "nan.png"), reference, nan_points))

    # Detections: image 0 finds the face (its landmarks 3, 4 px off) and a far-away box; image 1
    # finds only the far box; image 2 finds nothing.
    far = np.array([[80, 80, 99, 99]], np.float32)
    found_near = Detections(np.concatenate([far, reference[None] + 1]), np.array([0.99, 0.98], np.float32),
                            np.stack([POINTS * 0, POINTS + [3, 4]]).astype(np.float32))
    found_far = Detections(far, np.array([0.9], np.float32), np.zeros((1, 5, 2), np.float32))
    answers = iter([found_near, found_far, Detections.empty(True)])
    monkeypatch.setattr(cascade, "detect_batch", lambda images: [next(answers) for _ in images])

    results, skipped = evaluate_landmarks(cascade, records, progress=False)
    assert [s["image"] for s in skipped] == [str(tmp_path / "missing.png")]
    ref = results["reference"]
    assert (ref.faces, ref.scored) == (3, 3)
    assert ref.nme == pytest.approx(0.05 * side / 20, abs=1e-5)
    det = results["detected"]
    assert (det.faces, det.scored) == (3, 1)
    assert det.nme == pytest.approx(5 / 20, abs=1e-6)
    assert det.failure_rate == 1.0


def test_eval_landmarks_command(tmp_path, run_cli):
    torch.manual_seed(0)
    run = tmp_path / "run"
    run.mkdir()
    for stage in ("pnet", "rnet"):
        save_checkpoint(run / f"{stage}.pt", {"stage": stage, "model": build_net(stage).state_dict(), "epoch": 1})
    crops = tmp_path / "crops"
    lines = []
    for i in range(4):
        _write_image(crops / f"c{i}.jpg", (80, 80))
        xs, ys = POINTS[:, 0] * 0.8, POINTS[:, 1] * 0.8
        lines.append(f"c{i}.jpg " + " ".join(f"{v:.3f}" for v in [*xs, *ys]))
    (crops / "list.txt").write_text("\n".join(lines) + "\n")

    result = run_cli("eval", "landmarks", "--weights", run, "--annotations", crops / "list.txt", "--quiet",
                     "--out", tmp_path / "out")
    assert result.returncode == 2
    assert "onet.pt: checkpoint not found" in result.stderr and len(result.stderr.strip().splitlines()) == 1

    save_checkpoint(run / "onet.pt", {"stage": "onet", "model": build_net("onet").state_dict(), "epoch": 1})
    result = run_cli("eval", "landmarks", "--weights", run, "--annotations", crops / "list.txt", "--quiet",
                     "--out", tmp_path / "out")
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "out" / "landmarks.json").read_text())
    reference = report["results"]["reference"]
    assert reference["faces"] == reference["scored"] == 4
    assert np.isfinite(reference["nme"]) and reference["nme"] > 0
    assert (tmp_path / "out" / "ced.png").stat().st_size > 1000
    assert "reference: NME" in result.stdout

    # Every image unreadable: nothing scored is an error, not an NME of nan.
    from mtcnn_train.config import load_config
    from mtcnn_train.datasets.records import FaceRecord
    from mtcnn_train.errors import AnnotationError, UserError
    from mtcnn_train.evaluation.landmarks import evaluate_landmark_records

    gone = [FaceRecord(image_path=tmp_path / f"gone{i}.jpg", boxes=[[0, 0, 80, 80]], landmarks=POINTS[None] * 0.8)
            for i in range(3)]
    with pytest.raises(UserError, match=r"held-out: no face could be scored \(3 of 3 image\(s\) unreadable; first: "):
        evaluate_landmark_records(run, gone, tmp_path / "out2", load_config(None), source="held-out", progress=False)
    assert not (tmp_path / "out2" / "landmarks.json").exists()
    # A face whose two eyes coincide has no scale: the list's line is named, before any detection.
    flat = FaceRecord(image_path=crops / "c0.jpg", boxes=[[0, 0, 80, 80]], landmarks=np.full((1, 5, 2), 5.0),
                      name="c0.jpg", source=f"{crops / 'list.txt'}:7")
    with pytest.raises(AnnotationError, match=r"list\.txt:7: c0\.jpg: both eyes at the same point"):
        evaluate_landmark_records(run, [flat], tmp_path / "out3", load_config(None), source="list", progress=False)


def test_mirror_average_reads_the_flipped_face_too():
    """With ``landmarks_mirror_average`` O-Net's reading of a box is the mean of its reading of the
    box and of the mirrored box in the mirrored image, mapped back (x -> W - x, left/right swapped)."""
    import dataclasses

    from mtcnn_train.config import DetectionConfig
    from mtcnn_train.evaluation.landmarks import onet_landmarks

    torch.manual_seed(0)
    onet = build_net("onet").eval()
    rng = np.random.default_rng(0)
    image = cv2.GaussianBlur(rng.integers(0, 256, (90, 120, 3)).astype(np.uint8), (7, 7), 0)
    boxes = np.array([[10, 12, 58, 60], [50, 20, 110, 80]], np.float32)
    width = image.shape[1]
    flipped_boxes = np.stack([width - boxes[:, 2], boxes[:, 1], width - boxes[:, 0], boxes[:, 3]], 1)
    cfg = DetectionConfig(device="cpu")
    plain = Cascade(PNet(), RNet(), onet, cfg=cfg)
    averaged = Cascade(PNet(), RNet(), onet, cfg=dataclasses.replace(cfg, landmarks_mirror_average=True))

    direct = onet_landmarks(plain, [image], [boxes])[0]
    mirrored = onet_landmarks(plain, [image[:, ::-1].copy()], [flipped_boxes])[0]
    mirrored_back = np.stack([width - mirrored[..., 0], mirrored[..., 1]], -1)[:, [1, 0, 2, 4, 3]]
    both = onet_landmarks(averaged, [image], [boxes])[0]
    np.testing.assert_allclose(both, (direct + mirrored_back) / 2, atol=1e-3)
    assert np.abs(both - direct).max() > 0.05  # a random net is not symmetric: the option acts
