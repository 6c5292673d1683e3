"""The events a PMem device records: what the CPU issued, in program order.

A trace is the input of the persistency semantics (`persistency.py`); it is
domain-agnostic, so the same run can be judged under ADR and under eADR.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

from ..lang.data import WordKind, decode

__all__ = [
    "LINE",
    "PAGE",
    "WORD",
    "Domain",
    "Event",
    "EventKind",
    "last_store",
    "never_stored",
    "writers_of",
    "words_in",
]

LINE = 64
"""Bytes in a cache line: the unit of write-back."""
WORD = 8
"""Bytes in an atomic unit: an aligned 8-byte word is never torn."""
PAGE = 4096
"""Bytes in a page of the device's copy-on-write storage."""


class Domain(enum.StrEnum):
    """The persistence domain: where a store is safe from power loss."""

    ADR = "adr"
    """Memory controller only: a cached store needs a flush and a fence."""
    EADR = "eadr"
    """Caches too: a cached store is durable once it executes."""


class EventKind(enum.StrEnum):
    STORE = "store"
    NTSTORE = "ntstore"
    CLWB = "clwb"
    CLFLUSHOPT = "clflushopt"
    CLFLUSH = "clflush"
    SFENCE = "sfence"
    MFENCE = "mfence"

    @property
    def is_store(self) -> bool:
        return self in (EventKind.STORE, EventKind.NTSTORE)

    @property
    def is_flush(self) -> bool:
        return self in (EventKind.CLWB, EventKind.CLFLUSHOPT, EventKind.CLFLUSH)

    @property
    def is_fence(self) -> bool:
        return self in (EventKind.SFENCE, EventKind.MFENCE)


@dataclass(frozen=True, slots=True)
class Event:
    """One CPU instruction (or memcpy) as the device saw it.

    `op` is the index of the workload op that issued it (-1 outside any op) and
    `site` the innermost site label in force, so that reports can say which
    code path wrote a line that a crash kept or dropped.
    """

    seq: int
    kind: EventKind
    addr: int = 0
    size: int = 0
    data: bytes | None = None
    op: int = -1
    site: str = ""

    def __str__(self) -> str:
        where = f" op{self.op}" if self.op >= 0 else ""
        site = f" [{self.site}]" if self.site else ""
        if self.kind.is_fence:
            return f"#{self.seq} {self.kind.value}{where}{site}"
        return f"#{self.seq} {self.kind.value} {self.addr:#x}+{self.size}{where}{site}"


def words_in(addr: int, size: int) -> int:
    """Number of aligned 8-byte words that the byte range touches."""
    return (addr + size - 1) // WORD - addr // WORD + 1


def never_stored(events: Sequence[Event], addr: int, n: int) -> list[int]:
    """The bytes of [addr, addr + n), as offsets from `addr`, that hold media nobody wrote: no
    store of `events` wrote them, or the last that did copied a word of unwritten media (poison,
    which no op writes: a copy on write of a block that was never initialised)."""
    todo = set(range(n))
    media: list[int] = []
    for e in reversed(events):
        if not todo:
            break
        if not e.kind.is_store or e.addr >= addr + n or addr >= e.addr + e.size:
            continue
        for i in sorted(todo & set(range(max(0, e.addr - addr), min(n, e.addr + e.size - addr)))):
            todo.discard(i)
            if _copied_poison(e, addr + i):
                media.append(i)
    return sorted([*todo, *media])


def _copied_poison(e: Event, byte: int) -> bool:
    """Whether store `e` wrote the device byte `byte` as part of a whole word of poison."""
    w = byte - byte % WORD
    data = e.data
    if data is None or w < e.addr or w + WORD > e.addr + e.size:
        return False
    return decode(int.from_bytes(data[w - e.addr : w - e.addr + WORD], "little")).kind is WordKind.POISON


def writers_of(events: Sequence[Event], addr: int, raw: bytes, start: int, end: int) -> tuple[Event | None, bool]:
    """Whether stores of events[start:end] wrote every byte of `raw` at `addr` with its value, and
    the latest of them that wrote one (None if none did): who wrote a word the crash shows."""
    todo = set(range(len(raw)))
    last: Event | None = None
    for i in range(min(end, len(events)) - 1, start - 1, -1):
        e = events[i]
        data = e.data
        if not e.kind.is_store or data is None or e.addr >= addr + len(raw) or addr >= e.addr + e.size:
            continue
        for b in list(todo):
            k = addr + b - e.addr
            if 0 <= k < len(data) and data[k] == raw[b]:
                todo.discard(b)
                last = last or e
        if not todo:
            return last, True
    return last, False


def last_store(events: Sequence[Event], addr: int) -> Event | None:
    """The last store of `events` that wrote any byte of the word at `addr`."""
    for e in reversed(events):
        if e.kind.is_store and e.addr < addr + WORD and addr < e.addr + e.size:
            return e
    return None
