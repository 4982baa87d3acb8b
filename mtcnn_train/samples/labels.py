"""Sample types and the label each one carries in the shards and in the losses.

Labels follow the convention of the common MTCNN training code: the sign tells whether the sample
feeds the face/non-face loss (0 and 1) or not (part faces and landmark faces).  The paper's β masks
(which losses each type feeds) derive from these labels in training/loss.py.
"""
from __future__ import annotations

LABEL_NEGATIVE = 0
LABEL_POSITIVE = 1
LABEL_PART = -1
LABEL_LANDMARK = -2
LABEL_NAMES = {LABEL_NEGATIVE: "negative", LABEL_POSITIVE: "positive", LABEL_PART: "part", LABEL_LANDMARK: "landmark"}
LABEL_OF = {name: label for label, name in LABEL_NAMES.items()}
#: The sample types in the order the config's ratio and the manifests list them.
SAMPLE_TYPES = tuple(LABEL_OF)
