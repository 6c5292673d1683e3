"""What each op of the reference did that the crash rules need, and a file as it was at an op boundary.

The records the model writes as it runs (`OpEffects`, `CowEvent`) and the history keeps
(`FileVersion`), apart from both so that the expectations can read them without the model.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

__all__ = ["CowEvent", "OpEffects", "FileVersion", "held_in"]


@dataclass(frozen=True, slots=True)
class CowEvent:
    """Op `op` wrote (copied on write) block `block` of the file named `name`."""

    op: int
    name: str
    ino: int
    block: int
    at: int = -1
    """The boundary before the write, when it differs from `op` (an op of a parallel group applied out of order)."""

    @property
    def boundary(self) -> int:
        return self.op if self.at < 0 else self.at


@dataclass
class OpEffects:
    """What one op did that the crash rules need."""

    durable_names: frozenset[str] | None = frozenset()
    """Names whose content, size and existence the op made durable; None means every name (sync)."""
    durable_ranges: list[tuple[str, int, int, int]] = field(default_factory=list)
    """(name, incarnation, start, end) byte ranges made durable (persist on MAP_SYNC)."""
    meta_synced: list[tuple[str, int, int]] = field(default_factory=list)
    """(name, incarnation, op) for a persist through a MAP_SYNC mapping: the write fault of op made
    the file's size and existence as of that op durable (IOMAP_F_DIRTY forced the log), not as of
    the persist -- a size changed since without zapping the page (an extending write) is not."""
    cow: list[CowEvent] = field(default_factory=list)
    removed: list[tuple[str, int, int, int]] = field(default_factory=list)
    """(name, incarnation, start, end) ranges a truncate removed: they may read zero in the window."""
    torn: list[tuple[str, int, int]] = field(default_factory=list)
    """(name, incarnation, word) words the op wrote only part of: a kernel copies such an unaligned
    edge with narrower stores (__copy_user_flushcache: cached bytes and a 4-byte movnti), so at a
    crash the word may hold any byte-wise mix of its values before and after."""


@dataclass(frozen=True, slots=True)
class FileVersion:
    """A file as it was at one op boundary."""

    ino: int
    size: int
    words: np.ndarray
    """The file's bytes up to the end of its last block, as little-endian uint64 words (read-only)."""


def held_in(by_ino: Sequence[dict[int, FileVersion]], incs: Iterable[int], offset: int, word: bytes) -> bool:
    """Whether any of incarnations `incs` held the 8 bytes `word` at `offset` at some op boundary:
    its own data, whatever file its words name (a reflink's, a copy's)."""
    if offset % 8 or len(word) != 8:
        return False
    w, k = np.uint64(int.from_bytes(word, "little")), offset // 8
    for ino in incs:
        for b in by_ino:
            v = b.get(ino)
            if v is not None and k < len(v.words) and v.words[k] == w:
                return True
    return False
