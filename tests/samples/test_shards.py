"""Sample sets on disk (:mod:`mtcnn_train.samples.shards`): shards, manifests, several folders read as one."""
import numpy as np
import pytest

from mtcnn_train.errors import UserError
from mtcnn_train.samples.labels import LABEL_LANDMARK, LABEL_NEGATIVE, LABEL_PART, LABEL_POSITIVE
from mtcnn_train.samples.shards import SampleSet, empty_arrays, write_sample_set


def _arrays(n, size=12, seed=0):
    rng = np.random.default_rng(seed)
    arrays = empty_arrays(size)
    arrays["images"] = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
    arrays["labels"] = rng.choice([LABEL_NEGATIVE, LABEL_POSITIVE, LABEL_PART, LABEL_LANDMARK], n).astype(np.int8)
    arrays["boxes"] = rng.normal(size=(n, 4)).astype(np.float32)
    arrays["landmarks"] = rng.random((n, 10)).astype(np.float32)
    arrays["sources"] = rng.integers(0, 5, n).astype(np.int32)
    arrays["crops"] = rng.random((n, 4)).astype(np.float32)
    return arrays


def test_sample_set_roundtrip_several_shards_and_folders(tmp_path):
    a, b = _arrays(25), _arrays(7, seed=1)
    write_sample_set(tmp_path / "a", a, {"images": ["x"] * 5}, shard_size=10)
    write_sample_set(tmp_path / "b", b, {"images": ["y"] * 5})
    one = SampleSet.open(tmp_path / "a")
    assert len(one.shards) == 3 and len(one) == 25
    assert isinstance(one.shards[0]["images"], np.memmap)
    for key, value in one.arrays().items():
        np.testing.assert_array_equal(value, a[key])
    both = SampleSet.open([tmp_path / "a", tmp_path / "b"])
    merged = both.arrays()
    assert len(merged["labels"]) == 32
    np.testing.assert_array_equal(merged["sources"][25:], b["sources"] + 5)  # sources stay unique
    assert sum(both.counts().values()) == 32


def test_shards_stream_in_chunks_into_the_files_numpy_writes(tmp_path, monkeypatch):
    """A shard is gathered and written a few thousand rows at a time (an O-Net shard whole is
    691 MB); the files are the ones ``np.save`` writes of the whole arrays, byte for byte."""
    from mtcnn_train.samples import shards

    arrays = _arrays(25)
    monkeypatch.setattr(shards, "WRITE_ROWS", 4)  # shards of 10 rows: chunks of 4, 4 and 2
    fetched = []
    original = shards.write_shard

    def counting(directory, index, count, fetch, *args, **kwargs):
        return original(directory, index, count, lambda a, b: fetched.append(b - a) or fetch(a, b), *args, **kwargs)

    monkeypatch.setattr(shards, "write_shard", counting)
    write_sample_set(tmp_path / "set", arrays, {"images": ["x"] * 5}, shard_size=10)
    assert fetched == [4, 4, 2, 4, 4, 2, 4, 1]
    for index, (start, stop) in enumerate([(0, 10), (10, 20), (20, 25)]):
        for key in arrays:
            np.save(tmp_path / "expected.npy", arrays[key][start:stop])
            written = (tmp_path / "set" / f"shard-{index:05d}.{key}.npy").read_bytes()
            assert written == (tmp_path / "expected.npy").read_bytes(), (index, key)


def test_unfinished_or_mismatched_sets_are_refused(tmp_path):
    with pytest.raises(UserError, match="not a finished sample set"):
        SampleSet.open(tmp_path)
    write_sample_set(tmp_path / "s12", _arrays(3), {})
    write_sample_set(tmp_path / "s24", _arrays(3, size=24), {})
    with pytest.raises(UserError, match="crop size"):
        SampleSet.open([tmp_path / "s12", tmp_path / "s24"])
    np.save(tmp_path / "s12" / "shard-00000.labels.npy", np.zeros(2, np.int8))
    with pytest.raises(UserError, match="the manifest says 3"):
        SampleSet.open(tmp_path / "s12")
