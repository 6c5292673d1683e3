"""The persistent-memory device a target runs on.

`PMem` keeps what the CPU sees (every store applied at once) and records a
trace of stores, flushes and fences; what a crash could leave on the media is
derived from that trace afterwards (`crash_points`, `crash_state`). Its API
mirrors the x86 instructions and libpmem calls a DAX file system uses.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np

from ..errors import PMemError
from .crash import CrashImage, CrashPoint, CrashState, CrashTimeline
from .pages import Pages
from .persistency import EadrPoints
from .stateid import StateId
from .trace import LINE, PAGE, Domain, Event, EventKind

__all__ = ["Bytes", "PMem"]

Bytes = bytes | bytearray | memoryview | np.ndarray


def _domain(domain: Domain | str) -> Domain:
    if isinstance(domain, Domain):
        return domain
    try:
        return Domain(domain)
    except ValueError:
        raise PMemError(f"unknown persistence domain {domain!r} (expected 'adr' or 'eadr')") from None


class PMem:
    """A byte-addressable persistent-memory device with a recorded trace.

    >>> pm = PMem(4096)
    >>> pm.store(0, b"hello"); pm.persist(0, 5)
    >>> pm.load(0, 5)
    b'hello'
    """

    def __init__(
        self, size: int, domain: Domain | str = Domain.ADR, *, record: bool = True, _pages: Pages | None = None
    ) -> None:
        if not isinstance(size, int) or isinstance(size, bool) or size <= 0 or size % LINE:
            raise PMemError(f"device size must be a positive multiple of {LINE} bytes, got {size!r}")
        self.size = size
        self.domain = _domain(domain)
        self._pages = Pages.zeros(size) if _pages is None else _pages
        self._events: list[Event] = []
        self._initial: Pages | None = None
        self._sites: list[str] = []
        self._op = -1
        self._timeline: CrashTimeline | None = None
        self._timeline_key: tuple[int, EadrPoints] | None = None
        self._recording = record
        self._gen = np.zeros(-(-size // PAGE), dtype=np.int64)
        self._tick = 0

    @property
    def recording(self) -> bool:
        """Whether this device traces its events; a device made only to mount a crash image does not."""
        return self._recording

    @classmethod
    def from_image(cls, image: CrashImage | Pages, domain: Domain | str = Domain.ADR, *, record: bool = True) -> PMem:
        """A device whose media holds a crash image (or a snapshot), ready to be mounted.

        With `record=False` nothing is traced: for mounting an image only to judge it.
        """
        pages = image.pages() if isinstance(image, CrashImage) else image.fork()
        return cls(pages.size, domain, record=record, _pages=pages)

    @property
    def pages(self) -> Pages:
        """The device's current content (copy-on-write; fork it to keep it)."""
        return self._pages

    def clone(self, domain: Domain | str | None = None) -> PMem:
        """A new device whose media is this one's current content (as after a clean shutdown), no trace."""
        return PMem(self.size, self.domain if domain is None else domain, _pages=self._pages.fork())

    # -- checks -----------------------------------------------------------

    def _check(self, addr: int, n: int, what: str) -> None:
        if not isinstance(addr, (int, np.integer)) or isinstance(addr, bool):
            raise PMemError(f"{what}: address must be an integer, got {addr!r}")
        if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n <= 0:
            raise PMemError(f"{what}: length must be a positive integer, got {n!r}")
        if addr < 0 or addr + n > self.size:
            raise PMemError(f"{what}: range [{addr:#x}, {addr + n:#x}) is outside the device of {self.size:#x} bytes")

    @staticmethod
    def _bytes(data: Bytes, what: str) -> bytes:
        if isinstance(data, np.ndarray):
            if data.dtype != np.uint8:
                data = data.view(np.uint8) if data.flags.c_contiguous else np.ascontiguousarray(data).view(np.uint8)
            return data.tobytes()
        if isinstance(data, (bytes, bytearray, memoryview)):
            return bytes(data)
        raise PMemError(f"{what}: data must be bytes or a numpy array, got {type(data).__name__}")

    # -- the trace --------------------------------------------------------

    def _record(self, kind: EventKind, addr: int = 0, size: int = 0, data: bytes | None = None) -> None:
        if not self._recording:
            return
        if self._initial is None:
            self._initial = self._pages.fork()
        site = self._sites[-1] if self._sites else ""
        self._events.append(Event(len(self._events), kind, addr, size, data, self._op, site))

    @property
    def trace(self) -> tuple[Event, ...]:
        return tuple(self._events)

    def trace_since(self, n: int) -> tuple[Event, ...]:
        """The events from the n-th recorded on: a suffix, without copying the whole trace."""
        return tuple(self._events[n:])

    @property
    def events_recorded(self) -> int:
        """How many events the trace holds, without copying it as `trace` does (O(1): callers poll it per event)."""
        return len(self._events)

    @contextmanager
    def site(self, label: str) -> Iterator[None]:
        """Label the events issued inside, for reports (`with pm.site("iomap_end.convert"): ...`)."""
        self._sites.append(label)
        try:
            yield
        finally:
            self._sites.pop()

    @contextmanager
    def op(self, index: int) -> Iterator[None]:
        """Attribute the events issued inside to workload op `index`."""
        prev, self._op = self._op, index
        try:
            yield
        finally:
            self._op = prev

    @property
    def current_op(self) -> int:
        return self._op

    def labels(self) -> tuple[int, list[str]]:
        """The current op and site stack, for a scheduler that switches threads between them."""
        return (self._op, self._sites)

    def set_labels(self, labels: tuple[int, list[str]]) -> None:
        """Restore what `labels` returned (a thread's labels when it runs again)."""
        self._op, self._sites = labels

    # -- instructions -----------------------------------------------------

    def store(self, addr: int, data: Bytes) -> None:
        """Cached store(s) of `data` at `addr` (a memcpy): visible now, durable once flushed and fenced."""
        b = self._bytes(data, "store")
        self._check(addr, len(b), "store")
        self._record(EventKind.STORE, int(addr), len(b), b)
        self._pages.write(int(addr), b)
        self._stored(int(addr), len(b))

    def ntstore(self, addr: int, data: Bytes) -> None:
        """Non-temporal store(s): bypass the cache, durable at the next fence."""
        b = self._bytes(data, "ntstore")
        self._check(addr, len(b), "ntstore")
        self._record(EventKind.NTSTORE, int(addr), len(b), b)
        self._pages.write(int(addr), b)
        self._stored(int(addr), len(b))

    def clwb(self, addr: int, n: int = 1) -> None:
        self._check(addr, n, "clwb")
        self._record(EventKind.CLWB, int(addr), int(n))

    def clflushopt(self, addr: int, n: int = 1) -> None:
        self._check(addr, n, "clflushopt")
        self._record(EventKind.CLFLUSHOPT, int(addr), int(n))

    def clflush(self, addr: int, n: int = 1) -> None:
        """Write back and invalidate; ordered on its own, so durable when it returns."""
        self._check(addr, n, "clflush")
        self._record(EventKind.CLFLUSH, int(addr), int(n))

    def sfence(self) -> None:
        self._record(EventKind.SFENCE)

    def mfence(self) -> None:
        self._record(EventKind.MFENCE)

    def persist(self, addr: int, n: int) -> None:
        """clwb over the range, then sfence: pmem_persist()."""
        self.clwb(addr, n)
        self.sfence()

    def load(self, addr: int, n: int) -> bytes:
        """What the CPU reads: every store so far, whether durable or not."""
        self._check(addr, n, "load")
        return self._pages.read_bytes(int(addr), int(n))

    def load_array(self, addr: int, n: int) -> np.ndarray:
        """`load` as a fresh uint8 array, for bulk reads."""
        self._check(addr, n, "load")
        return self._pages.read(int(addr), int(n))

    def load_into(self, addr: int, out: np.ndarray) -> None:
        """`load` of len(out) bytes into a uint8 array, for bulk reads into a buffer of the caller's."""
        self._check(addr, len(out), "load")
        self._pages.read_into(int(addr), out)

    # -- outside the trace --------------------------------------------------

    def initialize(self, addr: int, data: Bytes) -> None:
        """Set durable media content directly, as mkfs or the factory did before the run.

        Only allowed before the first traced event (or right after `quiesce`),
        so the trace's starting media includes it.
        """
        if self._events:
            raise PMemError("initialize: the trace has already started; call it before any store, or after quiesce()")
        b = (
            data
            if isinstance(data, np.ndarray) and data.dtype == np.uint8
            else np.frombuffer(self._bytes(data, "initialize"), dtype=np.uint8)
        )
        self._check(addr, len(b), "initialize")
        self._pages.write(int(addr), b)
        self._stored(int(addr), len(b))

    def _stored(self, addr: int, n: int) -> None:
        self._tick += 1
        p0, p1 = addr // PAGE, (addr + n - 1) // PAGE
        if p0 == p1:
            self._gen[p0] = self._tick
        else:
            self._gen[p0 : p1 + 1] = self._tick

    def generation(self, pages: np.ndarray) -> int:
        """The last write through this device's instructions to any of these pages (0: none since the
        device was made): part of a mounted fs's content key (`target.KeysContent`), so an oracle can
        tell a file nothing stored into from one it must read again."""
        return int(self._gen[pages].max()) if len(pages) else 0

    def quiesce(self) -> None:
        """A clean shutdown: everything in flight reaches the media and the trace starts over."""
        self._events = []
        self._initial = None
        self._timeline = None
        self._timeline_key = None

    # -- crashes ------------------------------------------------------------

    def drop_timeline(self) -> None:
        """Forget the crash points computed so far, and let them go without the cyclic collector
        (a timeline and its points refer to each other): for a judged run, whose points are not
        asked for again. Asking again computes them afresh."""
        if self._timeline is not None:
            self._timeline.release()
        self._timeline = None
        self._timeline_key = None

    def timeline(self, eadr_points: EadrPoints | str = EadrPoints.STORES) -> CrashTimeline:
        """The crash points of the trace so far (cached until the trace grows)."""
        try:
            mode = EadrPoints(eadr_points)
        except ValueError:
            raise PMemError(f"unknown eADR crash-point mode {eadr_points!r} (expected 'stores' or 'ops')") from None
        key = (len(self._events), mode)
        if self._timeline is None or self._timeline_key != key:
            initial = self._initial if self._initial is not None else self._pages.fork()
            self._timeline = CrashTimeline(self._events, initial, self.domain, mode)
            self._timeline_key = key
        return self._timeline

    def crash_points(self, eadr_points: EadrPoints | str = EadrPoints.STORES) -> tuple[CrashPoint, ...]:
        """One point per fence and clflush and the end (eADR: per store, or per op with `eadr_points="ops"`)."""
        return self.timeline(eadr_points).points

    def crash_state(self, state_id: str | StateId, eadr_points: EadrPoints | str = EadrPoints.STORES) -> CrashState:
        """The crash state a printed id names, e.g. `pm.crash_state("F3:L0=1,L2=0").image()`."""
        return self.timeline(eadr_points).state(state_id)

    def __repr__(self) -> str:
        return f"PMem({self.size:#x}, domain={self.domain.value!r}, events={len(self._events)})"
