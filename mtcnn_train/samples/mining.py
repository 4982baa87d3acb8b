"""Hard-example mining: ``gen-samples --stage rnet|onet --weights RUN_DIR``.

R-Net learns from what P-Net lets through, O-Net from what P-Net and R-Net let through (paper
section 2.3): the trained earlier stages run over every training image exactly as the cascade runs
at detection time, and each candidate they keep is labelled by its IoU with the ground truth:

* negative: IoU below ``sampling.neg_iou`` with **every** face (invalid and small ones included);
* positive: IoU above ``sampling.pos_iou`` with a usable face (valid, at least min size);
* part face: IoU in ``[part_iou, pos_iou]`` with a usable face; anything else is discarded.

Crops are cut with :meth:`Cascade.crops`, the very cut R-Net and O-Net see at detection time
(squared candidate, integer window, area resize, zero border).  Landmark crops come from the
landmark set as for P-Net, at 24 or 48 px.  The same work units, resume rule, ratio and shard
format as the P-Net set are used (:mod:`.units`, :mod:`.generate`); this module only cuts a unit
and never imports the orchestration.

The run logs what a user needs when R-Net or O-Net go wrong: the earlier stages' **recall** on the
training faces (share of usable faces that some candidate covers at IoU >= 0.65 and >= 0.4) and
the **candidates per image**.
"""
from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path
from typing import Any

import numpy as np

from mtcnn_train.config import Config
from mtcnn_train.stages import INPUT_SIZE, STAGES, earlier_stages
from mtcnn_train.errors import UserError
from mtcnn_train.geometry import iou_matrix, mirror_boxes
from mtcnn_train.samples import sampling as smp
from mtcnn_train.samples.labels import LABEL_NEGATIVE, LABEL_OF, LABEL_PART, LABEL_POSITIVE
from mtcnn_train.samples.shards import concat_arrays
from mtcnn_train.samples.units import WIDER_STREAM, WorkUnit, detection_images, item_rng, new_stats

#: IoU levels at which the earlier stages' recall is reported.
RECALL_LEVELS = (0.65, 0.4)
#: ``origin`` of a mined crop: found by the earlier stages on the image, found by them on its mirror
#: image (``sampling.mining_mirror``), or a ``mining_base_crops`` top-up.
ORIGIN_DETECTION, ORIGIN_MIRRORED, ORIGIN_TOP_UP = 1, 2, 0

_cascade_cache: dict[tuple, Any] = {}


def previous_stage(stage: str) -> str:
    if stage not in STAGES or not earlier_stages(stage):
        raise UserError(f"mining makes R-Net or O-Net samples; got --stage {stage}")
    return earlier_stages(stage)[-1]


def weights_fingerprint(weights: str | Path, stage: str) -> str:
    """Hash of the earlier stages' weight files: mined units are reused only with the same nets."""
    digest = hashlib.sha256()
    for name in earlier_stages(stage):
        path = Path(weights) / f"{name}.pt"
        if not path.is_file():
            raise UserError(f"{path}: not found; mining {stage} samples needs the trained {name} "
                            f"(run mtcnn-train {name} --out {weights} first)")
        digest.update(path.read_bytes())
    return digest.hexdigest()


def mining_detection_config(cfg: Config) -> Any:
    """``cfg.detection`` with the mining thresholds (``sampling.mining_thresholds``) where given."""
    if not cfg.sampling.mining_thresholds:
        return cfg.detection
    thresholds = list(cfg.sampling.mining_thresholds) + list(cfg.detection.thresholds[2:])
    return dataclasses.replace(cfg.detection, thresholds=thresholds)


def _cascade(weights: str, stage: str, detection_cfg) -> Any:
    """One cascade per process (workers reuse it across units)."""
    from mtcnn_train.detection.cascade import Cascade

    key = (weights, stage, repr(detection_cfg))
    if key not in _cascade_cache:
        _cascade_cache.clear()
        _cascade_cache[key] = Cascade.from_run_dir(weights, detection_cfg, stages=previous_stage(stage), device="cpu")
    return _cascade_cache[key]


def cap_negatives(labels: np.ndarray, cap: int) -> np.ndarray:
    """Keep-mask dropping the negatives after the first ``cap`` (candidates come best-scored
    first, so the hardest are kept); 0 keeps all."""
    keep = np.ones(len(labels), bool)
    if cap > 0:
        negatives = np.flatnonzero(labels == LABEL_NEGATIVE)
        keep[negatives[cap:]] = False
    return keep


def label_candidates(candidates: np.ndarray, faces: np.ndarray, usable: np.ndarray,
                     bands: smp.Bands) -> tuple[np.ndarray, np.ndarray]:
    """Labels (int8, ``sampling.DISCARD`` outside every band) and box targets of mined candidates."""
    max_iou, best = smp.best_face(candidates, faces)
    target_usable = usable[best] if len(faces) else np.zeros(len(candidates), bool)
    labels = smp.band_labels(max_iou, target_usable, bands)
    targets = np.full((len(candidates), 4), np.nan, np.float32)
    has_target = (labels == LABEL_POSITIVE) | (labels == LABEL_PART)
    if np.any(has_target):
        from mtcnn_train.geometry import box_offsets

        targets[has_target] = box_offsets(candidates[has_target], faces[best[has_target]])
    return labels, targets


def recall_counts(candidates: np.ndarray, faces: np.ndarray, usable: np.ndarray) -> dict[str, int]:
    """How many usable faces some candidate covers at each of :data:`RECALL_LEVELS`."""
    counts = {"faces_usable": int(usable.sum()), "candidates": int(len(candidates))}
    best = iou_matrix(faces[usable], candidates).max(axis=1) if len(candidates) and usable.any() else np.zeros(int(usable.sum()))
    for level in RECALL_LEVELS:
        counts[f"covered_{level}"] = int((best >= level).sum())
    return counts


def _mine_view(cascade: Any, stage: str, image: np.ndarray, faces: np.ndarray, usable: np.ndarray,
               bands: smp.Bands, cfg: Config, stats: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The earlier stages' kept candidates on one image (or its mirror image): their boxes, labels
    and box targets, the recall counts and the negatives over the per-image cap added to ``stats``."""
    candidates = cascade.detect(image, stages=previous_stage(stage)).boxes.astype(np.float64)
    for key, value in recall_counts(candidates, faces, usable).items():
        stats[key] += value
    labels, targets = label_candidates(candidates, faces, usable, bands)
    keep = (labels != smp.DISCARD) & cap_negatives(labels, cfg.sampling.mining_negatives_per_image)
    stats["mined_negatives_over_cap"] += int(np.sum((labels == LABEL_NEGATIVE) & ~keep))
    return candidates[keep], labels[keep], targets[keep]


def process_mining_unit(unit: WorkUnit, cfg: Config, stage: str, weights: str) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Run the earlier stages over a unit of training images and keep their labelled candidates.

    Besides the sample arrays, the result holds ``origin`` per crop: :data:`ORIGIN_DETECTION` for
    a mined candidate, :data:`ORIGIN_MIRRORED` for one mined on the mirror image
    (``sampling.mining_mirror``: the earlier stages run on both, so each face gives the candidates
    of two pyramids; its ``crops`` row is the window mapped back to the image), :data:`ORIGIN_TOP_UP`
    for a ``mining_base_crops`` crop (the manifest reports the share of each type that came from
    detections).  Recall counts cover every view, so a mirrored run counts each face twice.
    """
    stats = new_stats()
    stats.update({"faces_usable": 0, "candidates": 0, **{f"covered_{level}": 0 for level in RECALL_LEVELS}})
    size = INPUT_SIZE[stage]
    cascade = _cascade(weights, stage, mining_detection_config(cfg))
    bands = smp.Bands.from_config(cfg.sampling)
    parts, origins = [], []

    def keep(images, crops, labels, targets, source_index, origin) -> None:
        n = len(labels)
        stats["crops"] += n
        origins.append(np.full(n, origin, np.uint8))
        parts.append({"images": images, "labels": labels, "boxes": targets,
                      "landmarks": np.full((n, 10), np.nan, np.float32),
                      "sources": np.full(n, source_index, np.int32), "crops": crops.astype(np.float32)})

    for seed_index, source_index, image, faces, usable in detection_images(unit, cfg.sampling.min_face_size, stats):
        height, width = image.shape[:2]
        crops, labels, targets = _mine_view(cascade, stage, image, faces, usable, bands, cfg, stats)
        keep(cascade.crops(image, crops, size), crops, labels, targets, source_index, ORIGIN_DETECTION)
        if cfg.sampling.mining_base_crops:
            # The explicit top-up: the IoU-banded crops of P-Net sampling around each face, under
            # the mined hard examples (a strong earlier stage may let few negatives or faces through).
            plan = smp.plan_detection_crops(item_rng(cfg.sampling.seed, WIDER_STREAM, seed_index),
                                            width, height, faces, usable, cfg.sampling, bands)
            keep(cascade.crops(image, plan.crops, size), plan.crops, plan.labels, plan.boxes, source_index,
                 ORIGIN_TOP_UP)
        if cfg.sampling.mining_mirror:
            mirrored = np.ascontiguousarray(image[:, ::-1])
            crops, labels, targets = _mine_view(cascade, stage, mirrored, mirror_boxes(faces, width), usable, bands,
                                                cfg, stats)
            # Stored as the window in the source image's own coordinates.
            keep(cascade.crops(mirrored, crops, size), mirror_boxes(crops, width), labels, targets, source_index,
                 ORIGIN_MIRRORED)
    arrays = concat_arrays(parts, size)
    arrays["origin"] = np.concatenate(origins) if origins else np.zeros(0, np.uint8)
    return arrays, stats


def composition(labels: np.ndarray, origin: np.ndarray) -> dict[str, dict[str, int]]:
    """Per detection sample type, how many crops came from detections and how many from the top-up."""
    out = {}
    for name in ("negative", "positive", "part"):
        of_type = labels == LABEL_OF[name]
        out[name] = {"detections": int(np.sum(of_type & (origin != ORIGIN_TOP_UP))),
                     "top_up": int(np.sum(of_type & (origin == ORIGIN_TOP_UP)))}
        mirrored = int(np.sum(of_type & (origin == ORIGIN_MIRRORED)))
        if mirrored:
            out[name]["of_mirror_images"] = mirrored
    return out


def recall_summary(stats: dict[str, Any], stage: str) -> dict[str, Any]:
    """The figures logged after mining (and stored in the manifest)."""
    faces = max(stats.get("faces_usable", 0), 1)
    images = max(stats.get("images", 0), 1)
    earlier = "+".join(s[0].upper() for s in earlier_stages(stage))
    return {
        "earlier_stages": earlier,
        "faces_usable": stats.get("faces_usable", 0),
        **{f"recall_at_{level}": stats.get(f"covered_{level}", 0) / faces for level in RECALL_LEVELS},
        "candidates_per_image": stats.get("candidates", 0) / images,
    }
