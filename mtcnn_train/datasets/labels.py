"""What the labelling-tool formats (COCO, YOLO, Pascal VOC) share: which labels are faces, which
are ignore regions, and which keypoints are our five landmarks.

A label is a COCO category (its name or id), a YOLO class id (or its name from the dataset's
``data.yaml`` or ``classes.txt``), or a VOC object name.  With no ``classes`` every label is a
face.  A label in ``ignore_classes`` (by default: a label named ``ignore``, as our writers name
faces flagged invalid) is kept as a face flagged ``invalid``: never a positive, and never
overlapped by a negative (as WIDER's invalid faces).  Any other label is left out.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence

from mtcnn_train.datasets.records import LANDMARK_NAMES

#: The usual spellings of our five points in labelling tools and face datasets, compared after
#: lower-casing and dropping ``_``, ``-``, ``.`` and spaces.  Left and right are as seen in the
#: image (docs/CONVENTIONS.md), as CelebA, MTFL and the RetinaFace/YOLO-face labels use them.
KEYPOINT_SPELLINGS: dict[str, tuple[str, ...]] = {
    "left_eye": ("lefteye", "eyeleft", "leye", "eyel", "lefteyecenter", "lefteyecentre"),
    "right_eye": ("righteye", "eyeright", "reye", "eyer", "righteyecenter", "righteyecentre"),
    "nose": ("nose", "nosetip", "tipofnose", "nosecenter", "nosecentre"),
    "mouth_left": ("mouthleft", "leftmouth", "leftmouthcorner", "mouthleftcorner", "mouthcornerleft",
                   "lmouth", "mouthl", "leftlip", "lipleft", "leftlipcorner"),
    "mouth_right": ("mouthright", "rightmouth", "rightmouthcorner", "mouthrightcorner", "mouthcornerright",
                    "rmouth", "mouthr", "rightlip", "lipright", "rightlipcorner"),
}
_SPELLING_TO_POINT = {spelling: LANDMARK_NAMES.index(point)
                      for point, spellings in KEYPOINT_SPELLINGS.items() for spelling in spellings}


def normalise_keypoint_name(name: str) -> str:
    return re.sub(r"[\s_\-.]", "", str(name).lower())


def keypoint_order(names: Sequence[str], mapping: Sequence[str] = ()) -> list[int] | None:
    """Indices into ``names`` of our five points (left eye, right eye, nose, mouth left, mouth
    right), or None when they are not all there.

    ``mapping`` (``data.keypoint_names``) names the five keypoints in our order; without it the
    usual spellings (:data:`KEYPOINT_SPELLINGS`) are looked up.
    """
    if mapping:
        index = {str(n): i for i, n in enumerate(names)}
        return [index[m] for m in mapping] if all(m in index for m in mapping) else None
    found: dict[int, int] = {}
    for i, name in enumerate(names):
        point = _SPELLING_TO_POINT.get(normalise_keypoint_name(name))
        if point is not None and point not in found:
            found[point] = i
    return [found[p] for p in range(5)] if len(found) == 5 else None


@dataclass(frozen=True)
class LabelFilter:
    """Which labels are faces (``classes``, empty = all) and which ignore regions."""

    classes: tuple[str, ...] = ()
    ignore_classes: tuple[str, ...] = ("ignore",)

    @classmethod
    def of(cls, classes: Sequence[str] | None = None, ignore_classes: Sequence[str] | None = None) -> "LabelFilter":
        ignore = tuple(str(c) for c in ignore_classes) if ignore_classes else cls.ignore_classes
        return cls(tuple(str(c) for c in classes or ()), ignore)

    def decide(self, *names: str) -> str | None:
        """``face``, ``ignore`` or None (left out) for a label known by any of ``names``."""
        keys = {str(n) for n in names}
        if keys & set(self.ignore_classes):
            return "ignore"
        if not self.classes or keys & set(self.classes):
            return "face"
        return None
