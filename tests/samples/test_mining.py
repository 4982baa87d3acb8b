"""Hard-example mining: labelling of candidates, recall figures, and a mined set end to end."""
import json

import numpy as np
import pytest
import torch

from mtcnn_train.checkpoint import save_checkpoint
from mtcnn_train.config import load_config
from mtcnn_train.errors import UserError
from mtcnn_train.geometry import calibrate, iou_matrix
from mtcnn_train.nets import build_net
from mtcnn_train.samples import sampling as smp
from mtcnn_train.samples.mining import (
    ORIGIN_DETECTION, ORIGIN_TOP_UP, cap_negatives, composition, label_candidates, mining_detection_config,
    recall_counts, recall_summary, weights_fingerprint)
from mtcnn_train.samples.shards import SampleSet
from mtcnn_train.samples.labels import LABEL_NEGATIVE, LABEL_PART, LABEL_POSITIVE

BANDS = smp.Bands.from_config(load_config(None).sampling)


def test_candidates_are_labelled_by_their_iou_band():
    faces = np.array([[100, 100, 200, 200], [400, 400, 410, 410]], float)  # the second is too small
    usable = np.array([True, False])
    candidates = np.array([
        [100, 100, 200, 200],   # IoU 1 -> positive
        [110, 110, 210, 210],   # IoU 0.68 -> positive
        [130, 130, 230, 230],   # IoU 0.32 -> discarded (between 0.3 and 0.4)
        [120, 100, 220, 200],   # IoU 0.667 -> positive
        [140, 100, 240, 200],   # IoU 0.43 -> part
        [500, 500, 600, 600],   # nothing -> negative
        [400, 400, 410, 410],   # exactly the unusable face -> not a positive, not a negative
    ], float)
    labels, targets = label_candidates(candidates, faces, usable, BANDS)
    assert labels.tolist() == [LABEL_POSITIVE, LABEL_POSITIVE, smp.DISCARD, LABEL_POSITIVE, LABEL_PART,
                               LABEL_NEGATIVE, smp.DISCARD]
    has_target = np.isin(labels, [LABEL_POSITIVE, LABEL_PART])
    # The targets map each crop back onto the face it was labelled against.
    np.testing.assert_allclose(calibrate(candidates[has_target], targets[has_target].astype(float)),
                               np.repeat(faces[:1], has_target.sum(), 0), atol=1e-3)
    assert np.all(np.isnan(targets[~has_target]))
    # Negatives overlap no face at all above the band, invalid faces included.
    assert iou_matrix(candidates[labels == LABEL_NEGATIVE], faces).max() < BANDS.neg_iou


def test_recall_counts_usable_faces_only():
    faces = np.array([[0, 0, 100, 100], [200, 200, 300, 300], [500, 500, 505, 505]], float)
    usable = np.array([True, True, False])
    candidates = np.array([[0, 0, 100, 100], [200, 240, 300, 340]], float)  # IoU 1 and 0.43
    counts = recall_counts(candidates, faces, usable)
    assert counts == {"faces_usable": 2, "candidates": 2, "covered_0.65": 1, "covered_0.4": 2}
    assert recall_counts(np.zeros((0, 4)), faces, usable)["covered_0.4"] == 0
    summary = recall_summary({"images": 2, **counts}, "rnet")
    assert summary["earlier_stages"] == "P" and summary["recall_at_0.65"] == 0.5 and summary["candidates_per_image"] == 1


def test_negatives_are_capped_per_image_hardest_first():
    labels = np.array([LABEL_NEGATIVE, LABEL_POSITIVE, LABEL_NEGATIVE, LABEL_NEGATIVE, LABEL_PART, LABEL_NEGATIVE])
    # Candidates come best-scored first: the first two negatives are the hardest and stay.
    assert cap_negatives(labels, 2).tolist() == [True, True, True, False, True, False]
    assert cap_negatives(labels, 0).all()  # 0: no cap


def test_composition_counts_detections_and_top_up_per_type():
    labels = np.array([LABEL_NEGATIVE, LABEL_POSITIVE, LABEL_POSITIVE, LABEL_PART, -2], np.int8)
    origin = np.array([ORIGIN_DETECTION, ORIGIN_DETECTION, ORIGIN_TOP_UP, ORIGIN_TOP_UP, ORIGIN_TOP_UP])
    assert composition(labels, origin) == {"negative": {"detections": 1, "top_up": 0},
                                           "positive": {"detections": 1, "top_up": 1},
                                           "part": {"detections": 0, "top_up": 1}}


def test_mining_runs_the_earlier_stages_at_the_mining_thresholds():
    cfg = load_config(None, ["sampling.mining_thresholds=[0.2,0.3]"])
    assert mining_detection_config(cfg).thresholds == [0.2, 0.3, cfg.detection.thresholds[2]]
    assert load_config(None).sampling.mining_thresholds == [0.3, 0.1]  # the reference trainers'
    assert mining_detection_config(load_config(None, ["sampling.mining_thresholds=[]"])).thresholds == \
        load_config(None).detection.thresholds


def test_mining_needs_the_earlier_stages(tmp_path):
    with pytest.raises(UserError, match="pnet.pt: not found"):
        weights_fingerprint(tmp_path, "rnet")
    save_checkpoint(tmp_path / "pnet.pt", {"stage": "pnet", "model": build_net("pnet").state_dict()})
    weights_fingerprint(tmp_path, "rnet")
    with pytest.raises(UserError, match="rnet.pt: not found"):
        weights_fingerprint(tmp_path, "onet")


def _face_loving_net(stage):
    """A net whose face logit is large everywhere and whose boxes are its windows: every window
    passes, so mining has candidates, and which of them cover a face depends on nothing random
    (with the random box head of a fresh net a mined set came out empty about 1 run in 8)."""
    net = build_net(stage)
    face, box = (net.conv4_1, net.conv4_2) if stage == "pnet" else (net.dense5_1, net.dense5_2)
    with torch.no_grad():
        face.weight.zero_()
        face.bias.copy_(torch.tensor([-3.0, 3.0]))
        box.weight.zero_()
        box.bias.zero_()
    return net


def test_mined_sets_are_labelled_resumable_and_worker_independent(tmp_path, cli_runner):
    from mtcnn_train.synthetic import make_synthetic, synthetic_config

    make_synthetic(tmp_path / "data", num_images=4, seed=3)
    run = tmp_path / "run"
    for stage in ("pnet", "rnet"):
        save_checkpoint(run / f"{stage}.pt", {"stage": stage, "model": _face_loving_net(stage).state_dict()})
    data = synthetic_config(tmp_path / "data")["data"]
    sets = ["--set", f"data.wider_root={data['wider_root']}", "--set", f"data.landmarks={data['landmarks']}",
            "--set", "data.val_fraction=0", "--set", "detection.min_face_size=60", "--set", "sampling.landmark_crops_per_face=4"]
    outs = {}
    for stage, workers in (("rnet", 1), ("onet", 1), ("onet", 2)):
        out = tmp_path / f"{stage}-{workers}"
        result = cli_runner("gen-samples", "--stage", stage, "--weights", run, "--out", out, "--workers", workers,
                            "--quiet", *sets)
        assert result.returncode == 0, result.stderr
        assert "recall on" in result.stdout and "candidates per image" in result.stdout
        outs[(stage, workers)] = out
    r = SampleSet.open(outs[("rnet", 1)])
    assert r.crop_size == 24 and len(r) > 0
    manifest = json.loads((outs[("rnet", 1)] / "manifest.json").read_text())
    assert manifest["stage"] == "rnet" and manifest["mining"]["earlier_stages"] == "P"
    assert manifest["mining"]["candidates_per_image"] > 0
    # The paper's rule by default: every detection sample came from the earlier stage's detections.
    mined = manifest["mining"]["composition"]
    assert all(mined[t]["top_up"] == 0 and mined[t]["detections"] == manifest["counts"][t]
               for t in ("negative", "positive", "part"))
    o = SampleSet.open(outs[("onet", 1)])
    assert o.crop_size == 48 and all(o.counts()[t] > 0 for t in ("negative", "positive", "part", "landmark"))
    # Same seed, 1 or 2 workers: byte-identical shards.
    for path in sorted(outs[("onet", 1)].glob("shard-*.npy")):
        assert path.read_bytes() == (outs[("onet", 2)] / path.name).read_bytes()
    # Every mined sample sits in its IoU band against its image's faces.
    arrays = o.arrays()
    images = json.loads((outs[("onet", 1)] / "manifest.json").read_text())["images"]
    from mtcnn_train.datasets.wider import read_wider, wider_paths

    records = {f"wider:{rec.name}": rec for rec in read_wider(*wider_paths(data["wider_root"]))}
    for label, crop, source in zip(arrays["labels"], arrays["crops"], arrays["sources"]):
        if label not in (LABEL_NEGATIVE, LABEL_POSITIVE, LABEL_PART):
            continue
        faces = records[images[source]].boxes
        best = iou_matrix(crop[None], faces).max() if len(faces) else 0.0
        if label == LABEL_NEGATIVE:
            assert best < 0.3
        elif label == LABEL_POSITIVE:
            assert best > 0.65
        else:
            assert 0.4 <= best <= 0.65
    # The explicit top-up: random crops around the faces join the mined ones, and the manifest
    # and the log say how many of each type came from detections.
    topped = tmp_path / "rnet-topped"
    result = cli_runner("gen-samples", "--stage", "rnet", "--weights", run, "--out", topped, "--quiet", *sets,
                        "--set", "sampling.mining_base_crops=true")
    assert result.returncode == 0, result.stderr
    assert "from detections:" in result.stdout and "top-up" in result.stdout
    topped_manifest = json.loads((topped / "manifest.json").read_text())
    parts = topped_manifest["mining"]["composition"]
    assert sum(p["top_up"] for p in parts.values()) > 0
    assert all(parts[t]["detections"] + parts[t]["top_up"] == topped_manifest["counts"][t]
               for t in ("negative", "positive", "part"))
    # R-Net's own shares (sampling.ratio_rnet) decide its set; the O-Net set keeps sampling.ratio.
    own = tmp_path / "rnet-own-ratio"
    result = cli_runner("gen-samples", "--stage", "rnet", "--weights", run, "--out", own, "--quiet", *sets,
                        "--set", "sampling.ratio_rnet.negative=0")
    assert result.returncode == 0, result.stderr
    own_manifest = json.loads((own / "manifest.json").read_text())
    assert own_manifest["ratio"] == {"negative": 0.0, "positive": 1.0, "part": 1.0, "landmark": 2.0}
    assert own_manifest["counts"]["negative"] == 0 and own_manifest["counts"]["positive"] > 0
    assert manifest["counts"]["negative"] > 0
    # Rerunning the finished command is a no-op that says so.
    again = cli_runner("gen-samples", "--stage", "rnet", "--weights", run, "--out", outs[("rnet", 1)], "--quiet", *sets)
    assert again.returncode == 0 and "already complete" in again.stdout


def test_mirrored_mining_adds_the_mirror_images_candidates_each_in_its_band(tmp_path, cli_runner):
    from mtcnn_train.datasets.wider import read_wider, wider_paths
    from mtcnn_train.synthetic import make_synthetic, synthetic_config

    make_synthetic(tmp_path / "data", num_images=3, seed=5)
    run = tmp_path / "run"
    save_checkpoint(run / "pnet.pt", {"stage": "pnet", "model": _face_loving_net("pnet").state_dict()})
    data = synthetic_config(tmp_path / "data")["data"]
    sets = ["--set", f"data.wider_root={data['wider_root']}", "--set", f"data.landmarks={data['landmarks']}",
            "--set", "data.val_fraction=0", "--set", "detection.min_face_size=60",
            "--set", "sampling.landmark_crops_per_face=1", "--set", "sampling.ratio.landmark=0"]
    manifests = {}
    for mirror in ("false", "true"):
        out = tmp_path / f"rnet-{mirror}"
        result = cli_runner("gen-samples", "--stage", "rnet", "--weights", run, "--out", out, "--workers", 1,
                            "--quiet", *sets, "--set", f"sampling.mining_mirror={mirror}")
        assert result.returncode == 0, result.stderr
        manifests[mirror] = json.loads((out / "manifest.json").read_text())
    plain, mirrored = manifests["false"]["mining"], manifests["true"]["mining"]
    assert all("of_mirror_images" not in plain["composition"][t] for t in ("negative", "positive", "part"))
    assert mirrored["composition"]["positive"]["of_mirror_images"] > 0
    # Every face is looked at twice: once in the image, once in its mirror image.
    assert mirrored["faces_usable"] == 2 * plain["faces_usable"]
    # Windows found on the mirror image are stored in the image's own coordinates: each sits in its
    # IoU band against the image's faces.
    mined = SampleSet.open(tmp_path / "rnet-true").arrays()
    images = manifests["true"]["images"]
    records = {f"wider:{rec.name}": rec for rec in read_wider(*wider_paths(data["wider_root"]))}
    checked = 0
    for label, crop, source in zip(mined["labels"], mined["crops"], mined["sources"]):
        if label not in (LABEL_NEGATIVE, LABEL_POSITIVE, LABEL_PART):
            continue
        best = iou_matrix(crop[None].astype(float), records[images[source]].boxes).max()
        assert {LABEL_NEGATIVE: best < 0.3, LABEL_POSITIVE: best > 0.65, LABEL_PART: 0.4 <= best <= 0.65}[label]
        checked += 1
    assert checked == len(mined["labels"])
