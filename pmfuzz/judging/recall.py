"""Crash states judged clean, remembered so that the same state under the same expectation is not judged again.

A crash oracle sees only the recovered image and the expectation. The recovered image is the
target's recovery of the state's image (its digest), and the expectation a function of the crash
window and of the history up to the window's last boundary (`History.prefix_digests`). So a state
judged clean is clean wherever it recurs under the same target and options: in another schedule of
a workload, or in another workload whose ops before the crash are the same (a campaign's mutations
keep their parent's first ops, and with them its first crash points).

A crash point before any parallel group is a function of the ops up to the one it falls in (the
target and the reference run them alike), and any crash point a function of its contents (the media
as of it and the stores in flight: `CrashPoint.content`), so a point whose every state was clean is
remembered whole (`PointRecall`): where it recurs -- after the same ops, or after a parallel group
that another schedule ended alike -- its states are recalled without enumerating them.
"""

from __future__ import annotations

import hashlib
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from ..target import Target
from ..verdict import Options

__all__ = ["PointRecall", "Recall", "ops_prefixes", "point_key", "scope", "window_key"]

CAP = 1 << 18
"""Clean states a `Recall` keeps (about 20 MiB); past it the oldest are forgotten, so that a store a
campaign's process keeps for its life holds its memory flat."""


POINT_BYTES = 1 << 24
"""Bytes of whole crash points a `Recall` keeps (a point costs its digests, 16 bytes a state, and
`POINT_OVERHEAD`): a budget in bytes, not points, so that a campaign judging more states a point
keeps its memory flat all the same."""

POINT_OVERHEAD = 200
"""What a kept point costs beyond its digests (its key, its record, the dictionary's slot)."""

ID_BYTES = 60
"""What one kept state id costs (a short string), for a judge that logs every state."""

POINT_STATES = 1 << 12
"""States from which a point is not kept whole (its digests would take 64 KiB)."""


@dataclass(frozen=True, slots=True)
class PointRecall:
    """A crash point every state of which was clean: what judging it counts, without judging it."""

    states: int
    """States its enumeration yields (a digest may come twice)."""
    digests: bytes
    """Each yielded state's image digest, 16 bytes each, in enumeration order."""
    ids: tuple[str, ...] | None
    """Each yielded state's id, kept only for a judge that logs every state (`Options.log_states`)."""

    def each(self) -> Iterator[int]:
        d = self.digests
        return (int.from_bytes(d[k : k + 16], "little") for k in range(0, len(d), 16))


class Recall:
    """The keys (`window_key` ^ image digest) of crash states judged clean, and whole crash points
    (`point_key`) all of whose states were, oldest forgotten first."""

    __slots__ = ("_keys", "_order", "_point_bytes", "_point_order", "_points", "cap")

    def __init__(self, cap: int | None = None) -> None:
        self.cap = CAP if cap is None else cap
        self._keys: set[int] = set()
        self._order: deque[int] = deque()
        self._points: dict[bytes, PointRecall] = {}
        self._point_order: deque[bytes] = deque()
        self._point_bytes = 0

    def point(self, key: bytes) -> PointRecall | None:
        return self._points.get(key)

    def add_point(self, key: bytes, point: PointRecall) -> None:
        points = self._points
        if key in points or point.states > POINT_STATES:
            return
        cost = _cost(point)
        while points and (self._point_bytes + cost > POINT_BYTES or len(points) >= self.cap):
            self._point_bytes -= _cost(points.pop(self._point_order.popleft()))
        points[key] = point
        self._point_order.append(key)
        self._point_bytes += cost

    def __contains__(self, key: int) -> bool:
        return key in self._keys

    def __len__(self) -> int:
        return len(self._keys)

    def add(self, key: int) -> None:
        if key in self._keys:
            return
        if len(self._keys) >= self.cap:
            self._keys.discard(self._order.popleft())
        self._keys.add(key)
        self._order.append(key)


def _cost(point: PointRecall) -> int:
    """A kept point's share of `POINT_BYTES`: about what it holds in memory."""
    return len(point.digests) + POINT_OVERHEAD + (0 if point.ids is None else ID_BYTES * len(point.ids))


def scope(target: Target, opts: Options, oracles: list[str]) -> bytes:
    """What a verdict depends on besides the image and the expectation: the target (its class and
    the configuration a reproducer records), its guarantees, the device size (the image digest is a
    change from the formatted device), the persistence domain and the oracles run."""
    kind = type(target)
    said = (
        kind.__module__,
        kind.__qualname__,
        target.name,
        sorted(target.options().items()),
        sorted(g.value for g in target.guarantees),
        opts.device_size,
        str(opts.domain),
        sorted(oracles),
    )
    return hashlib.blake2b(repr(said).encode(), digest_size=16).digest()


def window_key(scope: bytes, prefix: bytes, completed: int, upper: int) -> int:
    """The part of a state's key its crash window decides: XORed with the image digest, it is the key."""
    h = hashlib.blake2b(scope + prefix + f"{completed},{upper}".encode(), digest_size=16)
    return int.from_bytes(h.digest(), "little")


def ops_prefixes(ops: Sequence[object]) -> list[bytes]:
    """Per op k, a digest of ops 0..k as written: what a crash point in op k (before any parallel
    group) is a function of, with the target's configuration."""
    chain = hashlib.blake2b(digest_size=16)
    out = []
    for op in ops:
        chain.update(f"{op}\n".encode())
        out.append(chain.digest())
    return out


def point_key(window: int, ops: bytes, point_id: str, opts: Options) -> bytes:
    """A crash point's key: its window's key, the ops up to it (or its contents), its id (where it
    matters), how its states are chosen, and whether their ids were kept (a judge that logs every
    state needs them)."""
    said = (
        point_id,
        str(opts.eadr_points),
        str(opts.strategy),
        opts.max_states,
        opts.exhaustive_upto,
        opts.seed,
        opts.log_states,
    )
    return hashlib.blake2b(window.to_bytes(16, "little") + ops + repr(said).encode(), digest_size=16).digest()
