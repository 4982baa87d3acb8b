"""Giving freed heap memory back to the operating system between work units (glibc only).

Mining runs the detector on images of every size: each image's pyramid allocates tensors of new
sizes, and glibc's allocator serves them from a heap whose freed holes it keeps.  Measured on a
simulated quarter of WIDER FACE (docs/SCALING.md), the resident memory of R-Net mining grew from
1.5 to 2.5 GB with the number of images while the data held stayed the same.  ``malloc_trim``
hands the free pages inside the heap back (``madvise``), so the resident set follows what is in
use.

It is called only while this process runs a single Python thread (between work units, when the
unit's decode thread has stopped): called after every image, while the decode thread read the
next one, a mined test set came out empty in 3 of 16 runs on a loaded machine, and never once it
moved between units.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import threading
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
    """Give the heap's free pages back to the OS when this process runs one thread; returns
    whether it did (False: another thread runs, or the C library cannot)."""
    trim = _malloc_trim()
    if trim is None or threading.active_count() > 1:
        return False
    trim(0)
    return True
