"""The workload's file system, live in the guest: ops go to the agent, their pmem traffic to the device.

`LiveKernelFS` speaks the target protocol for the run: `execute` sends one op
to the agent and replays the events it caused onto the engine's `PMem`
(`replay.py`), comparing the device with the guest's real pmem after each op;
the view (files, sizes, contents, what each mapping's pages show) is one
`view` command after each op. Nothing here depends on the file system: ext4
and XFS differ only in their `filesystems.FileSystem` configuration.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from ..errors import PmfuzzError
from ..lang.workload import PAGE_SIZE, Op, Read, Store, Write
from ..pmem import LINE, PMem
from ..target import Errno, Result, Signal, err, sig
from .commands import View, command, parse_view, result
from .guest import MBOX_BYTES, RING_BYTES, Guest, GuestDied
from .replay import Accounting, Fences, Replayer
from .trace import Kind, RawEvent, Symbols, decode, head

__all__ = ["LiveKernelFS", "Recording", "Timing", "TraceOverflow", "ZEROOUT"]

ZEROOUT = ("blkdev_issue_zeroout", "__blkdev_issue_zero_pages", "ext4_issue_zeroout", "pmem_dax_zero_page_range")
"""Callers whose block writes zero file data (not metadata): new blocks zeroed before they are mapped."""


@dataclass
class Timing:
    """Where a kernel run's time goes (seconds): the guest running ops, the guest listing its files
    for the functional oracle, and decoding + replaying + reconciling the trace on the host."""

    guest: float = 0.0
    view: float = 0.0
    replay: float = 0.0


@dataclass
class Recording:
    """What one target object keeps across its runs: how to replay, and what the replays saw."""

    fences: Fences = Fences.EXPLICIT
    drop: tuple[str, ...] = ()
    """Sites whose flushes and fences are left out of the replay (a planted missing flush)."""
    accounting: Accounting = field(default_factory=Accounting)
    timing: Timing = field(default_factory=Timing)
    run_meta: set[int] = field(default_factory=set)
    """Lines the current run wrote by block I/O other than zeroing (journal, log, metadata writeback)."""


class TraceOverflow(Exception):
    """The recorder's ring filled up during one workload (a limit of pmfuzz's recorder, reported as a target error)."""

    is_target_error = True


class LiveKernelFS:
    """The guest's mounted file system, speaking the target protocol; the device mirrors its pmem."""

    def __init__(self, rec: Recording, guest: Guest, symbols: Symbols, pm: PMem) -> None:
        self.rec = rec
        self.g = guest
        self.pm = pm
        self.rep = Replayer(pm, symbols, rec.accounting, rec.fences)
        self.rep.drop.update(rec.drop)
        self.cursor = 0
        self._view: View | None = None
        self._last = -1
        """The last op run: events recorded while listing the files after it (background work) are its."""

    # -- running ops ------------------------------------------------------------

    def drain(self) -> list[RawEvent]:
        """Replay the events recorded since the last drain; compare the device with the guest's pmem."""
        region = self.g.trace_region()
        h = head(region)
        if h.overflow:
            raise TraceOverflow(f"the recorder's {RING_BYTES >> 20} MiB ring overflowed ({h.overflow} events lost)")
        t0 = time.perf_counter()
        events, self.cursor = decode(region, self.cursor, h.used)
        for ev in events:
            if ev.kind is Kind.MEMCPY_FLUSHCACHE and ev.addr >= 0 and not self._zeroout(ev):
                self.rec.run_meta.update(range(ev.addr // LINE, -(-(ev.addr + ev.len) // LINE)))
        self.rep.apply(events)
        self.rep.reconcile(self.g.pmem(0, self.pm.size))
        self.rec.timing.replay += time.perf_counter() - t0
        return events

    def _zeroout(self, ev: RawEvent) -> bool:
        names = [self.rep.sym.name(a) for a in ev.frames]
        return any(n.startswith(ZEROOUT) for n in names)

    def execute(self, index: int, op: Op, payload: bytes | None) -> Result:
        self._view = None
        self._last = index
        if payload is not None:
            self.g.put_payload(payload)
        elif isinstance(op, Store) or (isinstance(op, Write) and op.map is None):
            self.g.put_payload(bytes(op.len))
        with self.pm.op(index):
            t0 = time.perf_counter()
            reply = self.g.command(command(op))
            self.rec.timing.guest += time.perf_counter() - t0
            self.drain()
        r = result(reply)
        if isinstance(op, Read) and r.ok:
            return Result(self.g.mailbox(int(r.value)))
        return r

    # -- the view ------------------------------------------------------------------

    def view(self) -> View:
        if self._view is None:
            t0 = time.perf_counter()
            r = self.g.command("view")
            self.rec.timing.view += time.perf_counter() - t0
            if r.kind == "err" and "view-too-large" in r.value:
                raise PmfuzzError(f"the files and mappings exceed the guest's {MBOX_BYTES >> 20} MiB mailbox")
            if r.kind != "ok":
                raise GuestDied(f"the agent could not list the files: {r.kind} {r.value}", self.g.console())
            self._view = parse_view(self.g.mailbox(int(r.value)))
            with self.pm.op(self._last):
                self.drain()
        return self._view

    def files(self) -> list[str]:
        return sorted(self.view().files)

    def size(self, name: str) -> int | None:
        f = self.view().files.get(name)
        return None if f is None else f[0]

    def read(self, name: str, off: int, n: int) -> bytes:
        f = self.view().files.get(name)
        if f is None:
            raise KeyError(name)
        return f[1][off : off + n]

    def read_mapping(self, name: str, off: int, n: int) -> Result:
        pages = self.view().pages
        if not any(m == name for m, _ in pages):
            return err(Errno.EINVAL)
        out = bytearray()
        pos = off
        while pos < off + n:
            pg, within = divmod(pos, PAGE_SIZE)
            k = min(PAGE_SIZE - within, off + n - pos)
            got = pages.get((name, pg), Signal.SIGSEGV)
            if isinstance(got, Signal):
                return sig(got)
            out += got[within : within + k]
            pos += k
        return Result(bytes(out))

    def fsck(self) -> list[str]:
        return []
