"""gen-samples on small synthetic data: labels in band, determinism over workers, resume, bad inputs,
validation split, parts and merge, the CLI."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from mtcnn_train.datasets.landmarks import read_landmarks
from mtcnn_train.datasets.wider import read_wider, wider_paths
from mtcnn_train.errors import UserError
from mtcnn_train.geometry import MIRROR_POINT_ORDER, calibrate, iou_matrix, landmarks_from_offsets
from mtcnn_train.samples import units, workdir
from mtcnn_train.samples.generate import generate_samples
from mtcnn_train.samples.units import LANDMARK_PREFIX, WIDER_PREFIX
from mtcnn_train.samples.shards import SampleSet
from mtcnn_train.samples.labels import LABEL_LANDMARK, LABEL_NEGATIVE, LABEL_PART, LABEL_POSITIVE

from samples_synthetic_data import small_config, synthetic_data  # noqa: F401  (fixtures used below)


def set_files(directory: Path) -> dict[str, bytes]:
    """Every file of a finished set (shards, manifest, config) by name."""
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir()) if p.is_file()}


@pytest.fixture
def small_units(monkeypatch):
    # Several work units even on 21 images, so resuming and parallel work have something to split.
    monkeypatch.setattr(units, "WIDER_UNIT", 4)
    monkeypatch.setattr(units, "LANDMARK_UNIT", 16)


def ground_truth(manifest: dict, synthetic_data: dict) -> dict[str, np.ndarray]:
    """Boxes per ``manifest["images"]`` name, read back from the inputs."""
    annotation, images_root = wider_paths(synthetic_data["wider"])
    truth = {WIDER_PREFIX + r.name: r.boxes for r in read_wider(annotation, images_root)}
    derived = manifest["image_sources"]["landmarks"]["boxes"].startswith("derived")
    for r in read_landmarks(synthetic_data["landmarks"], derive_boxes=derived):
        truth[LANDMARK_PREFIX + r.name] = r.boxes
    return truth


def test_every_sample_lies_in_its_band_and_its_targets_point_at_its_face(small_config, synthetic_data, tmp_path, small_units):
    cfg = small_config()
    report = generate_samples(cfg, tmp_path / "set", progress=False)
    arrays = SampleSet.open(tmp_path / "set").arrays()
    manifest = json.loads((tmp_path / "set" / "manifest.json").read_text())
    truth = ground_truth(manifest, synthetic_data)
    assert all(report.counts[name] > 0 for name in ("negative", "positive", "part", "landmark"))
    s = cfg.sampling
    for i, label in enumerate(arrays["labels"]):
        crop = arrays["crops"][i].astype(np.float64)
        faces = truth[manifest["images"][arrays["sources"][i]]]
        iou = iou_matrix(crop, faces)[0]
        best = iou.max() if len(iou) else 0.0
        if label == LABEL_NEGATIVE:
            assert best < s.neg_iou
            assert np.isnan(arrays["boxes"][i]).all()
        elif label == LABEL_POSITIVE:
            assert best > s.pos_iou
        elif label == LABEL_PART:
            assert s.part_iou <= best <= s.pos_iou
        else:
            assert label == LABEL_LANDMARK and best > s.pos_iou
        if label != LABEL_NEGATIVE and label != LABEL_LANDMARK:
            # The box target calibrates the crop back onto the face of highest IoU.
            face = calibrate(crop[None], arrays["boxes"][i][None].astype(np.float64))[0]
            assert np.allclose(face, faces[iou.argmax()], atol=1e-3)
    # Landmark targets map back onto the source points (directly, or mirrored within the crop).
    lm_records = {LANDMARK_PREFIX + r.name: r for r in read_landmarks(synthetic_data["landmarks"])}
    for i in np.nonzero(arrays["labels"] == LABEL_LANDMARK)[0]:
        crop = arrays["crops"][i].astype(np.float64)[None]
        points = landmarks_from_offsets(crop, arrays["landmarks"][i].astype(np.float64))[0]
        source = lm_records[manifest["images"][arrays["sources"][i]]].landmarks[0]
        mirrored = source[list(MIRROR_POINT_ORDER)].copy()
        mirrored[:, 0] = crop[0, 0] + crop[0, 2] - mirrored[:, 0]
        assert np.allclose(points, source, atol=1e-3) or np.allclose(points, mirrored, atol=1e-3)


def test_turned_landmark_crops_keep_point_distances_and_tilt_the_eye_line(small_config, synthetic_data, tmp_path):
    def landmark_samples(*extra):
        out = tmp_path / f"set{len(extra)}"
        generate_samples(small_config("sampling.ratio.landmark=100", *extra), out, progress=False)
        arrays = SampleSet.open(out).arrays()
        manifest = json.loads((out / "manifest.json").read_text())
        rows = np.nonzero(arrays["labels"] == LABEL_LANDMARK)[0]
        return arrays, manifest, rows

    lm_records = {LANDMARK_PREFIX + r.name: r for r in read_landmarks(synthetic_data["landmarks"])}

    def eye_tilts(arrays, manifest, rows):
        tilts = []
        for i in rows:
            crop = arrays["crops"][i].astype(np.float64)
            side = crop[2] - crop[0]
            points = arrays["landmarks"][i].reshape(5, 2).astype(np.float64) * side
            source = lm_records[manifest["images"][arrays["sources"][i]]].landmarks[0]
            # Turning and mirroring keep every distance between points.
            for a, b in ((0, 1), (0, 4), (2, 3)):
                assert np.linalg.norm(points[a] - points[b]) == pytest.approx(np.linalg.norm(source[a] - source[b]), abs=1e-2)
            eyes = points[1] - points[0]
            source_eyes = source[1] - source[0]
            tilts.append(np.degrees(np.arctan2(eyes[1], eyes[0]) - np.arctan2(source_eyes[1], abs(source_eyes[0]))))
        return np.abs(np.array(tilts))

    upright = landmark_samples()
    turned = landmark_samples("sampling.landmark_max_rotation=25")
    assert len(upright[2]) > 10 and len(turned[2]) > 10
    # Upright crops keep the source's eye line (up to mirroring); turned ones tilt it, by at most 25 degrees.
    upright_tilts, turned_tilts = eye_tilts(*upright), eye_tilts(*turned)
    assert upright_tilts.max() < 1e-3
    assert turned_tilts.max() <= 25.0 + 1e-3 and turned_tilts.mean() > 5.0


def test_same_seed_gives_byte_identical_sets_in_one_process_and_in_worker_processes(small_config, tmp_path, small_units, monkeypatch):
    one = generate_samples(small_config("sampling.workers=1"), tmp_path / "one", progress=False)
    assert one.process_ids == (os.getpid(),)
    # Spawned workers only (this process idle), so the units really are cut in other processes
    # (left to itself this process would cut a run this small alone before they start).
    two = generate_samples(small_config("sampling.workers=3"), tmp_path / "two", progress=False,
                           this_process_works=False)
    assert two.process_ids and os.getpid() not in two.process_ids
    assert one.counts == two.counts
    files_one, files_two = set_files(tmp_path / "one"), set_files(tmp_path / "two")
    assert files_one.keys() == files_two.keys()
    for name in files_one:
        if name.startswith("shard-"):
            assert files_one[name] == files_two[name], name
    # The manifests differ only where they record the worker count itself.
    manifests = [json.loads(files[name]) for files in (files_one, files_two) for name in ["manifest.json"]]
    assert [m["config"]["sampling"].pop("workers") for m in manifests] == [1, 3]
    assert manifests[0] == manifests[1]
    generate_samples(small_config("sampling.seed=5"), tmp_path / "seed5", progress=False)
    assert set_files(tmp_path / "seed5")["shard-00000.crops.npy"] != files_one["shard-00000.crops.npy"]


def test_landmark_faces_cut_in_small_batches_give_the_same_set(small_config, tmp_path, monkeypatch):
    """A landmark unit is cut LANDMARK_CUT_BATCH faces at a time to bound its memory; every face
    has its own random stream, so the batch size must not change a byte."""
    from mtcnn_train.samples import cutting

    whole = generate_samples(small_config(), tmp_path / "whole", progress=False)
    monkeypatch.setattr(cutting, "LANDMARK_CUT_BATCH", 3)
    batched = generate_samples(small_config(), tmp_path / "batched", progress=False)
    assert whole.counts == batched.counts and whole.counts["landmark"] > 0
    files_whole, files_batched = set_files(tmp_path / "whole"), set_files(tmp_path / "batched")
    for name in files_whole:
        if name.startswith("shard-"):
            assert files_whole[name] == files_batched[name], name


def test_an_interrupted_run_resumes_to_the_same_output(small_config, tmp_path, small_units, monkeypatch):
    cfg = small_config()
    generate_samples(cfg, tmp_path / "whole", progress=False)

    real = workdir.process_unit
    calls = {"n": 0}

    def crash_on_third(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt("simulated interruption")
        return real(*args, **kwargs)

    monkeypatch.setattr(workdir, "process_unit", crash_on_third)
    with pytest.raises(KeyboardInterrupt):
        generate_samples(cfg, tmp_path / "resumed", progress=False)
    work = tmp_path / "resumed" / ".work"
    finished = sorted(p.name for p in work.iterdir() if p.is_dir())
    assert len(finished) == 2 and not (tmp_path / "resumed" / "manifest.json").exists()
    assert not list(work.glob(".tmp-*"))
    with pytest.raises(UserError, match="not a finished sample set"):
        SampleSet.open(tmp_path / "resumed")
    # A half-written unit (as a kill during its write leaves it) is never taken for a finished one.
    (work / ".tmp-wider-000002-999").mkdir()
    (work / ".tmp-wider-000002-999" / "shard-00000.labels.npy").write_bytes(b"half")

    monkeypatch.setattr(workdir, "process_unit", real)
    report = generate_samples(cfg, tmp_path / "resumed", progress=False)
    assert report.units_done_before == 2
    assert set_files(tmp_path / "whole") == set_files(tmp_path / "resumed")
    assert not work.exists()
    # A finished set is left alone by a rerun, and refused for other settings unless forced.
    again = generate_samples(cfg, tmp_path / "resumed", progress=False)
    assert again.already_complete and again.counts == report.counts
    with pytest.raises(UserError, match="--force"):
        generate_samples(small_config("sampling.seed=3"), tmp_path / "resumed", progress=False)
    generate_samples(small_config("sampling.seed=3"), tmp_path / "resumed", progress=False, force=True)
    assert json.loads((tmp_path / "resumed" / "manifest.json").read_text())["seed"] == 3


def test_changed_settings_restart_the_unfinished_work(small_config, tmp_path, small_units, monkeypatch):
    real = workdir.process_unit
    calls = {"n": 0}

    def crash_on_second(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("simulated crash")
        return real(*args, **kwargs)

    monkeypatch.setattr(workdir, "process_unit", crash_on_second)
    with pytest.raises(RuntimeError):
        generate_samples(small_config(), tmp_path / "out", progress=False)
    monkeypatch.setattr(workdir, "process_unit", real)
    report = generate_samples(small_config("sampling.seed=9"), tmp_path / "out", progress=False)
    assert report.units_done_before == 0
    generate_samples(small_config("sampling.seed=9"), tmp_path / "fresh", progress=False)
    assert set_files(tmp_path / "out") == set_files(tmp_path / "fresh")


def test_bad_inputs_are_counted_reported_and_listed(synthetic_data, tmp_path, small_config):
    root = tmp_path / "wider"
    shutil.copytree(synthetic_data["wider"], root)
    images = root / "WIDER_train" / "images"
    annotation = root / "wider_face_split" / "wider_face_train_bbx_gt.txt"
    text = annotation.read_text()
    gray = np.full((120, 160), 128, np.uint8)
    cv2.ellipse(gray, (60, 60), (20, 25), 0, 0, 360, 200, -1)
    cv2.imwrite(str(images / "0--Event0" / "gray.png"), gray)
    rgba = np.full((120, 160, 4), 90, np.uint8)
    cv2.imwrite(str(images / "0--Event0" / "rgba.png"), rgba)
    (images / "1--Event1" / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    shutil.copy(images / "2--Event2" / "2_img_002.jpg", images / "2--Event2" / "outside.jpg")  # one entry per image
    extra = ["0--Event0/gray.png", "1", "40 35 40 50 0 0 0 0 0 0 ",
             "0--Event0/rgba.png", "1", "150 100 30 30 0 0 0 0 0 0 ",   # reaches past the right edge: clipped
             "1--Event1/corrupt.jpg", "1", "10 10 30 30 0 0 0 0 0 0 ",
             "2--Event2/missing.jpg", "1", "10 10 30 30 0 0 0 0 0 0 ",
             "2--Event2/outside.jpg", "2", "10 10 30 30 0 0 0 0 0 0 ", "400 400 30 30 0 0 0 0 0 0 "]
    annotation.write_text(text + "\n".join(extra) + "\n")
    cfg = small_config(f"data.wider_root={root}", "data.val_fraction=0")
    report = generate_samples(cfg, tmp_path / "out", progress=False)
    stats = report.stats
    assert stats["images_unreadable"] == 2
    assert stats["images_converted"] == 2
    assert stats["boxes_clipped"] == 1
    assert stats["boxes_outside"] == 1
    summary = report.summary()
    assert "skipped 2 unreadable images, converted 2, clipped 1 boxes, dropped 1 outside" in summary
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["input_counts"]["images_unreadable"] == 2
    problems = {p["image"]: p["problem"] for p in manifest["problems"]}
    assert "not found" in problems["2--Event2/missing.jpg"]
    assert "corrupt" in problems["1--Event1/corrupt.jpg"] or "readable" in problems["1--Event1/corrupt.jpg"]
    assert "converted" in problems["0--Event0/gray.png"]
    # Samples from the converted images are ordinary RGB crops.
    arrays = SampleSet.open(tmp_path / "out").arrays()
    gray_index = manifest["images"].index(WIDER_PREFIX + "0--Event0/gray.png")
    assert (arrays["sources"] == gray_index).any()


def test_validation_images_are_never_sampled(small_config, synthetic_data, tmp_path, small_units):
    generate_samples(small_config("data.val_fraction=0.25"), tmp_path / "out", progress=False)
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    val = set(manifest["split"]["val"])
    train = set(manifest["split"]["train"])
    assert len(val) == 6 and len(train) == 18 and not val & train
    used = {manifest["images"][i] for i in np.unique(SampleSet.open(tmp_path / "out").arrays()["sources"])}
    assert not {WIDER_PREFIX + name for name in val} & used
    assert {WIDER_PREFIX + name for name in train} >= {n for n in used if n.startswith(WIDER_PREFIX)}


def sample_arrays_by_name(directory: Path) -> dict[str, np.ndarray]:
    """Every array of a finished set, ``sources`` as the image names they index."""
    sample_set = SampleSet.open(directory)
    arrays = sample_set.arrays()
    arrays["sources"] = np.array([sample_set.manifests[0]["images"][i] for i in arrays["sources"]])
    return arrays


def assert_same_sets(merged: Path, whole: Path) -> None:
    a, b = sample_arrays_by_name(merged), sample_arrays_by_name(whole)
    assert sorted(a) == sorted(b)
    for key in b:
        assert a[key].dtype == b[key].dtype and a[key].shape == b[key].shape, key
        assert np.array_equal(a[key], b[key], equal_nan=a[key].dtype.kind == "f"), key
    ma, mb = (json.loads((d / "manifest.json").read_text()) for d in (merged, whole))
    for key in ("images", "split", "counts", "available", "targets", "input_counts", "ratio_used", "image_sources"):
        assert ma[key] == mb[key], key


@pytest.mark.parametrize("num_shards", [2, 3])
def test_parts_merge_into_the_set_one_run_makes(small_config, tmp_path, small_units, cli_runner, num_shards):
    generate_samples(small_config(), tmp_path / "whole", progress=False)
    parts = [generate_samples(small_config(), tmp_path / f"part{i}", num_shards=num_shards, shard_index=i,
                              progress=False) for i in range(num_shards)]
    assert all(p.part == (i, num_shards) and "kept for samples merge" in p.summary() for i, p in enumerate(parts))
    # A part is not a sample set: training (and merging a part alone) refuses it in one line.
    with pytest.raises(UserError, match="run samples merge"):
        SampleSet.open(tmp_path / "part0")
    result = cli_runner("samples", "merge", tmp_path / "alone", tmp_path / "part0")
    assert result.returncode != 0 and "needs the" in result.stderr
    # Any order of the parts on the command line gives the same set: the one of the whole run.
    result = cli_runner("samples", "merge", tmp_path / "merged", *[tmp_path / f"part{i}" for i in
                                                                  reversed(range(num_shards))])
    assert result.returncode == 0, result.stderr
    assert_same_sets(tmp_path / "merged", tmp_path / "whole")
    # A part cut again is already complete (its fingerprint holds the part).
    again = generate_samples(small_config(), tmp_path / "part1", num_shards=num_shards, shard_index=1, progress=False)
    assert again.already_complete and again.part == (1, num_shards)


def test_mined_parts_merge_into_the_set_one_run_makes(small_config, tmp_path, small_units, cli_runner):
    from tests.random_nets import save_random_run

    weights = save_random_run(tmp_path / "nets")
    # Random nets pass most windows: a larger minimum face and high thresholds keep mining small.
    cfg = small_config("detection.device=cpu", "detection.min_face_size=40", "sampling.mining_thresholds=[0.9,0.2]",
                       "sampling.mining_negatives_per_image=5", "sampling.mining_base_crops=true")
    whole = generate_samples(cfg, tmp_path / "whole", "rnet", weights, progress=False)
    assert whole.mining and whole.counts["negative"] > 0
    for i in range(2):
        generate_samples(cfg, tmp_path / f"part{i}", "rnet", weights, num_shards=2, shard_index=i, progress=False)
    result = cli_runner("samples", "merge", tmp_path / "merged", tmp_path / "part0", tmp_path / "part1")
    assert result.returncode == 0, result.stderr
    assert_same_sets(tmp_path / "merged", tmp_path / "whole")
    mined = [json.loads((tmp_path / d / "manifest.json").read_text())["mining"] for d in ("merged", "whole")]
    assert mined[0]["composition"] == mined[1]["composition"]
    assert mined[0]["negatives_over_cap"] == mined[1]["negatives_over_cap"]


def test_cli_gen_samples_and_inspect(synthetic_data, tmp_path, cli_runner):
    out = tmp_path / "cli"
    result = cli_runner("gen-samples", "--stage", "pnet", "--out", out, "--wider-root", synthetic_data["wider"],
                        "--landmarks", synthetic_data["landmarks"], "--workers", "1", "--quiet",
                        "--set", "sampling.random_negatives_per_image=8", "--set", "sampling.crops_per_face=8")
    assert result.returncode == 0, result.stderr
    assert "samples (negative" in result.stdout and "crops/s" in result.stdout
    assert (out / "config.yaml").is_file() and (out / "manifest.json").is_file() and not (out / ".work").exists()
    result = cli_runner("samples", "inspect", out)
    assert result.returncode == 0, result.stderr
    sheet = cv2.imread(str(out / "contact_sheet.png"))
    assert sheet is not None and sheet.shape[0] >= 4 * 96
    counts = SampleSet.open(out).counts()
    assert f"negative {counts['negative']}" in result.stdout
    # A chosen --out never replaces a file unasked (it may be one of the dataset's images), and
    # must be an image; absurd options are refused by the parser.
    other = tmp_path / "photo.png"
    other.write_bytes(b"someone's picture")
    result = cli_runner("samples", "inspect", out, "--out", other)
    assert result.returncode == 2 and "photo.png: exists; pass --force" in result.stderr
    assert other.read_bytes() == b"someone's picture"
    assert cli_runner("samples", "inspect", out, "--out", other, "--force").returncode == 0
    assert cv2.imread(str(other)) is not None
    result = cli_runner("samples", "inspect", out, "--out", tmp_path / "sheet.txt")
    assert result.returncode == 2 and "name it .png or .jpg" in result.stderr
    for option, value in (("--seed", "-5"), ("--per-type", "100000")):
        result = cli_runner("samples", "inspect", out, option, value)
        assert result.returncode == 2 and "Traceback" not in result.stderr
    # Mining stages need the earlier nets; bad values give one line and status 2.
    result = cli_runner("gen-samples", "--stage", "rnet", "--out", tmp_path / "r")
    assert result.returncode == 2 and "pass --weights RUN_DIR" in result.stderr and len(result.stderr.splitlines()) == 1
    result = cli_runner("gen-samples", "--stage", "pnet", "--out", tmp_path / "none")
    assert result.returncode == 2 and result.stderr.startswith("error: nothing to sample")
    result = cli_runner("gen-samples", "--stage", "pnet", "--out", tmp_path / "x", "--wider-root", tmp_path / "nowhere")
    assert result.returncode == 2 and "wider_face_split" in result.stderr


WORKER_KILL_SCRIPT = """
import sys
from mtcnn_train.config import load_config
from mtcnn_train.samples import units
from mtcnn_train.samples.generate import generate_samples
from mtcnn_train.samples.pool import WorkerDiedError

units.WIDER_UNIT, units.LANDMARK_UNIT = 4, 16
cfg = load_config(None, sys.argv[3:])  # argv[2] is a placeholder
try:
    # Only the workers cut units (and only they die).
    generate_samples(cfg, sys.argv[1], progress=False, this_process_works=False)
except WorkerDiedError as exc:
    print(exc)
    sys.exit(3)
"""


@pytest.mark.slow
def test_a_worker_killed_mid_unit_stops_the_run_and_a_rerun_resumes(synthetic_data, small_config, tmp_path, small_units):
    import subprocess
    import sys

    overrides = [f"data.wider_root={synthetic_data['wider']}", f"data.landmarks={synthetic_data['landmarks']}",
                 "data.val_fraction=0.125", "sampling.random_negatives_per_image=12", "sampling.crops_per_face=12",
                 "sampling.landmark_crops_per_face=4", "sampling.workers=3"]
    out = tmp_path / "killed"
    # Each worker SIGKILLs itself when it is about to publish its first unit: before this fix the
    # pool quietly replaced it and the run waited for the lost unit forever.
    env = dict(os.environ, MTCNN_FAULT_KILL_AT="1")
    result = subprocess.run([sys.executable, "-c", WORKER_KILL_SCRIPT, str(out), "-", *overrides], env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 3, result.stderr[-2000:]
    assert "worker process died" in result.stdout and "rerun" in result.stdout
    assert not (out / "manifest.json").exists()

    # The rerun (no kills) resumes and gives the same set as an uninterrupted run.
    generate_samples(small_config(), out, progress=False)
    generate_samples(small_config(), tmp_path / "whole", progress=False)
    files_resumed, files_whole = set_files(out), set_files(tmp_path / "whole")
    for name in files_whole:
        if name.startswith("shard-"):
            assert files_resumed[name] == files_whole[name], name
