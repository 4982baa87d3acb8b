"""Batched crops and resizes: many boxes from one image in one tensor call.

Used wherever crops are cut in bulk (sample generation, mining, the cascade's R-Net and O-Net
stages), so no stage loops over boxes in Python.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def image_to_tensor(image_rgb: np.ndarray, device: str | torch.device = "cpu") -> torch.Tensor:
    """``H x W x 3`` uint8 -> ``1 x 3 x H x W`` float32 (0..255) on ``device``."""
    tensor = torch.from_numpy(np.ascontiguousarray(image_rgb)).to(device)
    return tensor.permute(2, 0, 1).unsqueeze(0).float()


def crop_resize(image: torch.Tensor, boxes: torch.Tensor, size: int) -> torch.Tensor:
    """Cut ``boxes`` (N, 4, float pixel edges) out of ``image`` (1 x C x H x W) and resize to ``size``.

    Bilinear sampling at the centres of the output pixels, as ``cv2.resize`` does for
    upscaling; parts of a box outside the image read as 0 (the zero padding MTCNN uses).  When a
    box is much larger than ``size``, the image is first blurred by a box filter matching the
    downscale (per group of similar scale), so large faces are area-averaged rather than aliased.
    Returns ``N x C x size x size`` float32.
    """
    if boxes.numel() == 0:
        return image.new_zeros((0, image.shape[1], size, size))
    boxes = boxes.to(image.device, torch.float32).reshape(-1, 4)
    _, _, height, width = image.shape
    out = image.new_empty((boxes.shape[0], image.shape[1], size, size))
    box_side = torch.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
    # Downscale factor per box, rounded down to a power of two: each group shares one
    # pre-blurred, pre-shrunk copy of the image (a cheap pyramid), so sampling never skips pixels.
    factor = torch.clamp(box_side / size, min=1.0)
    level = torch.floor(torch.log2(factor)).long()
    for lvl in torch.unique(level).tolist():
        idx = (level == lvl).nonzero().squeeze(1)
        scale = 2 ** lvl
        source = image if scale == 1 else F.avg_pool2d(image, kernel_size=scale, stride=scale, ceil_mode=True)
        out[idx] = _bilinear_crops(source, boxes[idx] / scale, size, width / scale, height / scale)
    return out


def _bilinear_crops(image: torch.Tensor, boxes: torch.Tensor, size: int, width: float, height: float) -> torch.Tensor:
    n = boxes.shape[0]
    src_h, src_w = image.shape[2], image.shape[3]
    steps = (torch.arange(size, device=image.device, dtype=torch.float32) + 0.5) / size
    xs = boxes[:, 0:1] + steps[None, :] * (boxes[:, 2:3] - boxes[:, 0:1])  # N x size, pixel coords
    ys = boxes[:, 1:2] + steps[None, :] * (boxes[:, 3:4] - boxes[:, 1:2])
    # grid_sample's align_corners=False maps -1..1 to the outer pixel edges: x_norm = 2x / W - 1.
    gx = xs / src_w * 2 - 1
    gy = ys / src_h * 2 - 1
    grid = torch.stack([gx[:, None, :].expand(n, size, size), gy[:, :, None].expand(n, size, size)], dim=-1)
    return F.grid_sample(image.expand(n, -1, -1, -1), grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def crop_resize_numpy(image_rgb: np.ndarray, boxes: np.ndarray, size: int) -> np.ndarray:
    """:func:`crop_resize` for NumPy callers: returns ``N x size x size x 3`` uint8 RGB."""
    if len(boxes) == 0:
        return np.zeros((0, size, size, 3), np.uint8)
    tensor = image_to_tensor(image_rgb)
    crops = crop_resize(tensor, torch.as_tensor(np.asarray(boxes, np.float32)), size)
    return crops.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()
