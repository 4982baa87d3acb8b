"""Keeping a long sample run's resident memory flat (glibc and oneDNN).

Mining runs the detector on images of every size: each image's pyramid allocates tensors of new
sizes, and glibc's allocator keeps the holes they leave in its heap, so the resident set drifts
above what is in use.  Two things bound it:

* ``malloc_trim`` hands the free pages inside the heap back (``madvise``) after every unit.
  Measured on a simulated quarter of WIDER FACE (docs/SCALING.md): trimming after every unit
  lowered R-Net mining's peak from 2,483 to 1,630 MiB (the rest was NMS building all its
  candidate pairs at once, fixed in ``geometry._x_overlapping_pairs``).  About a millisecond per
  unit of 32 images.
* **oneDNN's primitive cache** keeps up to 1,024 compiled convolutions, one per input shape, and
  every pyramid level of a new image size is a new shape.  Each entry is a few small allocations
  made between the big temporary tensors of an image, so they end up scattered through the heap
  and keep the holes around them from merging: the heap grows by about 10 MiB per O-Net mining
  unit while the memory in use stays at 157 MiB (``mallinfo2``), and each unit touches more of it.
  With the cache bounded to :data:`ONEDNN_CACHE_CAPACITY` entries the heap stops growing after
  about 25 units (the peak of a unit levels off near 790 MiB instead of climbing past 1,000 MiB
  by unit 40) at no measurable cost in time (163 s against 160 s for 40 units).
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
from functools import lru_cache
from typing import Any

#: oneDNN primitives cached per sample process (oneDNN's default is 1,024).  R-Net's and O-Net's
#: batches come in few shapes; P-Net's pyramid levels, a new shape per image size, are recompiled
#: when they come back (the 40-unit timing above includes that).
ONEDNN_CACHE_CAPACITY = 16
#: oneDNN reads it once, when the process first runs one of its primitives.
ONEDNN_CACHE_VARIABLE = "ONEDNN_PRIMITIVE_CACHE_CAPACITY"


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


def bound_onednn_cache() -> None:
    """Bound oneDNN's primitive cache in this process and the worker processes it starts.

    Call it before the first convolution: oneDNN reads the setting once (a process that has
    already run one, such as ``pipeline`` after training, keeps the default).  A value the user
    set in the environment is kept.
    """
    os.environ.setdefault(ONEDNN_CACHE_VARIABLE, str(ONEDNN_CACHE_CAPACITY))
