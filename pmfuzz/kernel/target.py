"""The kernel targets: Linux's own DAX file systems in a QEMU guest, recorded and replayed onto the PMem model.

    pmfuzz run --target ext4-dax --minutes 5
    pmfuzz run --target xfs-dax --minutes 5

`format` runs the file system's mkfs on the host over the poisoned device.
`mount` of the run's device puts the image into the guest's pmem, mounts it
there with DAX, and returns a live file system (`live.py`) whose `execute`
sends each op to the agent and replays the pmem traffic it caused onto the
device; the engine then crashes that trace like any other. `mount` of a
crash image runs the file system's real recovery: e2fsck's journal replay on
the host (ext4), or a mount in the guest (XFS, `guestmount.py`). One guest
per process serves every target object and both roles (`pool.py`); a guest
that panics, hangs or goes silent is a finding (`GuestDied`, with its
console), and the next use boots a new one. The two targets are the same
class with another `filesystems.FileSystem`.
"""

from __future__ import annotations

import numpy as np

from ..errors import PmfuzzError
from ..lang.data import poison
from ..lang.falloc import FallocMode
from ..pmem import LINE, PMem
from ..target import Guarantee
from . import pool
from .filesystems import EXT4, XFS, FileSystem, Recovery
from .guest import PMEM_SIZE, Guest, GuestDied
from .guestmount import GuestRecovery
from .live import LiveKernelFS, Recording
from .paths import KERNEL
from .recovery import mount_crash_image
from .replay import Fences

__all__ = ["KernelTarget", "Ext4DaxTarget", "XfsDaxTarget"]

_STATIC_META: dict[tuple[str, int], list[tuple[int, int]]] = {}
"""What mkfs made metadata, per (file system, device size): the engine formats once per process and
hands the image to every later target object (a campaign makes one per workload), which must know it."""


class KernelTarget:
    """A Linux DAX file system on Debian's pinned 6.1 kernel, in a TCG guest (one `FileSystem` configuration)."""

    fs: FileSystem = EXT4
    min_op_timeout = 300.0
    """Booting a guest under TCG takes seconds; the guest's own answers time out after 60 s."""

    def __init__(
        self,
        kernel: str = KERNEL.release,
        accel: str = "tcg",
        drop: str = "",
        fences: str = "explicit",
        reuse: str = "yes",
        **unknown: str,
    ) -> None:
        if unknown:
            opt = next(iter(unknown))
            raise PmfuzzError(f"{self.name} has no option {opt!r} (options: kernel, accel, drop, fences, reuse)")
        if reuse not in ("yes", "no"):
            raise PmfuzzError(f"reuse must be yes or no, not {reuse!r}")
        try:
            fence_kind = Fences(fences)
        except ValueError:
            raise PmfuzzError(f"fences must be explicit or locked, not {fences!r}") from None
        if kernel != KERNEL.release:
            raise PmfuzzError(
                f"this reproducer ran on kernel {kernel}; this pmfuzz runs {KERNEL.release} ({KERNEL.version})"
            )
        if accel not in ("tcg", "kvm"):
            raise PmfuzzError(f"accel must be tcg or kvm, not {accel!r}")
        self.accel = accel
        self.rec = Recording(fences=fence_kind, drop=tuple(s for s in drop.split(",") if s))
        self.recovery = GuestRecovery(self.fs.fstype, self.fs.recovery_opts, accel, self.fs.tools, reuse == "yes")
        """Crash images mounted in the guest (GUEST_MOUNT); `reuse=no` mounts every metadata state even when
        an earlier crash point had the same metadata (for the test that grouping changes no verdict)."""
        self._meta_pages: tuple[int, np.ndarray] | None = None

    @property
    def name(self) -> str:
        return self.fs.name

    @property
    def guarantees(self) -> frozenset[Guarantee]:
        return self.fs.guarantees

    @property
    def ops(self):
        return self.fs.ops

    @property
    def falloc_modes(self) -> tuple[FallocMode, ...]:
        return self.fs.falloc_modes

    @property
    def device_size(self) -> int:
        """The device size a campaign uses unless told otherwise (XFS needs 16 MiB)."""
        return self.fs.device_size

    # what earlier code and the tests read off the target
    @property
    def fences(self) -> Fences:
        return self.rec.fences

    @property
    def drop(self) -> tuple[str, ...]:
        return self.rec.drop

    @property
    def accounting(self):
        return self.rec.accounting

    @property
    def timing(self):
        return self.rec.timing

    # -- the protocol --------------------------------------------------------------

    def options(self) -> dict[str, str]:
        out = {"kernel": KERNEL.release}
        if self.accel != "tcg":
            out["accel"] = self.accel
        if self.rec.drop:
            out["drop"] = ",".join(self.rec.drop)
        if self.rec.fences is not Fences.EXPLICIT:
            out["fences"] = self.rec.fences.value
        if not self.recovery.reuse:
            out["reuse"] = "no"
        return out

    def format(self, pm: PMem) -> None:
        if pm.size > PMEM_SIZE:
            raise PmfuzzError(f"{self.name}: the device ({pm.size} bytes) is larger than the guest's pmem")
        if pm.size < self.fs.min_device_size:
            raise PmfuzzError(
                f"{self.name} needs a device of at least {self.fs.min_device_size >> 20} MiB, not {pm.size} bytes "
                f"(--device {self.fs.device_size >> 20}M)"
            )
        base = poison(0, pm.size)
        img = self.fs.mkfs(base)
        pm.initialize(0, img)
        _STATIC_META[(self.fs.name, pm.size)] = self.fs.static_meta(base, img)

    def mount(self, pm: PMem):
        if not pm.recording:
            if self.fs.recovery is Recovery.HOST_FSCK:
                return mount_crash_image(pm)
            return self.recovery.mount(pm, self.meta_pages(pm.size))
        g = self.boot()
        try:
            r = g.command("reset")
            if r.kind != "ok":
                raise GuestDied(f"the agent could not unmount the last workload's file system: {r.value}", g.console())
            g.pmem(0, pm.size)[:] = pm.load_array(0, pm.size)
            self.rec.run_meta = set()
            self._meta_pages = None
            r = g.command(f"mount {self.fs.fstype} {self.fs.mount_opts}")
            if r.kind != "ok":
                raise GuestDied(f"mount -t {self.fs.fstype} -o {self.fs.mount_opts} failed: {r.value}", g.console())
            fs = LiveKernelFS(self.rec, g, pool.symbols(self.accel, g), pm)
            with pm.site("mount"):
                fs.drain()
        except BaseException:
            pool.forget(self.accel, g)
            raise
        return fs

    def metadata_ranges(self, size: int) -> list[tuple[int, int]]:
        """What mkfs made metadata plus every line the run wrote through block I/O other than zeroing
        (journal or log, checkpoints, metadata writeback): recovery reads nothing else, and file data is
        read from the device each time."""
        out = list(_STATIC_META.get((self.fs.name, size), [(0, size)]))
        for ln in sorted(self.rec.run_meta):
            a = ln * LINE
            if out and out[-1][1] == a:
                out[-1] = (out[-1][0], a + LINE)
            else:
                out.append((a, a + LINE))
        return _merge(out)

    def meta_pages(self, size: int) -> np.ndarray:
        """The pages `metadata_ranges` touches (for remembering recoveries), computed once per run."""
        n = len(self.rec.run_meta)
        if self._meta_pages is None or self._meta_pages[0] != n:
            pages: set[int] = set()
            for lo, hi in self.metadata_ranges(size):
                pages.update(range(lo // 4096, -(-hi // 4096)))
            self._meta_pages = (n, np.array(sorted(pages), dtype=np.int64))
        return self._meta_pages[1]

    # -- the guest -----------------------------------------------------------------

    @property
    def guest(self) -> Guest | None:
        return pool.current(self.accel)

    def boot(self) -> Guest:
        """This process's guest (one per worker, shared by every target object), booted if needed."""
        return pool.boot(self.accel, self.fs.tools)

    def symbols(self, g: Guest):
        return pool.symbols(self.accel, g)

    def close(self) -> None:
        """Stop this process's guest (the next workload boots a new one)."""
        pool.close(self.accel)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(" + " ".join(f"{k}={v}" for k, v in self.options().items()) + ")"


class Ext4DaxTarget(KernelTarget):
    """ext4 mounted with dax=always."""

    fs = EXT4


class XfsDaxTarget(KernelTarget):
    """A reflink-enabled XFS mounted with dax=always; crash images are recovered by a mount in the guest."""

    fs = XFS


def _merge(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for lo, hi in sorted(ranges):
        if out and lo <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return out
