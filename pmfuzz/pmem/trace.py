"""The events a PMem device records: what the CPU issued, in program order.

A trace is the input of the persistency semantics (`persistency.py`); it is
domain-agnostic, so the same run can be judged under ADR and under eADR.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "LINE",
    "PAGE",
    "WORD",
    "Domain",
    "Event",
    "EventKind",
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
    """The bytes of [addr, addr + n), as offsets from `addr`, that no store of `events` wrote:
    media the run never initialised (a block mapped before anything zeroed or wrote it)."""
    todo = set(range(n))
    for e in events:
        if not todo:
            break
        if e.kind.is_store and e.addr < addr + n and addr < e.addr + e.size:
            todo -= set(range(max(0, e.addr - addr), min(n, e.addr + e.size - addr)))
    return sorted(todo)
