"""P-Net sample cutting: the IoU-banded crops of a unit of detection images and the landmark
crops of a unit of landmark faces (the landmark crops of mined R-Net / O-Net sets too).

The crops are planned by :mod:`.sampling` with each image's own random generator
(:func:`.units.item_rng`) and cut in bulk by :mod:`mtcnn_train.imaging`.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from mtcnn_train import imaging
from mtcnn_train.datasets.split import record_key
from mtcnn_train.samples import sampling as smp
from mtcnn_train.samples.labels import LABEL_LANDMARK
from mtcnn_train.samples.shards import concat_arrays
from mtcnn_train.samples.units import (LANDMARK_STREAM, WIDER_STREAM, WorkUnit, count_loaded, detection_images,
                                       item_rng, load_ahead_once, new_stats)


def process_wider_unit(unit: WorkUnit, sampling, size: int) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Cut every kept crop of a unit of detection images (one decode per image, one cut call)."""
    stats = new_stats()
    bands = smp.Bands.from_config(sampling)
    parts = []
    for seed_index, source_index, image, faces, usable in detection_images(unit, sampling.min_face_size, stats):
        height, width = image.shape[:2]
        plan = smp.plan_detection_crops(item_rng(sampling.seed, WIDER_STREAM, seed_index), width, height,
                                        faces, usable, sampling, bands)
        n = len(plan)
        stats["crops"] += n
        parts.append({
            "images": imaging.crop_resize_fast(image, plan.crops, size),
            "labels": plan.labels,
            "boxes": plan.boxes,
            "landmarks": np.full((n, 10), np.nan, np.float32),
            "sources": np.full(n, source_index, np.int32),
            "crops": plan.crops.astype(np.float32),
        })
    return concat_arrays(parts, size), stats


#: Landmark faces cut in one call.  Each face's crops come from its own random stream, so the
#: batch size changes nothing but the memory: a unit's 1,024 CelebA-sized photos decoded together
#: held about 330 MB, 128 of them about 45 MB (docs/SCALING.md).
LANDMARK_CUT_BATCH = 128


def _cut_landmark_batch(batch: list[tuple[np.ndarray, smp.LandmarkPlan, int]], sampling, size: int,
                        stats: dict[str, Any]) -> list[dict[str, np.ndarray]]:
    """The crops of decoded landmark faces ``(image, plan, source index)``, one part per face."""
    if not batch:
        return []
    images, plans, sources = zip(*batch)
    upright = sampling.landmark_max_rotation <= 0
    cut = (imaging.crop_resize_many(list(images), [p.crops for p in plans], size) if upright else
           [imaging.crop_rotated(image, p.crops, p.angles, size) for image, p in zip(images, plans)])
    parts = []
    for crops, plan, source_index in zip(cut, plans, sources):
        crops = crops.copy()
        crops[plan.mirrored] = crops[plan.mirrored][:, :, ::-1]
        n = len(plan)
        stats["crops"] += n
        parts.append({
            "images": crops,
            "labels": np.full(n, LABEL_LANDMARK, np.int8),
            "boxes": plan.boxes,
            "landmarks": plan.landmarks,
            "sources": np.full(n, source_index, np.int32),
            "crops": plan.crops.astype(np.float32),
        })
    return parts


def process_landmark_unit(unit: WorkUnit, sampling, size: int) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Landmark crops of a unit of landmark faces; the small images are cut together."""
    stats = new_stats()
    bands = smp.Bands.from_config(sampling)
    usable = []
    for seed_index, source_index, record in unit.items:
        name = record_key(record)
        if record.landmarks is None or record.num_faces != 1:
            stats["landmark_faces_unusable"] += 1
            stats["problems"].append({"image": name, "problem": "no single face with landmarks"})
            continue
        face, points = record.boxes[0].astype(np.float64), record.landmarks[0].astype(np.float64)
        if not (np.all(np.isfinite(face)) and np.all(np.isfinite(points)) and face[2] > face[0] and face[3] > face[1]):
            stats["landmark_faces_unusable"] += 1
            stats["problems"].append({"image": name, "problem": "empty box or missing landmarks"})
            continue
        usable.append((seed_index, source_index, record, face, points))
    parts: list[dict[str, np.ndarray]] = []
    batch: list[tuple[np.ndarray, smp.LandmarkPlan, int]] = []
    loaded_images = load_ahead_once([item[2].image_path for item in usable])
    for (seed_index, source_index, record, face, points), loaded in zip(usable, loaded_images):
        name = record_key(record)
        image = count_loaded(loaded, name, stats)
        if image is None:
            continue
        height, width = image.shape[:2]
        if face[2] <= 0 or face[3] <= 0 or face[0] >= width or face[1] >= height:
            stats["boxes_outside"] += 1
            stats["problems"].append({"image": name, "problem": "face box outside the image"})
            continue
        stats["landmark_faces"] += 1
        plan = smp.plan_landmark_crops(item_rng(sampling.seed, LANDMARK_STREAM, seed_index), face, points,
                                       sampling.landmark_crops_per_face, bands, sampling.landmark_max_rotation)
        if len(plan) == 0:
            stats["landmark_faces_without_crops"] += 1
        batch.append((image, plan, source_index))
        if len(batch) == LANDMARK_CUT_BATCH:
            parts += _cut_landmark_batch(batch, sampling, size, stats)
            batch = []
    parts += _cut_landmark_batch(batch, sampling, size, stats)
    return concat_arrays(parts, size), stats

