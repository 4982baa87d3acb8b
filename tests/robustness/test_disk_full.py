"""A disk that fills up while a sample set is written.

Whatever file the disk fills on (a shard array, the manifest) and however far into it, the writer
raises a one-line :class:`UserError` naming that file and saying "No space left on device", no
``.tmp-*`` file stays behind, no ``manifest.json`` vouches for the half-written set (not even an
older set's), and :meth:`SampleSet.open` refuses the folder.  Once space is back, the same call
writes a set that reads back intact.
"""
from __future__ import annotations

import errno
import io
import os
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mtcnn_train.errors import UserError
from mtcnn_train.samples import shards
from mtcnn_train.samples.shards import ARRAY_DTYPES, MANIFEST, SampleSet, empty_arrays, write_sample_set
from mtcnn_train.samples.labels import LABEL_LANDMARK, LABEL_NEGATIVE, LABEL_PART, LABEL_POSITIVE

NO_SPACE = os.strerror(errno.ENOSPC)  # "No space left on device"


def sample_arrays(n: int, size: int = 12, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    arrays = empty_arrays(size)
    arrays["images"] = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
    arrays["labels"] = np.resize(np.array([LABEL_NEGATIVE, LABEL_POSITIVE, LABEL_PART, LABEL_LANDMARK], np.int8), n)
    arrays["boxes"] = rng.normal(size=(n, 4)).astype(np.float32)
    arrays["landmarks"] = rng.random((n, 10)).astype(np.float32)
    arrays["sources"] = (np.arange(n) % 3).astype(np.int32)
    arrays["crops"] = rng.random((n, 4)).astype(np.float32)
    return arrays


MANIFEST_EXTRA = {"images": ["a.jpg", "b.jpg", "c.jpg"], "stage": "pnet"}
ARRAYS = sample_arrays(25)
SHARD_SIZE = 10  # three shards: 18 array files, then the manifest


class FillingDisk:
    """Stands in for the file system under the shard writer's files, ``np.save`` and
    ``Path.write_bytes``: after ``budget`` bytes, or from the first write into file number
    ``fail_on_file`` (1-based, files counted by their first write), a write raises ENOSPC after
    writing what still fits, as a real full disk does."""

    def __init__(self, budget: int | None = None, fail_on_file: int | None = None) -> None:
        self.left = budget
        self.fail_on_file = fail_on_file
        self.files = 0
        self.written = 0

    def write(self, fh, data: bytes, new_file: bool = True) -> None:
        data = bytes(data)
        self.files += new_file
        fits = len(data) if self.left is None else min(len(data), self.left)
        if self.fail_on_file is not None and self.files >= self.fail_on_file:
            fits = 0
        fh.write(data[:fits])
        self.written += fits
        if self.left is not None:
            self.left -= fits
        if fits < len(data):
            raise OSError(errno.ENOSPC, NO_SPACE)

    def install(self, monkeypatch) -> "FillingDisk":
        real_save = np.save

        def save(file, arr, allow_pickle=True, fix_imports=True):
            buffer = io.BytesIO()
            real_save(buffer, arr, allow_pickle=allow_pickle)
            self.write(file, buffer.getvalue())

        def write_bytes(path, data):
            with open(path, "wb") as fh:
                self.write(fh, bytes(data))

        disk = self

        class RealWrites:
            def __init__(self, file: io.FileIO) -> None:
                self.write = lambda chunk: io.FileIO.write(file, chunk)

        class FillingFile(io.FileIO):
            """A file whose writes (the shard writer's header and chunks) go through the disk."""

            started = False

            def write(self, data) -> int:
                disk.write(RealWrites(self), data, new_file=not self.started)
                self.started = True
                return len(bytes(data))

        def open_filling(path, mode="r", *args, **kwargs):
            return FillingFile(path, mode.replace("b", "")) if "w" in mode else open(path, mode, *args, **kwargs)

        monkeypatch.setattr(np, "save", save)
        monkeypatch.setattr(Path, "write_bytes", write_bytes)
        monkeypatch.setattr(shards, "open", open_filling, raising=False)  # the shard writer's files
        return self


def set_bytes_and_files() -> tuple[int, int]:
    """Bytes and files a full write of ARRAYS takes (measured with an unlimited FillingDisk)."""
    with tempfile.TemporaryDirectory() as folder, pytest.MonkeyPatch.context() as patch:
        disk = FillingDisk().install(patch)
        write_sample_set(folder, ARRAYS, MANIFEST_EXTRA, shard_size=SHARD_SIZE)
        return disk.written, disk.files


TOTAL_BYTES, TOTAL_FILES = set_bytes_and_files()


def assert_refused_cleanly(directory: Path, error: UserError) -> None:
    message = str(error)
    assert len(message.splitlines()) == 1, message
    assert NO_SPACE.lower() in message.lower(), message
    named = Path(message.split(": ", 1)[0])
    assert named.parent == directory and not named.name.startswith(".tmp-"), message  # the real file, by name
    assert not list(directory.glob(".tmp-*")), sorted(p.name for p in directory.iterdir())
    assert not (directory / MANIFEST).exists()
    with pytest.raises(UserError, match="not a finished sample set"):
        SampleSet.open(directory)


def assert_set_reads_back(directory: Path) -> None:
    arrays = SampleSet.open(directory).arrays()
    for key in ARRAY_DTYPES:
        np.testing.assert_array_equal(arrays[key], ARRAYS[key])


def test_the_write_takes_every_file_and_byte_counted():
    assert TOTAL_FILES == 3 * len(ARRAY_DTYPES) + 1
    assert TOTAL_BYTES > ARRAYS["images"].nbytes


@pytest.mark.parametrize("fail_on_file", range(1, TOTAL_FILES + 1))
def test_disk_full_on_each_file(tmp_path, monkeypatch, fail_on_file):
    directory = tmp_path / "set"
    disk = FillingDisk(fail_on_file=fail_on_file).install(monkeypatch)
    with pytest.raises(UserError) as info:
        write_sample_set(directory, ARRAYS, MANIFEST_EXTRA, shard_size=SHARD_SIZE)
    assert disk.files == fail_on_file
    if fail_on_file == TOTAL_FILES:
        assert Path(str(info.value).split(": ", 1)[0]).name == MANIFEST  # every shard written, then the manifest
    assert_refused_cleanly(directory, info.value)
    monkeypatch.undo()  # space is back: the same call now finishes
    write_sample_set(directory, ARRAYS, MANIFEST_EXTRA, shard_size=SHARD_SIZE)
    assert_set_reads_back(directory)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(budget=st.integers(0, TOTAL_BYTES - 1))
def test_disk_full_after_any_number_of_bytes(tmp_path_factory, budget):
    directory = tmp_path_factory.mktemp("set")
    with pytest.MonkeyPatch.context() as patch:
        FillingDisk(budget=budget).install(patch)
        with pytest.raises(UserError) as info:
            write_sample_set(directory, ARRAYS, MANIFEST_EXTRA, shard_size=SHARD_SIZE)
    assert_refused_cleanly(directory, info.value)


def test_an_older_set_in_the_folder_is_not_trusted_after_a_failed_rewrite(tmp_path, monkeypatch):
    directory = tmp_path / "set"
    write_sample_set(directory, sample_arrays(25, seed=7), MANIFEST_EXTRA, shard_size=SHARD_SIZE)
    assert len(SampleSet.open(directory)) == 25
    FillingDisk(fail_on_file=8).install(monkeypatch)  # the second shard's second array
    with pytest.raises(UserError) as info:
        write_sample_set(directory, ARRAYS, MANIFEST_EXTRA, shard_size=SHARD_SIZE)
    assert_refused_cleanly(directory, info.value)
    monkeypatch.undo()
    write_sample_set(directory, ARRAYS, MANIFEST_EXTRA, shard_size=SHARD_SIZE)
    assert_set_reads_back(directory)


@pytest.mark.parametrize("where", ["temp file", "fsync", "rename"])
def test_full_disk_outside_the_write_itself(tmp_path, monkeypatch, where):
    """Creating the temp file, the fsync (where delayed allocation reports a full disk) and the
    rename can fail too."""
    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, NO_SPACE)

    target = {"temp file": (tempfile, "mkstemp"), "fsync": (os, "fsync"), "rename": (os, "replace")}[where]
    monkeypatch.setattr(*target, no_space)
    directory = tmp_path / "set"
    with pytest.raises(UserError) as info:
        write_sample_set(directory, ARRAYS, MANIFEST_EXTRA, shard_size=SHARD_SIZE)
    monkeypatch.undo()
    assert_refused_cleanly(directory, info.value)


# --------------------------------------------------------------------------------------------
# A real full file system: a 2 MB tmpfs (needs root and permission to mount; skipped otherwise)


@pytest.fixture
def small_tmpfs(tmp_path):
    mount_point = tmp_path / "tmpfs"
    mount_point.mkdir()
    try:
        result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount_point)],
                                capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as exc:
        pytest.skip(f"cannot mount a tmpfs here ({exc})")
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({result.stderr.strip() or result.returncode})")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", str(mount_point)], capture_output=True, timeout=30)


def test_real_full_tmpfs(small_tmpfs):
    arrays = sample_arrays(600, size=48)  # 600 x 48 x 48 x 3 bytes = 4.1 MB of crops on 2 MB
    directory = small_tmpfs / "set"
    with pytest.raises(UserError) as info:
        write_sample_set(directory, arrays, MANIFEST_EXTRA, shard_size=100)
    assert_refused_cleanly(directory, info.value)
    assert ".images.npy" in str(info.value)
    # The shards that did fit stay (a rerun overwrites them), but nothing trusts them.
    written = sorted(p.name for p in directory.iterdir())
    assert written and all(name.startswith("shard-") for name in written), written
    # Space back (a smaller set fits): the folder becomes a finished set again.
    for path in directory.iterdir():
        path.unlink()
    small = sample_arrays(20, size=48)
    write_sample_set(directory, small, MANIFEST_EXTRA, shard_size=100)
    np.testing.assert_array_equal(SampleSet.open(directory).arrays()["images"], small["images"])
