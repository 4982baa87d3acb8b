"""A packed pyramid: every level of an image in one canvas, so P-Net runs once instead of once per level.

P-Net is fully convolutional, so a level placed at an even offset ``(top, left)`` of a larger
canvas gives, at output cells ``top / 2 + i, left / 2 + j``, the cells ``i, j`` it gives alone --
with one exception.  Its 2x2 max pooling runs in ceil mode: where a level's first feature map
(``conv1``'s, ``side - 2`` wide) has an odd side, the level alone pools a last window of one
row or column, while in the canvas that window also takes the next row or column, which reads
pixels outside the level.  Those lines (:func:`ceil_lines`) are set to ``-inf`` after ``conv1``,
so each such window's maximum is the level's own.  Every other cell outside the levels feeds only
outputs that are never read.  Offsets are even, so the canvas's pooling windows fall where each
level's own do.

On a GPU this turns a dozen small calls into one; on the CPU it is no faster (the large levels
dominate there, and the canvas wastes about a fifth of its area): docs/BENCHMARKS.md.
"""
from __future__ import annotations

from dataclasses import dataclass

#: P-Net's output stride and window (the cascade reads them from here).
PNET_STRIDE = 2
PNET_CELL = 12


def _even(value: int) -> int:
    return value + (value & 1)


@dataclass(frozen=True)
class PackedPyramid:
    """Where each level lies in the canvas (``offsets``: even ``(top, left)``), the canvas size, and
    the ``conv1`` lines to fill with ``-inf`` (:func:`ceil_lines`)."""

    sizes: tuple[tuple[int, int], ...]
    offsets: tuple[tuple[int, int], ...]
    canvas: tuple[int, int]
    lines: tuple[tuple[int, int, int, int], ...]

    def output_window(self, level: int) -> tuple[slice, slice]:
        """Rows and columns of P-Net's output map that are this level's output map."""
        (height, width), (top, left) = self.sizes[level], self.offsets[level]
        return (slice(top // PNET_STRIDE, top // PNET_STRIDE + pnet_output_side(height)),
                slice(left // PNET_STRIDE, left // PNET_STRIDE + pnet_output_side(width)))


def pnet_output_side(side: int) -> int:
    """P-Net's output cells along a side of ``side`` pixels: ``conv1`` (3x3), ceil-mode 2x2
    pooling, then ``conv2`` and ``conv3`` (3x3 each)."""
    return -(-(side - 2) // PNET_STRIDE) - 4


def pack_levels(sizes: list[tuple[int, int]]) -> PackedPyramid:
    """Shelf packing of pyramid levels ``(height, width)``, largest first (the pyramid's order).

    The canvas is as wide as the widest level; levels go left to right along a shelf as tall as its
    first level, and a level that does not fit opens the next shelf.  Levels are separated by their
    ``conv1`` border only: what lies between them is never read by their output cells.
    """
    if not sizes:
        raise ValueError("no pyramid levels to pack")
    if any(min(size) < PNET_CELL for size in sizes):
        raise ValueError(f"every level needs at least {PNET_CELL} px a side, got {sizes}")
    canvas_width = max(width for _, width in sizes)
    offsets = []
    shelf_top, shelf_height, cursor = 0, 0, canvas_width  # a full shelf: the first level opens one
    for height, width in sizes:
        if cursor + width > canvas_width:
            shelf_top, shelf_height, cursor = _even(shelf_top + shelf_height), height, 0
        offsets.append((shelf_top, cursor))
        shelf_height = max(shelf_height, height)
        cursor = _even(cursor + width)
    canvas_height = max(top + height for (top, _), (height, _) in zip(offsets, sizes))
    return PackedPyramid(tuple(sizes), tuple(offsets), (canvas_height, canvas_width),
                         ceil_lines(sizes, offsets))


def ceil_lines(sizes, offsets) -> tuple[tuple[int, int, int, int], ...]:
    """``conv1``-map rectangles ``(row0, row1, col0, col1)`` (half-open) that must read ``-inf``.

    A level of height ``h`` at row ``top`` has ``conv1`` rows ``top .. top + h - 3``; when
    ``h - 2`` is odd its last pooling window also spans row ``top + h - 2``, which the canvas
    computes from pixels below the level.  Likewise for columns.
    """
    lines = []
    for (height, width), (top, left) in zip(sizes, offsets):
        rows, cols = height - 2, width - 2  # the level's own conv1 map
        if rows % 2:
            lines.append((top + rows, top + rows + 1, left, left + cols + cols % 2))
        if cols % 2:
            lines.append((top, top + rows + rows % 2, left + cols, left + cols + 1))
    return tuple(lines)


def lines_in_rows(lines, first: int, stop: int) -> list[tuple[int, int, int, int]]:
    """The rectangles of ``lines`` that meet ``conv1`` rows ``[first, stop)``, in coordinates
    relative to ``first`` (for a strip of the canvas whose ``conv1`` map starts at row ``first``)."""
    out = []
    for row0, row1, col0, col1 in lines:
        row0, row1 = max(row0, first), min(row1, stop)
        if row0 < row1:
            out.append((row0 - first, row1 - first, col0, col1))
    return out
