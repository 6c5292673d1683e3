"""How a crash finding's cause ties to others: the store behind a broken metadata rule, the
divergence a crash inside the diverging op shows again, and causes that blamed one store.

A root cause names what the evidence knows; these rules say when two pieces of evidence are one
bug's, so that a campaign files them as one group (`Finding.also`) -- and, as important, when
they are not (a name many bugs share never links).
"""

from __future__ import annotations

import bisect
from dataclasses import replace
from itertools import chain

import numpy as np

from oracles import OracleName

from ..pmem import LINE, CrashPoint, CrashState, Event
from ..signature import Cause, How
from ..target import Target, declared_regions
from ..verdict import Finding
from .cause import code_of, reordered_store

__all__ = ["ByteRanges", "divergence_links", "link_blamed", "log_ranges", "meta_known", "meta_store"]


class ByteRanges:
    """Device byte ranges asked "is this address inside one?" by bisection: a crash point may hold
    32,000 groups (a 2 MiB zeroing in flight), a trace many stores, a kernel target many ranges."""

    __slots__ = ("_ends", "_starts")

    def __init__(self, ranges: list[tuple[int, int]]) -> None:
        starts: list[int] = []
        ends: list[int] = []
        for lo, hi in sorted(r for r in ranges if r[0] < r[1]):
            if ends and lo <= ends[-1]:
                ends[-1] = max(ends[-1], hi)
            else:
                starts.append(lo)
                ends.append(hi)
        self._starts, self._ends = starts, ends

    def __contains__(self, addr: int) -> bool:
        k = bisect.bisect_right(self._starts, addr) - 1
        return k >= 0 and addr < self._ends[k]

    def __bool__(self) -> bool:
        return bool(self._starts)

    def contain(self, addrs: np.ndarray) -> np.ndarray:
        """`addr in self` for every address at once."""
        starts, ends = np.asarray(self._starts, np.int64), np.asarray(self._ends, np.int64)
        k = np.searchsorted(starts, addrs, side="right") - 1
        if not len(starts):
            return np.zeros(len(addrs), bool)
        return (k >= 0) & (addrs < ends[np.maximum(k, 0)])


def log_ranges(target: Target, size: int) -> ByteRanges | None:
    """The device ranges of the target's metadata log, if it names its regions (`Target.regions`)."""
    regions = declared_regions(target, size)
    return ByteRanges([(a, b) for n, a, b in regions if n in _LOG_REGIONS]) if regions else None


def meta_groups(point: CrashPoint, meta: ByteRanges | None) -> list[int]:
    """The point's groups of metadata lines (every group when the target names no metadata)."""
    groups = point.groups
    if meta is None:
        return list(range(len(groups)))
    lines = [g.lines for g in groups]
    counts = np.fromiter(map(len, lines), np.int64, len(lines))
    ends = np.cumsum(counts)
    total = int(ends[-1]) if len(ends) else 0
    outside = ~meta.contain(np.fromiter(chain.from_iterable(lines), np.int64, total) * LINE)
    seen = np.concatenate(([0], np.cumsum(outside)))
    return np.flatnonzero(seen[ends] == seen[ends - counts]).tolist()


def meta_store(
    point: CrashPoint,
    state: CrashState,
    meta_g: list[int],
    meta: ByteRanges | None,
    log: ByteRanges | None,
) -> tuple[How, Event] | None:
    """What broke a metadata rule, as far as the stores say: the earliest metadata store the state
    dropped under a later one (`reordered`), else the latest store before the crash to a metadata
    home outside the log (`written`: metadata a transaction should have carried, written in place;
    only for a target that names its log region), else nothing known (the rule names it)."""
    trace = point.timeline.events
    dropped = reordered_store(point, state, meta_g, trace)
    if dropped is not None:
        return How.REORDERED, dropped
    if not meta or not log:
        return None
    end = len(trace) if point.spec.seq is None else point.spec.seq
    for i in range(end - 1, -1, -1):
        e = trace[i]
        if e.kind.is_store and e.op >= 0 and e.addr in meta and e.addr not in log:
            return How.WRITTEN, e
    return None


def divergence_links(
    point: CrashPoint, blame: tuple[str, int], words: dict[int, Cause], elsewhere: tuple[Cause, ...]
) -> tuple[Cause, ...]:
    """For a crash inside the op where the run diverged: the divergence's causes it shows again --
    its store of that op changed another file (`elsewhere`), or it blames a device word the
    crash-free read saw wrong (`words`)."""
    if blame[0] == "word":
        hit = words.get(blame[1] - blame[1] % 8)
        return () if hit is None else (hit,)
    e = point.timeline.events[blame[1]]
    out = {c for w, c in words.items() if e.addr <= w < e.addr + e.size}
    if e.op == point.op:
        out.update(elsewhere)
    return tuple(sorted(out, key=str))


def _two_reasons(a: Cause, b: Cause) -> bool:
    """Two names a copy on write's lost store gets (`durability` names every lost store `data`)."""
    copy_named = OracleName.DURABILITY not in (a.oracle, b.oracle)
    return copy_named and a.how is How.LOST and b.how is How.LOST and a.where != b.where


_LOG_REGIONS = frozenset({"journal", "log"})
"""Region names (`Target.regions`) of a metadata log: stores there are the log's, not metadata's home."""


def meta_known(oracle: OracleName, store: tuple[How, Event] | None) -> tuple[Cause, tuple[Cause, ...]] | None:
    """A metadata rule's cause: the metadata store the state dropped under a later one, or the one
    that reached its home ahead of any transaction (`meta_store`)."""
    if store is None:
        return None
    return Cause(oracle, store[0], code_of(store[1].site)), ()


def link_blamed(findings: tuple[Finding, ...], blamed: dict[tuple[str, int], set[Cause]]) -> tuple[Finding, ...]:
    """Crash findings whose causes blamed one store (or one word) in any states of the run are
    linked: a copy whose edges were not flushed is lost data to `durability` in one state and
    stale media to `stale-exposure` in another, one store either way. Not two losses of one store
    named for two reasons (`lost/data`, the remap went first; `lost/unflushed <copy>`, nothing
    flushed it): a copy's bytes in two lines, one flushed by the write beside it, can be lost for
    each -- two bugs' causes."""
    shared: dict[Cause, set[Cause]] = {}
    for causes in blamed.values():
        for c in causes:
            shared.setdefault(c, set()).update(d for d in causes - {c} if not _two_reasons(c, d))
    out = []
    for f in findings:
        more = shared.get(f.cause) if f.crash is not None and f.cause is not None else None
        if more:
            f = replace(f, also=tuple(sorted({*f.also, *more} - {f.cause}, key=str)))
        out.append(f)
    return tuple(out)
