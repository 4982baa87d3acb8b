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
    #: ``(median, sigma, most)``: draw the face count from a rounded log-normal (at least 1, at
    #: most ``most``) instead of ``face_count`` (the WIDER profile's heavy tail of crowds).
    count_lognormal: tuple[float, float, int] | None = None
    #: ``(median, sigma)``: draw the face width from a log-normal instead of ``face_width``.
    width_lognormal: tuple[float, float] | None = None


WIDER_EVENTS = {
    "0--Synthetic_Crowd": SceneStyle((4, 8), (12, 60), (2, 6), (8, 25)),
    "1--Synthetic_Portrait": SceneStyle((1, 2), (60, 300), (1, 3), (4, 15)),
    "2--Synthetic_Group": SceneStyle((2, 5), (20, 150), (1, 4), (6, 20)),
    "3--Synthetic_Street": SceneStyle((0, 3), (12, 200), (3, 8), (15, 35)),
}
#: ``make-synthetic --faces wider``: WIDER FACE train's face count and face size, roughly.
#: WIDER train holds 159,424 faces in 12,880 images (12.4 per image; median about 5, a heavy
#: tail of crowds up to 1,968) and most faces are small (about half under 25 px high at its
#: 1024 px image width).  Here: count ~ round(lognormal(median 5, sigma 1.3)), 1..400 (mean 10.5
#: after the cap and the faces placing drops), width ~ lognormal(median 22 px, sigma 0.85),
#: drawn at 12 px at least (the renderer's smallest face), on 1024 x 576..1024 px images.
WIDER_PROFILE_EVENT = "0--Synthetic_Wider"
WIDER_PROFILE_STYLE = SceneStyle((1, 1), (12, 300), (2, 8), (10, 30), count_lognormal=(5.0, 1.3, 400),
                                 width_lognormal=(22.0, 0.85))
WIDER_PROFILE_SIZE = (1024, (576, 1024))
CELEBA_STYLE = SceneStyle((1, 1), (0, 0), (1, 3), (4, 15), occlusion_prob=0.0, blur_probs=(0.8, 0.2, 0.0),
                          roll_sd_deg=8.0, yaw_sd=0.25, centred=True)
FDDB_STYLE = SceneStyle((1, 4), (24, 200), (1, 4), (6, 20), occlusion_prob=0.1, blur_probs=(0.7, 0.25, 0.05))
