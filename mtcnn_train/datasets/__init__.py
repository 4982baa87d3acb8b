"""Dataset readers: every annotation format becomes a list of :class:`FaceRecord` (one per image).

- :mod:`.wider`: WIDER FACE ground truth (official text layout), and its writer.
- :mod:`.landmarks`: CelebA (in the wild and aligned), LFW+Net and MTFL landmark lists.
- :mod:`.fddb`: FDDB ellipse folds, and their writer.
- :mod:`.check`: parse any of them, check the images exist, summarise (``mtcnn-train data check``).
"""
from mtcnn_train.datasets.records import FaceRecord

__all__ = ["FaceRecord"]
