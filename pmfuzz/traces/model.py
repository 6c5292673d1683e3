"""A store trace read from outside pmfuzz: what a program issued, in program order.

Both input formats (pmemcheck's store log and pmfuzz's JSON lines) parse into
one `Trace`, so replay, crash states and reports never care where a trace came
from. Addresses are device offsets: a pmemcheck log's virtual addresses are
translated through its registered files when it is parsed.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from ..pmem.trace import EventKind

__all__ = ["MAX_MARKER_DEPTH", "Region", "Trace", "TraceEvent", "TraceEventKind", "Where"]

MAX_MARKER_DEPTH = 256
"""Deepest nesting of marker sections a trace may have. Real programs nest a few deep; every record
keeps the stack of sections open around it, so an unbounded depth would cost depth x records."""


class TraceEventKind(enum.StrEnum):
    """One record of a trace; the values are the native format's `event` names.

    The instruction kinds are the PMem model's own (`EventKind`, same names and values), spelled out
    so a type checker sees them and checked against `EventKind` below so the two never drift apart; a
    trace adds only the two marker kinds.
    """

    STORE = EventKind.STORE.value
    NTSTORE = EventKind.NTSTORE.value
    CLWB = EventKind.CLWB.value
    CLFLUSHOPT = EventKind.CLFLUSHOPT.value
    CLFLUSH = EventKind.CLFLUSH.value
    SFENCE = EventKind.SFENCE.value
    MFENCE = EventKind.MFENCE.value
    BEGIN = "begin"
    """A marker `NAME.BEGIN`: opens a named section (markers nest)."""
    END = "end"
    """A marker `NAME.END`: closes the innermost open section, which must be NAME."""

    @property
    def pmem(self) -> EventKind | None:
        """The PMem instruction this record issues when replayed; None for a marker."""
        return None if self.is_marker else EventKind(self.value)

    @property
    def is_store(self) -> bool:
        return self.pmem is not None and self.pmem.is_store

    @property
    def is_flush(self) -> bool:
        return self.pmem is not None and self.pmem.is_flush

    @property
    def is_fence(self) -> bool:
        return self.pmem is not None and self.pmem.is_fence

    @property
    def is_marker(self) -> bool:
        return self in (TraceEventKind.BEGIN, TraceEventKind.END)


if EventKind.__members__.keys() - TraceEventKind.__members__.keys():
    raise ImportError("TraceEventKind lacks an EventKind member: add it to the class")


@dataclass(frozen=True, slots=True)
class Where:
    """Where a record sits in its source file, so reports can point at it."""

    line: int
    column: int
    record: int
    """Ordinal of the record in the file (pmemcheck: `|`-separated record; JSON lines: line)."""

    def __str__(self) -> str:
        return f"{self.line}:{self.column}"


@dataclass(frozen=True, slots=True)
class TraceEvent:
    """One store, flush, fence or marker, with device offsets.

    `name` is a marker's section name (without `.BEGIN`/`.END`); `frames` the
    stack trace pmemcheck logged with a store, if any.
    """

    kind: TraceEventKind
    addr: int = 0
    size: int = 0
    data: bytes | None = None
    name: str = ""
    where: Where | None = None
    frames: tuple[str, ...] = ()

    @property
    def marker_record(self) -> str:
        """The marker as pmemcheck writes it, e.g. `TX.BEGIN`."""
        return f"{self.name}.{'BEGIN' if self.kind is TraceEventKind.BEGIN else 'END'}"

    def describe(self) -> str:
        if self.kind.is_fence:
            return self.kind.value
        if self.kind.is_marker:
            return self.marker_record
        return f"{self.kind.value} {self.addr:#x}+{self.size}"


@dataclass(frozen=True, slots=True)
class Region:
    """A registered file: where its bytes sit on the replay device.

    `path` is the file the traced program mapped (pmemcheck's REGISTER_FILE), or
    "" for a native trace; `map_base` its virtual base address (0 for native).
    """

    path: str
    offset: int
    size: int
    map_base: int = 0


@dataclass(frozen=True, slots=True)
class Trace:
    """A parsed trace: the device it runs on, its regions and its events.

    `notes` are things the parser accepted but a user should know (records
    ignored, and why).
    """

    device_size: int
    regions: tuple[Region, ...]
    events: tuple[TraceEvent, ...]
    source: str = ""
    notes: tuple[str, ...] = ()

    @property
    def stores(self) -> int:
        return sum(1 for e in self.events if e.kind.is_store)
