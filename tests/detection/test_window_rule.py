"""One geometry from crop to box: sample cutting, regression targets and P-Net decoding agree.

For each window rule (``reference`` for the published weights, ``exact`` for the nets we train) a
face is placed in an image; at every pyramid level the cell that best covers it gets the target
the rule's training would give, and a P-Net that outputs exactly that target must give the face
back through the real cascade.  The exact windows must also be the very squares the sample
cutter cuts: the pixels P-Net sees at a cell equal the training crop of that window.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from mtcnn_train import geometry as g
from mtcnn_train.config import DetectionConfig
from mtcnn_train.detection.cascade import (
    WINDOW_RULES, Cascade, decode_pnet_windows, pnet_candidates, pyramid_scales, scaled_size)
from mtcnn_train.imaging import resize_area, summed_area_table
from mtcnn_train.imaging import crop_resize_fast

HEIGHT, WIDTH = 301, 433


def pnet_map_size(level_height: int, level_width: int) -> tuple[int, int]:
    """Output map of P-Net's layers (3x3 conv, 2x2 ceil pool, 3x3 conv, 3x3 conv)."""
    return -(-(level_height - 2) // 2) - 4, -(-(level_width - 2) // 2) - 4


def cell_windows(height: int, width: int, scale: float, rule: str) -> torch.Tensor:
    """The window of every cell of a level, row-major (what pnet_candidates gives for each)."""
    rows, cols = pnet_map_size(*scaled_size(height, width, scale))
    probs = torch.ones(1, rows, cols)
    _, windows, _, _ = pnet_candidates(probs, torch.zeros(1, 4, rows, cols), scale, 0.5, rule, (height, width))
    return windows.double(), rows, cols


def training_target(windows: torch.Tensor, face: np.ndarray, rule: str) -> torch.Tensor:
    """The regression target a net trained under ``rule`` learns for ``face`` seen from ``windows``."""
    face_rule = g.edges_to_inclusive(face.astype(np.float32)) if rule == "reference" else face
    return torch.from_numpy(g.box_offsets(windows.numpy(), np.broadcast_to(face_rule, (len(windows), 4))))


class TargetPNet(nn.Module):
    """A P-Net whose output at each level is 1 at the cell that best covers ``face`` (IoU of the
    rule's window in pixel edges) and whose offsets everywhere are the training targets."""

    def __init__(self, face: np.ndarray, rule: str, scales: list[float]) -> None:
        super().__init__()
        self.face, self.rule, self.scales = face, rule, scales

    def forward(self, x: torch.Tensor):
        level_size = tuple(x.shape[2:])
        scale = next(s for s in self.scales if scaled_size(HEIGHT, WIDTH, s) == level_size)
        windows, rows, cols = cell_windows(HEIGHT, WIDTH, scale, self.rule)
        edges = g.inclusive_to_edges(windows) if self.rule == "reference" else windows
        best = int(np.argmax(g.iou_matrix(edges.numpy(), self.face[None])[:, 0]))
        logits = torch.zeros(1, 2, rows * cols)
        logits[0, 0] = 20.0  # background everywhere ...
        logits[0, :, best] = torch.tensor([-20.0, 20.0])  # ... but a face at the best cell
        offsets = training_target(windows, self.face, self.rule).float().T.reshape(1, 4, rows, cols)
        return logits.reshape(1, 2, rows, cols), offsets, torch.zeros(1, 10, rows, cols)


@pytest.mark.parametrize("rule", WINDOW_RULES)
@pytest.mark.parametrize("face", [np.array([100.0, 60.0, 160.0, 120.0]), np.array([250.3, 140.7, 283.1, 173.5]),
                                  np.array([30.0, 30.0, 230.0, 230.0])])
def test_target_pnet_gives_the_face_back_at_every_scale(rule, face):
    cfg = DetectionConfig(min_face_size=12, thresholds=[0.5, 0.7, 0.7], nms_pnet_scale=0.5, nms_pnet_all=1.0)
    scales = pyramid_scales(HEIGHT, WIDTH, cfg.min_face_size, cfg.scale_factor)
    cascade = Cascade(TargetPNet(face, rule, scales), cfg=cfg, device="cpu", pnet_window=rule)
    image = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
    boxes = cascade.detect(image, stages="pnet").boxes
    assert len(boxes) == len(scales)  # one candidate per level (no cross-scale merging)
    side = face[2] - face[0]
    # Every level gives the (square) face back within 1% of its side.
    np.testing.assert_allclose(boxes, np.broadcast_to(face, boxes.shape), atol=0.01 * side, rtol=0)


@pytest.mark.parametrize("rule", WINDOW_RULES)
def test_decoding_inverts_the_training_target(rule):
    face = np.array([77.25, 41.5, 131.0, 112.75])  # not square: decoding does not square
    for scale in pyramid_scales(HEIGHT, WIDTH, 12, 0.709):
        windows, _, _ = cell_windows(HEIGHT, WIDTH, scale, rule)
        decoded = decode_pnet_windows(windows, training_target(windows, face, rule).double(), rule)
        np.testing.assert_allclose(decoded.numpy(), np.broadcast_to(face, decoded.shape), atol=1e-4)


def test_exact_windows_use_the_levels_true_scale():
    scale = 0.3
    level_height, level_width = scaled_size(HEIGHT, WIDTH, scale)
    windows, _, cols = cell_windows(HEIGHT, WIDTH, scale, "exact")
    x, y = 5, 3
    window = windows[y * cols + x].numpy()
    np.testing.assert_allclose(window, [2 * x * WIDTH / level_width, 2 * y * HEIGHT / level_height,
                                        (2 * x + 12) * WIDTH / level_width, (2 * y + 12) * HEIGHT / level_height])
    # ... which is not the nominal scale: int(side * s + 1) / side > s
    assert window[2] - window[0] < 12 / scale


def test_exact_window_is_the_training_crop_of_the_cell():
    """The 12x12 pixels P-Net reads at a cell are the sample cutter's crop of that cell's exact
    window (both area-average the same image square); the reference window is shifted from it."""
    yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH]
    smooth = 127 + 60 * np.sin(xx / 9.0) * np.cos(yy / 7.0) + 40 * np.sin((xx + yy) / 13.0)
    image = np.repeat(smooth[..., None], 3, 2).clip(0, 255).astype(np.uint8)
    table = summed_area_table(torch.from_numpy(image).permute(2, 0, 1)[None])
    errors = {}
    for rule in WINDOW_RULES:
        diffs = []
        for scale in pyramid_scales(HEIGHT, WIDTH, 20, 0.709)[:4]:
            level = resize_area(table, *scaled_size(HEIGHT, WIDTH, scale))[0].permute(1, 2, 0).numpy()
            windows, rows, cols = cell_windows(HEIGHT, WIDTH, scale, rule)
            edges = g.inclusive_to_edges(windows) if rule == "reference" else windows
            for x, y in ((2, 3), (cols // 2, rows // 2), (cols - 3, rows - 2)):
                seen = level[2 * y:2 * y + 12, 2 * x:2 * x + 12]
                crop = crop_resize_fast(image, edges[y * cols + x].numpy()[None], 12)[0].astype(np.float64)
                diffs.append(np.abs(seen - crop).mean())
        errors[rule] = float(np.mean(diffs))
    assert errors["exact"] < 3.0, errors  # interpolation differences only
    assert errors["exact"] < 0.5 * errors["reference"], errors


def test_unknown_window_rule_is_refused():
    with pytest.raises(ValueError, match="window rule"):
        pnet_candidates(torch.ones(1, 2, 2), torch.zeros(1, 4, 2, 2), 1.0, 0.5, "centre")
