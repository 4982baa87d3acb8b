"""What a sample set is cut from: the configured box set and landmark list, read and split.

The box set (``data.wider_root`` or ``data.boxes``, any box format) is split into training and
validation images (:func:`~mtcnn_train.datasets.split.split_train_val`, whole images) before
``data.max_images`` keeps the first N training images, so the limit never changes which images
are held out.  The landmark list (``data.landmarks``) is read in its format and its own
validation split (``data.landmarks_val_fraction``) is held out of every sample set.  Indices stay
positions in the full lists, so the random seeds derived from them never move.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from mtcnn_train.config import Config
from mtcnn_train.datasets.landmarks import LandmarkTable
from mtcnn_train.datasets.records import FaceRecord
from mtcnn_train.datasets.split import held_out_keys, record_key, split_train_val
from mtcnn_train.errors import UserError

LANDMARK_BOX_RULES = ("auto", "file", "derived")


@dataclass
class LandmarkFaces:
    """The landmark faces a run samples: ``positions`` (their places in the full list, which seed
    their random crops) of ``rows``, a :class:`LandmarkTable` (CelebA-sized lists) or a list of
    records (what a caller passed that is not one face with landmarks per record)."""

    rows: LandmarkTable | list[FaceRecord] = field(default_factory=list)
    positions: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))

    def __len__(self) -> int:
        return len(self.positions)

    def __getitem__(self, part: slice) -> "LandmarkFaces":
        return LandmarkFaces(self.rows, self.positions[part])

    def __iter__(self) -> Iterator[tuple[int, FaceRecord]]:
        return ((int(p), self.rows[p]) for p in self.positions)

    def keys(self) -> list[str]:
        """:func:`record_key` of every face, without building records from a table."""
        if isinstance(self.rows, LandmarkTable):
            return [self.rows.key(p) for p in self.positions]
        return [record_key(self.rows[p]) for p in self.positions]

    def unit_items(self, part: slice, first_source: int) -> "UnitItems":
        """The ``(seed index, source index, record)`` items of the faces ``part`` (a work unit)."""
        positions = self.positions[part]
        rows = (self.rows.take(positions) if isinstance(self.rows, LandmarkTable)
                else [self.rows[p] for p in positions])
        return UnitItems(rows, positions, first_source)


@dataclass
class UnitItems:
    """A work unit's landmark faces, built into records only while the unit is cut (a unit holds
    its rows' arrays, so the plan of a CelebA-sized run stays small)."""

    rows: LandmarkTable | list[FaceRecord]
    seed_indices: np.ndarray
    first_source: int

    def __len__(self) -> int:
        return len(self.seed_indices)

    def __getitem__(self, k: int) -> tuple[int, int, FaceRecord]:
        return int(self.seed_indices[k]), self.first_source + k, self.rows[k]

    def __iter__(self) -> Iterator[tuple[int, int, FaceRecord]]:
        return (self[k] for k in range(len(self)))


@dataclass
class SampleInputs:
    """What a run samples from.  Indices are positions in the full annotation / landmark lists."""

    wider: list[tuple[int, FaceRecord]] = field(default_factory=list)
    landmarks: LandmarkFaces = field(default_factory=LandmarkFaces)
    train_names: list[str] = field(default_factory=list)
    val_names: list[str] = field(default_factory=list)
    #: Where each list came from, for the manifest.
    sources: dict[str, Any] = field(default_factory=dict)


def _landmark_format(path: Path, fmt: str) -> str:
    from mtcnn_train.datasets.landmarks import detect_landmark_format

    return detect_landmark_format(path) if fmt == "auto" else fmt


def derive_landmark_boxes(rule: str, fmt: str) -> bool:
    """Whether landmark faces get boxes from their points (``box_from_landmarks``).

    ``auto``: yes for MTFL (its "box" is the whole crop, about 2.5x a detection box) and aligned
    CelebA (no boxes); the file's boxes otherwise.
    """
    if rule not in LANDMARK_BOX_RULES:
        raise UserError(f"sampling.landmark_boxes must be one of {', '.join(LANDMARK_BOX_RULES)}, got {rule!r}")
    return rule == "derived" or (rule == "auto" and fmt in ("mtfl", "celeba-aligned"))


def read_landmark_list(cfg: Config) -> tuple[LandmarkTable, dict[str, str]]:
    """The configured landmark list (``data.landmarks``), boxed as ``sampling.landmark_boxes``
    says, and where it came from."""
    from mtcnn_train.datasets.landmarks import read_landmark_table

    path = cfg.resolve_path(cfg.data.landmarks)
    if not path.is_file():
        raise UserError(f"{path}: landmark list not found")
    fmt = _landmark_format(path, cfg.data.landmarks_format)
    derive = derive_landmark_boxes(cfg.sampling.landmark_boxes, fmt)
    records = read_landmark_table(path, fmt=fmt, derive_boxes=derive)
    if not len(records):
        raise UserError(f"{path}: the landmark list holds no faces")
    return records, {"list": str(path), "format": fmt,
                     "boxes": "derived from the points" if derive else "from the file"}


def _landmark_rows(own: LandmarkTable | list[FaceRecord],
                   listed: LandmarkTable | Sequence[FaceRecord]) -> LandmarkTable | list[FaceRecord]:
    """The box set's own landmark faces followed by the landmark list's, as one table when every
    face is one face with landmarks (a caller's list of records may hold others, which the cutter
    counts as unusable: those stay a list)."""
    if not isinstance(listed, LandmarkTable):
        try:
            listed = LandmarkTable.from_records(listed)
        except ValueError:
            return list(own) + list(listed)
    if not len(own):
        return listed
    if isinstance(own, LandmarkTable):
        return LandmarkTable.concat([own, listed])
    return list(own) + list(listed)


def load_inputs(cfg: Config, wider_records: Sequence[FaceRecord] | None = None,
                landmark_records: Sequence[FaceRecord] | None = None) -> SampleInputs:
    """Read the configured box set and landmark list (or take the given records) and split them.

    ``wider_records`` / ``landmark_records`` let a caller (a notebook, a test) pass records it
    already holds; otherwise the box set (``data.wider_root`` or ``data.boxes``, any box format)
    and ``data.landmarks`` are read.  The box set's training faces that carry all five landmarks
    give landmark crops too, before those of the landmark list.
    """
    inputs = SampleInputs()
    data = cfg.data
    if wider_records is None:
        from mtcnn_train.datasets.formats import read_box_set

        box_set = read_box_set(cfg)
        if box_set is not None:
            wider_records, inputs.sources["wider"] = box_set
            if not wider_records:
                raise UserError(f"{inputs.sources['wider'].get('annotation')}: the annotation file lists no images")
    if wider_records is not None:
        records = list(wider_records)
        train, val = split_train_val(records, data.val_fraction, data.val_seed)
        train_ids = {id(r) for r in train}
        # The split is made on the whole list, so max_images never changes which images are held out.
        chosen = [(i, r) for i, r in enumerate(records) if id(r) in train_ids]
        if data.max_images:
            chosen = chosen[:data.max_images]
        inputs.wider = chosen
        inputs.train_names = [record_key(r) for _, r in chosen]
        inputs.val_names = [record_key(r) for r in val]
        inputs.sources.setdefault("wider", {})
        inputs.sources["wider"].update({"records": len(records), "train_images": len(train),
                                        "val_images": len(val), "sampled_images": len(chosen)})
        if landmark_records is None:
            # A box set with landmarks (COCO keypoints, YOLO-face) gives landmark crops of the
            # faces of the same training images, alongside any landmark list.
            from mtcnn_train.datasets.formats import landmark_faces

            own = landmark_faces([r for _, r in chosen])
            derive = derive_landmark_boxes(cfg.sampling.landmark_boxes, "boxes")
            if own:
                if derive:
                    from mtcnn_train.datasets.landmarks import box_from_landmarks

                    for record in own:
                        record.boxes = box_from_landmarks(record.landmarks).astype(np.float32)
                inputs.landmarks = LandmarkFaces(LandmarkTable.from_records(own), np.arange(len(own)))
                inputs.sources["landmarks"] = {"list": "the box set's faces with five landmarks", "format": "boxes",
                                               "boxes": "derived from the points" if derive else "from the file"}
    if landmark_records is None and data.landmarks:
        landmark_records, where = read_landmark_list(cfg)
        if inputs.landmarks:  # the box set's own landmark faces come first
            where["box_set_faces"] = len(inputs.landmarks)
        inputs.sources["landmarks"] = where
    if landmark_records is not None:
        # data.landmarks_val_fraction of the list's faces are held out of every sample set (the
        # landmark validation split); indices stay positions in the full list, so seeds do not move.
        rows = _landmark_rows(inputs.landmarks.rows, landmark_records)
        own = len(inputs.landmarks)
        keys = LandmarkFaces(rows, np.arange(len(rows))).keys()
        held_out = held_out_keys(keys[own:], data.landmarks_val_fraction, data.val_seed)
        kept = [i for i, key in enumerate(keys) if i < own or key not in held_out]
        inputs.landmarks = LandmarkFaces(rows, np.asarray(kept, np.int64))
        inputs.sources.setdefault("landmarks", {})["val_faces"] = len(keys) - own - (len(kept) - own)
    if inputs.landmarks:
        inputs.sources.setdefault("landmarks", {})["faces"] = len(inputs.landmarks)
    if not inputs.wider and not inputs.landmarks:
        raise UserError("nothing to sample: set data.wider_root (or --wider-root) or data.boxes (or --boxes), "
                        "and/or data.landmarks (or --landmarks)")
    return inputs

