"""Giving freed heap memory back to the operating system between work units (glibc only).

Mining runs the detector on images of every size: each image's pyramid allocates tensors of new
sizes, and glibc's allocator keeps the holes they leave in its heap, so the resident set drifts
above what is in use.  ``malloc_trim`` hands the free pages inside the heap back (``madvise``).
Measured on a simulated quarter of WIDER FACE (docs/SCALING.md): trimming after every unit lowered
R-Net mining's peak from 2,483 to 1,630 MiB; the rest of that growth was NMS building all its
candidate pairs at once (fixed in ``geometry._x_overlapping_pairs``).  A call costs about a
millisecond, once per unit of 32 images.
"""
from __future__ import annotations

import ctypes
import ctypes.util
from functools import lru_cache
from typing import Any


@lru_cache(maxsize=1)
def _malloc_trim() -> Any:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc.malloc_trim
    except (OSError, AttributeError):  # not glibc (musl, macOS, Windows): nothing to do
        return None


def return_freed_memory() -> bool:
    """Give the heap's free pages back to the OS; False where the C library cannot."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True
