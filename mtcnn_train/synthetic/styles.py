"""Scene styles of the synthetic set: how many faces of which sizes, poses and blur one kind of
image holds (the WIDER events, CelebA portraits, FDDB snapshots)."""
from __future__ import annotations

from dataclasses import dataclass

@dataclass(frozen=True)
class SceneStyle:
    """What one kind of image holds.  Ranges are inclusive ``(low, high)``."""

    face_count: tuple[int, int]
    #: Face box width before capping by the image size (log-uniform).
    face_width: tuple[float, float]
    distractors: tuple[int, int]
    clutter_shapes: tuple[int, int]
    #: Chance that a face is partly covered by an object.
    occlusion_prob: float = 0.2
    #: Chance of blur level 0 (sharp), 1 (some) and 2 (heavy).
    blur_probs: tuple[float, float, float] = (0.6, 0.28, 0.12)
    roll_sd_deg: float = 12.0
    yaw_sd: float = 0.35
    #: One face near the image centre (CelebA) instead of faces anywhere.
    centred: bool = False


WIDER_EVENTS = {
    "0--Synthetic_Crowd": SceneStyle((4, 8), (12, 60), (2, 6), (8, 25)),
    "1--Synthetic_Portrait": SceneStyle((1, 2), (60, 300), (1, 3), (4, 15)),
    "2--Synthetic_Group": SceneStyle((2, 5), (20, 150), (1, 4), (6, 20)),
    "3--Synthetic_Street": SceneStyle((0, 3), (12, 200), (3, 8), (15, 35)),
}
CELEBA_STYLE = SceneStyle((1, 1), (0, 0), (1, 3), (4, 15), occlusion_prob=0.0, blur_probs=(0.8, 0.2, 0.0),
                          roll_sd_deg=8.0, yaw_sd=0.25, centred=True)
FDDB_STYLE = SceneStyle((1, 4), (24, 200), (1, 4), (6, 20), occlusion_prob=0.1, blur_probs=(0.7, 0.25, 0.05))
