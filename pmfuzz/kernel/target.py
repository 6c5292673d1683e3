"""The `ext4-dax` target: Linux's ext4 with DAX in a QEMU guest, recorded and replayed onto the PMem model.

    pmfuzz run --target ext4-dax --minutes 5

`format` runs mke2fs on the host over the poisoned device. `mount` of the run's
device puts the image into the guest's pmem, mounts it there with `-o dax`, and
returns a live file system whose `execute` sends each op to the agent and
replays the pmem traffic it caused onto the device (`replay.py`); the engine
then crashes that trace like any other. `mount` of a crash image runs the
real recovery on the host (`recovery.py`). One guest serves a target object
for all its workloads; a guest that panics, hangs or goes silent is a finding
(`GuestDied`, with its console), and the next workload boots a new one.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from ..data import poison
from ..errors import PmfuzzError
from ..pmem import LINE, PMem
from ..target import Errno, Guarantee, Result, Signal, err, sig
from ..workload import PAGE_SIZE, Op, Read, Store, Write
from .commands import FALLOC_MODES_EXT4, OPS, View, command, parse_view, result
from .ext4image import Ext4Image
from .guest import MBOX_BYTES, PMEM_SIZE, RING_BYTES, Guest, GuestDied
from .paths import KERNEL, missing
from .recovery import mkfs, mount_crash_image
from .replay import Accounting, Fences, Replayer
from .trace import Kind, RawEvent, Symbols, decode, head

__all__ = ["Ext4DaxTarget", "LiveKernelFS", "MOUNT_OPTS", "TraceOverflow"]

MOUNT_OPTS = "dax=always,noinit_itable,commit=600"
"""dax=always; no lazy inode-table init thread; the 5 s commit timer pushed out of the way so a
workload's trace does not depend on wall-clock time (commits come from fsync, sync, MAP_SYNC faults,
a full journal or the ops themselves)."""

_ZEROOUT = ("blkdev_issue_zeroout", "__blkdev_issue_zero_pages", "ext4_issue_zeroout", "pmem_dax_zero_page_range")


@dataclass
class Timing:
    """Where a kernel run's time goes (seconds): the guest running ops, the guest listing its files
    for the functional oracle, and decoding + replaying + reconciling the trace on the host."""

    guest: float = 0.0
    view: float = 0.0
    replay: float = 0.0


_POOL: dict[str, tuple[Guest, Symbols | None]] = {}
"""The process's guest per accelerator, and its kernel's symbols."""


class TraceOverflow(Exception):
    """The recorder's ring filled up during one workload (a limit of pmfuzz's recorder, reported as a target error)."""

    is_target_error = True


class LiveKernelFS:
    """The guest's mounted ext4-DAX, speaking the target protocol; the device mirrors its pmem."""

    def __init__(self, target: Ext4DaxTarget, guest: Guest, pm: PMem) -> None:
        self.t = target
        self.g = guest
        self.pm = pm
        self.rep = Replayer(pm, target.symbols(guest), target.accounting, target.fences)
        for site in target.drop:
            self.rep.drop.add(site)
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
                self.t.run_meta.update(range(ev.addr // LINE, -(-(ev.addr + ev.len) // LINE)))
        self.rep.apply(events)
        self.rep.reconcile(self.g.pmem(0, self.pm.size))
        self.t.timing.replay += time.perf_counter() - t0
        return events

    def _zeroout(self, ev: RawEvent) -> bool:
        names = [self.rep.sym.name(a) for a in ev.frames]
        return any(n.startswith(_ZEROOUT) for n in names)

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
            self.t.timing.guest += time.perf_counter() - t0
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
            self.t.timing.view += time.perf_counter() - t0
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


class Ext4DaxTarget:
    """ext4 mounted with dax=always on Debian's pinned 6.1 kernel, in a TCG guest."""

    name = "ext4-dax"
    guarantees = frozenset({Guarantee.POSIX, Guarantee.MOUNTABLE, Guarantee.NO_STALE_DATA, Guarantee.FSYNC_DURABLE})
    ops = OPS
    falloc_modes = FALLOC_MODES_EXT4
    min_op_timeout = 300.0
    """Booting a guest under TCG takes seconds; the guest's own answers time out after 60 s."""

    def __init__(
        self, kernel: str = KERNEL.release, accel: str = "tcg", drop: str = "", fences: str = "explicit", **unknown: str
    ) -> None:
        if unknown:
            raise PmfuzzError(f"ext4-dax has no option {next(iter(unknown))!r} (options: kernel, accel, drop, fences)")
        try:
            self.fences = Fences(fences)
        except ValueError:
            raise PmfuzzError(f"fences must be explicit or locked, not {fences!r}") from None
        if kernel != KERNEL.release:
            raise PmfuzzError(
                f"this reproducer ran on kernel {kernel}; this pmfuzz runs {KERNEL.release} ({KERNEL.version})"
            )
        if accel not in ("tcg", "kvm"):
            raise PmfuzzError(f"accel must be tcg or kvm, not {accel!r}")
        self.accel = accel
        self.drop = tuple(s for s in drop.split(",") if s)
        self._static_meta: list[tuple[int, int]] | None = None
        self.run_meta: set[int] = set()
        self.accounting = Accounting()
        self.timing = Timing()

    # -- the protocol --------------------------------------------------------------

    def options(self) -> dict[str, str]:
        out = {"kernel": KERNEL.release}
        if self.accel != "tcg":
            out["accel"] = self.accel
        if self.drop:
            out["drop"] = ",".join(self.drop)
        if self.fences is not Fences.EXPLICIT:
            out["fences"] = self.fences.value
        return out

    def format(self, pm: PMem) -> None:
        if pm.size > PMEM_SIZE:
            raise PmfuzzError(f"ext4-dax: the guest's pmem is {PMEM_SIZE >> 20} MiB; device size {pm.size} is larger")
        img = mkfs(poison(0, pm.size))
        pm.initialize(0, img)
        self._static_meta = _allocated(img)

    def mount(self, pm: PMem):
        if not getattr(pm, "_recording", True):
            return mount_crash_image(pm)
        g = self.boot()
        try:
            r = g.command("reset")
            if r.kind != "ok":
                raise GuestDied(f"the agent could not unmount the last workload's file system: {r.value}", g.console())
            g.pmem(0, pm.size)[:] = pm.load_array(0, pm.size)
            self.run_meta = set()
            r = g.command(f"mount {MOUNT_OPTS}")
            if r.kind != "ok":
                raise GuestDied(f"mount -o {MOUNT_OPTS} failed: {r.value}", g.console())
            fs = LiveKernelFS(self, g, pm)
            with pm.site("mount"):
                fs.drain()
        except BaseException:
            _POOL.pop(self.accel, None) if not g.alive else None
            raise
        return fs

    def metadata_ranges(self, size: int) -> list[tuple[int, int]]:
        """What mke2fs allocated (superblock, descriptors, bitmaps, inode tables, journal, directories)
        plus every line the run wrote through block I/O other than zeroing (journal, checkpoints,
        extent blocks): e2fsck reads nothing else, and file data is read from the device each time."""
        lines = sorted(self.run_meta)
        out = list(self._static_meta or [(0, size)])
        for ln in lines:
            a = ln * LINE
            if out and out[-1][1] == a:
                out[-1] = (out[-1][0], a + LINE)
            else:
                out.append((a, a + LINE))
        return _merge(out)

    # -- the guest -----------------------------------------------------------------

    @property
    def guest(self) -> Guest | None:
        hit = _POOL.get(self.accel)
        return None if hit is None else hit[0]

    def boot(self) -> Guest:
        """This process's guest (one per worker, shared by every target object), booted if needed."""
        hit = _POOL.get(self.accel)
        if hit is not None and hit[0].alive:
            return hit[0]
        why = missing()
        if why:
            raise PmfuzzError(f"the ext4-dax target cannot run: {why}")
        g = Guest(accel=self.accel)
        _POOL[self.accel] = (g, None)
        return g

    def symbols(self, g: Guest) -> Symbols:
        hit = _POOL.get(self.accel)
        if hit is None or hit[0] is not g or hit[1] is None:
            r = g.command("syms")
            syms = Symbols(g.mailbox(int(r.value)).decode(errors="replace"))
            _POOL[self.accel] = (g, syms)
            return syms
        return hit[1]

    def close(self) -> None:
        """Stop this process's guest (the next workload boots a new one)."""
        hit = _POOL.pop(self.accel, None)
        if hit is not None:
            hit[0].close()

    def __repr__(self) -> str:
        return "Ext4DaxTarget(" + " ".join(f"{k}={v}" for k, v in self.options().items()) + ")"


def _allocated(img: np.ndarray) -> list[tuple[int, int]]:
    """Byte ranges of the blocks mke2fs allocated, from the block bitmaps of the formatted image."""
    buf = img.tobytes()
    fs = Ext4Image(lambda a, n: buf[a : a + n])
    return [(b * fs.block_size, (b + n) * fs.block_size) for b, n in fs.allocated_runs()]


def _merge(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for lo, hi in sorted(ranges):
        if out and lo <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return out
