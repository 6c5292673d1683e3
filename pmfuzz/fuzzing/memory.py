"""A long campaign's memory: what one large workload takes is given back to the system after it.

A workload with a 2 MiB zeroing in flight builds tens of thousands of crash-state groups and
arrays; glibc keeps the memory they freed (its mmap threshold rises to the size of the largest
block freed, so later arrays of that size come from the heap, and free heap pages stay mapped).
A 4-hour campaign then sat at its one worst workload's high-water mark from minute 20 on (347 MiB
before, 1,142 MiB after). Fixing the threshold keeps large arrays in their own mappings, returned
when freed, and trimming after each batch returns the heap's free pages. Neither changes what is
computed; on a C library without these calls nothing is done.
"""

from __future__ import annotations

import ctypes
import ctypes.util

__all__ = ["give_back_memory", "keep_large_blocks_mapped"]

_M_MMAP_THRESHOLD = -3
_MMAP_THRESHOLD = 256 * 1024
"""Blocks this large or larger get their own mapping (glibc's default starts at 128 KiB and rises)."""


def _libc() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or None)
    except OSError:
        return None


_LIBC = _libc()


def keep_large_blocks_mapped() -> None:
    """Fix glibc's mmap threshold, so freeing a large array unmaps it instead of raising the threshold."""
    fn = getattr(_LIBC, "mallopt", None)
    if fn is not None:
        fn(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD)


def give_back_memory() -> None:
    """Return the heap's free pages to the system (between batches: a large workload's are free then)."""
    fn = getattr(_LIBC, "malloc_trim", None)
    if fn is not None:
        fn(0)
