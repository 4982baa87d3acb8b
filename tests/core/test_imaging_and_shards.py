import cv2
import numpy as np
import pytest

from mtcnn_train.errors import UserError
from mtcnn_train.imaging import crop_resize_numpy
from mtcnn_train.samples.shards import SampleSet, empty_arrays, write_sample_set
from mtcnn_train.samples.labels import LABEL_LANDMARK, LABEL_NEGATIVE, LABEL_PART, LABEL_POSITIVE


def test_crop_resize_matches_opencv_and_pads_with_zeros():
    rng = np.random.default_rng(0)
    image = cv2.GaussianBlur(rng.integers(0, 256, (120, 160, 3), dtype=np.uint8), (0, 0), 2)
    crops = crop_resize_numpy(image, np.array([[20, 30, 44, 54], [40, 10, 88, 58]], np.float32), 24)
    np.testing.assert_array_equal(crops[0], image[30:54, 20:44])  # same size: an exact copy
    reference = cv2.resize(image[10:58, 40:88], (24, 24), interpolation=cv2.INTER_AREA)
    assert np.abs(crops[1].astype(int) - reference).mean() < 1.5
    outside = crop_resize_numpy(image, np.array([[-24, -24, 0, 0], [150, 100, 174, 124]], np.float32), 12)
    assert np.all(outside[0] == 0)
    assert np.all(outside[1][8:, 8:] == 0) and np.any(outside[1][:4, :4] > 0)
    assert crop_resize_numpy(image, np.zeros((0, 4), np.float32), 12).shape == (0, 12, 12, 3)


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
