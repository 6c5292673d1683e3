"""What a crash state may show: the windows and word rules of DESIGN.md section 4, read off a history.

`Expectation` judges one crash (ops [0, completed) finished, op `completed` maybe under way)
against the history's boundaries and effects. It reads the history through `Record`, the part of
`history.History` it needs, so that the history can build expectations without a cycle.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import numpy as np

from ..lang.workload import BLOCK_SIZE
from .effects import CowEvent, FileVersion, OpEffects

__all__ = ["Expectation", "Record", "WordVerdict", "WORDS_PER_BLOCK", "eof_mask"]

WORDS_PER_BLOCK = BLOCK_SIZE // 8


_MAX_SIDES = 1 << 14
"""COW blocks' sides `block_side` remembers per expectation (a digest key each, about 200 bytes)."""

_WHOLE_BYTES = 64 << 20
"""What `classify_file` may keep per expectation (keys and verdicts, about twice the words): a
dozen 4 MiB files, where a count of entries let it keep 64 of them."""


class Record(Protocol):
    """What an expectation reads of the history (`History`): of each list, only the entries up to
    its window's last boundary (`History.prefix_digests` covers exactly those, so that a judge may
    recall a verdict across runs that share them; whatever an expectation starts to read must go
    into that digest too)."""

    boundaries: list[dict[str, FileVersion]]
    by_ino: list[dict[int, FileVersion]]
    effects: list[OpEffects]
    alternatives: dict[int, list[dict[int, tuple[str | None, FileVersion]]]]

    @property
    def ops(self) -> int: ...

    def earliest(self, op: int) -> int: ...

    def stacked(self, rows: list[FileVersion]) -> np.ndarray: ...


@dataclass
class WordVerdict:
    """Per-word classification of a found file against its window."""

    ok: np.ndarray
    older: np.ndarray
    """Values the file held at this offset before its last durability point (durability)."""
    stale: np.ndarray
    """Non-zero values the file never held at this offset (stale exposure)."""
    lost: np.ndarray
    """Zero where the file never read zero in the window: its size reached the media before its data."""


_T = TypeVar("_T")


def _per_name(fn: Callable[[Expectation, str], _T]) -> Callable[[Expectation, str], _T]:
    """Remember a question about one file for the expectation's life: the crash oracles ask the same
    ones (may it exist, its sizes, its incarnations) of every file of every state they judge, and
    the history under an expectation does not change."""
    key = fn.__name__

    @functools.wraps(fn)
    def asked(self: Expectation, name: str) -> _T:
        memo = self._per_name
        try:
            return memo[key, name]
        except KeyError:
            got = memo[key, name] = fn(self, name)
            return got

    return asked


class Expectation:
    """The allowed recovered states for one crash, derived from the history."""

    def __init__(self, h: Record, completed: int, upper: int, durable: bool, synchronous: bool) -> None:
        self.h = h
        self.completed = completed
        self.upper = upper
        self.durable = durable
        self.synchronous = synchronous
        self._stacks: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        self._whole: dict[tuple[str, int, bytes], tuple[WordVerdict, np.ndarray]] = {}
        self._whole_bytes = 0
        self._sides: dict[tuple[str, CowEvent, int | None, bytes], tuple[bool, bool]] = {}
        self._per_name: dict[tuple[str, str], Any] = {}

    # -- windows -----------------------------------------------------------------

    @_per_name
    def start(self, name: str) -> int:
        """The boundary where `name`'s window starts (its last durability point)."""
        d = 0
        if self.synchronous:
            d = self.completed
        elif self.durable:
            for j in range(self.completed):
                dn = self.h.effects[j].durable_names
                if dn is None or name in dn:
                    d = j + 1
        return d

    def window(self, name: str) -> range:
        return range(self.start(name), self.upper + 1)

    def names(self) -> list[str]:
        out: set[str] = set()
        for b in range(self.upper + 1):
            out.update(self.h.boundaries[b])
        return sorted(out)

    def meta_start(self, name: str) -> int:
        """Where the window of `name`'s size and existence starts: its last durability point, or the
        write fault behind a later persist through a MAP_SYNC mapping of it. That fault forced the
        inode to the log (IOMAP_F_DIRTY), so data made durable by the persist is reachable only if
        the size and name as of the fault are durable too; a size changed after the fault without
        zapping the page (an extending write, a truncate up) is not made durable by the persist. A
        fault in a parallel group may have run before every other op of the group."""
        d = self.start(name)
        if not self.durable or self.synchronous:
            return d
        inos = self.incarnations(name)
        out = d
        for j in range(d, self.completed):
            for nm, ino, fault in self.h.effects[j].meta_synced:
                if nm == name and {ino} == inos:
                    out = max(out, self.h.earliest(fault) + 1)
        return out

    @_per_name
    def must_exist(self, name: str) -> bool:
        return all(name in self.h.boundaries[b] for b in range(self.meta_start(name), self.upper + 1))

    @_per_name
    def may_exist(self, name: str) -> bool:
        return any(name in self.h.boundaries[b] for b in self.window(name))

    @_per_name
    def existed_before(self, name: str) -> bool:
        return any(name in self.h.boundaries[b] for b in range(self.start(name)))

    def _alt_sizes(self, name: str, bs: Iterable[int]) -> frozenset[int]:
        return frozenset(
            v.size for b in bs for alt in self.h.alternatives.get(b, ()) for nm, v in alt.values() if nm == name
        )

    @_per_name
    def sizes(self, name: str) -> frozenset[int]:
        """Sizes `name` may recover with (shared: do not change it)."""
        bs = range(self.meta_start(name), self.upper + 1)
        own = {self.h.boundaries[b][name].size for b in bs if name in self.h.boundaries[b]}
        return self._alt_sizes(name, bs).union(own)

    @_per_name
    def held_sizes(self, name: str) -> frozenset[int]:
        """Sizes `name` had at some boundary up to the crash (shared: do not change it)."""
        own = {self.h.boundaries[b][name].size for b in range(self.upper + 1) if name in self.h.boundaries[b]}
        return self._alt_sizes(name, range(self.upper + 1)).union(own)

    def versions(self, name: str, bs: Iterable[int]) -> list[FileVersion]:
        return [self.h.boundaries[b][name] for b in bs if name in self.h.boundaries[b]]

    @_per_name
    def incarnations(self, name: str) -> frozenset[int]:
        """Incarnations that carried `name` at some boundary of its window (shared: do not change it)."""
        return frozenset(self.h.boundaries[b][name].ino for b in self.window(name) if name in self.h.boundaries[b])

    def candidates(self, name: str, b: int) -> list[FileVersion]:
        """What `name` may be recovered as, as of boundary b: any of its window's incarnations, named or not.

        An incarnation written after its unlink (through a mapping) comes back with those writes
        when the crash loses the unlink.
        """
        live = self.h.by_ino[b]
        incs = sorted(self.incarnations(name))
        out = [live[i] for i in incs if i in live]
        for alt in self.h.alternatives.get(b, ()):
            out += [alt[i][1] for i in incs if i in alt]
        return out

    # -- words ---------------------------------------------------------------------

    def _word_start(self, name: str, idx: np.ndarray) -> np.ndarray:
        """Per word: the boundary its window starts at (a MAP_SYNC persist can move it later)."""
        d = np.full(len(idx), self.start(name), dtype=np.int64)
        if not self.durable or self.synchronous:
            return d
        inos = {self.h.boundaries[b][name].ino for b in self.window(name) if name in self.h.boundaries[b]}
        for j in range(self.completed):
            for nm, ino, s, e in self.h.effects[j].durable_ranges:
                if nm != name or inos != {ino}:
                    continue
                inside = (idx * 8 >= s - 7) & (idx * 8 < e)
                full = (idx * 8 >= s) & (idx * 8 + 8 <= e)
                d = np.where(inside & full, np.maximum(d, j + 1), d)
        return d

    def classify_file(self, name: str, words: np.ndarray, size: int) -> tuple[WordVerdict, np.ndarray]:
        """`classify` of a whole recovered file, remembered by its content: the metadata states of a
        crash point, and the points that share this window, recover the same file again and again.

        Also returns the words as one read-only array shared by every caller that saw this content,
        so that a cache per mounted state (`VerdictCache`) holds one copy of a 4 MiB file, not one
        per mount. Both are shared: read them, do not change them."""
        raw = words.tobytes()
        key = (name, size, raw)
        hit = self._whole.get(key)
        if hit is None:
            while self._whole and self._whole_bytes + 2 * words.nbytes > _WHOLE_BYTES:
                old = next(iter(self._whole))
                self._whole_bytes -= 2 * len(old[2])
                del self._whole[old]
            kept = np.frombuffer(raw, dtype="<u8")
            hit = self._whole[key] = (self.classify_whole(name, kept, size), kept)
            self._whole_bytes += 2 * words.nbytes
        return hit

    def classify_whole(self, name: str, words: np.ndarray, size: int) -> WordVerdict:
        """`classify` of every word of a file, the same verdict, by slices: a version's words are
        compared a row at a time with no index arrays (a 4 MiB file took 50 ms by `classify`).

        The word EOF cuts, the only one whose bytes are masked, is judged by `classify` alone."""
        n = len(words)
        found = np.asarray(words, dtype=np.uint64)
        vals, sizes, bidx = self._stack(name)
        held = np.zeros(n, dtype=bool)
        ok = np.zeros(n, dtype=bool)
        nonzero = found != 0
        steady = not self.durable or self.synchronous
        dword = self._word_start(name, np.arange(n, dtype=np.int64)) if not steady else None
        d0 = self.start(name)
        m = min(n, vals.shape[1]) if len(vals) else 0
        eq = np.empty(m, dtype=bool)
        for r in range(len(vals)):
            np.equal(vals[r, :m], found[:m], out=eq)
            lim = -(-int(sizes[r]) // 8)
            if lim < m:
                eq[lim:] &= nonzero[lim:m]
            held[:m] |= eq
            if dword is None:
                if bidx[r] >= d0:
                    ok[:m] |= eq
            else:
                ok[:m] |= eq & (bidx[r] >= dword[:m])
        for j in range(min(self.upper, self.h.ops)):
            for nm, _ino, s, e in self.h.effects[j].removed:
                if nm != name:
                    continue
                lo, hi = min(n, max(0, -(-s // 8))), min(n, max(0, -(-e // 8)))
                if lo >= hi:
                    continue
                if dword is None:
                    if j >= d0:
                        ok[lo:hi] |= ~nonzero[lo:hi]
                else:
                    ok[lo:hi] |= ~nonzero[lo:hi] & (j >= dword[lo:hi])
        if len(vals) and not ok.all():
            idx = np.arange(n, dtype=np.int64)
            ok |= self._torn_ok(
                name,
                idx,
                found,
                np.full(n, np.uint64(0xFFFFFFFFFFFFFFFF), dtype=np.uint64),
                dword if dword is not None else np.full(n, d0, dtype=np.int64),
                vals,
                sizes,
                bidx,
            )
        out = WordVerdict(ok, held & ~ok, ~held & ~ok & nonzero, ~held & ~ok & ~nonzero)
        cut = size // 8
        if size % 8 and cut < n:
            one = self.classify(name, np.array([cut]), found[cut : cut + 1], size)
            out.ok[cut], out.older[cut], out.stale[cut], out.lost[cut] = (
                one.ok[0],
                one.older[0],
                one.stale[0],
                one.lost[0],
            )
        return out

    def classify(self, name: str, idx: np.ndarray, found: np.ndarray, size: int | None = None) -> WordVerdict:
        """Judge the words `found` (uint64) at word indices `idx` of the recovered file `name`.

        `size` is the recovered size: in the word it cuts, only the bytes before it count.
        A version's words past its size but inside its last block count too: on DAX that
        block is the media, so a store through a mapping past EOF lands there and shows
        again if a crash brings back an older, larger size. (Zeros there are not counted as
        held: a zero where durable data should be stays "lost", not "older".)
        """
        idx = np.asarray(idx, dtype=np.int64)
        found = np.asarray(found, dtype=np.uint64)
        mask = eof_mask(idx, size)
        found = found & mask
        dword = self._word_start(name, idx)
        vals, sizes, bidx = self._stack(name)
        if len(vals):
            cap = idx < vals.shape[1]
            cols = np.where(cap, idx, 0)
            got = vals[:, cols] & mask
            eq = (got == found) & cap & ((idx * 8 < sizes[:, None]) | (found != 0))
            held = eq.any(axis=0)
            ok = (eq & (bidx[:, None] >= dword)).any(axis=0)
        else:
            held = np.zeros(len(idx), dtype=bool)
            ok = np.zeros(len(idx), dtype=bool)
        for j in range(min(self.upper, self.h.ops)):
            for nm, _ino, s, e in self.h.effects[j].removed:
                if nm == name:
                    ok |= (found == 0) & (idx * 8 >= s) & (idx * 8 < e) & (j >= dword)
        if len(vals) and not ok.all():
            ok |= self._torn_ok(name, idx, found, mask, dword, vals, sizes, bidx)
        zero = found == 0
        return WordVerdict(ok, held & ~ok, ~held & ~ok & ~zero, ~held & ~ok & zero)

    def _torn_ok(
        self,
        name: str,
        idx: np.ndarray,
        found: np.ndarray,
        mask: np.ndarray,
        dword: np.ndarray,
        vals: np.ndarray,
        sizes: np.ndarray,
        bidx: np.ndarray,
    ) -> np.ndarray:
        """Words an op in their window wrote only in part that hold, byte by byte, values the word
        may hold (a torn unaligned edge, `OpEffects.torn`)."""
        out = np.zeros(len(idx), dtype=bool)
        torn: dict[int, int] = {}
        for j in range(min(self.upper, self.h.ops)):
            for nm, _ino, w in self.h.effects[j].torn:
                if nm == name:
                    torn[w] = min(torn.get(w, j), j)
        if not torn:
            return out
        for k in np.flatnonzero(np.isin(idx, list(torn))).tolist():
            w = int(idx[k])
            if w >= vals.shape[1] or torn[w] < dword[k]:
                continue
            rows = (bidx >= dword[k]) & ((w * 8 < sizes) | (vals[:, w] != 0))
            if not rows.any():
                continue
            cand = (vals[rows, w] & mask[k]).astype("<u8").view(np.uint8).reshape(-1, 8)
            got = np.array([found[k]], dtype="<u8").view(np.uint8)
            out[k] = bool((cand == got).any(axis=0).all())
        return out

    def allowed(self, name: str, word: int) -> list[int]:
        """The values `classify` accepts at one word of `name` (for reports: the same rule, listed)."""
        idx = np.array([word], dtype=np.int64)
        dword = int(self._word_start(name, idx)[0])
        vals, sizes, bidx = self._stack(name)
        out: set[int] = set()
        if len(vals) and word < vals.shape[1]:
            for row in np.flatnonzero(bidx >= dword).tolist():
                v = int(vals[row, word])
                if word * 8 < sizes[row] or v:
                    out.add(v)
        for j in range(min(self.upper, self.h.ops)):
            for nm, _ino, s, e in self.h.effects[j].removed:
                if nm == name and s <= word * 8 < e and j >= dword:
                    out.add(0)
        return sorted(out)

    def _stack(self, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every candidate version of `name` up to the crash, as one 2-D array: (words, sizes, boundary)."""
        hit = self._stacks.get(name)
        if hit is not None:
            return hit
        rows: list[FileVersion] = []
        bs: list[int] = []
        seen: dict[int, int] = {}
        for b in range(self.upper + 1):
            for v in self.candidates(name, b):
                key = id(v)
                if key in seen:
                    bs[seen[key]] = max(bs[seen[key]], b)
                    continue
                seen[key] = len(rows)
                rows.append(v)
                bs.append(b)
        if not rows:
            hit = (np.zeros((0, 0), dtype=np.uint64), np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64))
        else:
            vals = self.h.stacked(rows)
            hit = (vals, np.array([v.size for v in rows], dtype=np.int64), np.array(bs, dtype=np.int64))
        self._stacks[name] = hit
        return hit

    def cow_events(self, name: str) -> list[CowEvent]:
        lo = self.start(name)
        inos = {v.ino for v in self.versions(name, self.window(name))}
        out = []
        for j in range(lo, min(self.upper, self.h.ops)):
            for ev in self.h.effects[j].cow:
                if ev.name == name and inos == {ev.ino}:
                    out.append(ev)
        return out

    def block_side(
        self, name: str, ev: CowEvent, idx: np.ndarray, found: np.ndarray, size: int | None = None
    ) -> tuple[bool, bool]:
        """Do the words of one COW block all match a version from before the write, or all one from after?

        Remembered per block content: the crash states of a window mostly show a block alike."""
        h = hashlib.blake2b(idx.tobytes(), digest_size=16)
        h.update(np.asarray(found, dtype=np.uint64).tobytes())
        key = (name, ev, size, h.digest())
        hit = self._sides.get(key)
        if hit is None:
            hit = self._block_side(name, ev, idx, found, size)
            if len(self._sides) >= _MAX_SIDES:
                self._sides.clear()
            self._sides[key] = hit
        return hit

    def _block_side(
        self, name: str, ev: CowEvent, idx: np.ndarray, found: np.ndarray, size: int | None
    ) -> tuple[bool, bool]:
        mask = eof_mask(idx, size)
        found = np.asarray(found, dtype=np.uint64) & mask
        lo = self.start(name)
        sides = []
        for bs, ops in (
            (range(lo, ev.boundary + 1), range(lo, ev.boundary)),
            (range(ev.boundary + 1, self.upper + 1), range(ev.boundary, min(self.upper, self.h.ops))),
        ):
            ok = np.zeros(len(idx), dtype=bool)
            for v in self._side_versions(name, bs):
                inside = idx * 8 < v.size
                cap = idx < len(v.words)
                vals = np.zeros(len(idx), dtype=np.uint64)
                vals[cap] = v.words[idx[cap]]
                ok |= ((vals & mask) == found) & inside
            for j in ops:
                for nm, _ino, s, e in self.h.effects[j].removed:
                    if nm == name:
                        ok |= (found == 0) & (idx * 8 >= s) & (idx * 8 < e)
            sides.append(bool(ok.all()))
        return sides[0], sides[1]

    def _side_versions(self, name: str, bs: range) -> list[FileVersion]:
        """The versions a COW block's side is taken from: the boundaries in `bs` and, inside a
        parallel group, the other serial orders' states there (the same states `classify` accepts
        word by word; a crash that drops a racing op's in-flight line shows one of them)."""
        out = self.versions(name, bs)
        incs = self.incarnations(name)
        for b in bs:
            for alt in self.h.alternatives.get(b, ()):
                out += [v for i, (nm, v) in alt.items() if nm == name and i in incs]
        return out

    def state_at(self, b: int) -> dict[str, FileVersion]:
        return self.h.boundaries[b]


def eof_mask(idx: np.ndarray, size: int | None) -> np.ndarray:
    """Per word, the bytes that lie inside a file of `size` bytes (all ones except the word EOF cuts)."""
    mask = np.full(len(idx), np.uint64(0xFFFFFFFFFFFFFFFF), dtype=np.uint64)
    if size is not None and size % 8:
        mask[idx == size // 8] = np.uint64((1 << (8 * (size % 8))) - 1)
    return mask
