"""Px86 persistency: from a trace to crash points and what is in flight at each.

The rules (stated once here; `tests/pmem_bruteforce.py` re-derives every crash
image from them by brute force for tests/test_pmem_semantics.py):

* A store is split into pieces, one per cache line it touches, and each piece
  into units, one per aligned 8-byte word it touches. A unit is never torn.
* Cached units of one line reach the media in program order (a line is
  written back whole, so the media holds a snapshot of it). A line may be
  written back at any moment, so an unflushed line is always "in flight".
* `clwb`/`clflushopt` of a line followed by a fence makes the line's stores
  issued before the flush durable; a fence alone persists nothing cached.
  `clflush` is ordered on its own: the line's cached stores issued before it
  are durable once it executes.
* Non-temporal units bypass the cache and are in flight until the next fence,
  in any order, except that units to the same word keep program order
  (coherence), and that within one line a cached unit and a non-temporal unit
  keep program order (a movnt to a cached line writes the line back first; a
  cached store to a line snoops the write-combining buffer first).
* Under eADR a cached store is durable as it executes (in program order, unit
  by unit); non-temporal units still need a fence, and a cached store first
  drains pending non-temporal units of the lines it writes.

Crash points (a crash just before the named event takes effect):

* ADR: every fence `F<n>`, every clflush `C<n>`, and the end of the run `E`.
  Every moment of the run is covered: between two such events nothing becomes
  durable except by write-back, which the in-flight set already allows.
* eADR: every cached store `S<n>` (torn anywhere: the `T` group), a drain
  `D<n>` before a cached store that forces non-temporal units, every fence,
  and the end; or, restricted, only op boundaries `O<n>`, fences and the end.
"""

from __future__ import annotations

import enum
import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import overload

from .trace import LINE, WORD, Domain, Event, EventKind, words_in

__all__ = [
    "EadrPoints",
    "GroupFrames",
    "GroupSpec",
    "LineBuffer",
    "Piece",
    "PieceRun",
    "PointKind",
    "PointSpec",
    "compute_points",
    "split_pieces",
]


class PointKind(enum.StrEnum):
    """What the crash point sits just before; the value prefixes its id."""

    FENCE = "F"
    CLFLUSH = "C"
    STORE = "S"
    DRAIN = "D"
    OP = "O"
    END = "E"


class EadrPoints(enum.StrEnum):
    """Which crash points an eADR run has."""

    STORES = "stores"
    """Every cached store (torn at every word), drain, fence and the end."""
    OPS = "ops"
    """Op boundaries, fences and the end: tractable, but blind to tearing inside an op."""


@dataclass(frozen=True, slots=True)
class Piece:
    """The part of one store that falls in one cache line."""

    seq: int
    line: int
    addr: int
    data: bytes
    nt: bool
    units: int


class LineBuffer(list[Piece]):
    """One line's pieces since it was last empty, only ever appended to, with running sums.

    The sums let a window (`PieceRun`) say its units and whether it holds non-temporal pieces in
    O(1), and `checkpoints` lets every crash point that shares this buffer share the line contents
    computed for its prefixes (see `Group._apply_chain`).
    """

    __slots__ = ("checkpoints", "cum_units", "nt_before")

    def __init__(self, piece: Piece, /) -> None:
        """A buffer holding its first piece (a 2 MiB zeroing starts 32,768 of them)."""
        list.append(self, piece)
        self.cum_units = [0, piece.units]
        self.nt_before = [0, int(piece.nt)]
        self.checkpoints: dict[tuple[int, tuple[bytes, ...]], list[dict[int, bytes]]] = {}

    def append(self, piece: Piece, /) -> None:
        list.append(self, piece)
        self.cum_units.append(self.cum_units[-1] + piece.units)
        self.nt_before.append(self.nt_before[-1] + piece.nt)


class PieceRun(Sequence["Piece"]):
    """Pieces `[lo, hi)` of a list that only ever grows at its end: a window, not a copy.

    Why: every crash point holds the pieces each line has in flight. Copied into every point, a
    line with n pending stores and a fence after each cost n**2 (10,000 stores: 67 s and 2.6 GB,
    even with few states judged per point); a window costs O(1) a point.
    """

    __slots__ = ("_buf", "_hi", "_lo")

    def __init__(self, buf: list[Piece], lo: int = 0, hi: int | None = None) -> None:
        self._buf, self._lo, self._hi = buf, lo, len(buf) if hi is None else hi

    def __len__(self) -> int:
        return self._hi - self._lo

    @overload
    def __getitem__(self, i: int) -> Piece: ...
    @overload
    def __getitem__(self, i: slice) -> tuple[Piece, ...]: ...
    def __getitem__(self, i: int | slice) -> Piece | tuple[Piece, ...]:
        if isinstance(i, slice):
            a, b, step = i.indices(len(self))
            return tuple(self._buf[self._lo + a : self._lo + b : step]) if step > 0 else tuple(self)[i]
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(i)
        return self._buf[self._lo + i]

    def __iter__(self) -> Iterator[Piece]:
        return itertools.islice(self._buf, self._lo, self._hi)

    @property
    def window(self) -> tuple[LineBuffer, int, int] | None:
        """(buffer, lo, hi) when the buffer keeps running sums (a `LineBuffer`); else None."""
        return (self._buf, self._lo, self._hi) if isinstance(self._buf, LineBuffer) else None

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sequence) and tuple(self) == tuple(other)

    def __hash__(self) -> int:
        return hash(tuple(self))

    def __repr__(self) -> str:
        return f"PieceRun({list(self)!r})"


@dataclass(frozen=True, slots=True)
class GroupSpec:
    """Pieces in flight that persist together under one choice.

    A line group (`L<line>`) holds one line's in-flight pieces; the tear group
    (`T`, eADR only) holds the one cached store being executed at the crash.
    """

    name: str
    pieces: Sequence[Piece]
    tear: bool = False


class GroupFrames:
    """The line groups in flight at every crash point of a trace, kept as changes from point to point.

    Why: a point holds every line in flight, and a trace with many fences over many unflushed lines
    (2 MiB of stores through a MAP_SYNC mapping, a log push per page fault) has 2,555 points over
    32,000 lines: a tuple per point was 15 GB. Changes cost what the trace costs; a point's tuple is
    built when it is asked for, and the last few are kept.
    """

    __slots__ = ("_at", "_built", "_deltas", "_live", "widths")

    def __init__(self) -> None:
        self.widths: list[int] = []
        """Per point, how many groups are in flight."""
        self._deltas: list[dict[int, GroupSpec | None]] = []
        self._live: dict[int, GroupSpec] = {}
        self._at = -1
        self._built: dict[int, tuple[GroupSpec, ...]] = {}

    def add(self, delta: dict[int, GroupSpec | None], width: int) -> int:
        """Record the next point's changes (line -> its group now, None: nothing in flight) and how
        many groups it has; its index."""
        self._deltas.append(delta)
        self.widths.append(width)
        return len(self._deltas) - 1

    def groups(self, index: int) -> tuple[GroupSpec, ...]:
        hit = self._built.get(index)
        if hit is not None:
            return hit
        if index < self._at:
            self._live, self._at = {}, -1
        live = self._live
        while self._at < index:
            self._at += 1
            for line, spec in self._deltas[self._at].items():
                if spec is None:
                    live.pop(line, None)
                else:
                    live[line] = spec
        out = tuple(live[line] for line in sorted(live))
        if len(self._built) >= 4:
            self._built.pop(next(iter(self._built)))
        self._built[index] = out
        return out


@dataclass(frozen=True, slots=True)
class PointSpec:
    kind: PointKind
    ordinal: int
    seq: int | None
    op: int
    site: str
    log_len: int
    frame: tuple[GroupSpec, ...] | tuple[GroupFrames, int]
    """The groups in flight, or where `GroupFrames` keeps them (frames, index)."""

    @property
    def id(self) -> str:
        return "E" if self.kind is PointKind.END else f"{self.kind.value}{self.ordinal}"

    @property
    def width(self) -> int:
        """How many groups are in flight here, without building them."""
        framed = self._framed()
        return len(self.frame) if framed is None else framed[0].widths[framed[1]]

    @property
    def groups(self) -> tuple[GroupSpec, ...]:
        framed = self._framed()
        return self.frame if framed is None else framed[0].groups(framed[1])  # type: ignore[return-value]

    def _framed(self) -> tuple[GroupFrames, int] | None:
        f = self.frame
        if f and isinstance(f[0], GroupFrames):
            frames, index = f
            assert isinstance(frames, GroupFrames) and isinstance(index, int)
            return frames, index
        return None


def split_pieces(ev: Event) -> list[Piece]:
    """Cut a store event at cache-line boundaries."""
    assert ev.data is not None
    nt = ev.kind is EventKind.NTSTORE
    out = []
    addr, end, data, seq = ev.addr, ev.addr + ev.size, ev.data, ev.seq
    pos = 0
    head = min(end, (addr // LINE + 1) * LINE)
    if head - addr < LINE:  # a partial first line
        out.append(Piece(seq, addr // LINE, addr, data[: head - addr], nt, words_in(addr, head - addr)))
        pos, addr = head - addr, head
    whole = (end - addr) // LINE
    if whole:  # whole lines between: every one is LINE bytes of WORD-aligned units
        first = addr // LINE
        units = LINE // WORD
        out += [
            Piece(seq, first + k, addr + k * LINE, data[pos + k * LINE : pos + (k + 1) * LINE], nt, units)
            for k in range(whole)
        ]
        pos += whole * LINE
        addr += whole * LINE
    if addr < end:
        out.append(Piece(seq, addr // LINE, addr, data[pos:], nt, words_in(addr, end - addr)))
    return out


def _line_groups(lines: dict[int, list[Piece]]) -> tuple[GroupSpec, ...]:
    """One group per line in flight, its pieces as a window."""
    return tuple(GroupSpec(f"L{line}", PieceRun(lines[line])) for line in sorted(lines) if lines[line])


def compute_points(
    events: Sequence[Event], domain: Domain, eadr_points: EadrPoints = EadrPoints.STORES
) -> tuple[list[PointSpec], list[Piece]]:
    """All crash points of a trace, and the persist log: pieces in the order they became durable.

    The media at a point is the media at the trace's start plus the first
    `log_len` pieces of the log; the point's groups are what may or may not
    have reached it.
    """
    if domain is Domain.ADR:
        return _adr(events)
    return _eadr(events, eadr_points)


def _adr(events: Sequence[Event]) -> tuple[list[PointSpec], list[Piece]]:
    points: list[PointSpec] = []
    log: list[Piece] = []
    lines: dict[int, list[Piece]] = {}  # per line, its pieces since it was last empty (a LineBuffer)
    first: dict[int, int] = {}  # index in lines[line] of the first piece still in flight
    flushed: dict[int, int] = {}
    ready: set[int] = set()
    fences = clflushes = 0
    last_op, last_site = -1, ""

    frames = GroupFrames()
    dirty: set[int] = set()

    def point(kind: PointKind, ordinal: int, ev: Event | None) -> None:
        seq, op, site = (None, last_op, last_site) if ev is None else (ev.seq, ev.op, ev.site)
        delta: dict[int, GroupSpec | None] = {}
        for line in dirty:
            buf = lines.get(line)
            delta[line] = None if buf is None else GroupSpec(f"L{line}", PieceRun(buf, first[line]))
        dirty.clear()
        points.append(PointSpec(kind, ordinal, seq, op, site, len(log), (frames, frames.add(delta, len(lines)))))

    def pending(line: int) -> list[Piece]:
        buf = lines.get(line)
        return [] if buf is None else buf[first[line] :]

    def persist_prefix(line: int, j: int) -> None:
        buf, lo = lines[line], first[line]
        log.extend(buf[lo : lo + j + 1])
        dirty.add(line)
        if lo + j + 1 < len(buf):
            first[line] = lo + j + 1
            flushed[line] = max(0, flushed.get(line, 0) - (j + 1))
        else:
            del lines[line], first[line]
            flushed.pop(line, None)

    for ev in events:
        kind = ev.kind
        last_op, last_site = ev.op, ev.site
        if kind.is_store:
            pieces = split_pieces(ev)
            for piece in pieces:
                buf = lines.get(piece.line)
                if buf is None:
                    lines[piece.line], first[piece.line] = LineBuffer(piece), 0
                else:
                    buf.append(piece)
            touched = [p.line for p in pieces]
            dirty.update(touched)
            if kind is EventKind.NTSTORE:
                ready.update(touched)
        elif kind is EventKind.CLFLUSH:
            point(PointKind.CLFLUSH, clflushes, ev)
            clflushes += 1
            for line in _lines_in(lines, ev.addr, ev.size):
                pieces = pending(line)
                if not pieces:
                    continue
                j = max((i for i, p in enumerate(pieces) if not p.nt), default=-1)
                if j >= 0:
                    persist_prefix(line, j)
        elif kind.is_flush:
            for line in _lines_in(lines, ev.addr, ev.size):
                n = len(pending(line))
                if n:
                    flushed[line] = n
                    ready.add(line)
        elif kind.is_fence:
            point(PointKind.FENCE, fences, ev)
            fences += 1
            for line in sorted(ready):
                buf = lines.get(line)
                if buf is None:
                    continue
                n = len(buf) - first[line]
                if buf[-1].nt or flushed.get(line, 0) >= n:  # the whole line's pending pieces persist
                    persist_prefix(line, n - 1)
                    continue
                pieces = buf[first[line] :]
                last_nt = max((i for i, p in enumerate(pieces) if p.nt), default=-1)
                j = max(flushed.get(line, 0) - 1, last_nt)
                if j >= 0:
                    persist_prefix(line, j)
            ready.clear()
    point(PointKind.END, 0, None)
    return points, log


def _lines_in(lines: dict[int, list[Piece]], addr: int, size: int) -> Sequence[int]:
    """The lines of [addr, addr+size) to look at: all of them, or only those in flight when fewer.

    Why: a flush of a whole device range (a trace may flush 256 MiB at once) would otherwise walk
    four million lines to find the few with stores in flight.
    """
    lo, hi = addr // LINE, (addr + size - 1) // LINE + 1
    if hi - lo <= len(lines):
        return range(lo, hi)
    return sorted(line for line in lines if lo <= line < hi)


def _eadr(events: Sequence[Event], mode: EadrPoints) -> tuple[list[PointSpec], list[Piece]]:
    points: list[PointSpec] = []
    log: list[Piece] = []
    nt: dict[int, list[Piece]] = {}
    fences = stores = 0
    cur_op, last_site = -1, ""
    every_store = mode is EadrPoints.STORES

    def point(kind: PointKind, ordinal: int, ev: Event | None, extra: tuple[GroupSpec, ...] = ()) -> None:
        seq, op, site = (None, cur_op, last_site) if ev is None else (ev.seq, ev.op, ev.site)
        points.append(PointSpec(kind, ordinal, seq, op, site, len(log), extra + _line_groups(nt)))

    for ev in events:
        kind = ev.kind
        if not every_store and ev.op != cur_op and ev.op >= 0:
            points.append(PointSpec(PointKind.OP, ev.op, ev.seq, ev.op, ev.site, len(log), _line_groups(nt)))
        cur_op, last_site = ev.op, ev.site
        if kind is EventKind.STORE:
            pieces = split_pieces(ev)
            forced = sorted({p.line for p in pieces if p.line in nt})
            if forced:
                if every_store:
                    point(PointKind.DRAIN, stores, ev)
                for line in forced:
                    log.extend(nt.pop(line))
            if every_store:
                point(PointKind.STORE, stores, ev, (GroupSpec("T", tuple(pieces), tear=True),))
            log.extend(pieces)
            stores += 1
        elif kind is EventKind.NTSTORE:
            for piece in split_pieces(ev):
                nt.setdefault(piece.line, []).append(piece)
            stores += 1
        elif kind.is_fence:
            point(PointKind.FENCE, fences, ev)
            fences += 1
            for line in sorted(nt):
                log.extend(nt[line])
            nt.clear()
    point(PointKind.END, 0, None)
    return points, log
