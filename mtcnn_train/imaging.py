"""Batched crops and resizes: many boxes from one image in one tensor call.

Used wherever crops are cut in bulk (sample generation, mining, the cascade's R-Net and O-Net
stages), so no stage loops over boxes in Python.  The tensor path (``crop_resize``,
``crop_resize_area``) serves detection; the OpenCV path on uint8 images (``crop_resize_fast``,
``crop_resize_many``, ``crop_rotated``) cuts training samples with the same sampling rule, about
10x faster on CPU.
"""
from __future__ import annotations

import cv2
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
        # Three channels are integrated as four (the fourth is dropped again, as a view): a pixel of
        # the table is then 16 bytes, which the look-ups gather as one element (_pixel_view).
        wide = channels == 3
        tables = [cv2.integral(cv2.cvtColor(img, cv2.COLOR_RGB2RGBA) if wide else np.ascontiguousarray(img),
                               sdepth=cv2.CV_32S).reshape(height + 1, width + 1, 4 if wide else channels)
                  for img in nhwc]
        table = torch.from_numpy(tables[0][None] if batch == 1 else np.stack(tables))
        return table[..., :3] if wide else table
    values = images.to(dtype).permute(0, 2, 3, 1)
    table = values.cumsum(1, dtype=dtype).cumsum(2, dtype=dtype)
    return F.pad(table, (0, 0, 1, 0, 1, 0))


def _pixel_view(table: torch.Tensor) -> torch.Tensor | None:
    """The table as ``B x (H+1) x (W+1)`` complex128, one 16-byte element per pixel, when it is the
    3-of-4-channel int32 view :func:`summed_area_table` makes on the CPU; else None.  Gathering
    16-byte elements is about 3x faster than gathering rows of three int32 (measured: 1.1 vs 3.2
    ms for 147,456 look-ups)."""
    batch, height_1, width_1, channels = table.shape
    if (table.dtype != torch.int32 or channels != 3 or table.device.type != "cpu"
            or table.stride()[1:] != (width_1 * 4, 4, 1)
            or (batch > 1 and table.stride(0) != height_1 * width_1 * 4)):
        return None
    full = table.as_strided((batch, height_1, width_1, 4), (height_1 * width_1 * 4, width_1 * 4, 4, 1))
    return full.view(torch.complex128)[..., 0]


def _channels(pixels: torch.Tensor, channels: int) -> torch.Tensor:
    """Complex128 pixels from :func:`_pixel_view` back to ``... x channels`` int32."""
    return pixels.view(torch.int32).unflatten(-1, (-1, 4))[..., :channels] if pixels.is_complex() else pixels


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
    pixels = _pixel_view(table)
    flat = pixels.reshape(-1) if pixels is not None else table.reshape(-1, channels)
    base = (image_index * (height_1 * width_1))[:, None, None]
    row_start, row_end = _adaptive_bounds(windows[:, 1], windows[:, 3] - windows[:, 1], out_height)
    col_start, col_end = _adaptive_bounds(windows[:, 0], windows[:, 2] - windows[:, 0], out_width)
    count = ((row_end - row_start)[:, :, None] * (col_end - col_start)[:, None, :]).clamp(min=1)
    # Clamping to the image makes the look-ups sum only the visible pixels; the count above
    # still covers the whole cell, so pixels outside the image count as zeros.
    rows = [r.clamp(0, height_1 - 1)[:, :, None] * width_1 for r in (row_start, row_end)]
    cols = [c.clamp(0, width_1 - 1)[:, None, :] for c in (col_start, col_end)]

    def look(r: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        values = _channels(flat.index_select(0, (base + r + c).reshape(-1)), 4)
        return values.reshape(-1, out_height, out_width, values.shape[-1])

    total = look(rows[1], cols[1]) - look(rows[0], cols[1]) - look(rows[1], cols[0]) + look(rows[0], cols[0])
    return torch.div(total[..., :channels], count[..., None].to(torch.float32))  # int sums -> float means in one pass


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


#: Bytes of gathered integral-image rows per block of :func:`resize_area` (1 MB: 64 rows of a
#: 1024-pixel-wide image).  Whole levels made their row gathers tens of MB, read back from memory;
#: blocks stay in the caches (measured: the pyramid of a 1024 x 1000 image 17 ms instead of 25).
RESIZE_BLOCK_BYTES = 2**20


def resize_area(table: torch.Tensor, out_height: int, out_width: int,
                block_bytes: int = RESIZE_BLOCK_BYTES) -> torch.Tensor:
    """Whole images resized like ``F.interpolate(images, (out_h, out_w), mode='area')``, from
    their :func:`summed_area_table`.  Returns ``B x C x out_h x out_w`` float32 (channels-last).

    Separable: whole rows of the table are gathered first (contiguous copies), then columns, which
    costs about half of four look-ups per output pixel; on the CPU in blocks of output rows.
    """
    batch, height_1, width_1, _ = table.shape
    zero = torch.zeros(1, dtype=torch.long, device=table.device)
    row_start, row_end = _adaptive_bounds(zero, torch.full_like(zero, height_1 - 1), out_height)
    col_start, col_end = _adaptive_bounds(zero, torch.full_like(zero, width_1 - 1), out_width)
    row_start, row_end, col_start, col_end = row_start[0], row_end[0], col_start[0], col_end[0]
    count = ((row_end - row_start)[:, None] * (col_end - col_start)[None, :])[None, :, :, None].to(torch.float32)
    pixels = _pixel_view(table)
    if pixels is None:
        rows = table.index_select(1, row_end) - table.index_select(1, row_start)
        total = rows.index_select(2, col_end) - rows.index_select(2, col_start)
        return torch.div(total, count).permute(0, 3, 1, 2)
    out = torch.empty((batch, out_height, out_width, 3), device=table.device)
    block = max(1, block_bytes // (batch * width_1 * 16))
    for top in range(0, out_height, block):
        bottom = min(out_height, top + block)
        total = _window_sums(pixels, row_start[top:bottom], row_end[top:bottom], col_start, col_end)
        torch.div(total, count[:, top:bottom], out=out[:, top:bottom])
    return out.permute(0, 3, 1, 2)


def _window_sums(pixels: torch.Tensor, row_start: torch.Tensor, row_end: torch.Tensor,
                 col_start: torch.Tensor, col_end: torch.Tensor) -> torch.Tensor:
    """Integer sums of the windows ``rows x cols`` from :func:`_pixel_view`'s table: whole rows
    first (contiguous copies), then 16-byte pixels of them.  ``B x rows x cols x 3`` int32."""
    batch, _, width_1 = pixels.shape
    rows = _channels(pixels.index_select(1, row_end), 4) - _channels(pixels.index_select(1, row_start), 4)
    rows = rows.view(torch.complex128).reshape(-1)  # 1-D: index_select along a later dim copies per element
    line = (torch.arange(rows.numel() // width_1, device=pixels.device) * width_1)[:, None]
    ends, starts = (_channels(rows.index_select(0, (line + col[None, :]).reshape(-1)), 3) for col in (col_end, col_start))
    return (ends - starts).reshape(batch, len(row_start), len(col_start), 3)


# --------------------------------------------------------------------------------------------
# OpenCV cutting on uint8 images (sample generation): the sampling of crop_resize_numpy, faster


#: Small images (landmark crops) of one shape up to this side are cut together in one mosaic.
MOSAIC_MAX_SIDE = 256
#: OpenCV's remap indexes the source with 16-bit coordinates.
MOSAIC_MAX_PIXELS_SIDE = 8192


def pyramid_levels(boxes: np.ndarray, size: int) -> np.ndarray:
    """Power-of-two shrink level per box: the image is box-filtered by ``2**level`` before sampling
    so a large box is area-averaged rather than aliased (the rule of ``imaging.crop_resize``)."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    side = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
    return np.floor(np.log2(np.maximum(side / size, 1.0))).astype(np.int64)


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def crop_resize_fast(image: np.ndarray, boxes: np.ndarray, size: int) -> np.ndarray:
    """Cut ``boxes`` (N, 4 pixel edges) out of ``image`` (H x W x 3 uint8) and resize them to ``size``.

    The sampling of :func:`mtcnn_train.imaging.crop_resize_numpy` -- bilinear at output pixel
    centres, zeros outside the image, and for large boxes a power-of-two box-filtered level
    (``avg_pool2d(ceil_mode=True)``: a partial block at the image's edge averages the pixels it
    covers) -- done with OpenCV on uint8: the levels by exact 2x2 area halving, and all crops of
    one level in ONE ``cv2.remap`` call (the crops are stacked into one tall map).  About 10x
    faster than the float tensor path on CPU; results agree with it within a few grey levels
    (rounding of the uint8 levels and of OpenCV's 1/32-pixel interpolation weights).
    Returns ``N x size x size x C`` uint8.
    """
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    return _cut(image, boxes, np.zeros((len(boxes), 2), np.int64), size, correct_edges=True)


def _level_images(image: np.ndarray, levels: np.ndarray, correct_edges: bool) -> dict[int, np.ndarray]:
    """The pyramid levels that ``levels`` asks for.  Level L pixel (i, j) averages source pixels
    ``[i * 2**L, (i + 1) * 2**L)``; the image is zero-padded to a multiple of the top block so each
    halving is an exact 2x2 average, and partial edge blocks are rescaled to the mean of the
    pixels they cover (``correct_edges``)."""
    height, width = image.shape[:2]
    top = int(levels.max())
    align = 2 ** top
    pad_h, pad_w = _round_up(height, align) - height, _round_up(width, align) - width
    source = cv2.copyMakeBorder(image, 0, pad_h, 0, pad_w, cv2.BORDER_CONSTANT, value=0) if pad_h or pad_w else image
    out = {}
    for level in range(top + 1):
        if level > 0:
            source = cv2.resize(source, (source.shape[1] // 2, source.shape[0] // 2), interpolation=cv2.INTER_AREA)
        if level not in levels:
            continue
        block = 2 ** level
        rows, cols = -(-height // block), -(-width // block)
        # A view is enough: OpenCV reads rows with any stride, so the padded copy is not copied again.
        level_image = image if level == 0 else source[:rows, :cols]
        cover_h, cover_w = height - (rows - 1) * block, width - (cols - 1) * block
        if correct_edges and (cover_h < block or cover_w < block):
            level_image = _rescale_edges(level_image, block / cover_h, block / cover_w)
        out[level] = level_image
    return out


def _rescale_edges(level_image: np.ndarray, scale_bottom: float, scale_right: float) -> np.ndarray:
    """Multiply the last row by ``scale_bottom`` and the last column by ``scale_right`` (corner: both)."""
    fixed = level_image.copy()
    row_scale = np.ones(level_image.shape[0])
    row_scale[-1] = scale_bottom
    col_scale = np.ones(level_image.shape[1])
    col_scale[-1] = scale_right
    bottom = level_image[-1].astype(np.float64) * scale_bottom * col_scale[:, None]
    right = level_image[:, -1].astype(np.float64) * scale_right * row_scale[:, None]
    fixed[-1] = np.clip(np.rint(bottom), 0, 255)
    fixed[:, -1] = np.clip(np.rint(right), 0, 255)
    return fixed


def _fixed_point_maps(boxes: np.ndarray, offsets: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """``cv2.remap`` maps in OpenCV's fixed-point form (``CV_16SC2`` + interpolation table index).

    Computed here in float64 from each box's own coordinates, then shifted by whole-pixel
    ``offsets`` (N, 2): a crop cut from a mosaic tile gets exactly the weights it gets alone.
    """
    bits = 5  # cv2.INTER_BITS: weights in 1/32 pixel
    n = len(boxes)
    steps = (np.arange(size) + 0.5) / size
    # cv2.remap addresses pixel centres at integers; pixel edges are at -0.5, 0.5, ...
    xs = boxes[:, 0:1] + steps[None, :] * (boxes[:, 2:3] - boxes[:, 0:1]) - 0.5
    ys = boxes[:, 1:2] + steps[None, :] * (boxes[:, 3:4] - boxes[:, 1:2]) - 0.5
    fx = np.rint(xs * (1 << bits)).astype(np.int64)
    fy = np.rint(ys * (1 << bits)).astype(np.int64)
    ix = (fx >> bits) + offsets[:, 0:1]
    iy = (fy >> bits) + offsets[:, 1:2]
    frac_x = fx & ((1 << bits) - 1)
    frac_y = fy & ((1 << bits) - 1)
    xy = np.empty((n, size, size, 2), np.int16)
    xy[..., 0] = ix[:, None, :]
    xy[..., 1] = iy[:, :, None]
    table = (frac_y[:, :, None] << bits) + frac_x[:, None, :]
    return xy.reshape(n * size, size, 2), table.astype(np.uint16).reshape(n * size, size)


def _cut(image: np.ndarray, boxes: np.ndarray, offsets: np.ndarray, size: int, correct_edges: bool) -> np.ndarray:
    out = np.zeros((len(boxes), size, size) + image.shape[2:], np.uint8)
    if len(boxes) == 0:
        return out
    if max(image.shape[:2]) >= 32767 - 2 * size:
        # OpenCV's remap indexes with 16-bit coordinates; fall back to the tensor path.
        from mtcnn_train.imaging import crop_resize_numpy

        return crop_resize_numpy(image, (boxes + np.tile(offsets, 2)).astype(np.float32), size)
    levels = pyramid_levels(boxes, size)
    images = _level_images(image, levels, correct_edges)
    per_call = (32767 - 1) // size  # OpenCV's remap also limits the map's height to 16 bits
    for level, source in images.items():
        block = 2 ** level
        members = np.nonzero(levels == level)[0]
        for start in range(0, len(members), per_call):
            index = members[start:start + per_call]
            map_xy, map_table = _fixed_point_maps(boxes[index] / block, offsets[index] // block, size)
            crops = cv2.remap(source, map_xy, map_table, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                              borderValue=0)
            out[index] = crops.reshape((len(index), size, size) + image.shape[2:])
    return out


def crop_resize_many(images: list[np.ndarray], boxes: list[np.ndarray], size: int) -> list[np.ndarray]:
    """:func:`crop_resize_fast` over many images; small images of one shape are cut together.

    Landmark sets such as MTFL are thousands of 80x80 images with ten crops each: one OpenCV call
    per image would cost more than the work.  Images of one shape (sides up to
    :data:`MOSAIC_MAX_SIDE`, divisible by the largest pyramid block) are laid on a zero mosaic in
    aligned cells with zero gutters wider than any crop's overhang, and cut in one call per
    level.  Each crop gets exactly the pixels it would get alone (same pixels, same zero padding,
    same pyramid blocks, same interpolation weights), so batching never changes the output.
    """
    boxes = [np.asarray(b, np.float64).reshape(-1, 4) for b in boxes]
    results: list[np.ndarray | None] = [None] * len(images)
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, (image, box) in enumerate(zip(images, boxes)):
        if len(box) and max(image.shape[:2]) <= MOSAIC_MAX_SIDE:
            groups.setdefault(image.shape, []).append(i)
        else:
            results[i] = crop_resize_fast(image, box, size)
    for shape, members in groups.items():
        align = 2 ** int(pyramid_levels(np.concatenate([boxes[i] for i in members]), size).max())
        if shape[0] % align or shape[1] % align:
            for i in members:  # partial edge blocks need the per-image correction
                results[i] = crop_resize_fast(images[i], boxes[i], size)
            continue
        gutter, cell_h, cell_w = _mosaic_layout(shape, [boxes[i] for i in members], align)
        per_side = max(1, (MOSAIC_MAX_PIXELS_SIDE - gutter) // max(cell_h, cell_w))
        for start in range(0, len(members), per_side * per_side):
            part = members[start:start + per_side * per_side]
            cut = _cut_mosaic([images[i] for i in part], [boxes[i] for i in part], shape,
                              (gutter, cell_h, cell_w), size)
            for i, crops in zip(part, cut):
                results[i] = crops
    return results  # type: ignore[return-value]


def _mosaic_layout(shape: tuple[int, ...], boxes: list[np.ndarray], align: int) -> tuple[int, int, int]:
    """(gutter, cell height, cell width), all multiples of ``align``, for tiles holding ``boxes``."""
    height, width = shape[:2]
    stacked = np.concatenate(boxes)
    overhang = max(0.0, float(-stacked[:, 0].min()), float(-stacked[:, 1].min()),
                   float(stacked[:, 2].max() - width), float(stacked[:, 3].max() - height))
    gutter = _round_up(int(np.ceil(overhang)) + 2, align)
    return gutter, gutter + height, gutter + width


def _cut_mosaic(images: list[np.ndarray], boxes: list[np.ndarray], shape: tuple[int, ...],
                layout: tuple[int, int, int], size: int) -> list[np.ndarray]:
    height, width = shape[:2]
    gutter, cell_h, cell_w = layout
    columns = int(np.ceil(np.sqrt(len(images))))
    rows = int(np.ceil(len(images) / columns))
    mosaic = np.zeros((rows * cell_h + gutter, columns * cell_w + gutter) + tuple(shape[2:]), np.uint8)
    offsets = []
    for k, (image, box) in enumerate(zip(images, boxes)):
        y0 = (k // columns) * cell_h + gutter
        x0 = (k % columns) * cell_w + gutter
        mosaic[y0:y0 + height, x0:x0 + width] = image
        offsets.append(np.tile([[x0, y0]], (len(box), 1)))
    crops = _cut(mosaic, np.concatenate(boxes), np.concatenate(offsets).astype(np.int64), size, correct_edges=False)
    bounds = np.cumsum([0] + [len(b) for b in boxes])
    return [crops[bounds[k]:bounds[k + 1]] for k in range(len(images))]



def rotation_matrices(angles_deg: np.ndarray) -> np.ndarray:
    """``(N, 2, 2)`` matrices turning a crop's axes by each angle (image axes: x right, y down)."""
    theta = np.deg2rad(np.asarray(angles_deg, np.float64).reshape(-1))
    cos, sin = np.cos(theta), np.sin(theta)
    return np.stack([np.stack([cos, -sin], -1), np.stack([sin, cos], -1)], -2)



def crop_rotated(image: np.ndarray, crops: np.ndarray, angles_deg: np.ndarray, size: int) -> np.ndarray:
    """Cut square ``crops`` turned by ``angles_deg`` about their centres: ``N x size x size [x C]``.

    Output pixel ``u`` shows the source point ``c + R(a) ((u + 0.5) k - side / 2)`` (pixel edges,
    ``k = side / size``), bilinear, zeros outside the image like the upright crops.  Shrinking
    crops are cut from an area-resized copy of the image at the crop's scale, so a rotated crop is
    as free of aliasing as an upright one.
    """
    crops = np.asarray(crops, np.float64).reshape(-1, 4)
    rotation = rotation_matrices(angles_deg)
    height, width = image.shape[:2]
    out = np.zeros((len(crops), size, size) + image.shape[2:], image.dtype)
    scaled_cache: dict[tuple[int, int], np.ndarray] = {}
    for i, (crop, turn) in enumerate(zip(crops, rotation)):
        side = crop[2] - crop[0]
        step = side / size
        shrink = min(1.0, 1.0 / step)
        scaled_size = (max(1, round(width * shrink)), max(1, round(height * shrink)))
        if scaled_size not in scaled_cache:
            scaled_cache[scaled_size] = (image if scaled_size == (width, height) else
                                         cv2.resize(image, scaled_size, interpolation=cv2.INTER_AREA))
        scaled = scaled_cache[scaled_size]
        axis_scale = np.array([scaled_size[0] / width, scaled_size[1] / height])
        centre = (crop[:2] + crop[2:]) / 2
        # Output pixel index u -> source edge point c + R ((u + 0.5) step - side / 2), scaled to
        # the resized image (edges scale by axis_scale), then to its pixel indices (- 0.5).
        linear = axis_scale[:, None] * turn * step
        offset = axis_scale * (centre + turn @ np.full(2, 0.5 * step - side / 2)) - 0.5
        matrix = np.hstack([linear, offset[:, None]])
        out[i] = cv2.warpAffine(scaled, matrix, (size, size), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                                borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return out

