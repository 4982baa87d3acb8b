"""Device batches: mirroring, augmentation, resident vs streamed images, the validation split."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from mtcnn_train.errors import UserError
from mtcnn_train.geometry import box_offsets, landmark_offsets
from mtcnn_train.nets import normalize
from mtcnn_train.samples.shards import SampleSet, write_sample_set
from mtcnn_train.samples.labels import LABEL_POSITIVE
from mtcnn_train.training import data as data_module
from mtcnn_train.geometry import mirror_box_offsets, mirror_point_fractions
from mtcnn_train.training.data import SampleTensors, augment_batch, low_resolution, split_by_source

from tests.training.conftest import write_tiny_samples


def _mirror_x(x, crop):
    return crop[0] + crop[2] - x


def test_mirrored_box_offsets_match_geometry():
    rng = np.random.default_rng(0)
    crops = np.array([[10, 20, 34, 44], [0, 0, 12, 12], [5.5, 3, 53.5, 51]], np.float64)
    faces = crops + rng.uniform(-4, 4, size=crops.shape)
    mirrored_faces = np.stack([_mirror_x(faces[:, 2], crops.T), faces[:, 1], _mirror_x(faces[:, 0], crops.T),
                               faces[:, 3]], 1)
    expected = box_offsets(crops, mirrored_faces)
    got = mirror_box_offsets(torch.from_numpy(box_offsets(crops, faces))).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-6)


def test_mirrored_landmarks_match_geometry_and_swap_sides():
    rng = np.random.default_rng(1)
    crops = np.array([[10, 20, 34, 44], [0, 0, 48, 48]], np.float64)
    points = rng.uniform(0, 30, size=(2, 5, 2))
    mirrored = points.copy()
    mirrored[..., 0] = crops[:, None, 0] + crops[:, None, 2] - points[..., 0]
    mirrored = mirrored[:, [1, 0, 2, 4, 3]]  # the left eye of the mirror image is the old right eye
    expected = landmark_offsets(crops, mirrored).reshape(2, 10)
    got = mirror_point_fractions(torch.from_numpy(landmark_offsets(crops, points).reshape(2, 10))).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-6)
    twice = mirror_point_fractions(mirror_point_fractions(torch.from_numpy(expected)))
    np.testing.assert_allclose(twice.numpy(), expected, atol=1e-6)


def test_augment_flips_images_and_targets_together(monkeypatch):
    monkeypatch.setattr(data_module, "CONTRAST_JITTER", 0.0)
    monkeypatch.setattr(data_module, "BRIGHTNESS_JITTER", 0.0)
    n = 64
    generator = torch.Generator().manual_seed(3)
    images = torch.randint(0, 256, (n, 3, 12, 12), dtype=torch.uint8, generator=generator)
    labels = torch.full((n,), LABEL_POSITIVE, dtype=torch.int8)
    boxes = torch.tensor([[0.1, 0.2, -0.3, 0.05]]).repeat(n, 1)
    landmarks = torch.rand(n, 10, generator=generator)
    batch = augment_batch(images, labels, boxes, landmarks, torch.Generator().manual_seed(5))
    flipped = ~torch.isclose(batch.boxes, boxes).all(1)
    assert 0 < int(flipped.sum()) < n  # both cases occur in a batch of 64
    expected_images = torch.where(flipped[:, None, None, None], images.flip(3), images)
    torch.testing.assert_close(batch.images, normalize(expected_images))
    torch.testing.assert_close(batch.boxes[flipped], mirror_box_offsets(boxes[flipped]))
    torch.testing.assert_close(batch.landmarks[flipped], mirror_point_fractions(landmarks[flipped]))
    torch.testing.assert_close(batch.landmarks[~flipped], landmarks[~flipped])


def test_augment_is_a_function_of_the_seed_and_stays_in_range():
    images = torch.randint(0, 256, (32, 3, 24, 24), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    args = (images, torch.zeros(32, dtype=torch.int8), torch.zeros(32, 4), torch.zeros(32, 10))
    a = augment_batch(*args, torch.Generator().manual_seed(11))
    b = augment_batch(*args, torch.Generator().manual_seed(11))
    c = augment_batch(*args, torch.Generator().manual_seed(12))
    assert torch.equal(a.images, b.images)
    assert not torch.equal(a.images, c.images)
    assert a.images.min() >= normalize(torch.tensor(0.0)) and a.images.max() <= normalize(torch.tensor(255.0))


def test_low_resolution_blurs_only_the_chosen_crops():
    # A one-pixel checkerboard: shrunk and enlarged back it turns grey; a side of the full size
    # (area resize to the same size, then bilinear to the same size) leaves a crop as it was.
    board = (torch.arange(48)[:, None] + torch.arange(48)[None]) % 2 * 255.0
    x = board.expand(4, 3, 48, 48).clone()
    chosen = torch.tensor([True, True, False, True])
    sides = torch.tensor([12, 24, 12, 48])
    out = low_resolution(x, chosen, sides)
    assert torch.equal(out[2], x[2]) and torch.allclose(out[3], x[3])
    for row in (0, 1):
        assert out[row].std() < 1.0 and out[row].mean().item() == pytest.approx(127.5, abs=1.0)
    assert torch.equal(x[0], board.expand(3, 48, 48))  # the input is not changed in place


def test_augment_without_low_resolution_draws_as_before():
    images = torch.randint(0, 256, (32, 3, 24, 24), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    args = (images, torch.zeros(32, dtype=torch.int8), torch.zeros(32, 4), torch.zeros(32, 10))
    plain = augment_batch(*args, torch.Generator().manual_seed(11))
    off = augment_batch(*args, torch.Generator().manual_seed(11), low_resolution_prob=0.0)
    on = augment_batch(*args, torch.Generator().manual_seed(11), low_resolution_prob=0.5)
    assert torch.equal(plain.images, off.images)
    changed = (on.images != plain.images).flatten(1).any(1)
    assert 4 < int(changed.sum()) < 28  # about half the crops
    assert on.images.min() >= normalize(torch.tensor(0.0)) and on.images.max() <= normalize(torch.tensor(255.0))


def test_resident_and_streamed_batches_are_identical(tmp_path):
    directory = write_tiny_samples(tmp_path / "s", count=300, size=12, shard_size=70)  # 5 shards
    sample_set = SampleSet.open(directory)
    resident = SampleTensors(sample_set, torch.device("cpu"), resident_max_gib=1.0)
    streamed = SampleTensors(sample_set, torch.device("cpu"), resident_max_gib=0.0)
    assert resident.resident and not streamed.resident
    order = torch.randperm(300, generator=torch.Generator().manual_seed(0))
    index_batches = [order[i:i + 64] for i in range(0, 300, 64)]
    seeds = list(range(len(index_batches)))
    arrays = sample_set.arrays()
    for a, b, indices in zip(resident.batches(index_batches, True, seeds), streamed.batches(index_batches, True, seeds),
                             index_batches):
        for field in ("images", "labels", "boxes", "landmarks"):
            assert torch.equal(getattr(a, field), getattr(b, field)), field
        assert torch.equal(a.labels, torch.from_numpy(arrays["labels"][indices.numpy()]))
    plain = next(resident.batches(index_batches[:1], augment=False))
    expected = torch.from_numpy(arrays["images"][index_batches[0].numpy()]).permute(0, 3, 1, 2)
    assert torch.equal(plain.images, normalize(expected))
    assert torch.isfinite(plain.boxes).all() and torch.isfinite(plain.landmarks).all()


def test_split_keeps_each_source_on_one_side():
    rng = np.random.default_rng(0)
    sources = rng.integers(0, 50, size=2000)
    train, val = split_by_source(sources, 0.1, seed=3)
    assert len(np.intersect1d(train, val)) == 0 and len(train) + len(val) == 2000
    assert not set(sources[train]) & set(sources[val])
    assert 0.1 <= len(val) / 2000 < 0.2
    again = split_by_source(sources, 0.1, seed=3)
    assert np.array_equal(again[1], val)
    other = split_by_source(sources, 0.1, seed=4)
    assert not np.array_equal(other[1], val)


def test_split_falls_back_to_samples_without_sources():
    train, val = split_by_source(np.full(100, -1), 0.2, seed=0)
    assert len(val) == 20 and len(train) == 80
    train, val = split_by_source(np.zeros(100, np.int32), 0.2, seed=0)  # all from one image
    assert len(val) == 20
    train, val = split_by_source(np.arange(10), 0.0, seed=0)
    assert len(val) == 0 and len(train) == 10


def test_sources_stay_unique_across_folders(tmp_path):
    a = write_tiny_samples(tmp_path / "a", count=80, seed=1)
    b = write_tiny_samples(tmp_path / "b", count=80, seed=2)
    tensors = SampleTensors(SampleSet.open([a, b]), torch.device("cpu"), 1.0)
    assert not set(tensors.sources[:80]) & set(tensors.sources[80:])


def _write(directory, labels, boxes, landmarks):
    n = len(labels)
    arrays = {"images": np.zeros((n, 12, 12, 3), np.uint8), "labels": np.array(labels, np.int8),
              "boxes": np.array(boxes, np.float32), "landmarks": np.array(landmarks, np.float32),
              "sources": np.zeros(n, np.int32), "crops": np.zeros((n, 4), np.float32)}
    write_sample_set(directory, arrays, {})
    return SampleSet.open(directory)


def test_bad_labels_and_missing_targets_are_refused(tmp_path):
    nan4, nan10 = [np.nan] * 4, [np.nan] * 10
    with pytest.raises(UserError, match="unknown label"):
        SampleTensors(_write(tmp_path / "a", [0, 7], [nan4, nan4], [nan10, nan10]), torch.device("cpu"), 1.0)
    with pytest.raises(UserError, match="box targets"):
        SampleTensors(_write(tmp_path / "b", [1], [nan4], [nan10]), torch.device("cpu"), 1.0)
    with pytest.raises(UserError, match="landmark targets"):
        SampleTensors(_write(tmp_path / "c", [-2], [nan4], [nan10]), torch.device("cpu"), 1.0)
