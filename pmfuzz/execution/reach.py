"""How each block a file maps became the file's: the block-map changes every op made, as the run saw them.

A word nobody wrote for a file is exposed by whatever made its block reachable: an allocation
that did not zero it (or an unwritten extent converted before its data was there), a copy on
write that did not fill it. The trace holds the stores but not the mapping, so the run records
the target's extents (`file_extents`, FIEMAP's view) around each op and keeps what changed;
a finding's cause then names the kind of change that exposed the block, not where the crash fell.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from ..lang.workload import BLOCK_SIZE
from ..pmem import Event, writers_of
from ..target import MountedFS, file_extents
from .watchdog import TargetNonsense

__all__ = ["Reach", "Reached", "BlockMapLog", "Snapshot", "snapshot", "changes"]

Extents = tuple[tuple[int, int, int, bool], ...]
Snapshot = dict[str, Extents]


class Reach(enum.StrEnum):
    """How an op made a device block readable at a file offset."""

    ALLOCATED = "allocated"
    """A hole (or past the last extent) got a block, or its unwritten block became written: the
    block's first content a read can see, whether the op allocated it or a preallocation did."""
    REMAPPED = "remapped"
    """Another block's place was taken by one no file mapped: a write's copy on write."""
    UNSHARED = "unshared"
    """The same by a copy no write asked for: fallocate's UNSHARE_RANGE (xfs_reflink_unshare,
    dax_file_unshare), whose copy is all that fills the new block."""
    SHARED = "shared"
    """A block some file already mapped: a reflink. Its content is rightly what it was."""

    @property
    def fresh(self) -> bool:
        """Whether the block's content before the change is nobody's data for this offset."""
        return self is not Reach.SHARED


@dataclass(frozen=True, slots=True)
class Reached:
    """One block-map change: op `op` (or the parallel group it begins; its events are trace indices
    [`start`, `end`)) made device block `dev` readable at offset `off` of file `name`."""

    name: str
    off: int
    dev: int
    how: Reach
    op: int
    start: int
    end: int


@dataclass(frozen=True)
class BlockMapLog:
    """Every block-map change of a run, in order; empty when the target does not list its extents."""

    entries: tuple[Reached, ...] = ()
    spans: tuple[tuple[int, int, int, Snapshot], ...] = ()
    """Every op or parallel group the log saw: (first op, start, end, the block maps before it)."""

    def transient(self, name: str, off: int, dev: int, at: int | None) -> Reached | None:
        """For a crash at trace index `at` inside an op (or group) that mapped device block `dev`
        at file `name` offset `off` and undid it before it ended (a race with a truncate): how that
        op made it readable, judged from the maps before it. None if the crash fell between ops
        or the block was there before."""
        if at is None:
            return None
        span = next((sp for sp in self.spans if sp[1] < at <= sp[2]), None)
        if span is None:
            return None
        op, start, end, before = span
        base = off - off % BLOCK_SIZE
        was = _blocks(before.get(name, ())).get(base)
        blk = dev - dev % BLOCK_SIZE
        if was is not None and was[0] == blk:
            return None  # the block was there (unwritten, say): no op's change shows, a replay's may
        how = Reach.ALLOCATED if was is None else Reach.REMAPPED
        return Reached(name, base, blk, how, op, start, end)

    def origin(self, dev: int, before: int | None, name: str | None = None, off: int | None = None) -> Reached | None:
        """The change that gave device block `dev` (a byte address in it) its first content for a
        file, by an op that began before trace index `before` or ended by it (None: any): the latest change that
        made it readable at file `name` offset `off` (any, when not given), or, when that was a
        reflink's share, the latest that made it fresh before."""
        blk = dev - dev % BLOCK_SIZE
        base = None if off is None else off - off % BLOCK_SIZE
        shared = False
        for r in reversed(self.entries):
            if r.dev != blk or (before is not None and r.start >= before and r.end > before):
                continue  # begun at or after `before` (an op with no events of its own ended before it)
            if not shared and name is not None and (r.name != name or r.off != base):
                continue
            if r.how.fresh:
                return r
            shared = True
        return None

    def stale(
        self, trace: Sequence[Event], name: str | None, off: int | None, addr: int, raw: bytes, end: int
    ) -> Reach | None:
        """How the block holding the word at device address `addr` was made reachable, if some byte
        of `raw` there is older than that: no store from the change's op on (before trace index
        `end`) wrote it. Content from before a block was the file's is nobody's data for it,
        however the bytes look: media, another file's old data, the file's own freed block."""
        r = self.origin(addr, end, name, off)
        if r is None and name is not None and off is not None:
            r = self.transient(name, off, addr, end)
        if r is None or not _predates(trace, addr, raw, r.start, end):
            return None
        return r.how


def _predates(trace: Sequence[Event], addr: int, raw: bytes, start: int, end: int) -> bool:
    """Whether some byte of `raw` at `addr` was not written with that value by a store of trace[start:end]."""
    return not writers_of(trace, addr, raw, start, end)[1]


def snapshot(fs: MountedFS) -> Snapshot | None:
    """Every file's mapped extents, or None if the mounted fs does not list them."""
    out: Snapshot = {}
    for n in fs.files():
        ext = file_extents(fs, n)
        if ext is None:
            return None
        bad = next((x for x in ext if not _is_extent(x)), None)
        if bad is not None:
            raise TargetNonsense(
                f"file_extents({n!r}) returned {bad!r} among its extents, "
                "not (file offset, device offset, length, unwritten) with block-aligned offsets"
            )
        out[n] = tuple(ext)
    return out


def _is_extent(x: object) -> bool:
    if not isinstance(x, tuple) or len(x) != 4 or not isinstance(x[3], bool):
        return False
    return all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 and v % BLOCK_SIZE == 0 for v in x[:3])


def _blocks(extents: Iterable[tuple[int, int, int, bool]]) -> dict[int, tuple[int, bool]]:
    return {off + k: (dev + k, unwritten) for off, dev, n, unwritten in extents for k in range(0, n, BLOCK_SIZE)}


def changes(
    before: Mapping[str, Extents],
    after: Mapping[str, Extents],
    op: int,
    start: int,
    end: int,
    unshares: Callable[[str, int], bool] = lambda _name, _off: False,
) -> list[Reached]:
    """What one op (or parallel group, by its first op) changed: each file offset whose readable
    block is new, and how it came; `unshares`: whether the op (or one of the group) unshared that
    file offset, which makes its remap `UNSHARED`."""
    moved = [n for n, ext in after.items() if before.get(n) != ext]
    if not moved:
        return []
    owned = {dev for ext in before.values() for dev, _u in _blocks(ext).values()}
    out: list[Reached] = []
    for n in moved:
        old, new = _blocks(before.get(n, ())), _blocks(after[n])
        for off, (dev, unwritten) in sorted(new.items()):
            was = old.get(off)
            if unwritten or was == (dev, False):
                continue
            if was is not None and was[0] == dev:
                how = Reach.ALLOCATED  # unwritten -> written: the block's first readable content
            elif dev in owned:
                how = Reach.SHARED
            else:
                how = Reach.ALLOCATED if was is None else Reach.UNSHARED if unshares(n, off) else Reach.REMAPPED
            out.append(Reached(n, off, dev, how, op, start, end))
    return out
