"""fallocate(2) in the reference model: allocate, zero-range and unshare-range, each with or without keep-size.

A mixin of `Reference`, kept apart so that the mode logic has one small home. What a crash may
leave needs nothing new here, because the modes map onto rules the history already keeps:

* zero-range writes zeros to the words it covers (the partial edge blocks are zeroed in place, up
  to EOF, as punch does; the whole blocks are unmapped and preallocated again), so every word is its
  old value or zero at a crash, both boundary values -- a word it zeroes only in part may tear byte
  by byte, as punch's may (`OpEffects.torn`); a shared edge block is copied on write as a whole,
  like any write to it.
* unshare-range writes the same values: at a crash a block being unshared is the old shared block or
  its new copy, which hold the same data, so it records no copy-on-write event. It only ends the
  sharing, so later writes to the block are judged as in-place writes (which allow more, never less).
* keep-size leaves the size alone; preallocation changes no data, only which blocks have storage.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..lang.falloc import FallocMode
from ..lang.workload import BLOCK_SIZE, Fallocate
from .files import Backing, RefFile

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["FallocateSemantics"]


class FallocateSemantics:
    """What `Reference._fallocate` does to an existing file: xfs_file_fallocate's modes with POSIX results."""

    _layout_changed: Callable
    _zero_written: Callable
    _edges: Callable
    _unback: Callable
    _shared: Callable
    _leave: Callable

    def _fallocate_file(self, index: int, f: RefFile, op: Fallocate) -> None:
        self._layout_changed(f)
        start, end = op.off, op.off + op.len
        if op.mode & FallocMode.ZERO_RANGE:
            self._free_file_space(index, f, start, end)
        elif op.mode & FallocMode.UNSHARE_RANGE:
            self._reflink_unshare(f, start, min(end, f.size))
        for b in range(start // BLOCK_SIZE, -(-end // BLOCK_SIZE)):
            f.backed.setdefault(b, Backing.YES)
        if end > f.size and not op.mode & FallocMode.KEEP_SIZE:
            self._zero_written(index, f, f.size, end)
            f.grow_to(end)

    def _free_file_space(self, index: int, f: RefFile, start: int, end: int) -> None:
        """xfs_free_file_space: unmap the whole blocks, zero the partial edges in place below EOF only."""
        first, last = -(-start // BLOCK_SIZE), end // BLOCK_SIZE
        edges = [(start, end)] if first >= last else [(start, first * BLOCK_SIZE), (last * BLOCK_SIZE, end)]
        if first < last:
            self._unback(f, first, last)
            f.zero(first * BLOCK_SIZE, last * BLOCK_SIZE)
        for lo, hi in edges:
            hi = min(hi, f.size)
            if lo < hi:
                self._zero_written(index, f, lo, hi)
                self._edges(f, lo, hi)
                f.zero(lo, hi)

    def _reflink_unshare(self, f: RefFile, start: int, end: int) -> None:
        """dax_file_unshare over [start, end) (already clamped to EOF): whole blocks stop being shared."""
        for b in range(start // BLOCK_SIZE, -(-end // BLOCK_SIZE)):
            if self._shared(f, b):
                self._leave(f, b)
