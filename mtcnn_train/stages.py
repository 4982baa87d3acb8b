"""The three networks of the cascade by name, and the facts every room needs about them.

The one place that says which stages exist, in which order they run, and how large each net's
input is; everything else (config validation, the nets, the detector, sample cutting, the CLI's
choices) derives from it.  Torch-free, so the config and the CLI can import it cheaply.
"""
from __future__ import annotations

from typing import Literal, get_args

from mtcnn_train.errors import UserError

Stage = Literal["pnet", "rnet", "onet"]
#: In cascade order: P-Net proposes, R-Net refines, O-Net outputs boxes and landmarks.
STAGES: tuple[Stage, ...] = get_args(Stage)
#: Input side of each network, in pixels (paper, Fig. 2).
INPUT_SIZE: dict[str, int] = {"pnet": 12, "rnet": 24, "onet": 48}


def check_stage(stage: str) -> Stage:
    """``stage`` itself when it names a net; a one-line :class:`UserError` otherwise."""
    if stage not in STAGES:
        raise UserError(f"unknown stage {stage!r}; expected one of {', '.join(STAGES)}")
    return stage  # type: ignore[return-value]


def earlier_stages(stage: str) -> tuple[Stage, ...]:
    """The stages that run before ``stage`` (those whose detections its samples are mined from)."""
    return STAGES[: STAGES.index(check_stage(stage))]
