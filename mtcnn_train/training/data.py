"""Training batches straight from the sample shards, kept on the device when they fit.

A sample set is small per sample (432 bytes at 12 px, 6.9 KB at 48 px), so a typical set fits in
GPU memory (or RAM for CPU training).  :class:`SampleTensors` then holds every crop there as
``uint8`` ``(N, 3, S, S)`` and a batch is one ``index_select``: no per-sample Python, no worker
processes, no decoding.  Sets larger than ``resident_max_gib`` stay memory-mapped and each batch
is gathered from the shards by a background thread, a few batches ahead.  Targets (labels, box and
landmark offsets: 57 bytes a sample) are always on the device.

Augmentation runs on the device on whole batches (:func:`augment_batch`): a random horizontal flip
(box x-offsets and landmark x-coordinates mirrored, left/right points swapped) and a mild
brightness and contrast jitter.  Its randomness comes from a generator seeded per step, so a
resumed run draws exactly what an uninterrupted one would.
"""
from __future__ import annotations

import queue
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from mtcnn_train.errors import UserError
from mtcnn_train.geometry import mirror_box_offsets, mirror_point_fractions
from mtcnn_train.nets import normalize
from mtcnn_train.samples.shards import SampleSet
from mtcnn_train.samples.labels import LABEL_NAMES, LABEL_LANDMARK, LABEL_PART, LABEL_POSITIVE

#: Contrast is scaled by a factor drawn from [1 - CONTRAST_JITTER, 1 + CONTRAST_JITTER] around each
#: crop's mean, brightness shifted by up to BRIGHTNESS_JITTER grey levels (of 255).
CONTRAST_JITTER = 0.15
BRIGHTNESS_JITTER = 15.0
#: The 1/128 of ``nets.normalize``.
NORMALIZE_SCALE = 0.0078125
#: Samples copied to the device per chunk while loading a resident set (bounds host memory).
_LOAD_CHUNK = 65_536
#: Batches gathered ahead of the training step when the set is streamed from the shards.
_PREFETCH = 4


@dataclass
class Batch:
    """One training batch on the device; ``images`` normalised ``(x - 127.5) / 128``."""

    images: torch.Tensor      # (B, 3, S, S) float32
    labels: torch.Tensor      # (B,) int8
    boxes: torch.Tensor       # (B, 4) float32, 0 where unused
    landmarks: torch.Tensor   # (B, 10) float32, 0 where unused


class SampleTensors:
    """A sample set ready for training on ``device``.

    Attributes:
        labels, boxes, landmarks: device tensors for every sample (NaN targets replaced by 0).
        sources: host ``int32`` array of source-image ids, unique across folders (for the split).
        resident: whether the images live on the device (else they are read from the shards).
    """

    def __init__(self, sample_set: SampleSet, device: torch.device, resident_max_gib: float) -> None:
        self.device = torch.device(device)
        self.crop_size = sample_set.crop_size
        self.directories = list(sample_set.directories)
        self._shard_images = [shard["images"] for shard in sample_set.shards]
        counts = [len(images) for images in self._shard_images]
        self._shard_starts = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        self.num_samples = int(self._shard_starts[-1])

        labels, boxes, landmarks, sources = _host_targets(sample_set)
        self.sources = sources
        self.labels = torch.from_numpy(labels).to(self.device)
        self.boxes = torch.from_numpy(np.nan_to_num(boxes, nan=0.0)).to(self.device)
        self.landmarks = torch.from_numpy(np.nan_to_num(landmarks, nan=0.0)).to(self.device)

        image_bytes = self.num_samples * 3 * self.crop_size ** 2
        self.resident = image_bytes <= _resident_budget(self.device, resident_max_gib)
        self.images = self._load_resident() if self.resident else None

    def __len__(self) -> int:
        return self.num_samples

    # ----------------------------------------------------------------------------------------
    # Images

    def _load_resident(self) -> torch.Tensor:
        size = self.crop_size
        images = torch.empty((self.num_samples, 3, size, size), dtype=torch.uint8, device=self.device)
        for shard_index, shard in enumerate(self._shard_images):
            start = int(self._shard_starts[shard_index])
            for lo in range(0, len(shard), _LOAD_CHUNK):
                chunk = np.array(shard[lo:lo + _LOAD_CHUNK])  # a writable copy, not a view of the map
                part = torch.from_numpy(chunk).to(self.device).permute(0, 3, 1, 2)
                images[start + lo:start + lo + len(chunk)].copy_(part)
        return images

    def gather_host(self, indices: np.ndarray) -> torch.Tensor:
        """Images of ``indices`` read from the memory-mapped shards: ``(B, S, S, 3)`` uint8 on the host."""
        size = self.crop_size
        out = np.empty((len(indices), size, size, 3), dtype=np.uint8)
        shard_of = np.searchsorted(self._shard_starts, indices, side="right") - 1
        for shard_index in np.unique(shard_of):
            rows = np.flatnonzero(shard_of == shard_index)
            local = indices[rows] - self._shard_starts[shard_index]
            # Reading in ascending order touches each page of the map once.
            order = np.argsort(local, kind="stable")
            out[rows[order]] = self._shard_images[shard_index][local[order]]
        tensor = torch.from_numpy(out)
        return tensor.pin_memory() if self.device.type == "cuda" else tensor

    def image_batches(self, index_batches: Sequence[torch.Tensor]) -> Iterator[torch.Tensor]:
        """``uint8 (B, 3, S, S)`` device images for each index tensor, in order."""
        if self.resident:
            for indices in index_batches:
                yield self.images.index_select(0, indices.to(self.device, non_blocking=True))
            return
        for host in _prefetched(self.gather_host, [i.cpu().numpy() for i in index_batches]):
            yield host.to(self.device, non_blocking=True).permute(0, 3, 1, 2).contiguous()

    def targets(self, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        indices = indices.to(self.device, non_blocking=True)
        return (self.labels.index_select(0, indices), self.boxes.index_select(0, indices),
                self.landmarks.index_select(0, indices))

    def batches(self, index_batches: Sequence[torch.Tensor], augment: bool,
                seeds: Sequence[int] | None = None, low_resolution_prob: float = 0.0) -> Iterator[Batch]:
        """Normalised (and, with ``augment``, augmented with generator seeds ``seeds``) batches."""
        for step, (indices, images) in enumerate(zip(index_batches, self.image_batches(index_batches))):
            labels, boxes, landmarks = self.targets(indices)
            if augment:
                generator = torch.Generator(device=self.device)
                generator.manual_seed(int(seeds[step]) if seeds is not None else step)
                yield augment_batch(images, labels, boxes, landmarks, generator, low_resolution_prob)
            else:
                yield Batch(normalize(images), labels, boxes, landmarks)


# --------------------------------------------------------------------------------------------
# Augmentation


def low_resolution(x: torch.Tensor, chosen: torch.Tensor, sides: torch.Tensor) -> torch.Tensor:
    """``x`` (float, ``B x 3 x S x S``) with the ``chosen`` crops shrunk to ``sides`` (area
    averaging, as the cascade cuts its crops) and enlarged back to ``S`` (bilinear); one resize
    pair per distinct side."""
    size = x.shape[-1]
    x = x.clone()
    for side in sides[chosen].unique().tolist():
        rows = (chosen & (sides == side)).nonzero().squeeze(1)
        small = F.interpolate(x[rows], size=(side, side), mode="area")
        x[rows] = F.interpolate(small, size=(size, size), mode="bilinear", align_corners=False)
    return x


def augment_batch(images: torch.Tensor, labels: torch.Tensor, boxes: torch.Tensor, landmarks: torch.Tensor,
                  generator: torch.Generator, low_resolution_prob: float = 0.0) -> Batch:
    """Random flip and brightness/contrast jitter of a uint8 batch, then normalisation.

    Per crop: ``y = clamp(mean + c (x - mean) + b, 0, 255)``, normalised as ``(y - 127.5) / 128``.
    The jitter and the normalisation are folded into one multiply-add and one clamp, and the flip is
    done on the uint8 pixels, so the batch is read and written only a few times.  With
    ``low_resolution_prob`` that share of the crops is first shown at a lower resolution
    (:func:`low_resolution`, a side drawn uniformly from a quarter of the input size to all of it);
    at 0 the random draws are exactly those of a run without the option.
    """
    n = images.shape[0]
    draws = torch.rand((3, n), generator=generator, device=images.device)
    flip = draws[0] < 0.5
    images = torch.where(flip[:, None, None, None], images.flip(3), images)
    x = images.float()
    if low_resolution_prob > 0:
        size = images.shape[-1]
        chosen = torch.rand(n, generator=generator, device=images.device) < low_resolution_prob
        sides = torch.randint(max(1, size // 4), size, (n,), generator=generator, device=images.device)
        x = low_resolution(x, chosen, sides)
    contrast = 1.0 + (draws[1] * 2 - 1) * CONTRAST_JITTER
    brightness = (draws[2] * 2 - 1) * BRIGHTNESS_JITTER
    mean = x.mean(dim=(1, 2, 3))
    # normalize(mean + c (x - mean) + b) = x * c/128 + (mean (1 - c) + b - 127.5) / 128
    scale = (contrast * NORMALIZE_SCALE)[:, None, None, None]
    shift = ((mean * (1.0 - contrast) + brightness - 127.5) * NORMALIZE_SCALE)[:, None, None, None]
    x = torch.addcmul(shift, x, scale).clamp_(-127.5 * NORMALIZE_SCALE, 127.5 * NORMALIZE_SCALE)
    boxes = torch.where(flip[:, None], mirror_box_offsets(boxes), boxes)
    # Rows without landmark targets hold zeros; mirroring them is harmless (the loss masks them).
    landmarks = torch.where(flip[:, None], mirror_point_fractions(landmarks), landmarks)
    return Batch(x, labels, boxes, landmarks)


# --------------------------------------------------------------------------------------------
# Validation split


def split_by_source(sources: np.ndarray, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Train and validation sample indices, whole source images on one side only.

    Source images are shuffled with ``seed`` and taken into validation until they hold at least
    ``val_fraction`` of the samples (at least one image, and never all of them).  Samples with an
    unknown source (negative id), or a set whose samples all come from one image, are split per
    sample instead.  Deterministic for a given ``(sources, val_fraction, seed)``.
    """
    n = len(sources)
    all_indices = np.arange(n)
    if val_fraction <= 0 or n < 2:
        return all_indices, all_indices[:0]
    sources = np.asarray(sources, dtype=np.int64)
    groups = np.where(sources >= 0, sources, -1 - all_indices)
    unique, inverse, counts = np.unique(groups, return_inverse=True, return_counts=True)
    if len(unique) < 2:
        unique, inverse, counts = all_indices, all_indices, np.ones(n, np.int64)
    permutation = np.random.default_rng(seed).permutation(len(unique))
    cumulative = np.cumsum(counts[permutation])
    num_val_groups = int(np.searchsorted(cumulative, val_fraction * n)) + 1
    num_val_groups = min(num_val_groups, len(unique) - 1)
    is_val = np.zeros(len(unique), bool)
    is_val[permutation[:num_val_groups]] = True
    sample_is_val = is_val[inverse]
    return np.flatnonzero(~sample_is_val), np.flatnonzero(sample_is_val)


# --------------------------------------------------------------------------------------------
# Helpers


def _host_targets(sample_set: SampleSet) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Labels, boxes, landmarks and folder-unique sources of every sample, checked per folder."""
    labels, boxes, landmarks, sources = [], [], [], []
    shard_index = 0
    source_offset = 0
    for directory, manifest in zip(sample_set.directories, sample_set.manifests):
        folder = sample_set.shards[shard_index:shard_index + len(manifest["shards"])]
        shard_index += len(manifest["shards"])
        folder_labels = np.concatenate([np.asarray(s["labels"]) for s in folder]) if folder else np.zeros(0, np.int8)
        folder_boxes = np.concatenate([np.asarray(s["boxes"]) for s in folder]) if folder else np.zeros((0, 4), np.float32)
        folder_landmarks = (np.concatenate([np.asarray(s["landmarks"]) for s in folder]) if folder
                            else np.zeros((0, 10), np.float32))
        folder_sources = np.concatenate([np.asarray(s["sources"]) for s in folder]) if folder else np.zeros(0, np.int32)
        _check_targets(Path(directory), folder_labels, folder_boxes, folder_landmarks)
        labels.append(folder_labels)
        boxes.append(folder_boxes.astype(np.float32, copy=False))
        landmarks.append(folder_landmarks.astype(np.float32, copy=False))
        # Unknown sources (< 0) stay unknown; known ones are made unique across folders.
        sources.append(np.where(folder_sources >= 0, folder_sources.astype(np.int64) + source_offset, -1))
        source_offset += len(manifest.get("images", [])) or (int(folder_sources.max()) + 1 if len(folder_sources) else 0)
    return (np.concatenate(labels).astype(np.int8), np.concatenate(boxes), np.concatenate(landmarks),
            np.concatenate(sources))


def _check_targets(directory: Path, labels: np.ndarray, boxes: np.ndarray, landmarks: np.ndarray) -> None:
    """Refuse labels outside LABEL_* and samples missing the targets their label needs."""
    unknown = ~np.isin(labels, list(LABEL_NAMES))
    if unknown.any():
        raise UserError(f"{directory}: {int(unknown.sum())} samples have an unknown label "
                        f"(first: {int(labels[unknown][0])}; expected one of {sorted(LABEL_NAMES)})")
    needs_box = (labels == LABEL_POSITIVE) | (labels == LABEL_PART)
    bad_box = needs_box & ~np.isfinite(boxes).all(1)
    if bad_box.any():
        raise UserError(f"{directory}: {int(bad_box.sum())} positive or part samples lack finite box targets "
                        f"(first at sample {int(np.flatnonzero(bad_box)[0])})")
    bad_landmarks = (labels == LABEL_LANDMARK) & ~np.isfinite(landmarks).all(1)
    if bad_landmarks.any():
        raise UserError(f"{directory}: {int(bad_landmarks.sum())} landmark samples lack finite landmark targets "
                        f"(first at sample {int(np.flatnonzero(bad_landmarks)[0])})")


def _resident_budget(device: torch.device, resident_max_gib: float) -> float:
    """Bytes of images allowed on the device: the config's cap, and at most half the free GPU memory."""
    budget = resident_max_gib * 2 ** 30
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        budget = min(budget, free / 2)
    return budget


def _prefetched(load, items: list) -> Iterator:
    """``load(item)`` for each item, computed by a background thread up to ``_PREFETCH`` ahead."""
    results: queue.Queue = queue.Queue(maxsize=_PREFETCH)
    stop = threading.Event()

    def work() -> None:
        try:
            for item in items:
                if stop.is_set():
                    return
                results.put((True, load(item)))
        except BaseException as exc:  # handed to the consumer, which re-raises it
            results.put((False, exc))

    thread = threading.Thread(target=work, name="mtcnn-batch-prefetch", daemon=True)
    thread.start()
    try:
        for _ in items:
            ok, value = results.get()
            if not ok:
                raise value
            yield value
    finally:
        stop.set()
        # Unblock a producer waiting on a full queue so the thread can end.
        while thread.is_alive():
            try:
                results.get_nowait()
            except queue.Empty:
                thread.join(timeout=0.05)
