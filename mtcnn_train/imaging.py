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


# --------------------------------------------------------------------------------------------
# Area-averaging crops from integer windows (the reference MTCNN's crop rule, batched).


def summed_area_table(images: torch.Tensor) -> torch.Tensor:
    """Integral images of ``B x C x H x W`` integer-valued images (uint8, or floats holding 0..255).

    Returns ``B x (H+1) x (W+1) x C`` with a zero first row and column, so the sum over rows
    ``[y0, y1)`` and columns ``[x0, x1)`` is ``T[y1, x1] - T[y0, x1] - T[y1, x0] + T[y0, x0]``.
    Kept in integers (int32 while the total fits, else int64) so window sums are exact.  On the
    CPU, uint8 images go through ``cv2.integral`` (an order of magnitude faster than cumsum).
    """
    batch, channels, height, width = images.shape
    dtype = torch.int32 if height * width * 255 < 2**31 else torch.int64
    if images.device.type == "cpu" and images.dtype == torch.uint8 and dtype == torch.int32 and channels <= 4:
        import cv2

        nhwc = images.permute(0, 2, 3, 1).numpy()
        tables = [cv2.integral(np.ascontiguousarray(img), sdepth=cv2.CV_32S).reshape(height + 1, width + 1, channels)
                  for img in nhwc]
        return torch.from_numpy(tables[0][None] if batch == 1 else np.stack(tables))
    values = images.to(dtype).permute(0, 2, 3, 1)
    table = values.cumsum(1, dtype=dtype).cumsum(2, dtype=dtype)
    return F.pad(table, (0, 0, 1, 0, 1, 0))


def _adaptive_bounds(origin: torch.Tensor, length: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Start and end (exclusive) of each output cell's input run, as ``adaptive_avg_pool`` splits a
    run of ``length`` pixels into ``size`` cells: ``[floor(i L / s), ceil((i + 1) L / s))``."""
    i = torch.arange(size, device=length.device)
    start = origin[:, None] + torch.div(i[None, :] * length[:, None], size, rounding_mode="floor")
    end = origin[:, None] + torch.div((i[None, :] + 1) * length[:, None] + size - 1, size, rounding_mode="floor")
    return start, end


def _window_means(table: torch.Tensor, image_index: torch.Tensor, windows: torch.Tensor,
                  out_height: int, out_width: int) -> torch.Tensor:
    """Area means of each window's ``out_height x out_width`` cells: ``N x out_h x out_w x C`` float32."""
    _, height_1, width_1, channels = table.shape
    flat = table.reshape(-1, channels)
    base = (image_index * (height_1 * width_1))[:, None, None]
    row_start, row_end = _adaptive_bounds(windows[:, 1], windows[:, 3] - windows[:, 1], out_height)
    col_start, col_end = _adaptive_bounds(windows[:, 0], windows[:, 2] - windows[:, 0], out_width)
    count = ((row_end - row_start)[:, :, None] * (col_end - col_start)[:, None, :]).clamp(min=1)
    # Clamping to the image makes the look-ups sum only the visible pixels; the count above
    # still covers the whole cell, so pixels outside the image count as zeros.
    rows = [r.clamp(0, height_1 - 1)[:, :, None] * width_1 for r in (row_start, row_end)]
    cols = [c.clamp(0, width_1 - 1)[:, None, :] for c in (col_start, col_end)]

    def look(r: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        return flat.index_select(0, (base + r + c).reshape(-1)).reshape(-1, out_height, out_width, channels)

    total = look(rows[1], cols[1]) - look(rows[0], cols[1]) - look(rows[1], cols[0]) + look(rows[0], cols[0])
    return torch.div(total, count[..., None].to(torch.float32))  # int sums -> float means in one pass


def crop_resize_area(table: torch.Tensor, image_index: torch.Tensor, windows: torch.Tensor, size: int,
                     chunk: int = 1024) -> torch.Tensor:
    """Cut integer pixel windows and shrink (or grow) each to ``size x size`` by area averaging.

    ``table`` is :func:`summed_area_table` of the batch; ``windows`` (N, 4) are integer
    ``x0, y0, x1, y1`` (pixels ``x0 .. x1 - 1``), one per box, taken from image
    ``image_index[n]``.  The result equals ``F.interpolate(window_pixels, size, mode='area')`` (what
    the reference MTCNN does per box) with pixels outside the image read as 0: clip the windows to
    the image first to crop only the visible part instead.  Every output cell is four look-ups in
    the integral image, so all boxes are done in a few tensor operations.  Empty windows give 0.
    Returns ``N x C x size x size`` float32 (channels-last in memory, which suits the convolutions).
    """
    n = windows.shape[0]
    channels = table.shape[3]
    if n == 0:
        return torch.zeros((0, channels, size, size), device=table.device)
    windows = windows.to(table.device, torch.long)
    image_index = image_index.to(table.device, torch.long)
    out = torch.empty((n, size, size, channels), device=table.device)
    for lo in range(0, n, chunk):
        out[lo:lo + chunk] = _window_means(table, image_index[lo:lo + chunk], windows[lo:lo + chunk], size, size)
    return out.permute(0, 3, 1, 2)


def resize_area(table: torch.Tensor, out_height: int, out_width: int) -> torch.Tensor:
    """Whole images resized like ``F.interpolate(images, (out_h, out_w), mode='area')``, from
    their :func:`summed_area_table`.  Returns ``B x C x out_h x out_w`` float32 (channels-last).

    Separable: whole rows of the table are gathered first (contiguous copies), then columns, which
    costs about half of four look-ups per output pixel.
    """
    _, height_1, width_1, _ = table.shape
    zero = torch.zeros(1, dtype=torch.long, device=table.device)
    row_start, row_end = _adaptive_bounds(zero, torch.full_like(zero, height_1 - 1), out_height)
    col_start, col_end = _adaptive_bounds(zero, torch.full_like(zero, width_1 - 1), out_width)
    row_start, row_end, col_start, col_end = row_start[0], row_end[0], col_start[0], col_end[0]
    rows = table.index_select(1, row_end) - table.index_select(1, row_start)
    total = rows.index_select(2, col_end) - rows.index_select(2, col_start)
    count = (row_end - row_start)[:, None] * (col_end - col_start)[None, :]
    return torch.div(total, count[None, :, :, None].to(torch.float32)).permute(0, 3, 1, 2)
