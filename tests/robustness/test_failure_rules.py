"""What happens when things go wrong, as a user meets it on the command line (issue 19).

One test per reported case, each running ``mtcnn-train`` in a subprocess and checking the exit
status, the one ``error:`` line (never a traceback) and that no input file changed (hashed before
and after).  Then one walk over every command that writes, with an output it cannot write (a
path under a regular file, a path under /proc), a disk that fills up, and a folder another run
holds.  The rules themselves are in docs/CONVENTIONS.md, "What happens when...".
"""
from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from mtcnn_train.checkpoint import save_checkpoint
from mtcnn_train.config import load_config, save_config
from mtcnn_train.datasets.split import split_train_val
from mtcnn_train.synthetic import make_synthetic
from mtcnn_train.datasets.wider import read_wider, wider_paths, write_wider
from mtcnn_train.evaluation.fddb import write_detections
from mtcnn_train.folder_lock import LOCK_FILE, FolderLock
from mtcnn_train.samples.shards import MANIFEST, SampleSet, write_sample_set
from mtcnn_train.samples.labels import LABEL_LANDMARK
from tests.detection.test_weights_import import fake_facenet_state_dict
from tests.evaluation.test_wider import write_official_mats
from tests.random_nets import make_random_nets, save_random_run
from tests.file_hashes import changed_files, tree_digest
from tests.training.conftest import write_tiny_samples

REPO_ROOT = Path(__file__).resolve().parents[2]
#: Thresholds that keep random-weight cascades fast on the synthetic images.
FAST_DETECTION = ["--set", "detection.thresholds=[0.8,0.7,0.6]", "--set", "detection.min_face_size=40",
                  "--set", "detection.device=cpu"]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    return env


def _file_size_limit(limit: int):
    """preexec_fn: writes past ``limit`` bytes fail with EFBIG, like a disk that is full."""
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


def cli(*args, cwd: Path | None = None, file_size_limit: int | None = None, timeout: float = 300):
    """Run ``mtcnn-train ARGS`` in a subprocess with this checkout's code."""
    return subprocess.run([sys.executable, "-m", "mtcnn_train", *map(str, args)], capture_output=True, text=True,
                          env=_env(), cwd=cwd, timeout=timeout,
                          preexec_fn=_file_size_limit(file_size_limit) if file_size_limit else None)


def error_line(stderr: str) -> str:
    """The command's one ``error:`` line (progress bars may share stderr); no traceback allowed."""
    assert "Traceback" not in stderr, stderr[-3000:]
    errors = [line for line in stderr.replace("\r", "\n").splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, stderr[-3000:]
    return errors[0]


def assert_refused(result, *fragments: str) -> str:
    """Exit status 2 and one ``error:`` line holding every fragment."""
    line = error_line(result.stderr)
    assert result.returncode == 2, (result.returncode, result.stderr[-3000:])
    for fragment in fragments:
        assert fragment in line, (fragment, line)
    return line


class Unchanged:
    """``with Unchanged(paths):`` fails when any file under ``paths`` changed, appeared or went away."""

    def __init__(self, *paths: Path) -> None:
        self.paths = paths

    def __enter__(self) -> "Unchanged":
        self.before = tree_digest(*self.paths)
        return self

    def __exit__(self, *exc) -> None:
        if exc[0] is None:
            changed = changed_files(self.before, tree_digest(*self.paths))
            assert not changed, f"input files changed: {changed}"


# --------------------------------------------------------------------------------------------
# Inputs, made once per module: a small synthetic set, a random-weight run folder, sample sets


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("world")
    make_synthetic(root / "syn", num_images=6, seed=0)
    save_random_run(root / "run")
    write_tiny_samples(root / "samples12", count=200, seed=1)
    photo = root / "photos" / "photo.jpg"
    photo.parent.mkdir()
    shutil.copy(next((root / "syn" / "wider" / "WIDER_val" / "images").rglob("*.jpg")), photo)
    return root


def _copy_run(world: Path, folder: Path) -> Path:
    shutil.copytree(world / "run", folder)
    return folder


# --------------------------------------------------------------------------------------------
# 1. detect never writes over an input or a file it did not write


def test_case01_detect_never_overwrites_inputs_or_foreign_files(world, tmp_path):
    pics = tmp_path / "pics"
    pics.mkdir()
    shutil.copy(world / "photos" / "photo.jpg", pics / "photo.jpg")
    cv2.imwrite(str(pics / "p.png"), cv2.imread(str(pics / "photo.jpg")))
    (pics / "p.jpg").write_bytes(b"the user's own p.jpg, never passed to detect")
    with Unchanged(pics, world / "run"):
        # the output folder is the input's folder: photo.jpg would be replaced by its annotated copy
        assert_refused(cli("detect", pics / "photo.jpg", "--weights", world / "run", "--out", pics, *FAST_DETECTION),
                       f"{pics}: holds the input", "--out")
        # p.png's annotated copy is p.jpg, which the user owns
        assert_refused(cli("detect", "p.png", "--weights", world / "run", "--out", ".", *FAST_DETECTION, cwd=pics),
                       "holds the input p.png")
        out = tmp_path / "out"
        out.mkdir()
        (out / "p.jpg").write_bytes(b"someone else's file")
        assert_refused(cli("detect", pics / "p.png", "--weights", world / "run", "--out", out, *FAST_DETECTION),
                       f"{out / 'p.jpg'}: exists and was not written by detect")
        assert (out / "p.jpg").read_bytes() == b"someone else's file"
    # An output folder inside the input folder is fine (the walk leaves it out), and a second run
    # replaces what the first one wrote.
    with Unchanged(*[p for p in pics.iterdir()]):
        for _ in range(2):
            result = cli("detect", pics, "--weights", world / "run", "--out", pics / "detected", *FAST_DETECTION)
            assert result.returncode == 0, result.stderr[-2000:]
    written = json.loads((pics / "detected" / "detections.json").read_text())
    # p.jpg (the user's text file) is skipped as unreadable; p.png's copy takes the next free name
    assert sorted(e["annotated"] for e in written["images"]) == ["p-2.jpg", "photo.jpg"]
    assert [e["file"] for e in written["skipped"]] == [str(pics / "p.jpg")]


# --------------------------------------------------------------------------------------------
# 2. samples merge replaces a finished set only with --force, and then nothing of it stays


def test_case02_merge_into_a_finished_set(world, tmp_path):
    parts = [write_tiny_samples(tmp_path / f"part{k}", count=60, seed=10 + k) for k in range(2)]
    out = write_tiny_samples(tmp_path / "finished", count=300, seed=3, shard_size=50)  # six shards
    save_config(load_config(), out / "config.yaml")  # as gen-samples leaves it
    (out / "contact_sheet.png").write_bytes(b"png of the old set")
    with Unchanged(out, *parts):
        assert_refused(cli("samples", "merge", out, *parts), f"{out}: holds a finished sample set", "--force")
    with Unchanged(*parts):
        result = cli("samples", "merge", out, *parts, "--force")
    assert result.returncode == 0, result.stderr[-2000:]
    assert len(SampleSet.open(out)) == 120
    assert sorted(p.name for p in out.iterdir()) == [MANIFEST] + sorted(
        f"shard-00000.{key}.npy" for key in ("boxes", "crops", "images", "labels", "landmarks", "sources"))


# --------------------------------------------------------------------------------------------
# 3. an output that cannot be written: one line, for every command (see the walk below)


def test_case03_unwritable_output_is_one_line(world, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("a regular file, used as a folder")
    for out in (blocker / "out", Path("/proc/mtcnn-train-out")):
        with Unchanged(world / "samples12", blocker):
            result = cli("gen-samples", "--stage", "pnet", "--out", out, "--wider-root", world / "syn" / "wider",
                         "--quiet")
        line = assert_refused(result, str(out), "cannot create the output folder")
        assert line.endswith(("(Not a directory)", "(No such file or directory)")), line


# --------------------------------------------------------------------------------------------
# 4. export on a full disk: one line, no temp file, no C++ abort


@pytest.fixture(params=["file-size limit", "full tmpfs"])
def full_disk(request, tmp_path):
    """A folder whose disk fills after a few kilobytes: a real 64 KB tmpfs where this machine lets
    us mount one, and a file-size limit on the process (EFBIG) everywhere."""
    folder = tmp_path / "disk"
    folder.mkdir()
    if request.param == "file-size limit":
        yield folder, 16_000
        return
    try:
        mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(folder)],
                                 capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.SubprocessError):
        mounted = False
    if not mounted:
        pytest.skip("cannot mount a tmpfs here")
    try:
        yield folder, None
    finally:
        subprocess.run(["umount", str(folder)], capture_output=True, timeout=30)


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_case04_export_on_a_full_disk(world, full_disk, fmt):
    disk, limit = full_disk
    out = disk / "export"
    with Unchanged(world / "run"):
        result = cli("export", "--weights", world / "run", "--format", fmt, "--out", out, file_size_limit=limit)
    line = assert_refused(result, str(out))
    assert "File too large" in line or "No space left on device" in line, line
    assert not [p.name for p in out.rglob(".tmp-*")]


# --------------------------------------------------------------------------------------------
# 5. two runs into one folder: the second is told the folder is in use


def test_case05_a_folder_in_use_is_refused(world, tmp_path):
    out = tmp_path / "samples"
    wider = world / "syn" / "wider"
    out.mkdir()
    lock = FolderLock(out)  # this process plays the other run
    try:
        with Unchanged(out):
            result = cli("gen-samples", "--stage", "pnet", "--out", out, "--wider-root", wider, "--quiet")
        assert_refused(result, f"{out}: folder in use by process {os.getpid()}")
    finally:
        lock.release()
    # A lock file left by a killed run holds no lock: the next run takes it over and removes it.
    (out / LOCK_FILE).write_text("999999\n")

    def start(seed: int) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "mtcnn_train", "gen-samples", "--stage", "pnet", "--out",
                                 str(out), "--wider-root", str(wider), "--quiet", "--set", f"sampling.seed={seed}"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())

    with Unchanged(wider):
        runs = [start(1), start(2)]  # two settings at once, as in the report
        outcomes = [(run.wait(timeout=300), run.stderr.read()) for run in runs]
    for code, stderr in outcomes:
        assert "Traceback" not in stderr, stderr[-3000:]
        if code:  # the loser: the folder was busy, or it already held the winner's finished set
            line = error_line(stderr)
            assert code == 2 and ("folder in use by process" in line or "finished sample set" in line), line
    assert 0 in [code for code, _ in outcomes]
    assert len(SampleSet.open(out)) > 0
    assert not (out / LOCK_FILE).exists()


# --------------------------------------------------------------------------------------------
# 6. a checkpoint whose 'model' entry is not a state dict


@pytest.mark.parametrize("model", [[1, 2, 3], torch.zeros(3)], ids=["list", "tensor"])
def test_case06_checkpoint_model_of_the_wrong_type(world, tmp_path, model):
    run = _copy_run(world, tmp_path / "run")
    save_checkpoint(run / "pnet.pt", {"stage": "pnet", "model": model, "config": {}, "metrics": {}, "epoch": 0})
    with Unchanged(run, world / "photos"):
        result = cli("detect", world / "photos", "--weights", run, "--out", tmp_path / "out", *FAST_DETECTION)
    assert_refused(result, f"{run / 'pnet.pt'}: the 'model' entry is not pnet weights")


# --------------------------------------------------------------------------------------------
# 7. an image listed twice in WIDER, CelebA, MTFL or FDDB files


def _append_lines(path: Path, lines: list[str]) -> None:
    path.write_text(path.read_text() + "".join(f"{line}\n" for line in lines))


def test_case07_duplicate_entries_name_both_lines(world, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(world / "syn", data)
    wider_file, _ = wider_paths(data / "wider", "train")
    lines = wider_file.read_text().splitlines()
    _append_lines(wider_file, lines[:lines.index(lines[0]) + 2 + int(lines[1])])  # the first entry again
    celeba = data / "celeba" / "Anno" / "list_landmarks_celeba.txt"
    rows = celeba.read_text().splitlines()
    celeba.write_text("\n".join([str(int(rows[0]) + 1)] + rows[1:] + [rows[2]]) + "\n")
    mtfl = data / "mtfl.txt"
    mtfl.write_text("a/1.jpg 10 30 20 12 28 10 11 20 30 31 1 2 2 3\nb/2.jpg 10 30 20 12 28 10 11 20 30 31 2 2 2 3\n"
                    "a//1.jpg 11 30 20 12 28 10 11 20 30 31 1 2 2 3\n")
    folds = data / "fddb" / "FDDB-folds"
    fold1 = (folds / "FDDB-fold-01-ellipseList.txt").read_text().splitlines()
    _append_lines(folds / "FDDB-fold-02-ellipseList.txt", fold1[:2 + int(fold1[1])])
    _append_lines(folds / "FDDB-fold-02.txt", fold1[:1])
    cases = [("wider", wider_file, f"{wider_file}:{len(lines) + 1}: image {lines[0]!r} is listed twice (also on line 1)"),
             ("celeba", celeba, f"{celeba}:{len(rows) + 1}: image {rows[2].split()[0]!r} is listed twice (also on line 3)"),
             ("mtfl", mtfl, f"{mtfl}:3: image 'a//1.jpg' is listed twice (also on line 1)"),
             ("fddb", data / "fddb", f"image {fold1[0]!r} is listed twice (also at {folds / 'FDDB-fold-01-ellipseList.txt'}:1)")]
    for fmt, path, message in cases:
        with Unchanged(data):
            assert_refused(cli("data", "check", "--format", fmt, path, "--allow-missing"), message)
    # The split never puts one image on both sides, even when a caller joins lists that share images.
    records = read_wider(wider_paths(world / "syn" / "wider", "train")[0], world / "syn" / "wider")
    for seed in range(20):
        train, val = split_train_val(records + records[:3], 0.5, seed)
        assert not {r.name for r in train} & {r.name for r in val}


# --------------------------------------------------------------------------------------------
# 8. empty annotation files and sample sets without faces stop before training


def test_case08_empty_inputs_stop_before_training(world, tmp_path):
    empty = tmp_path / "empty"
    annotation, _ = wider_paths(empty, "train")
    annotation.parent.mkdir(parents=True)
    annotation.write_text("")
    landmarks = world / "syn" / "celeba" / "Anno" / "list_landmarks_celeba.txt"
    with Unchanged(empty, world / "syn"):
        assert_refused(cli("data", "check", "--format", "wider", empty), f"{empty}: the wider annotations list no images")
        assert_refused(cli("gen-samples", "--stage", "pnet", "--out", tmp_path / "s", "--wider-root", empty,
                           "--landmarks", landmarks, "--quiet"),
                       f"{annotation}: the annotation file lists no images")
    # A WIDER list whose images are all missing: every image skipped, no sample cut.
    missing = tmp_path / "missing"
    write_wider(read_wider(wider_paths(world / "syn" / "wider", "train")[0], missing / "WIDER_train" / "images"),
                wider_paths(missing, "train")[0])
    with Unchanged(missing):
        assert_refused(cli("gen-samples", "--stage", "pnet", "--out", tmp_path / "s2", "--wider-root", missing,
                           "--quiet"),
                       "no samples could be cut from the", "image not found")
    # Images without faces beside a landmark list: crops are cut, but none of the types the ratio
    # needs; the error says which, rather than that nothing could be cut.
    faceless = tmp_path / "faceless"
    records = read_wider(wider_paths(world / "syn" / "wider", "train")[0], world / "syn" / "wider" / "WIDER_train" / "images")
    for record in records:
        record.boxes = np.zeros((0, 4), np.float32)
        record.flags = {"invalid": np.zeros(0, np.int32)}
    write_wider(records, wider_paths(faceless, "train")[0])
    (faceless / "WIDER_train").symlink_to(world / "syn" / "wider" / "WIDER_train")
    with Unchanged(faceless, world / "syn"):
        assert_refused(cli("gen-samples", "--stage", "pnet", "--out", tmp_path / "s3", "--wider-root", faceless,
                           "--landmarks", landmarks, "--quiet"),
                       "landmark crops but no positive or part crop, which sampling.ratio asks for")
    # The path: landmarks only, so no face / non-face samples; training refuses.
    arrays = {key: np.asarray(value) for key, value in SampleSet.open(world / "samples12").arrays().items()}
    keep = arrays["labels"] == LABEL_LANDMARK
    landmark_only = write_sample_set(tmp_path / "landmarks-only", {k: v[keep] for k, v in arrays.items()},
                                     {"images": [f"img_{i}.jpg" for i in range(25)]})
    assert landmark_only["num_samples"] > 0
    with Unchanged(tmp_path / "landmarks-only"):
        result = cli("pnet", "--samples", tmp_path / "landmarks-only", "--out", tmp_path / "run")
    assert_refused(result, "the sample set holds no positive samples", "cannot learn to tell faces from non-faces")
    assert not (tmp_path / "run" / "pnet.pt").exists()


# --------------------------------------------------------------------------------------------
# 9. FDDB detections holding ellipses, scored without --ellipse


def test_case09_fddb_ellipse_detections_without_the_flag(world, tmp_path):
    fddb = world / "syn" / "fddb"
    ellipse_list = fddb / "FDDB-folds" / "FDDB-fold-01-ellipseList.txt"
    from mtcnn_train.datasets.fddb import read_fddb_fold

    records = read_fddb_fold(ellipse_list, fddb / "originalPics")
    detections = tmp_path / "ellipses.txt"
    write_detections(detections, {r.name: np.concatenate([r.ellipses, np.full((r.num_faces, 1), 0.9)], 1)
                                  for r in records}, ellipse=True)
    args = ["eval", "fddb", "--detections", detections, "--annotations", ellipse_list, "--image-list",
            fddb / "FDDB-folds" / "FDDB-fold-01.txt", "--images", fddb / "originalPics"]
    with Unchanged(fddb, detections):
        refused = cli(*args, "--out", tmp_path / "as-rectangles")
        scored = cli(*args, "--ellipse", "--out", tmp_path / "as-ellipses")
    line = assert_refused(refused, str(detections), "pass --ellipse")
    assert any(key in line for key in ("every detection line holds 6 numbers", "negative width or height")), line
    assert scored.returncode == 0, scored.stderr[-2000:]
    summary = json.loads((tmp_path / "as-ellipses" / "summary.json").read_text())
    assert summary["faces"] == sum(r.num_faces for r in records)
    assert "TPR" in scored.stdout and "0.0000" not in scored.stdout.split("TPR", 1)[1].split("\n")[0]


# --------------------------------------------------------------------------------------------
# 10. a video that stops decoding, and a run where no input can be read


def _truncated_video(path: Path, frames: int = 20, keep: int = 1) -> None:
    """An MJPG AVI whose header promises ``frames`` frames but whose data stops after ``keep``."""
    full = path.with_suffix(".full.avi")
    writer = cv2.VideoWriter(str(full), cv2.VideoWriter_fourcc(*"MJPG"), 5, (80, 60))
    assert writer.isOpened()
    rng = np.random.default_rng(0)
    for _ in range(frames):
        writer.write(rng.integers(0, 256, (60, 80, 3), dtype=np.uint8))
    writer.release()
    data = full.read_bytes()
    full.unlink()
    chunks = [i for i in range(len(data) - 8) if data[i:i + 4] == b"00dc" and int.from_bytes(data[i + 4:i + 8], "little")]
    path.write_bytes(data[:chunks[keep]])  # cut where frame keep + 1 starts


def test_case10_undecodable_video_frames_and_unreadable_inputs(world, tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    _truncated_video(inputs / "clip.avi")
    shutil.copy(world / "photos" / "photo.jpg", inputs / "photo.jpg")
    with Unchanged(inputs):
        result = cli("detect", inputs, "--weights", world / "run", "--out", tmp_path / "out", *FAST_DETECTION)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads((tmp_path / "out" / "detections.json").read_text())
    assert [len(v["frames"]) for v in report["videos"]] == [1]
    assert report["skipped"] == [{"file": str(inputs / "clip.avi"),
                                  "error": f"{inputs / 'clip.avi'}: only 1 of 20 frames decoded"}]
    assert "skipped 1" in result.stderr

    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "broken.jpg").write_bytes(b"not an image")
    (bad / "empty.mp4").write_bytes(b"")
    with Unchanged(bad):
        result = cli("detect", bad, "--weights", world / "run", "--out", tmp_path / "out2", *FAST_DETECTION)
    assert_refused(result, "none of the 2 input(s) could be read")
    assert not (tmp_path / "out2").exists()


# --------------------------------------------------------------------------------------------
# 11. eval wider where the image folder holds part of the ground truth


def _official_mats(folder: Path, records) -> None:
    """wider_face_val.mat and the easy/medium/hard files for ``records``, every face kept."""
    events: dict[str, dict] = {}
    for r in records:
        event, name = r.name.split("/")
        entry = events.setdefault(event, {"files": [], "easy": [], "medium": [], "hard": []})
        entry["files"].append((Path(name).stem, np.concatenate([r.boxes[:, :2], r.boxes[:, 2:] - r.boxes[:, :2]], 1)))
        for setting in ("easy", "medium", "hard"):
            entry[setting].append(list(range(1, r.num_faces + 1)))
    folder.mkdir(parents=True)
    write_official_mats(folder, events)


def test_case11_wider_eval_scores_the_images_present(world, tmp_path):
    syn = world / "syn" / "wider"
    records = [r for r in read_wider(wider_paths(syn, "train")[0], syn / "WIDER_train" / "images") if r.num_faces]
    present = records[:len(records) // 2]
    root = tmp_path / "wider"
    for r in present:  # the user's folder holds half of the val images
        target = root / "WIDER_val" / "images" / r.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(r.image_path, target)
    _official_mats(tmp_path / "gt-all", records)
    _official_mats(tmp_path / "gt-present", present)
    with Unchanged(root, tmp_path / "gt-all"):
        partial = cli("eval", "wider", "--weights", world / "run", "--wider-root", root, "--gt-dir",
                      tmp_path / "gt-all", "--out", tmp_path / "partial", *FAST_DETECTION)
    assert partial.returncode == 0, partial.stderr[-2000:]
    assert f"scoring the {len(present)} of {len(records)} ground-truth images present" in partial.stdout
    assert "unreadable" not in partial.stdout + partial.stderr
    restricted = cli("eval", "wider", "--weights", world / "run", "--wider-root", root, "--gt-dir",
                     tmp_path / "gt-present", "--out", tmp_path / "restricted", *FAST_DETECTION)
    assert restricted.returncode == 0, restricted.stderr[-2000:]
    scored = json.loads((tmp_path / "partial" / "ap.json").read_text())
    reference = json.loads((tmp_path / "restricted" / "ap.json").read_text())
    assert (scored["images"], scored["images_in_ground_truth"]) == (len(present), len(records))
    assert scored["ap"] == reference["ap"]  # the official protocol on the images the user has
    assert scored["ap"]["hard"]["faces"] == sum(r.num_faces for r in present)


# --------------------------------------------------------------------------------------------
# 12. the smaller ones


def test_case12_cr_line_endings(world, tmp_path):
    wider_file, images = wider_paths(world / "syn" / "wider", "train")
    classic = tmp_path / "classic_mac.txt"
    classic.write_bytes(wider_file.read_bytes().replace(b"\n", b"\r"))
    with Unchanged(classic):
        result = cli("data", "check", "--format", "wider", classic, "--images", images)
    assert result.returncode == 0, result.stderr[-2000:]
    assert f": {len(read_wider(wider_file, images))} images under" in result.stdout


def test_case12_config_duplicate_key_and_hex_override(world, tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text("train:\n  pnet:\n    lr: 0.01\ndata:\n  val_seed: 1\ntrain:\n  rnet:\n    lr: 0.02\n")
    annotation = wider_paths(world / "syn" / "wider", "train")[0]
    with Unchanged(config):
        assert_refused(cli("data", "check", "--format", "wider", annotation, "--config", config),
                       f"{config}:6: key 'train' is set twice (also on line 1)")
    assert_refused(cli("data", "check", "--format", "wider", annotation, "--set", "train.pnet.lr=0x10"),
                   "--set train.pnet.lr=0x10: train.pnet.lr: expected a number, got '0x10'")


@pytest.mark.parametrize("damage", ["nan weights", "pickled code"])
def test_case12_damaged_weights(world, tmp_path, damage):
    run = _copy_run(world, tmp_path / "run")
    marker = tmp_path / "code-ran"
    if damage == "nan weights":
        state = make_random_nets(0)[0].state_dict()
        state["conv1.weight"][0, 0, 0, 0] = float("nan")
        save_checkpoint(run / "pnet.pt", {"stage": "pnet", "model": state, "config": {}, "metrics": {}, "epoch": 0})
        expected = ["1 weight tensor(s) hold NaN or infinite values (first: conv1.weight)"]
    else:
        from tests.robustness.test_untrusted import RunsCode

        torch.save({"stage": "pnet", "model": {}, "x": RunsCode(marker)}, run / "pnet.pt")
        expected = ["refused to load Python objects that could run code", "posix.system"]
    with Unchanged(run, world / "photos"):
        result = cli("detect", world / "photos", "--weights", run, "--out", tmp_path / "out", *FAST_DETECTION)
    assert_refused(result, str(run / "pnet.pt"), *expected)
    assert not marker.exists()


# --------------------------------------------------------------------------------------------
# Every command that writes, against every way its output can fail


#: Runs each argv through the real entry point in one process (the imports are paid once) and
#: prints, as JSON, each command's exit status and stderr; a traceback lands in its stderr.
WALK_DRIVER = r"""
import contextlib, io, json, sys, traceback
from mtcnn_train.cli import main

results = []
for argv in json.loads(sys.argv[1]):
    err = io.StringIO()
    code = 0
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        try:
            main(argv)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except BaseException:
            traceback.print_exc()
            code = 1
    results.append({"argv": argv, "code": code, "stderr": err.getvalue()})
print(json.dumps(results))
"""


def writing_commands(world: Path, out: Path) -> list[list[str]]:
    """Every command that writes, with inputs that would work and ``out`` as its output."""
    syn, run, samples = world / "syn", world / "run", world / "samples12"
    fold = syn / "fddb" / "FDDB-folds"
    detections = world / "fddb-detections.txt"
    if not detections.exists():
        detections.write_text("2003/11/27/big/img_1\n1\n10 10 40 40 0.9\n")
    facenet = world / "facenet"
    if not facenet.exists():
        facenet.mkdir()
        for i, stage in enumerate(("pnet", "rnet", "onet")):
            torch.save(fake_facenet_state_dict(stage, seed=i), facenet / f"{stage}.pt")
    config = world / "pipeline.yaml"
    if not config.exists():
        config.write_text(f"data:\n  wider_root: {syn / 'wider'}\n  fddb_root: {syn / 'fddb'}\n"
                          "train:\n  pnet:\n    epochs: 1\n")
    landmarks = syn / "celeba" / "Anno" / "list_landmarks_celeba.txt"
    return [
        ["make-synthetic", out, "--images", "2"],
        ["gen-samples", "--stage", "pnet", "--out", out, "--wider-root", syn / "wider", "--quiet"],
        ["samples", "merge", out, samples],
        ["samples", "inspect", samples, "--out", out / "sheet.png"],
        ["pnet", "--samples", samples, "--out", out, "--set", "train.pnet.epochs=1", "--set", "train.pnet.threads=1"],
        ["detect", world / "photos", "--weights", run, "--out", out, *FAST_DETECTION],
        ["import-weights", "--from", "facenet-pytorch", facenet, "--out", out],
        ["export", "--weights", run, "--format", "onnx", "--out", out],
        ["export", "--weights", run, "--format", "torchscript", "--out", out],
        ["eval", "fddb", "--weights", run, "--fddb-root", syn / "fddb", "--folds", "1-2", "--out", out, *FAST_DETECTION],
        ["eval", "fddb", "--detections", detections, "--annotations", fold / "FDDB-fold-01-ellipseList.txt",
         "--image-list", fold / "FDDB-fold-01.txt", "--images", syn / "fddb" / "originalPics", "--out", out],
        ["eval", "wider", "--weights", run, "--wider-root", syn / "wider", "--out", out, *FAST_DETECTION],
        ["eval", "landmarks", "--weights", run, "--annotations", landmarks, "--out", out, "--quiet", *FAST_DETECTION],
        ["eval", "stages", "--weights", run, "--config", config, "--out", out, "--quiet", *FAST_DETECTION],
        ["demo", "--out", out, "--images", "8", "--quiet"],
        ["pipeline", "--out", out, "--config", config, "--stages", "pnet", "--no-eval", "--quiet"],
    ]


def walk(world: Path, out: Path, file_size_limit: int | None = None) -> list[dict]:
    commands = [[str(a) for a in argv] for argv in writing_commands(world, out)]
    result = subprocess.run([sys.executable, "-c", WALK_DRIVER, json.dumps(commands)], capture_output=True,
                            text=True, env=_env(), timeout=900,
                            preexec_fn=_file_size_limit(file_size_limit) if file_size_limit else None)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_every_writing_command_fails_in_one_line(world, tmp_path):
    """Unwritable outputs, a full disk and a folder held by another run: exit 2, one line, no
    traceback, for every command that writes; and the inputs stay as they were."""
    blocker = tmp_path / "a-file"
    blocker.write_text("a regular file")
    held = tmp_path / "held"
    writing_commands(world, held)  # writes the inputs it needs into world first
    scenarios = {
        "under a regular file": (blocker / "out", None, ("(Not a directory)",)),
        "under /proc": (Path("/proc/mtcnn-train-walk/out"), None, ("(No such file or directory)",)),
        # numpy reports a short write without the system's reason: then the hint is what is said
        "full disk": (tmp_path / "full", 2_000, ("File too large", "free some space")),
        "held by another run": (held, None, (f"folder in use by process {os.getpid()}",)),
    }
    with Unchanged(world):
        for scenario, (out, limit, expected) in scenarios.items():
            lock = FolderLock(held) if out == held else None
            try:
                results = walk(world, out, limit)
            finally:
                if lock is not None:
                    lock.release()
            assert len(results) == len(writing_commands(world, out))
            for entry in results:
                where = f"{scenario}: mtcnn-train {' '.join(entry['argv'][:3])}"
                assert "Traceback" not in entry["stderr"], (where, entry["stderr"][-3000:])
                assert entry["code"] == 2, (where, entry["code"], entry["stderr"][-2000:])
                line = error_line(entry["stderr"])
                assert any(text in line for text in expected), (where, line)
