"""The choice space of one in-flight group: which of its units reached the media.

A group's units form a partial order (see `persistency.py`); a crash keeps a
down-set of it. Where the order is a chain (cached stores, or one word) a
choice is a count of kept units, printed as a number; otherwise it is a
bit mask over the group's units in program order, printed as `x<hex>`.
"""

from __future__ import annotations

import bisect
import hashlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

from .cached import cached
from .persistency import GroupSpec, LineBuffer, Piece, PieceRun
from .trace import LINE, WORD

__all__ = ["Group", "LazyEdges", "Unit"]

_EVERY = 64
"""Whole pieces between two checkpoints of a chain's line contents (see `Group._apply_chain`)."""


@dataclass(frozen=True, slots=True)
class Unit:
    """One atomic 8-byte (or smaller) part of a piece."""

    piece: Piece
    addr: int
    end: int

    @property
    def word(self) -> int:
        return self.addr // WORD


def _units(piece: Piece) -> list[Unit]:
    out = []
    a, end = piece.addr, piece.addr + len(piece.data)
    while a < end:
        b = min(end, (a // WORD + 1) * WORD)
        out.append(Unit(piece, a, b))
        a = b
    return out


@dataclass(frozen=True, eq=False)
class Group:
    """One in-flight group at one crash point, with its choices and their contents."""

    spec: GroupSpec
    outcomes: dict[int, tuple[tuple[tuple[int, bytes], ...], int]] = field(
        default_factory=dict, repr=False, compare=False
    )
    """Per choice, the lines that differ from the media under it and the image hash's change. Valid at
    every point the group is in flight at: the media's copy of its line changes only when some of
    its pieces persist, and then the line is in flight as a new group."""

    @cached
    def chain(self) -> bool:
        """Do the units form a total order? Always for cached stores (and a tear); nt stores may not."""
        w = self._window
        if w is not None:
            buf, lo, hi = w
            if buf.nt_before[hi] == buf.nt_before[lo] or self.spec.tear:
                return True
            pieces: Sequence[Piece] = buf[lo:hi]  # a list slice: iterating the window is slower
        else:
            pieces = self.spec.pieces
            if self.spec.tear or not any(p.nt for p in pieces):
                return True
        # Unit j follows unit j-1 iff j is cached, or j-1 is cached or writes the same word (`preds`):
        # an nt piece of more than one word never chains; across pieces only the seam counts.
        prev: Piece | None = None
        for p in pieces:
            if p.nt and (
                p.units > 1
                or (prev is not None and prev.nt and (prev.addr + len(prev.data) - 1) // WORD != p.addr // WORD)
            ):
                return False
            prev = p
        return True

    @cached
    def units(self) -> tuple[Unit, ...]:
        units: list[Unit] = []
        for piece in self.spec.pieces:
            units.extend(_units(piece))
        return tuple(units)

    @cached
    def preds(self) -> tuple[tuple[int, ...], ...]:
        """For each unit, the earlier units that must reach the media before it."""
        units = self.units
        out: list[tuple[int, ...]] = []
        for j, u in enumerate(units):
            if self.spec.tear or not u.piece.nt:
                out.append(tuple(range(j)))
            else:
                out.append(tuple(i for i in range(j) if not units[i].piece.nt or units[i].word == u.word))
        return tuple(out)

    @cached
    def pred_masks(self) -> tuple[int, ...]:
        """`preds` as bit masks, built in one pass (`preds` costs the square of the units)."""
        out: list[int] = []
        cached = 0
        by_word: dict[int, int] = {}
        tear = self.spec.tear
        for i, u in enumerate(self.units):
            nt = u.piece.nt
            out.append((1 << i) - 1 if tear or not nt else cached | by_word.get(u.word, 0))
            if not nt:
                cached |= 1 << i
            by_word[u.word] = by_word.get(u.word, 0) | 1 << i
        return tuple(out)

    @property
    def name(self) -> str:
        return self.spec.name

    @cached
    def n(self) -> int:
        w = self._window
        if w is not None:
            return w[0].cum_units[w[2]] - w[0].cum_units[w[1]]
        return sum(p.units for p in self.spec.pieces)

    @property
    def _window(self) -> tuple[LineBuffer, int, int] | None:
        """The shared line buffer this group is a window of, if any: its sums answer in O(1)."""
        pieces = self.spec.pieces
        return pieces.window if isinstance(pieces, PieceRun) else None

    @cached
    def full(self) -> int:
        """The choice that keeps every unit: what the CPU saw."""
        return self.n if self.chain else (1 << self.n) - 1

    @property
    def none(self) -> int:
        return 0

    @cached
    def content(self) -> bytes:
        """A digest of what the group is: its name, whether it tears, and its pieces in order. Two
        groups with equal contents over equal media have the same choices and the same outcomes."""
        h = hashlib.blake2b(f"{self.spec.name}/{int(self.spec.tear)}".encode(), digest_size=16)
        for p in self.spec.pieces:
            h.update(b"%d %d %d;" % (p.addr, p.nt, len(p.data)))
            h.update(p.data)
        return h.digest()

    @cached
    def lines(self) -> tuple[int, ...]:
        if self._window is not None:
            return (self.spec.pieces[0].line,)  # a line buffer holds one line's pieces
        return tuple(sorted({p.line for p in self.spec.pieces}))

    def kept_count(self, choice: int) -> int:
        return choice if self.chain else bin(choice).count("1")

    def kept(self, choice: int) -> list[int]:
        """Indices of the units a choice keeps."""
        if self.chain:
            return list(range(choice))
        return [i for i in range(self.n) if choice >> i & 1]

    def mask(self, choice: int) -> int:
        return (1 << choice) - 1 if self.chain else choice

    def is_valid(self, choice: int) -> bool:
        if self.chain:
            return 0 <= choice <= self.n
        if choice < 0 or choice >> self.n:
            return False
        return all(choice & m == m for i, m in enumerate(self.pred_masks) if choice >> i & 1)

    def choices(self) -> Iterator[int]:
        """Every valid choice, in a fixed order."""
        if self.chain:
            yield from range(self.n + 1)
            return
        yield from self._downsets()

    def _downsets(self) -> Iterator[int]:
        """The down-sets of the units, depth first with unit i left out before it is kept: an explicit
        stack, not a generator per unit (counting them walks them all, at many crash points)."""
        masks, n = self.pred_masks, self.n
        todo = [(0, 0)]
        while todo:
            i, mask = todo.pop()
            while i < n:  # leave unit i out now; keeping it (if its predecessors are kept) waits on the stack
                m = masks[i]
                if mask & m == m:
                    todo.append((i + 1, mask | 1 << i))
                i += 1
            yield mask

    def count(self, cap: int = 1 << 20) -> int:
        """Number of valid choices (stops counting at `cap`).

        Remembered with the cap it was counted under: a group is in flight at many crash points and
        each asks (the judge's choice of strategy)."""
        if self.chain:
            return self.n + 1
        known = self.__dict__.get("_counted")
        if known is not None:
            c, under = known
            if c < under:
                return min(c, cap)
            if cap <= under:
                return cap
        c = 0
        for _ in self._downsets():
            c += 1
            if c >= cap:
                break
        self.__dict__["_counted"] = (c, cap)
        return c

    def edges(self) -> list[int]:
        """The few choices `bounded` deviates to: none, first unit only, all but the last, all."""
        if self.chain:
            vals = [0, 1, self.n - 1, self.n]
        else:
            full = (1 << self.n) - 1
            vals = [0, 1, full & ~(1 << (self.n - 1)), full]
        out: list[int] = []
        for v in vals:
            if v not in out and self.is_valid(v):
                out.append(v)
        return out

    def random_choice(self, rnd: Callable[[], float]) -> int:
        if self.chain:
            return min(self.n, int(rnd() * (self.n + 1)))
        mask = 0
        for i, m in enumerate(self.pred_masks):
            if mask & m == m and rnd() < 0.5:
                mask |= 1 << i
        return mask

    def encode(self, choice: int) -> str:
        return str(choice) if self.chain else f"x{choice:x}"

    def decode(self, text: str) -> int | None:
        """The choice a printed value names, or None if it is not one of this group's."""
        try:
            if self.chain:
                value = int(text, 10) if text.isdigit() else -1
            else:
                value = int(text[1:], 16) if text[:1] == "x" and len(text) > 1 else -1
        except ValueError:
            return None
        return value if self.is_valid(value) else None

    def apply(self, choice: int, base_line: Callable[[int], bytes]) -> dict[int, bytes]:
        """Contents of the lines this group touches when `choice` persisted, over the base media."""
        if self.chain:
            return self._apply_chain(choice, base_line)
        bufs = {line: bytearray(base_line(line)) for line in self.lines}
        if choice == self.full:  # every unit, in program order: each piece whole
            for p in self.spec.pieces:
                off = p.addr - p.line * LINE
                bufs[p.line][off : off + len(p.data)] = p.data
            return {line: bytes(b) for line, b in bufs.items()}
        mask = self.mask(choice)
        units = self.units
        i = 0
        while mask >> i:
            if mask >> i & 1:
                u = units[i]
                p = u.piece
                off = p.addr - p.line * LINE
                buf = bufs[p.line]
                # Runs of consecutive kept units of one piece are applied as one slice.
                j = i
                while j + 1 < len(units) and mask >> (j + 1) & 1 and units[j + 1].piece is p:
                    j += 1
                lo, hi = u.addr - p.addr, units[j].end - p.addr
                buf[off + lo : off + hi] = p.data[lo:hi]
                i = j + 1
            else:
                i += 1
        return {line: bytes(b) for line, b in bufs.items()}

    @cached
    def _cum_units(self) -> list[int]:
        """`_cum_units[i]`: units in the first i pieces."""
        out = [0]
        for p in self.spec.pieces:
            out.append(out[-1] + p.units)
        return out

    @cached
    def _checkpoints(self) -> dict[tuple[int, tuple[bytes, ...]], list[dict[int, bytes]]]:
        """Per base content: the lines after every `_EVERY` whole pieces, filled as choices need them."""
        return {}

    def _apply_chain(self, choice: int, base_line: Callable[[int], bytes]) -> dict[int, bytes]:
        """A prefix of a chain, from the nearest checkpoint: O(`_EVERY`) a choice, not O(choice).

        Why: every prefix of a line with n pending stores is a state; applying each from scratch
        made checking them quadratic in n (20,000 stores on one line took 48 s). Groups that are
        windows of one line buffer (the same line at successive crash points) share its sums and
        checkpoints, so a fence after each of n stores is not quadratic either.
        """
        w = self._window
        pieces: Sequence[Piece]
        if w is not None:
            buf, lo, hi = w
            pieces, cum, store = buf, buf.cum_units, buf.checkpoints
        else:
            pieces, lo, hi = self.spec.pieces, 0, len(self.spec.pieces)
            cum, store = self._cum_units, self._checkpoints
        k = bisect.bisect_right(cum, cum[lo] + choice, lo, hi + 1) - 1 - lo  # whole pieces kept
        base = tuple(base_line(line) for line in self.lines)
        cps = store.setdefault((lo, base), [dict(zip(self.lines, base, strict=True))])
        while len(cps) <= k // _EVERY:
            start = lo + (len(cps) - 1) * _EVERY
            bufs = {line: bytearray(b) for line, b in cps[-1].items()}
            for p in pieces[start : start + _EVERY]:
                off = p.addr - p.line * LINE
                bufs[p.line][off : off + len(p.data)] = p.data
            cps.append({line: bytes(b) for line, b in bufs.items()})
        bufs = {line: bytearray(b) for line, b in cps[k // _EVERY].items()}
        for p in pieces[lo + k // _EVERY * _EVERY : lo + k]:
            off = p.addr - p.line * LINE
            bufs[p.line][off : off + len(p.data)] = p.data
        left = choice - (cum[lo + k] - cum[lo])
        if left > 0 and k < hi - lo:
            p = pieces[lo + k]
            off = p.addr - p.line * LINE
            end = min(len(p.data), (p.addr // WORD + left) * WORD - p.addr)
            bufs[p.line][off : off + end] = p.data[:end]
        return {line: bytes(b) for line, b in bufs.items()}


class LazyEdges:
    """Each group's `edges()`, computed when first asked for: a bounded enumeration stopped by its
    limit asks for a few groups' of a point that may hold 32,000 (a 2 MiB zeroing in flight)."""

    __slots__ = ("_got", "_groups")

    def __init__(self, groups: Sequence[Group]) -> None:
        self._groups = groups
        self._got: dict[int, list[int]] = {}

    def __getitem__(self, i: int) -> list[int]:
        hit = self._got.get(i)
        if hit is None:
            hit = self._got[i] = self._groups[i].edges()
        return hit
