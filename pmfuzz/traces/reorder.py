"""pmreorder's semantics, for users who want pmreorder's crash states exactly (`--semantics pmreorder`).

As read from PMDK's src/tools/pmreorder (statemachine.py, reorderengines.py):

* Stores are collected; a FLUSH marks every collected store whose byte range
  overlaps it as flushed (no cache-line rounding).
* A FENCE is a replay point if any FLUSH came since the previous replay point;
  other fences do nothing.
* At a replay point the flushed stores, in program order, go to the engine;
  each sequence it yields is written over the media (base file plus every
  earlier replay point's flushed stores) and checked. Then the flushed stores
  are applied for good; unflushed ones carry over and are never written
  unless a later FLUSH covers them. Nothing is checked after the last fence.

Engines: ReorderFull (every ordered sequence of every length of the flushed
stores), ReorderAccumulative (program-order prefixes), ReorderReverseAccumulative
(newest-first prefixes), NoReorderDoCheck (all of them, in order). pmfuzz
checks each distinct image once: for ReorderFull it enumerates the distinct
images directly (per group of overlapping stores, every reachable content;
across groups, every combination) instead of the ⌊e·K!⌋ sequences.
ReorderPartial (3 unseeded random picks) is not offered: it is not reproducible.

Differences from pmfuzz's Px86 semantics are listed in docs/traces.md.
"""

from __future__ import annotations

import enum
import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from ..errors import PmfuzzError
from ..pmem import LINE, CrashImage, Pages
from ..pmem.outcomes import line_hash as _line_hash
from .model import Trace, TraceEventKind

__all__ = ["ReorderEngine", "ReorderPoint", "ReorderState", "ReorderStore", "reorder_points"]

_MOD = 1 << 128
_BFS_CAP = 1 << 20


class ReorderEngine(enum.StrEnum):
    """pmreorder's engines that pmfuzz reproduces (names as pmreorder's `-r`)."""

    FULL = "ReorderFull"
    ACCUMULATIVE = "ReorderAccumulative"
    REVERSE_ACCUMULATIVE = "ReorderReverseAccumulative"
    NO_REORDER = "NoReorderDoCheck"


@dataclass(eq=False)
class ReorderStore:
    """A collected store: its trace record, its ordinal among the trace's stores, and whether a FLUSH covered it."""

    index: int
    ordinal: int
    addr: int
    data: bytes
    flushed: bool = False

    @property
    def lines(self) -> range:
        return range(self.addr // LINE, (self.addr + len(self.data) - 1) // LINE + 1)


@dataclass(frozen=True, eq=False)
class ReorderPoint:
    """A replay point: a FENCE after a FLUSH, the media before it, the flushed and the still-unflushed stores."""

    ordinal: int
    index: int
    base: Pages = field(repr=False)
    base_digest: int
    flushed: tuple[ReorderStore, ...]
    unflushed: tuple[ReorderStore, ...]

    @property
    def id(self) -> str:
        return f"P{self.ordinal}"

    def _apply(self, seq: tuple[int, ...]) -> dict[int, bytes]:
        lines: dict[int, bytearray] = {}
        for j in seq:
            s = self.flushed[j]
            for ln in s.lines:
                if ln not in lines:
                    lines[ln] = bytearray(self.base.read_bytes(ln * LINE, LINE))
            pos = 0
            addr, end = s.addr, s.addr + len(s.data)
            while addr < end:
                ln = addr // LINE
                stop = min(end, (ln + 1) * LINE)
                lines[ln][addr - ln * LINE : stop - ln * LINE] = s.data[pos : pos + stop - addr]
                pos += stop - addr
                addr = stop
        return {ln: bytes(b) for ln, b in lines.items()}

    @cached_property
    def full_lines(self) -> dict[int, bytes]:
        """Lines as after every flushed store, in program order."""
        return self._apply(tuple(range(len(self.flushed))))

    def state(self, seq: tuple[int, ...]) -> ReorderState:
        return ReorderState(self, seq)

    def sequences(self, engine: ReorderEngine) -> Iterator[tuple[int, ...]]:
        """The engine's sequences; for ReorderFull one per distinct image (the shortest that reaches it)."""
        k = len(self.flushed)
        if engine is ReorderEngine.NO_REORDER:
            yield tuple(range(k))
        elif engine is ReorderEngine.ACCUMULATIVE:
            for i in range(k + 1):
                yield tuple(range(i))
        elif engine is ReorderEngine.REVERSE_ACCUMULATIVE:
            for i in range(k + 1):
                yield tuple(range(k - 1, k - 1 - i, -1))
        else:
            yield from self._full()

    def _components(self) -> list[list[int]]:
        parent = list(range(len(self.flushed)))

        def find(x: int) -> int:
            while parent[x] != x:
                parent[x] = parent[parent[x]]
                x = parent[x]
            return x

        spans = sorted((s.addr, s.addr + len(s.data), j) for j, s in enumerate(self.flushed))
        reach, last = -1, -1
        for lo, hi, j in spans:
            if lo < reach:
                parent[find(j)] = find(last)
            if hi > reach:
                reach, last = hi, j
        groups: dict[int, list[int]] = {}
        for j in range(len(self.flushed)):
            groups.setdefault(find(j), []).append(j)
        return sorted(groups.values())

    def _outcomes(self, comp: list[int]) -> list[tuple[int, ...]]:
        """Distinct contents that orderings of subsets of one group of overlapping stores can leave."""
        if len(comp) == 1:
            return [(), (comp[0],)]
        lo = min(self.flushed[j].addr for j in comp)
        hi = max(self.flushed[j].addr + len(self.flushed[j].data) for j in comp)
        base = self.base.read_bytes(lo, hi - lo)
        seen = {(0, base)}
        frontier: list[tuple[int, bytes, tuple[int, ...]]] = [(0, base, ())]
        out: dict[bytes, tuple[int, ...]] = {base: ()}
        while frontier:
            nxt = []
            for mask, content, seq in frontier:
                for bit, j in enumerate(comp):
                    if mask >> bit & 1:
                        continue
                    s = self.flushed[j]
                    a = s.addr - lo
                    new = content[:a] + s.data + content[a + len(s.data) :]
                    key = (mask | 1 << bit, new)
                    if key in seen:
                        continue
                    seen.add(key)
                    if len(seen) > _BFS_CAP:
                        raise PmfuzzError(
                            f"replay point {self.id}: {len(comp)} overlapping stores have too many orderings to "
                            "enumerate; use --semantics px86 or another --engine"
                        )
                    out.setdefault(new, (*seq, j))
                    nxt.append((key[0], new, (*seq, j)))
            frontier = nxt
        return list(out.values())

    def _full(self) -> Iterator[tuple[int, ...]]:
        per = [self._outcomes(c) for c in self._components()]
        for combo in itertools.product(*per):
            yield tuple(j for part in combo for j in part)


@dataclass(frozen=True, eq=False)
class ReorderState:
    """One sequence of a replay point's flushed stores written over its media."""

    point: ReorderPoint
    seq: tuple[int, ...]

    @property
    def id(self) -> str:
        stores = ",".join(f"s{self.point.flushed[j].ordinal}" for j in self.seq)
        return f"{self.point.id}:{stores or 'none'}"

    @cached_property
    def lines(self) -> dict[int, bytes]:
        """Lines that differ from the point's media."""
        p = self.point
        return {ln: c for ln, c in p._apply(self.seq).items() if c != p.base.read_bytes(ln * LINE, LINE)}

    @cached_property
    def digest(self) -> int:
        p = self.point
        d = p.base_digest
        for ln, c in self.lines.items():
            d += _line_hash(ln, c) - _line_hash(ln, p.base.read_bytes(ln * LINE, LINE))
        return d % _MOD

    @cached_property
    def deviations(self) -> int:
        """Lines whose content differs from the image with every flushed store applied in order."""
        p = self.point
        n = 0
        for ln, full in p.full_lines.items():
            if self.lines.get(ln, p.base.read_bytes(ln * LINE, LINE)) != full:
                n += 1
        return n

    def image(self) -> CrashImage:
        return CrashImage(self.point.base, dict(self.lines), self.digest)


def reorder_points(trace: Trace, initial: bytes) -> list[ReorderPoint]:
    """pmreorder's replay points of a trace, each with the media it starts from."""
    pages = Pages.from_array(np.frombuffer(initial, dtype=np.uint8))
    digest = 0
    pending: list[ReorderStore] = []
    points: list[ReorderPoint] = []
    armed = False
    ordinal = 0
    for i, e in enumerate(trace.events):
        k = e.kind
        if k.is_store:
            assert e.data is not None
            s = ReorderStore(i, ordinal, e.addr, e.data, flushed=k is TraceEventKind.NTSTORE)
            ordinal += 1
            pending.append(s)
            if s.flushed:
                armed = True
        elif k.is_flush:
            armed = True
            for s in pending:
                if s.addr < e.addr + e.size and e.addr < s.addr + len(s.data):
                    s.flushed = True
        elif k.is_fence and armed:
            flushed = tuple(s for s in pending if s.flushed)
            pending = [s for s in pending if not s.flushed]
            points.append(ReorderPoint(len(points), i, pages.fork(), digest, flushed, tuple(pending)))
            touched = sorted({ln for s in flushed for ln in s.lines})
            old = [_line_hash(ln, pages.read_bytes(ln * LINE, LINE)) for ln in touched]
            for s in flushed:
                pages.write(s.addr, s.data)
            new = [_line_hash(ln, pages.read_bytes(ln * LINE, LINE)) for ln in touched]
            digest = (digest + sum(new) - sum(old)) % _MOD
            armed = False
    return points
