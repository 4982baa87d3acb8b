"""Files from elsewhere are data, never code, and never a way out of their folder.

* Checkpoints, shard ``.npy`` files and configs holding pickled or tagged code are refused
  without running it (the payload would create a marker file).
* Image paths in every annotation format stay inside the dataset root: ``..``, absolute, Windows
  drive, backslash and UNC spellings, symlinks pointing out, symlink loops and names too long for
  the file system give an :class:`AnnotationError` naming the file and line.
* A sample set whose manifest or shards were edited, swapped or damaged gives a one-line
  :class:`UserError` naming the file, never a traceback.
"""
from __future__ import annotations

import io
import json
import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mtcnn_train.checkpoint import load_checkpoint, load_stage_net, save_checkpoint
from mtcnn_train.config import load_config
from mtcnn_train.datasets.fddb import fold_paths, read_fddb, read_fddb_fold
from mtcnn_train.datasets.landmarks import CELEBA_LANDMARK_HEADER, read_landmarks
from mtcnn_train.datasets.wider import read_wider
from mtcnn_train.errors import AnnotationError, UserError
from mtcnn_train.nets import build_net
from mtcnn_train.samples.shards import MANIFEST, SampleSet, empty_arrays, write_sample_set
from mtcnn_train.samples.labels import LABEL_LANDMARK, LABEL_NEGATIVE, LABEL_PART, LABEL_POSITIVE


class RunsCode:
    """Unpickling this runs ``touch MARKER``: what a hostile file would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


class RunsPython:
    """Unpickling this runs Python code through ``exec``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return exec, (f"open({str(self.marker)!r}, 'w').close()",)


def assert_one_line(message: str, *names: object) -> None:
    assert len(message.splitlines()) == 1, message
    for name in names:
        assert str(name) in message, (name, message)


# --------------------------------------------------------------------------------------------
# Checkpoints


def hostile_checkpoints(folder: Path, marker: Path) -> dict[str, Path]:
    """Checkpoint files whose loading would create ``marker`` if it unpickled code."""
    state = build_net("pnet").state_dict()
    files = {}

    def save(name: str, payload: object, **kwargs) -> None:
        path = folder / f"{name}.pt"
        torch.save(payload, path, **kwargs)
        files[name] = path

    save("zip, os.system in an extra entry", {"model": state, "stage": "pnet", "extra": RunsCode(marker)})
    save("zip, exec as the whole payload", RunsPython(marker))
    save("legacy format", {"model": state, "stage": "pnet", "x": RunsCode(marker)},
         _use_new_zipfile_serialization=False)
    raw = folder / "raw pickle.pt"
    raw.write_bytes(pickle.dumps({"model": {}, "stage": "pnet", "x": RunsCode(marker)}, protocol=2))
    files["raw pickle"] = raw
    for protocol in (0, 4, 5):
        path = folder / f"pickle-{protocol}.pt"
        path.write_bytes(pickle.dumps(RunsPython(marker), protocol=protocol))
        files[f"pickle protocol {protocol}"] = path
    return files


# torch warns that the hostile files use pickle protocols it does not expect; that is the point.
@pytest.mark.filterwarnings("ignore:Detected pickle protocol:UserWarning")
def test_checkpoints_never_run_code(tmp_path):
    marker = tmp_path / "PWNED"
    files = hostile_checkpoints(tmp_path, marker)
    assert len(files) == 7
    for name, path in files.items():
        with pytest.raises(UserError) as info:
            load_checkpoint(path)
        assert_one_line(str(info.value), path)
        assert not marker.exists(), f"{name}: loading ran the payload"
    # Through the loader the detector uses, from a run folder.
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(files["zip, os.system in an extra entry"], run / "pnet.pt")
    with pytest.raises(UserError, match="pnet.pt"):
        load_stage_net(run, "pnet")
    assert not marker.exists()
    # The control: the payload does run when pickle is trusted, so the test can tell.
    pickle.loads(files["raw pickle"].read_bytes())
    assert marker.exists()


def test_damaged_checkpoints_give_one_line_errors(tmp_path):
    good = tmp_path / "good.pt"
    saved = build_net("pnet").state_dict()
    save_checkpoint(good, {"model": saved, "stage": "pnet"})
    loaded = load_stage_net(good, "pnet").state_dict()
    assert loaded.keys() == saved.keys() and all(torch.equal(loaded[k], v) for k, v in saved.items())
    data = good.read_bytes()
    cases = {"empty": b"", "text": b"hello\n", "truncated": data[: len(data) // 2], "header only": data[:64],
             "zip of nothing": _empty_zip(), "json": b'{"model": {}, "stage": "pnet"}'}
    for name, content in cases.items():
        path = tmp_path / f"{name}.pt"
        path.write_bytes(content)
        with pytest.raises(UserError) as info:
            load_stage_net(path, "pnet")
        assert_one_line(str(info.value), path)
    # A valid file that is not a checkpoint, and one for another stage.
    torch.save([1, 2, 3], tmp_path / "list.pt")
    with pytest.raises(UserError, match="not an mtcnn-train checkpoint"):
        load_checkpoint(tmp_path / "list.pt")
    with pytest.raises(UserError, match="holds pnet weights, expected rnet"):
        load_stage_net(good, "rnet")
    with pytest.raises(UserError, match="not found"):
        load_checkpoint(tmp_path / "missing.pt")


def _empty_zip() -> bytes:
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w"):
        pass
    return buffer.getvalue()


def test_config_files_never_run_code(tmp_path):
    marker = tmp_path / "PWNED"
    for tag in (f"!!python/object/apply:os.system ['touch {marker}']",
                f"!!python/object/new:subprocess.Popen [['touch', '{marker}']]",
                "!!python/name:os.system"):
        config = tmp_path / "config.yaml"
        config.write_text(f"sampling:\n  neg_iou: {tag}\n")
        with pytest.raises(UserError) as info:
            load_config(config, [])
        assert_one_line(str(info.value), config)
        assert not marker.exists()


# --------------------------------------------------------------------------------------------
# Image paths in annotation files

OK_FACE = "10 20 30 40 0 0 0 0 0 0 "
POINTS = "106 107 146 112 125 142 105 157 139 161"


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


# The first entry names an image none of the odd names below resolves to: one image listed
# twice is refused (tests/robustness/test_failure_rules.py, case 7).


def wider_file(folder: Path, name: str, root: Path):
    path = _write(folder / "gt.txt", f"ok/first.jpg\n1\n{OK_FACE}\n{name}\n1\n{OK_FACE}\n")
    return path, 4, lambda: read_wider(path, root)


def celeba_file(folder: Path, name: str, root: Path):
    _write(folder / "list_bbox_celeba.txt", f"2\nimage_id x_1 y_1 width height\nok.jpg 1 2 3 4\n{name} 1 2 3 4\n")
    path = _write(folder / "list_landmarks_celeba.txt", f"2\n{CELEBA_LANDMARK_HEADER}\nok.jpg {POINTS}\n{name} {POINTS}\n")
    return path, 4, lambda: read_landmarks(path, root, "celeba")


def celeba_aligned_file(folder: Path, name: str, root: Path):
    path = _write(folder / "list_landmarks_align_celeba.txt",
                  f"2\n{CELEBA_LANDMARK_HEADER}\nok.jpg {POINTS}\n{name} {POINTS}\n")
    return path, 4, lambda: read_landmarks(path, root, "celeba-aligned")


def lfw_net_file(folder: Path, name: str, root: Path):
    path = _write(folder / "trainImageList.txt", f"ok\\first.jpg 84 161 92 169 {POINTS}\r\n{name} 84 161 92 169 {POINTS}\r\n")
    return path, 2, lambda: read_landmarks(path, root, "lfw-net")


def mtfl_file(folder: Path, name: str, root: Path):
    path = _write(folder / "new_training.txt", f"ok/first.jpg 1 2 3 4 5 1 2 3 4 5\n{name} 1 2 3 4 5 1 2 3 4 5\n")
    return path, 2, lambda: read_landmarks(path, root, "mtfl", default_size=(80, 80))


def mtfl_official_file(folder: Path, name: str, root: Path):
    path = _write(folder / "training.txt", f"ok/first.jpg 70 110 90 75 105 110 110 130 150 150 1 2 2 3\n"
                                           f"{name} 70 110 90 75 105 110 110 130 150 150 1 2 2 3\n")
    return path, 2, lambda: read_landmarks(path, root, "mtfl")


def fddb_fold_file(folder: Path, name: str, root: Path):
    # FDDB names have no extension: the reader adds ".jpg".
    name = name[:-4] if name.endswith(".jpg") else name
    path = _write(folder / "fold.txt", f"ok/first\n1\n10 5 0 50 60 1\n{name}\n1\n10 5 0 50 60 1\n")
    return path, 4, lambda: read_fddb_fold(path, root)


def fddb_root_file(folder: Path, name: str, root: Path):
    # read_fddb reads images from FDDB_ROOT/originalPics: the test's root plays that folder.
    name = name[:-4] if name.endswith(".jpg") else name
    fddb_root = root.parent
    path = _write(fold_paths(fddb_root, 1)[0], f"ok/first\n1\n10 5 0 50 60 1\n{name}\n1\n10 5 0 50 60 1\n")
    return path, 4, lambda: read_fddb(fddb_root, folds=[1])


READERS = {"wider": wider_file, "celeba": celeba_file, "celeba-aligned": celeba_aligned_file, "lfw-net": lfw_net_file,
           "mtfl": mtfl_file, "mtfl official": mtfl_official_file, "fddb fold": fddb_fold_file,
           "read_fddb": fddb_root_file}

ESCAPES = {
    "../outside/secret.jpg": "escapes",
    "ok/../../outside/secret.jpg": "escapes",
    "ok/../../../../../../../../etc/passwd.jpg": "escapes",
    "..\\outside\\secret.jpg": "escapes",
    "ok\\..\\..\\outside\\secret.jpg": "escapes",
    "/etc/passwd.jpg": "absolute",
    "//server/share/x.jpg": "absolute",
    "\\\\server\\share\\x.jpg": "absolute",
    "C:\\Windows\\x.jpg": "absolute",
    "C:/x.jpg": "absolute",
    "c:x.jpg": "absolute",
    "out_link/secret.jpg": "escapes",          # a folder symlink pointing outside the root
    "evil.jpg": "escapes",                     # a file symlink pointing outside the root
    "ok/up/outside/secret.jpg": "escapes",     # a relative symlink climbing two levels
    "loop/x.jpg": "cannot be resolved",        # a symlink to itself
    "ping/x.jpg": "cannot be resolved",        # two symlinks pointing at each other
    "x" * 300 + ".jpg": "too long",
    "d" * 300 + "/x.jpg": "too long",
    "abc/" * 1100 + "x.jpg": "too long",       # every part short, the whole over PATH_MAX
}
#: Names that look odd but stay inside the root.
INSIDE = ["./ok/a.jpg", "ok/./a.jpg", "ok/../ok/a.jpg", "ok\\.\\a.jpg", "~/a.jpg", "$HOME.jpg", "in_link/x.jpg",
          "...jpg", "ok/..jpg", ".hidden.jpg", "%2e%2e/x.jpg", "\u00e9t\u00e9/caf\u00e9.jpg", "ab:c.jpg"]


@pytest.fixture
def dataset(tmp_path):
    """A dataset root with symlinks in and out of it, and a secret beside it."""
    root = tmp_path / "fddb" / "originalPics"
    (root / "ok").mkdir(parents=True)
    (root / "inside").mkdir()
    outside = tmp_path / "fddb" / "outside"
    outside.mkdir()
    (outside / "secret.jpg").write_bytes(b"secret")
    os.symlink(outside, root / "out_link")
    os.symlink(outside / "secret.jpg", root / "evil.jpg")
    os.symlink("../..", root / "ok" / "up")  # ok/up is the root's parent
    os.symlink("loop", root / "loop")
    os.symlink("pong", root / "ping")
    os.symlink("ping", root / "pong")
    os.symlink(root / "inside", root / "in_link")
    return root, tmp_path / "annotations"


@pytest.mark.parametrize("reader", sorted(READERS))
def test_image_paths_cannot_escape_the_root(dataset, reader):
    root, folder = dataset
    refused = 0
    for name, reason in ESCAPES.items():
        path, line, read = READERS[reader](folder, name, root)
        with pytest.raises(AnnotationError) as info:
            read()
        message = str(info.value)
        assert_one_line(message, f"{path}:{line}: ")
        assert reason in message, (name, message)
        refused += 1
    assert refused == len(ESCAPES)


@pytest.mark.parametrize("reader", sorted(READERS))
def test_odd_names_inside_the_root_are_read(dataset, reader):
    root, folder = dataset
    resolved_root = root.resolve()
    for name in INSIDE:
        path, line, read = READERS[reader](folder, name, root)
        records = read()
        assert len(records) == 2
        image_path = Path(records[1].image_path)
        assert image_path.is_relative_to(resolved_root), (name, image_path)
        assert ".." not in image_path.parts


# --------------------------------------------------------------------------------------------
# Sample sets


def sample_arrays(n: int = 30, size: int = 12) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    arrays = empty_arrays(size)
    arrays["images"] = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
    arrays["labels"] = np.resize(np.array([LABEL_NEGATIVE, LABEL_POSITIVE, LABEL_PART, LABEL_LANDMARK], np.int8), n)
    arrays["boxes"] = rng.normal(size=(n, 4)).astype(np.float32)
    arrays["landmarks"] = rng.random((n, 10)).astype(np.float32)
    arrays["sources"] = (np.arange(n) % 5).astype(np.int32)
    arrays["crops"] = rng.random((n, 4)).astype(np.float32)
    return arrays


@pytest.fixture
def sample_set(tmp_path) -> Path:
    directory = tmp_path / "samples"
    write_sample_set(directory, sample_arrays(), {"images": [f"img{i}.jpg" for i in range(5)]}, shard_size=20)
    return directory


def edit_manifest(directory: Path, change) -> None:
    manifest = json.loads((directory / MANIFEST).read_text())
    result = change(manifest)
    (directory / MANIFEST).write_text(json.dumps(manifest if result is None else result))


def _set(d: dict, key: str, value) -> None:
    d[key] = value


MANIFEST_TAMPERING = {
    "shard count larger": lambda m: _set(m["shards"][0], "count", 21),
    "shard count smaller": lambda m: _set(m["shards"][1], "count", 3),
    "count as text": lambda m: _set(m["shards"][0], "count", "20"),
    "count negative": lambda m: _set(m["shards"][0], "count", -1),
    "count true": lambda m: _set(m["shards"][1], "count", True),
    "num_samples wrong": lambda m: _set(m, "num_samples", 31),
    "num_samples missing": lambda m: m.pop("num_samples"),
    "type counts wrong": lambda m: _set(m["counts"], "positive", m["counts"]["positive"] + 1),
    "type counts swapped": lambda m: _set(m, "counts", dict(zip(m["counts"], list(m["counts"].values())[::-1]))),
    "unknown type in counts": lambda m: _set(m["counts"], "mystery", 1),
    "counts missing": lambda m: m.pop("counts"),
    "shard listed twice": lambda m: m["shards"].append(dict(m["shards"][0])),
    "extra shard entry": lambda m: m["shards"].append({"stem": "shard-00009", "count": 0}),
    "shard entry dropped": lambda m: m["shards"].pop(),
    "shards missing": lambda m: m.pop("shards"),
    "shards not a list": lambda m: _set(m, "shards", {"stem": "shard-00000"}),
    "shard entry not an object": lambda m: _set(m, "shards", ["shard-00000"]),
    "stem climbing out": lambda m: _set(m["shards"][0], "stem", "../samples/shard-00000"),
    "stem absolute": lambda m: _set(m["shards"][0], "stem", "/etc/passwd"),
    "stem with a backslash": lambda m: _set(m["shards"][0], "stem", "..\\shard-00000"),
    "stem of another name": lambda m: _set(m["shards"][0], "stem", "evil"),
    "crop size changed": lambda m: _set(m, "crop_size", 24),
    "crop size text": lambda m: _set(m, "crop_size", "12"),
    "crop size zero": lambda m: _set(m, "crop_size", 0),
    "crop size missing": lambda m: m.pop("crop_size"),
    "format version": lambda m: _set(m, "format_version", 99),
    "images not a list": lambda m: _set(m, "images", "img0.jpg"),
    "fewer images than sources": lambda m: _set(m, "images", ["img0.jpg"]),
    "a list instead of an object": lambda m: [m],
    "null": lambda m: "null-marker",
}


@pytest.mark.parametrize("case", sorted(MANIFEST_TAMPERING))
@pytest.mark.parametrize("mmap", [True, False])
def test_tampered_manifests_are_refused(sample_set, case, mmap):
    SampleSet.open(sample_set, mmap=mmap)  # the untouched set opens
    if case == "null":
        (sample_set / MANIFEST).write_text("null")
    else:
        edit_manifest(sample_set, MANIFEST_TAMPERING[case])
    with pytest.raises(UserError) as info:
        SampleSet.open(sample_set, mmap=mmap)
    assert_one_line(str(info.value), sample_set)


def test_broken_manifest_files_are_refused(sample_set):
    for content in (b"", b"{", b"\xff\xfe\x00garbage", b"[" * 100_000 + b"]" * 100_000, b'{"a": NaN}'):
        (sample_set / MANIFEST).write_bytes(content)
        with pytest.raises(UserError) as info:
            SampleSet.open(sample_set)
        assert_one_line(str(info.value), sample_set / MANIFEST)


def _npy_bytes(array: np.ndarray, allow_pickle: bool = False) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=allow_pickle)
    return buffer.getvalue()


def _shard_file(directory: Path, key: str, shard: int = 0) -> Path:
    return directory / f"shard-{shard:05d}.{key}.npy"


def _huge_header(count: int) -> bytes:
    """A .npy header announcing ``count`` labels, with no data after it."""
    header = np.lib.format.header_data_from_array_1_0(np.zeros(1, np.int8))
    header["shape"] = (count,)
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, header)
    return buffer.getvalue()


SHARD_TAMPERING = {
    # key -> bytes replacing shard 0's file (20 rows in the manifest)
    "labels as int64": ("labels", lambda: _npy_bytes(np.zeros(20, np.int64))),
    "labels as float32": ("labels", lambda: _npy_bytes(np.zeros(20, np.float32))),
    "labels big-endian": ("labels", lambda: _npy_bytes(np.zeros(20, ">i2"))),
    "images of 24 pixels": ("images", lambda: _npy_bytes(np.zeros((20, 24, 24, 3), np.uint8))),
    "images gray": ("images", lambda: _npy_bytes(np.zeros((20, 12, 12), np.uint8))),
    "images float": ("images", lambda: _npy_bytes(np.zeros((20, 12, 12, 3), np.float32))),
    "boxes with 5 columns": ("boxes", lambda: _npy_bytes(np.zeros((20, 5), np.float32))),
    "boxes flat": ("boxes", lambda: _npy_bytes(np.zeros(80, np.float32))),
    "landmarks float64": ("landmarks", lambda: _npy_bytes(np.zeros((20, 10), np.float64))),
    "sources int64": ("sources", lambda: _npy_bytes(np.zeros(20, np.int64))),
    "sources out of range": ("sources", lambda: _npy_bytes(np.full(20, 99, np.int32))),
    "sources negative": ("sources", lambda: _npy_bytes(np.full(20, -1, np.int32))),
    "crops 0-d": ("crops", lambda: _npy_bytes(np.float32(3))),
    "labels swapped for other labels": ("labels", lambda: _npy_bytes(np.full(20, LABEL_POSITIVE, np.int8))),
    "object array": ("labels", lambda: _npy_bytes(np.array([None] * 20, dtype=object), allow_pickle=True)),
    "structured dtype": ("labels", lambda: _npy_bytes(np.zeros(20, [("a", "i1")]))),
    "empty file": ("labels", lambda: b""),
    "text": ("labels", lambda: b"not an array\n"),
    "npz archive": ("labels", lambda: _npz_bytes()),
    "truncated data": ("images", lambda: _npy_bytes(np.zeros((20, 12, 12, 3), np.uint8))[:-100]),
    "padded data": ("labels", lambda: _npy_bytes(np.zeros(20, np.int8)) + b"\x00" * 16),
    "header only": ("labels", lambda: _npy_bytes(np.zeros(20, np.int8))[:128]),
    "header announcing 10**15 rows": ("labels", lambda: _huge_header(10**15)),
    "bad header": ("labels", lambda: b"\x93NUMPY\x01\x00\x10\x00{'descr': <|i1'}  \n"),
    "npy version 9": ("labels", lambda: b"\x93NUMPY\x09\x00" + _npy_bytes(np.zeros(20, np.int8))[8:]),
}


@pytest.mark.parametrize("case", sorted(SHARD_TAMPERING))
@pytest.mark.parametrize("mmap", [True, False])
def test_tampered_shards_are_refused(sample_set, case, mmap):
    key, make = SHARD_TAMPERING[case]
    path = _shard_file(sample_set, key)
    path.write_bytes(make())
    with pytest.raises(UserError) as info:
        SampleSet.open(sample_set, mmap=mmap)
    assert_one_line(str(info.value), sample_set)


def test_absurd_shard_sizes_agreed_by_the_manifest_are_refused_before_allocating(sample_set):
    """A manifest and header that both claim 10**15 rows: refused from the file size, without
    trying to map or read petabytes."""
    for key in ("images", "labels", "boxes", "landmarks", "sources", "crops"):
        header = np.lib.format.header_data_from_array_1_0(empty_arrays(12)[key])
        header["shape"] = (10**15, *header["shape"][1:])
        buffer = io.BytesIO()
        np.lib.format.write_array_header_1_0(buffer, header)
        _shard_file(sample_set, key).write_bytes(buffer.getvalue())
    edit_manifest(sample_set, lambda m: m.update(shards=[{"stem": "shard-00000", "count": 10**15}],
                                                 num_samples=10**15))
    for mmap in (True, False):
        with pytest.raises(UserError, match="bytes of data"):
            SampleSet.open(sample_set, mmap=mmap)


def _npz_bytes() -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, labels=np.zeros(20, np.int8))
    return buffer.getvalue()


def test_missing_shard_files_are_refused(sample_set):
    for key in ("images", "sources"):
        path = _shard_file(sample_set, key, shard=1)
        saved = path.read_bytes()
        path.unlink()
        with pytest.raises(UserError) as info:
            SampleSet.open(sample_set)
        assert_one_line(str(info.value), path, "missing")
        path.write_bytes(saved)
    SampleSet.open(sample_set)
    (sample_set / MANIFEST).unlink()
    with pytest.raises(UserError, match="not a finished sample set"):
        SampleSet.open(sample_set)


def test_pickled_shards_never_run_code(sample_set, tmp_path):
    marker = tmp_path / "PWNED"
    payloads = {
        "object array": _npy_bytes(np.array([RunsCode(marker)] * 20, dtype=object), allow_pickle=True),
        "raw pickle": pickle.dumps(RunsCode(marker)),
        "pickle of an array": pickle.dumps([RunsPython(marker)], protocol=2),
    }
    for key in ("labels", "images"):
        path = _shard_file(sample_set, key)
        original = path.read_bytes()
        for name, payload in payloads.items():
            path.write_bytes(payload)
            for mmap in (True, False):
                with pytest.raises(UserError) as info:
                    SampleSet.open(sample_set, mmap=mmap)
                assert_one_line(str(info.value), path)
                assert not marker.exists(), f"{key}, {name}: opening the set ran the payload"
        path.write_bytes(original)
    assert len(SampleSet.open(sample_set)) == 30
    # The control: numpy would run the payload if pickles were allowed.
    _shard_file(sample_set, "labels").write_bytes(payloads["object array"])
    np.load(_shard_file(sample_set, "labels"), allow_pickle=True)
    assert marker.exists()


JSON_VALUES = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=False),
              st.text(max_size=12), st.sampled_from(["shard-00000", "shard-00001", "../shard-00000", "12", "negative"])),
    lambda children: st.one_of(st.lists(children, max_size=3), st.dictionaries(st.text(max_size=8), children, max_size=3)),
    max_leaves=8,
)
MANIFEST_PATHS = [("crop_size",), ("num_samples",), ("format_version",), ("shards",), ("shards", 0),
                  ("shards", 0, "stem"), ("shards", 0, "count"), ("shards", 1, "count"), ("counts",),
                  ("counts", "positive"), ("images",), ("images", 0), ("split",), ("stage",), ()]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(where=st.lists(st.sampled_from(MANIFEST_PATHS), min_size=1, max_size=3), data=st.data())
def test_fuzzed_manifests_open_cleanly_or_give_one_line_errors(sample_set, where, data):
    """Any JSON value at any field the reader uses: a set that opens consistently or a UserError."""
    original = (sample_set / MANIFEST).read_text()
    manifest = json.loads(original)
    for path in where:
        value = data.draw(JSON_VALUES)
        if not path:
            manifest = value
            continue
        parent = manifest
        try:
            for step in path[:-1]:
                parent = parent[step]
            parent[path[-1]] = value
        except (KeyError, IndexError, TypeError):
            pass  # an earlier change removed the field's parent
    (sample_set / MANIFEST).write_text(json.dumps(manifest))
    try:
        for mmap in (True, False):
            opened = SampleSet.open(sample_set, mmap=mmap)
            arrays = opened.arrays()
            assert len(arrays["labels"]) == len(opened) == sum(opened.counts().values()) == 30
    except UserError as exc:
        assert_one_line(str(exc), sample_set)
    finally:
        (sample_set / MANIFEST).write_text(original)
