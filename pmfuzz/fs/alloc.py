"""Free space: the in-memory bitmap, busy extents, and refcounts of shared blocks."""

from __future__ import annotations

import numpy as np

from .layout import COW_STAGING, Geometry

__all__ = ["NoSpace", "Space"]


class NoSpace(Exception):
    """The device is full (becomes ENOSPC)."""


class Space:
    """Which blocks are used, which were freed by transactions not yet on the log, and refcounts.

    Blocks freed by a transaction stay busy until that transaction is durable
    (xfs_extent_busy_insert / xfs_extent_busy_clear), so a crash can never
    hand one file's new data to a block another file still owns on media.
    """

    def __init__(self, geo: Geometry, used: np.ndarray, refc: np.ndarray) -> None:
        self.geo = geo
        self.used = used.astype(bool)
        self.used[: geo.data_start] = True
        self.busy = np.zeros(geo.nblocks, dtype=bool)
        self.busy_shared = np.zeros(geo.nblocks, dtype=bool)
        """Blocks that stopped being shared in a transaction not yet on the log: still shared on media."""
        self.refc = refc.astype(np.uint32)

    def free_count(self) -> int:
        return int(np.count_nonzero(~self.used & ~self.busy))

    def alloc(self, n: int, hint: int = 0) -> tuple[int, int]:
        """One run of up to n free blocks, first fit from the hint (wrapping); raise NoSpace if none."""
        free = ~self.used & ~self.busy
        idx = np.flatnonzero(free)
        if len(idx) == 0:
            raise NoSpace
        k = int(np.searchsorted(idx, max(hint, self.geo.data_start)))
        start = int(idx[k]) if k < len(idx) else int(idx[0])
        stop = start
        limit = min(self.geo.nblocks, start + n)
        while stop < limit and free[stop]:
            stop += 1
        self.used[start:stop] = True
        return start, stop - start

    def alloc_aligned(self, n: int) -> int | None:
        """A free run of n blocks starting at a multiple of n (a PMD), or None."""
        free = ~self.used & ~self.busy
        for start in range(-(-self.geo.data_start // n) * n, self.geo.nblocks - n + 1, n):
            if free[start : start + n].all():
                self.used[start : start + n] = True
                return start
        return None

    def free(self, start: int, n: int) -> None:
        """Freed by a transaction: unusable until that transaction is durable."""
        self.used[start : start + n] = False
        self.busy[start : start + n] = True

    def unreserve(self, start: int, n: int) -> None:
        """Give back blocks that no transaction ever recorded as used."""
        self.used[start : start + n] = False

    def clear_busy(self, runs: list[tuple[int, int]], unshared: list[tuple[int, int]]) -> None:
        for s, n in runs:
            self.busy[s : s + n] = False
        for s, n in unshared:
            self.busy_shared[s : s + n] = False

    def shared(self, b: int) -> bool:
        """Must a write to b copy it? Yes if it is shared, or was until a transaction not yet durable.

        Dropping the other reference to a block is like freeing it: until that drop is on the
        log, a crash brings the other owner back, so overwriting the block in place would show
        it data it never held.
        """
        v = int(self.refc[b])
        return (v >= 2 and v != COW_STAGING) or bool(self.busy_shared[b])
