"""Putting recorded kernel events onto a `PMem`, so the engine's crash points and states apply.

Each event is replayed as the instructions it executed, under a site label
naming the kernel function that issued it (`jbd2_journal_commit_transaction.
memcpy_flushcache`). What the recorder cannot see is accounted, never hidden:

* a clwb (arch_wb_cache_pmem) carries the lines' content; bytes that differ
  from the replayed image were written by cached stores the probes do not
  see (dax_memzero's memset before its dax_flush): they are replayed as
  stores right before the clwb and counted as `inferred`;
* at the end of each op the image is compared with the guest's real pmem;
  any byte still different is `unexplained`: it is put on the device as a
  store labelled `unattributed` so the run can go on, and the fidelity test
  fails on any.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

import numpy as np

from ..pmem import PMem
from . import flushcache as fc
from .trace import Kind, RawEvent, Symbols

__all__ = ["Replayer", "Accounting", "Fences"]

LINE = 64


class Fences(enum.StrEnum):
    """Which recorded events order earlier movnti stores and clwbs (make them durable)."""

    EXPLICIT = "explicit"
    """Only sfence: __copy_user_nocache's, pmem_wmb() in generic_nvdimm_flush, the workload's own.
    Pessimistic: on x86 every locked instruction orders them too, and the kernel runs many."""
    LOCKED = "locked"
    """Also each bio's completion (bio_endio: unlock_buffer, complete() -- locked instructions), so a
    block write is durable once its bio completes. For triage: a finding that goes away here needed
    a line in flight across a locked instruction, which Px86 does not allow."""


@dataclass
class Accounting:
    events: int = 0
    inferred_bytes: int = 0
    unexplained_bytes: int = 0
    missing_data: int = 0
    outside: int = 0
    """Events whose range falls outside the modelled device."""
    notes: list[str] = field(default_factory=list)


class Replayer:
    def __init__(
        self, pm: PMem, symbols: Symbols, acct: Accounting | None = None, fences: Fences = Fences.EXPLICIT
    ) -> None:
        self.fences = fences
        self.pm = pm
        self.sym = symbols
        self.acct = acct if acct is not None else Accounting()
        self.mirror = pm.load_array(0, pm.size)
        """What the CPU sees, kept contiguous: reconciling is one comparison with the guest's pmem."""
        self.drop: set[str] = set()
        """Sites whose flushes and fences are left out (a planted missing-flush bug, for tests)."""

    def apply(self, events: list[RawEvent]) -> None:
        for ev in events:
            self._one(ev)

    def _fits(self, ev: RawEvent) -> bool:
        if ev.addr < 0 or ev.addr + ev.len > self.pm.size:
            self.acct.outside += 1
            if len(self.acct.notes) < 20:
                self.acct.notes.append(f"{ev.kind.name} at {ev.addr:#x}+{ev.len} is outside the device")
            return False
        return True

    def _one(self, ev: RawEvent) -> None:
        pm, k = self.pm, ev.kind
        self.acct.events += 1
        if k is Kind.MARK:
            return
        if k is Kind.BIO_END:
            if self.fences is Fences.LOCKED:
                with pm.site("bio_endio.locked"):
                    pm.sfence()
            return
        site = self.sym.site(k, ev.frames)
        dropped = site in self.drop
        with pm.site(site):
            if k in (Kind.NVDIMM_FLUSH, Kind.USER_SFENCE):
                if not dropped:
                    pm.sfence()
                return
            if not self._fits(ev):
                return
            if ev.missing:
                self.acct.missing_data += 1
                return
            if k in (Kind.USER_STORE, Kind.COPY_MC):
                assert ev.data is not None
                self._store(ev.addr, ev.data[: ev.len], nt=False)
            elif k is Kind.USER_CLWB:
                if not dropped:
                    pm.clwb(ev.addr, ev.len)
            elif k is Kind.WB_CACHE_PMEM:
                self._infer(ev)
                if not dropped:
                    pm.clwb(ev.addr, ev.len)
            else:
                assert ev.data is not None
                split = fc.memcpy_flushcache if k is Kind.MEMCPY_FLUSHCACHE else fc.copy_user_flushcache
                self._insns(split(ev.addr, ev.len), ev.data)

    def _insns(self, insns: list[fc.Op], data: bytes) -> None:
        pm = self.pm
        for i in insns:
            if i.insn is fc.Insn.STORE:
                self._store(i.addr, data[i.off : i.off + i.n], nt=False)
            elif i.insn is fc.Insn.NTSTORE:
                self._store(i.addr, data[i.off : i.off + i.n], nt=True)
            elif i.insn is fc.Insn.CLWB:
                pm.clwb(i.addr, i.n)
            else:
                pm.sfence()

    def _store(self, addr: int, data: bytes, nt: bool) -> None:
        (self.pm.ntstore if nt else self.pm.store)(addr, data)
        self.mirror[addr : addr + len(data)] = np.frombuffer(data, dtype=np.uint8)

    def _infer(self, ev: RawEvent) -> None:
        """Cached stores the probes missed, seen as the difference the flushed lines carry."""
        assert ev.data is not None
        lo = ev.addr - ev.addr % LINE
        real = np.frombuffer(ev.data, dtype=np.uint8)
        n = min(len(real), self.pm.size - lo)
        have = self.mirror[lo : lo + n]
        self.acct.inferred_bytes += self._patch(lo, have, real[:n], "inferred")

    def _patch(self, base: int, have: np.ndarray, real: np.ndarray, label: str) -> int:
        """Store the 8-byte words of `real` that differ from `have`, in runs; returns bytes differing."""
        diff = have != real
        nbytes = int(diff.sum())
        if not nbytes:
            return 0
        words = diff[: len(diff) // 8 * 8].reshape(-1, 8).any(axis=1)
        idx = np.flatnonzero(words)
        runs = np.split(idx, np.flatnonzero(np.diff(idx) != 1) + 1)
        with self.pm.site(label):
            for r in runs:
                a, b = int(r[0]) * 8, (int(r[-1]) + 1) * 8
                self._store(base + a, real[a:b].tobytes(), nt=False)
        return nbytes

    def reconcile(self, real: np.ndarray) -> int:
        """Compare the replayed image with the guest's pmem; store and count what differs."""
        real = real[: self.pm.size]
        if np.array_equal(self.mirror, real):
            return 0
        n = self._patch(0, self.mirror.copy(), real, "unattributed")
        self.acct.unexplained_bytes += n
        return n
