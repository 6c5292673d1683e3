"""Per-inode extent maps: sorted, non-overlapping (file block -> device block, length, unwritten)."""

from __future__ import annotations

import bisect
from collections.abc import Iterator
from dataclasses import dataclass

__all__ = ["Extent", "Segment", "ExtentMap"]


@dataclass(frozen=True, slots=True)
class Extent:
    lblk: int
    pblk: int
    len: int
    unwritten: bool = False

    @property
    def end(self) -> int:
        return self.lblk + self.len


@dataclass(frozen=True, slots=True)
class Segment:
    """A piece of a file range: mapped (pblk set) or a hole (pblk None)."""

    lblk: int
    len: int
    pblk: int | None
    unwritten: bool = False

    @property
    def hole(self) -> bool:
        return self.pblk is None

    def block_of(self, lblk: int) -> int | None:
        """The device block behind file block `lblk` of this segment; None in a hole."""
        return None if self.pblk is None else self.pblk + (lblk - self.lblk)


class ExtentMap:
    """A file's data fork."""

    def __init__(self, extents: list[Extent] | None = None) -> None:
        self.extents: list[Extent] = sorted(extents or [], key=lambda e: e.lblk)

    def __len__(self) -> int:
        return len(self.extents)

    def __iter__(self) -> Iterator[Extent]:
        return iter(self.extents)

    def copy(self) -> ExtentMap:
        return ExtentMap(list(self.extents))

    def segments(self, lblk: int, n: int) -> list[Segment]:
        """Cover [lblk, lblk+n) with mapped pieces and holes, in order."""
        out: list[Segment] = []
        end = lblk + n
        pos = lblk
        i = bisect.bisect_right([e.lblk for e in self.extents], lblk) - 1
        i = max(i, 0)
        while pos < end:
            e = self.extents[i] if i < len(self.extents) else None
            if e is None or e.lblk >= end:
                out.append(Segment(pos, end - pos, None))
                break
            if e.end <= pos:
                i += 1
                continue
            if e.lblk > pos:
                out.append(Segment(pos, e.lblk - pos, None))
                pos = e.lblk
            stop = min(end, e.end)
            out.append(Segment(pos, stop - pos, e.pblk + (pos - e.lblk), e.unwritten))
            pos = stop
            i += 1
        return out

    def lookup(self, lblk: int) -> Segment:
        return self.segments(lblk, 1)[0]

    def set_range(self, lblk: int, n: int, pblk: int | None, unwritten: bool = False) -> list[Extent]:
        """Map [lblk, lblk+n) to pblk.. (or unmap it if pblk is None); return what was mapped there."""
        end = lblk + n
        removed = [Extent(s.lblk, s.pblk, s.len, s.unwritten) for s in self.segments(lblk, n) if s.pblk is not None]
        kept: list[Extent] = []
        for e in self.extents:
            if e.end <= lblk or e.lblk >= end:
                kept.append(e)
                continue
            if e.lblk < lblk:
                kept.append(Extent(e.lblk, e.pblk, lblk - e.lblk, e.unwritten))
            if e.end > end:
                kept.append(Extent(end, e.pblk + (end - e.lblk), e.end - end, e.unwritten))
        if pblk is not None:
            kept.append(Extent(lblk, pblk, n, unwritten))
        kept.sort(key=lambda e: e.lblk)
        merged: list[Extent] = []
        for e in kept:
            if merged:
                p = merged[-1]
                if p.end == e.lblk and p.pblk + p.len == e.pblk and p.unwritten == e.unwritten:
                    merged[-1] = Extent(p.lblk, p.pblk, p.len + e.len, p.unwritten)
                    continue
            merged.append(e)
        self.extents = merged
        return removed

    def last_block(self) -> int:
        return self.extents[-1].end if self.extents else 0
