"""Crash points, crash states and their images.

A state is one choice per in-flight group at one crash point. Its image is the
media as of that point (shared, copy-on-write) with the chosen lines laid over
it, so building a state costs what is in flight, not what the device holds.
Every state has a printable id, `<point>[:<group>=<choice>,...]`, listing only
the groups that kept less than everything; it parses back to the same state.
"""

from __future__ import annotations

import enum
import hashlib
import itertools
import random
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from ..errors import PMemError
from .cached import cached
from .groups import Group, LazyEdges
from .nogc import collector_paused
from .odometer import product_steps as _product_steps
from .outcomes import full_outcomes, log_delta
from .outcomes import line_hash as _line_hash
from .pages import Pages
from .persistency import EadrPoints, PointKind, PointSpec, compute_points
from .stateid import StateId
from .trace import LINE, Domain, Event

__all__ = [
    "CrashImage",
    "CrashPoint",
    "CrashState",
    "CrashTimeline",
    "GroupOutcome",
    "Strategy",
    "distinct",
]

_MOD = 1 << 128
_NOTHING: tuple[tuple[tuple[int, bytes], ...], int] = ((), 0)
_BULK = 16
"""Groups whose "all kept" outcome is not yet known, from which a point computes them together."""


class Strategy(enum.StrEnum):
    """How the states of a crash point are chosen."""

    EXHAUSTIVE = "exhaustive"
    """Every combination of per-group choices."""
    BOUNDED = "bounded"
    """Every one- and two-group deviation from "none persisted" and from "all persisted"."""
    SAMPLE = "sample"
    """Seeded random choices."""


@dataclass(frozen=True, slots=True)
class _Snapshot:
    """The media as of some prefix of the persist log, and its content hash relative to the trace start."""

    pages: Pages
    delta: int

    def line(self, line: int) -> bytes:
        return self.pages.read_bytes(line * LINE, LINE)


class CrashTimeline:
    """All crash points of one trace, and the media snapshots they need.

    Snapshots are built by applying the persist log in order; walking the
    points in order applies each piece once.
    """

    def __init__(
        self, events: Sequence[Event], initial: Pages, domain: Domain, eadr_points: EadrPoints = EadrPoints.STORES
    ) -> None:
        self.events = tuple(events)
        self.domain = domain
        self.eadr_points = eadr_points
        self.size = initial.size
        self._initial = initial
        with collector_paused():
            specs, self._log = compute_points(self.events, domain, eadr_points)
        self.points: tuple[CrashPoint, ...] = tuple(CrashPoint(self, s) for s in specs)
        self._by_id = {p.id: p for p in self.points}
        self._cursor_pages = initial.fork()
        self._cursor_len = 0
        self._cursor_delta = 0
        self._snaps: dict[int, _Snapshot] = {}
        self._group_of: dict[int, Group] = {}

    def _groups(self, spec: PointSpec) -> tuple[Group, ...]:
        """A point's groups; one `Group` per group spec, shared by consecutive points it is in flight
        at (only the last point's are kept: a group that left flight is not asked for again in order)."""
        of = self._group_of
        with collector_paused():
            out = tuple(of.get(id(g)) or Group(g) for g in spec.groups)
        self._group_of = {id(g.spec): g for g in out}
        return out

    def release(self) -> None:
        """Drop the points and snapshots (see `PMem.drop_timeline`); the points stay usable."""
        self.points = ()
        self._by_id = {}
        self._snaps = {}
        self._group_of = {}

    def point(self, point_id: str) -> CrashPoint:
        try:
            return self._by_id[point_id]
        except KeyError:
            span = f"from {self.points[0].id} to {self.points[-1].id}" if self.points else "released"
            n = len(self.points)
            raise PMemError(f"no crash point {point_id!r} in this trace (it has {n} points, {span})") from None

    def state(self, state_id: str | StateId) -> CrashState:
        """The state a printed id (or its parsed value) names."""
        sid = state_id if isinstance(state_id, StateId) else StateId.parse(state_id)
        point_id = sid.point
        point = self.point(point_id)
        choices = list(point.full_choices)
        names = {g.name: i for i, g in enumerate(point.groups)}
        seen = set()
        for name, value in sid.deviations:
            if name not in names:
                known = ", ".join(g.name for g in point.groups) or "none"
                raise PMemError(
                    f"crash state {str(sid)!r}: {name + '=' + value!r} names no in-flight group at {point_id} "
                    f"(groups: {known})"
                )
            if name in seen:
                raise PMemError(f"crash state {str(sid)!r}: group {name} given twice")
            seen.add(name)
            g = point.groups[names[name]]
            choice = g.decode(value)
            if choice is None:
                form = f"a count 0..{g.n}" if g.chain else "a down-set mask x<hex> of its units"
                raise PMemError(
                    f"crash state {str(sid)!r}: {name}={value!r} is not a possible choice (expected {form})"
                )
            choices[names[name]] = choice
        return CrashState(point, tuple(choices))

    def _snapshot(self, log_len: int) -> _Snapshot:
        snap = self._snaps.get(log_len)
        if snap is not None:
            return snap
        if log_len < self._cursor_len:
            self._cursor_pages = self._initial.fork()
            self._cursor_len = 0
            self._cursor_delta = 0
        pieces = self._log[self._cursor_len : log_len]
        if pieces:
            self._cursor_delta = (self._cursor_delta + log_delta(self._cursor_pages, pieces)) % _MOD
        self._cursor_len = log_len
        snap = _Snapshot(self._cursor_pages.fork(), self._cursor_delta)
        if len(self._snaps) >= 8:
            self._snaps.pop(next(iter(self._snaps)))
        self._snaps[log_len] = snap
        return snap


@dataclass(frozen=True, eq=False)
class CrashPoint:
    """A moment a crash may hit: just before a fence, clflush or store, or at the end."""

    timeline: CrashTimeline = field(repr=False)
    spec: PointSpec = field(repr=False)

    @property
    def id(self) -> str:
        return self.spec.id

    @property
    def kind(self) -> PointKind:
        return self.spec.kind

    @property
    def op(self) -> int:
        """Index of the op in progress (the op that issued the event), -1 if none."""
        return self.spec.op

    @property
    def site(self) -> str:
        return self.spec.site

    @property
    def event(self) -> Event | None:
        seq = self.spec.seq
        return None if seq is None else self.timeline.events[seq]

    @cached
    def groups(self) -> tuple[Group, ...]:
        return self.timeline._groups(self.spec)

    def forget(self) -> None:
        """Drop what this point cached over all its groups: a trace's points may hold thousands of
        lines each, and a judged point is not judged again (its groups' outcomes stay with them)."""
        for name in ("groups", "full_choices", "none_choices", "_base_digests"):
            self.__dict__.pop(name, None)

    @cached
    def full_choices(self) -> tuple[int, ...]:
        return tuple(g.full for g in self.groups)

    @property
    def inflight_lines(self) -> int:
        return sum(len(g.lines) for g in self.groups)

    def count(self) -> int:
        """Number of states `exhaustive` enumerates."""
        n = 1
        for g in self.groups:
            n *= g.count()
        return n

    def state(self, choices: Sequence[int] | None = None) -> CrashState:
        return CrashState(self, tuple(self.full_choices if choices is None else choices))

    def states(
        self, strategy: Strategy | str = Strategy.EXHAUSTIVE, *, seed: int = 0, limit: int | None = None
    ) -> Iterator[CrashState]:
        """The states of this point under a strategy, each once, at most `limit` of them."""
        strategy = _strategy(strategy)
        if limit is not None and limit <= 0:
            raise PMemError(f"crash-state limit must be positive, got {limit!r}")
        return self._states(strategy, seed, limit)

    def _states(self, strategy: Strategy, seed: int, limit: int | None) -> Iterator[CrashState]:
        seen: set[tuple[int, ...]] = set()
        if strategy is Strategy.BOUNDED:
            full_d, none_d = self._base_digests
            # A state is its base and its one or two deviations: keyed so, the states already drawn
            # cost a few ints each, not a tuple over every group (a 2 MiB zeroing is 32,768 groups).
            # States of the two bases can coincide only where the bases differ in at most 4 groups.
            short = sum(1 for f, z in zip(self.full_choices, self.none_choices, strict=True) if f != z) > 4
            for choices, from_full, devs in self._bounded():
                key = (from_full, *(x for gi in devs for x in (gi, choices[gi]))) if short else choices
                if key in seen:
                    continue
                seen.add(key)
                base = self.full_choices if from_full else self.none_choices
                d = full_d if from_full else none_d
                for gi in devs:
                    d += self._outcome(gi, choices[gi])[1] - self._outcome(gi, base[gi])[1]
                yield CrashState._trusted(self, choices, d % _MOD, (from_full, devs))
                if limit is not None and len(seen) >= limit:
                    return
            return
        n = 64 if limit is None else limit
        if strategy is Strategy.EXHAUSTIVE or self._count_at_most(n):
            # Odometer order: a state differs from the one before in the groups that rolled over,
            # so its digest is the previous one plus those groups' changes; no tuple comes twice.
            d = 0
            prev: tuple[int, ...] = ()
            for k, (choices, rolled) in enumerate(_product_steps(self.groups), 1):
                if rolled is None:
                    d = CrashState._trusted(self, choices).digest
                else:
                    for gi in rolled:
                        d += self._outcome(gi, choices[gi])[1] - self._outcome(gi, prev[gi])[1]
                    d %= _MOD
                prev = choices
                yield CrashState._trusted(self, choices, d)
                if limit is not None and k >= limit:
                    return
            return
        for choices in self._sample(seed, n):
            if choices in seen:
                continue
            seen.add(choices)
            yield CrashState._trusted(self, choices)
            if limit is not None and len(seen) >= limit:
                return

    def _count_at_most(self, n: int) -> bool:
        total = 1
        for g in self.groups:
            total *= g.count(cap=n + 1)
            if total > n:
                return False
        return True

    def _bounded(self) -> Iterator[tuple[tuple[int, ...], bool, tuple[int, ...]]]:
        """Both bases, then every one-group deviation, then every two-group deviation, each with
        its base (True: all kept) and the groups that deviate from it, so that its digest costs
        those groups alone.

        Deviations from "all kept" come before those from "none kept", and one-group before
        two-group ones, so that a limit keeps the most telling states; states from one base
        are consecutive, so neighbours differ in few groups.
        """
        gs = self.groups
        edges = LazyEdges(gs)
        full, none = self.full_choices, self.none_choices
        yield full, True, ()
        yield none, False, ()
        for base in (full, none):
            is_full = base is full
            for i in range(len(gs)):
                for v in edges[i]:
                    if v != base[i]:
                        yield (*base[:i], v, *base[i + 1 :]), is_full, (i,)
        for base in (full, none):
            is_full = base is full
            for i, j in itertools.combinations(range(len(gs)), 2):
                for v in edges[i]:
                    if v == base[i]:
                        continue
                    for w in edges[j]:
                        if w != base[j]:
                            c = list(base)
                            c[i], c[j] = v, w
                            yield tuple(c), is_full, (i, j)

    def _sample(self, seed: int, n: int) -> Iterator[tuple[int, ...]]:
        rng = random.Random(f"{seed}/{self.id}")
        for _ in range(8 * n + 16):
            yield tuple(g.random_choice(rng.random) for g in self.groups)

    def content(self) -> bytes:
        """A digest of what decides this point's states: the media as of the point and the groups in
        flight. Two points of equal contents enumerate the same states, with the same images, under
        the same strategy (a sampled one also draws by the point's id)."""
        h = hashlib.blake2b(self.timeline._snapshot(self.spec.log_len).delta.to_bytes(16, "little"), digest_size=16)
        for g in self.groups:
            h.update(g.content)
        return h.digest()

    @cached
    def none_choices(self) -> tuple[int, ...]:
        return tuple(0 for _ in self.groups)

    @cached
    def _base_digests(self) -> tuple[int, int]:
        snap = self.timeline._snapshot(self.spec.log_len)
        gs = self.groups
        full = snap.delta
        todo = []
        for gi, g in enumerate(gs):
            hit = g.outcomes.get(g.full)
            if hit is None:
                todo.append(gi)
            else:
                full += hit[1]
        if len(todo) >= _BULK:
            with collector_paused():
                full_outcomes(gs, todo, snap.pages)
        for gi in todo:
            full += self._outcome(gi, gs[gi].full)[1]
        return full, snap.delta  # keeping nothing changes no line

    def _nearest_base(self, choices: tuple[int, ...]) -> tuple[tuple[int, ...], int, list[int]]:
        """The base (all kept, or none kept) a state deviates least from, its digest, and the deviations."""
        full = self.full_choices
        dev_full = [i for i, (c, f) in enumerate(zip(choices, full, strict=True)) if c != f]
        if len(dev_full) * 2 <= len(choices):
            return full, self._base_digests[0], dev_full
        dev_none = [i for i, c in enumerate(choices) if c != 0]
        if len(dev_none) < len(dev_full):
            return self.none_choices, self._base_digests[1], dev_none
        return full, self._base_digests[0], dev_full

    def group_lines(self, gi: int, choice: int) -> tuple[tuple[int, bytes], ...]:
        """Lines of group gi that differ from the media as of the point, when it keeps `choice`."""
        return self._outcome(gi, choice)[0]

    def base_pages(self) -> Pages:
        """The media at this point with no in-flight store kept (shared: fork it before writing)."""
        return self.timeline._snapshot(self.spec.log_len).pages

    def base_line(self, line: int) -> bytes:
        """A line of the media as of the point (before anything in flight)."""
        return self.timeline._snapshot(self.spec.log_len).line(line)

    def _outcome(self, gi: int, choice: int) -> tuple[tuple[tuple[int, bytes], ...], int]:
        """Lines that differ from the base media under one group's choice, and the hash change."""
        group = self.groups[gi]
        hit = group.outcomes.get(choice)
        if hit is not None:
            return hit
        if choice == 0:
            return _NOTHING  # nothing kept: every line reads as the media does
        snap = self.timeline._snapshot(self.spec.log_len)
        lines = group.apply(choice, snap.line)
        changed = []
        delta = 0
        for line, content in lines.items():
            base = snap.line(line)
            if content != base:
                changed.append((line, content))
                delta += _line_hash(line, content) - _line_hash(line, base)
        hit = (tuple(changed), delta)
        group.outcomes[choice] = hit
        return hit

    def __repr__(self) -> str:
        return f"CrashPoint({self.id}, op={self.op}, site={self.site!r}, groups={self.spec.width})"


def _strategy(s: Strategy | str) -> Strategy:
    try:
        return Strategy(s)
    except ValueError:
        raise PMemError(
            f"unknown crash-state strategy {s!r} (expected one of: {', '.join(x.value for x in Strategy)})"
        ) from None


@dataclass(frozen=True, slots=True)
class GroupOutcome:
    """What a crash kept of one in-flight group, for reports."""

    name: str
    lines: tuple[int, ...]
    kept: int
    total: int
    sites: tuple[str, ...]
    ops: tuple[int, ...]
    value: str

    @property
    def verdict(self) -> str:
        return "kept" if self.kept == self.total else "dropped" if self.kept == 0 else "partial"


@dataclass(frozen=True, eq=False)
class CrashState:
    """One possible content of the media after a crash at one point."""

    point: CrashPoint
    choices: tuple[int, ...]

    def __post_init__(self) -> None:
        gs = self.point.groups
        if len(self.choices) != len(gs) or not all(g.is_valid(c) for g, c in zip(gs, self.choices, strict=True)):
            raise PMemError(f"invalid choices {self.choices!r} for crash point {self.point.id}")

    @classmethod
    def _trusted(
        cls,
        point: CrashPoint,
        choices: tuple[int, ...],
        digest: int | None = None,
        base: tuple[bool, tuple[int, ...]] | None = None,
    ) -> CrashState:
        """A state whose choices come from the enumerators themselves (already valid), with its
        digest and its base (all kept or none kept, and the groups that deviate from it) if the
        enumerator knew them."""
        self = object.__new__(cls)
        object.__setattr__(self, "point", point)
        object.__setattr__(self, "choices", choices)
        if digest is not None:
            self.__dict__["digest"] = digest
        if base is not None:
            self.__dict__["base"] = base
        return self

    @property
    def base(self) -> tuple[bool, tuple[int, ...]] | None:
        """(True: all kept, False: none kept) and the groups whose choice differs from that base, when
        the enumerator knew it: a point may have 30,000 groups, and a judge that follows states by
        their deviations does per state what they changed, not what the point holds."""
        return self.__dict__.get("base")

    @property
    def id(self) -> str:
        return str(self.state_id)

    @property
    def state_id(self) -> StateId:
        devs = tuple((g.name, g.encode(c)) for g, c in zip(self.point.groups, self.choices, strict=True) if c != g.full)
        return StateId(self.point.id, devs)

    @cached
    def digest(self) -> int:
        """Content hash of the image; equal images of one trace have equal digests."""
        p = self.point
        base, base_digest, devs = p._nearest_base(self.choices)
        d = base_digest
        for gi in devs:
            d += p._outcome(gi, self.choices[gi])[1] - p._outcome(gi, base[gi])[1]
        return d % _MOD

    @cached
    def deviation_groups(self) -> tuple[int, ...]:
        """Indices of the groups that kept less than everything."""
        full = self.point.full_choices
        return tuple(i for i, (c, f) in enumerate(zip(self.choices, full, strict=True)) if c != f)

    @property
    def deviations(self) -> int:
        """How many groups kept less than everything."""
        return len(self.deviation_groups)

    def outcomes(self) -> list[GroupOutcome]:
        """Per in-flight group: how much of it this crash kept, and which code wrote it."""
        events = self.point.timeline.events
        out = []
        for g, c in zip(self.point.groups, self.choices, strict=True):
            seqs = sorted({p.seq for p in g.spec.pieces})
            sites = tuple(dict.fromkeys(events[s].site for s in seqs))
            ops = tuple(sorted({events[s].op for s in seqs}))
            out.append(GroupOutcome(g.name, g.lines, g.kept_count(c), g.n, sites, ops, g.encode(c)))
        return out

    def overlay(self) -> dict[int, bytes]:
        """Lines whose content differs from the media as of the point."""
        over: dict[int, bytes] = {}
        for gi, c in enumerate(self.choices):
            over.update(self.point._outcome(gi, c)[0])
        return over

    def image(self) -> CrashImage:
        snap = self.point.timeline._snapshot(self.point.spec.log_len)
        return CrashImage(snap.pages, self.overlay(), self.digest)

    def __repr__(self) -> str:
        return f"CrashState({self.id})"


class CrashImage:
    """The device as it would be found after one crash: shared base pages plus changed lines."""

    __slots__ = ("base", "digest", "lines", "size")

    def __init__(self, base: Pages, lines: dict[int, bytes], digest: int) -> None:
        self.base = base
        self.lines = lines
        self.digest = digest
        self.size = base.size

    def read(self, addr: int, n: int) -> np.ndarray:
        if addr < 0 or n <= 0 or addr + n > self.size:
            raise PMemError(f"image read [{addr:#x}, +{n}) outside the device of {self.size} bytes")
        out = self.base.read(addr, n)
        lo, hi = addr // LINE, (addr + n - 1) // LINE
        if hi - lo + 1 < len(self.lines):
            todo: Iterable[int] = (ln for ln in range(lo, hi + 1) if ln in self.lines)
        else:
            todo = (ln for ln in self.lines if lo <= ln <= hi)
        for line in todo:
            content = np.frombuffer(self.lines[line], dtype=np.uint8)
            a = line * LINE
            s, e = max(a, addr), min(a + LINE, addr + n)
            out[s - addr : e - addr] = content[s - a : e - a]
        return out

    def pages(self) -> Pages:
        """A private copy-on-write copy of the image, e.g. to mount it."""
        pages = self.base.fork()
        for line, content in self.lines.items():
            pages.write(line * LINE, content)
        return pages

    def to_array(self) -> np.ndarray:
        return self.read(0, self.size)

    def to_bytes(self) -> bytes:
        return self.to_array().tobytes()


def distinct(states: Iterable[CrashState]) -> Iterator[CrashState]:
    """Drop states whose image was already seen (by content hash)."""
    seen: set[int] = set()
    for s in states:
        d = s.digest
        if d not in seen:
            seen.add(d)
            yield s
