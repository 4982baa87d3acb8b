"""mtcnn-train: train MTCNN face detectors end to end (Zhang et al. 2016)."""

__version__ = "0.1.0"
