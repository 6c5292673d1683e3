"""The history of a reference run: every file at every op boundary, and what each op did.

The engine records a boundary after each op; `History.expect` turns the record into what a
crash at a given point may leave (`expect.Expectation`).
"""

from __future__ import annotations

import hashlib
from dataclasses import fields, replace

import numpy as np

from .effects import FileVersion, OpEffects, held_in
from .expect import Expectation
from .files import RefFile
from .model import Reference

__all__ = ["Alternative", "History"]

Alternative = dict[int, tuple[str | None, FileVersion]]
"""One serial order's files at one boundary: per incarnation, its name (None: unlinked) and content."""


_SPARSE_WORDS = 1 << 14
"""Words from which `History.prefix_digests` hashes a file version by its nonzero words alone."""


class History:
    """Every name's file at every op boundary, and what each op did for crash recovery."""

    def __init__(self, ref: Reference) -> None:
        self.ref = ref
        self.boundaries: list[dict[str, FileVersion]] = [{}]
        self.by_ino: list[dict[int, FileVersion]] = [{}]
        """Every live incarnation at each boundary, unlinked-but-mapped ones (orphans) included."""
        self.effects: list[OpEffects] = []
        self._cache: dict[int, tuple[int, FileVersion]] = {}
        self._expects: dict[tuple, Expectation] = {}
        self._stacked: dict[tuple[int, ...], tuple[list[FileVersion], np.ndarray]] = {}
        self.alternatives: dict[int, list[Alternative]] = {}
        """Boundary -> other states it may stand for: inside a parallel group, the states after the
        same number of ops in every other serial order (values and sizes that existed transiently)."""
        self.groups: dict[int, int] = {}
        """Op index -> the first op of its parallel group, for every op of a group."""

    def caches(self) -> tuple[object, ...]:
        """What it keeps only to answer faster (versions by file, expectations, stacked rows): not
        part of the history a digest of it must cover."""
        return (self._cache, self._expects, self._stacked)

    def note_group(self, start: int, n: int) -> None:
        """Ops [start, start+n) ran at once: any of them may have run first."""
        for j in range(start, start + n):
            self.groups[j] = start

    def earliest(self, op: int) -> int:
        """The earliest position op `op` may have run at: its group's first, if it was in one."""
        return self.groups.get(op, op)

    def add_alternative(self, b: int, other: Reference, copied_from: Reference | None = None) -> None:
        """Record `other` (a copy of the reference run in another serial order) as a state at boundary b.

        `copied_from`: the reference `other` is a deep copy of, unchanged since; a file whose version
        has not moved since the copy shares that file's words (one array, not one per order and op).
        """
        self.add_state(b, self.state_of(other, copied_from))

    def state_of(self, other: Reference, copied_from: Reference | None = None) -> Alternative:
        """`other`'s files as `add_alternative` records them (see there for `copied_from`)."""
        names = {id(f): n for n, f in other.names.items()}
        orig = {} if copied_from is None else {f.ino: f for f in _files(copied_from)}
        live: Alternative = {}
        for f in _files(other):
            o = orig.get(f.ino)
            v = self._version(o) if o is not None and o.version == f.version else None
            live[f.ino] = (names.get(id(f)), v or FileVersion(f.ino, f.size, f.words()))
        return live

    def add_state(self, b: int, live: Alternative) -> None:
        """Record a state `state_of` took (of this run or of another run of the same ops) at boundary b."""
        self.alternatives.setdefault(b, []).append(live)
        self._expects.clear()

    def _version(self, f: RefFile) -> FileVersion:
        hit = self._cache.get(id(f))
        if hit is None or hit[0] != f.version or hit[1].ino != f.ino:
            hit = (f.version, FileVersion(f.ino, f.size, f.words()))
            self._cache[id(f)] = hit
        return hit[1]

    def record(self) -> None:
        """Call after each op: snapshot the boundary after it."""
        state = {name: self._version(f) for name, f in self.ref.names.items()}
        live = {v.ino: v for v in state.values()}
        for m in self.ref.maps.values():
            if m.file.ino not in live:
                live[m.file.ino] = self._version(m.file)
        self.boundaries.append(state)
        self.by_ino.append(live)
        fx = self.ref.fx
        pos = len(self.effects)
        if any(ev.op != pos for ev in fx.cow):
            # An op of a parallel group applied out of index order: its COW happened at this boundary.
            fx = replace(fx, cow=[replace(ev, at=pos) for ev in fx.cow])
        self.effects.append(fx)

    def held(self, ino: int, offset: int, word: bytes) -> bool:
        """Whether incarnation `ino` held the 8 bytes `word` at `offset` at some op boundary."""
        return held_in(self.by_ino, (ino,), offset, word)

    @property
    def ops(self) -> int:
        return len(self.effects)

    def stacked(self, rows: list[FileVersion]) -> np.ndarray:
        """The words of `rows` as one zero-padded 2-D array, shared by every expectation that stacks
        the same versions (the points of one run ask again and again; a 4 MiB file is 0.5 MiB a row)."""
        key = tuple(id(v) for v in rows)
        hit = self._stacked.get(key)
        if hit is not None:
            return hit[1]
        width = max(len(v.words) for v in rows)
        vals = np.zeros((len(rows), width), dtype=np.uint64)
        for i, v in enumerate(rows):
            vals[i, : len(v.words)] = v.words
        vals.setflags(write=False)
        if len(self._stacked) >= 16:
            self._stacked.pop(next(iter(self._stacked)))
        self._stacked[key] = (rows, vals)  # the rows kept alive, so their ids stay theirs
        return vals

    def prefix_digests(self) -> list[bytes]:
        """Per boundary b, a digest of all an expectation whose window ends at b reads (`Record`):
        the files at boundaries 0..b (by name and by incarnation), the other serial orders' states
        there, and ops 0..b-1's effects and parallel groups. Two runs whose ops agree up to b agree
        here, whatever came after: a crash state judged in one is judged alike in the other."""
        versions: dict[int, bytes] = {}

        def version(v: FileVersion) -> bytes:
            d = versions.get(id(v))
            if d is None:
                words = v.words
                h = hashlib.blake2b(f"{v.ino} {v.size} {len(words)}".encode(), digest_size=16)
                if len(words) < _SPARSE_WORDS:
                    h.update(np.ascontiguousarray(words).data)
                else:  # a 4 MiB file is mostly zeros: its nonzero words and where they are, 4x faster
                    at = np.flatnonzero(words)
                    h.update(f" {len(at)} ".encode() + at.tobytes() + words[at].tobytes())
                d = versions[id(v)] = h.digest()
            return d

        chain = hashlib.blake2b(digest_size=16)
        out: list[bytes] = []
        for b, named in enumerate(self.boundaries):
            if b:
                fx = self.effects[b - 1]
                said = [getattr(fx, f.name) for f in fields(fx)]
                said = [sorted(x) if isinstance(x, frozenset) else x for x in said]
                chain.update(repr((said, self.groups.get(b - 1))).encode())
            chain.update(f"|{b}|".encode())
            for name in sorted(named):
                chain.update(name.encode() + b"=" + version(named[name]))
            chain.update(b"|")
            live = self.by_ino[b]
            for ino in sorted(live):
                chain.update(f"{ino}=".encode() + version(live[ino]))
            for alt in self.alternatives.get(b, ()):
                chain.update(b"|alt")
                for ino in sorted(alt):
                    nm, v = alt[ino]
                    chain.update(f"{ino}:{nm!r}=".encode() + version(v))
            out.append(chain.digest())
        return out

    def expect(self, completed: int, upper: int, *, durable: bool = True, synchronous: bool = False) -> Expectation:
        """What a crash may leave when ops [0, completed) finished and op `completed` may be under way.

        `upper` is the last boundary the crash can reach (completed+1 inside an op).
        With `durable=False` there are no durability points (only stale data is judged);
        with `synchronous=True` every finished op is a durability point.
        """
        key = (completed, upper, durable, synchronous, len(self.effects))
        hit = self._expects.get(key)
        if hit is None:
            hit = self._expects[key] = Expectation(self, completed, upper, durable, synchronous)
        return hit


def _files(ref: Reference) -> list[RefFile]:
    """Every live file of a reference: by name, and unlinked ones still mapped."""
    return [*ref.names.values(), *(m.file for m in ref.maps.values())]
