"""Recovering a crash image by mounting it in a guest: XFS's log recovery runs only in the kernel.

The host writes the image into the guest's second pmem region (/dev/pmem1,
through the shared RAM file); the agent mounts it -- log recovery, the
unlinked list, `xfs_reflink_recover_cow` freeing COW staging extents --,
lists every file's size and extents (FIEMAP) and unmounts it. The host reads
the region back: `xfs_repair -n` checks what mount and unmount left, and the
lines they changed become an overlay of the view. File data is read through
the extents from the engine's device at every read, so crash states that
differ only in data lines share one mount (the engine's grouping by
metadata); the lines recovery wrote are taken from the overlay, as a full
recovery of that state would show them.

A mount that fails is a `mount` finding with the kernel's log; a guest that
panics or hangs during recovery is one with its console.
"""

from __future__ import annotations

import atexit
import os
import shutil
import struct
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..pmem import LINE, PMem
from ..target import Errno, Result, err
from . import pool
from .guest import PMEM_SIZE, Guest, GuestDied
from .xfs import repair_problems

__all__ = ["Extent", "FileInfo", "Listing", "parse_listing", "RecoveryFailed", "GuestRecovery", "MountedImage"]

# FIEMAP extent flags (linux/fiemap.h)
FIEMAP_EXTENT_UNKNOWN = 0x2
FIEMAP_EXTENT_DELALLOC = 0x4
FIEMAP_EXTENT_ENCODED = 0x8
FIEMAP_EXTENT_DATA_INLINE = 0x200
FIEMAP_EXTENT_UNWRITTEN = 0x800
_UNREADABLE = FIEMAP_EXTENT_UNKNOWN | FIEMAP_EXTENT_DELALLOC | FIEMAP_EXTENT_ENCODED | FIEMAP_EXTENT_DATA_INLINE

_LOG_SIGNS = (
    "WARNING:",
    "BUG:",
    "Corruption of in-memory data",
    "Metadata corruption detected",
    "Metadata CRC error",
    "hutting down",
    "I/O error",
)
"""Kernel log lines of a mount that succeeded which still say something went wrong. Not "Internal
error": XFS's log recovery reports a torn record at the head that way during its CRC pass
(`xlog_verify_head`), then truncates the head -- the designed handling of a torn log write."""


class RecoveryFailed(Exception):
    """The kernel did not mount the crash image (or not unmount it): a `mount` finding, never pmfuzz's bug."""

    is_target_error = True


@dataclass(frozen=True, slots=True)
class Extent:
    logical: int
    length: int
    physical: int
    flags: int

    @property
    def unwritten(self) -> bool:
        """Allocated but unwritten: reads as zeros."""
        return bool(self.flags & FIEMAP_EXTENT_UNWRITTEN)


@dataclass(frozen=True, slots=True)
class FileInfo:
    size: int
    extents: tuple[Extent, ...]
    content: bytes | None = None
    """What read(2) gave in the guest (only when asked for: tests compare it with the host's view)."""


@dataclass(frozen=True)
class Listing:
    """What the agent saw on the mounted crash image."""

    files: dict[str, FileInfo] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    """Files whose open, stat, read or FIEMAP failed, with the errno."""
    others: tuple[str, ...] = ()
    """Names in the root directory that are not f0..f7."""
    log: str = ""


def parse_listing(buf: bytes) -> Listing:
    """The agent's records (kind, index, a, b): 1 file, 3 extent, 4 kernel log, 5 errno, 6 other name."""
    sizes: dict[str, tuple[int, bytes | None]] = {}
    exts: dict[str, list[Extent]] = {}
    errors: dict[str, int] = {}
    others: list[str] = []
    log = ""
    pos = 0
    while pos + 24 <= len(buf):
        kind, idx, a, b = struct.unpack_from("<IIQQ", buf, pos)
        pos += 24
        name = f"f{idx}"
        if kind == 1:
            sizes[name] = (a, buf[pos : pos + b] if b else None)
            pos += b
        elif kind == 3:
            phys, flags = struct.unpack_from("<QQ", buf, pos)
            pos += 16
            exts.setdefault(name, []).append(Extent(a, b, phys, flags))
        elif kind == 4:
            log = buf[pos : pos + b].decode(errors="replace")
            pos += b
        elif kind == 5:
            errors[name] = a
        elif kind == 6:
            others.append(buf[pos : pos + b].decode(errors="replace"))
            pos += b
        else:
            raise ValueError(f"unknown record kind {kind} in the agent's listing")
    files = {
        n: FileInfo(size, tuple(exts.get(n, ())), content if size else b"")
        for n, (size, content) in sizes.items()
        if n not in errors
    }
    return Listing(files, errors, tuple(others), log)


@dataclass
class RecoveryTiming:
    """Seconds spent recovering crash images: in the guest (mount, listing, unmount) and on the host
    (moving the image in and out of the guest, xfs_repair -n)."""

    guest: float = 0.0
    host: float = 0.0
    repair: float = 0.0
    mounts: int = 0


class _ImageFile:
    """The host file xfs_repair reads, rewritten only where the next image differs."""

    def __init__(self, size: int) -> None:
        base = Path("/dev/shm") if Path("/dev/shm").is_dir() else None
        self.dir = Path(tempfile.mkdtemp(prefix="pmfuzz-xfsrec-", dir=base))
        self.path = self.dir / f"image-{os.getpid()}"
        with open(self.path, "wb") as f:
            f.truncate(size)
        self.file = np.memmap(self.path, dtype=np.uint8, mode="r+", shape=(size,))
        self.expect = np.zeros(size, dtype=np.uint8)
        atexit.register(shutil.rmtree, self.dir, True)

    def load(self, img: np.ndarray) -> None:
        pages = np.flatnonzero((self.expect != img).reshape(-1, 4096).any(axis=1))
        for p in pages:
            a = int(p) * 4096
            self.file[a : a + 4096] = img[a : a + 4096]
        self.expect[:] = img
        self.file.flush()


class GuestRecovery:
    """Recovers crash images by mounting them in this process's guest, image after image."""

    def __init__(self, fstype: str, opts: str, accel: str, tools: tuple[str, ...]) -> None:
        self.fstype = fstype
        self.opts = opts
        self.accel = accel
        self.tools = tools
        self.timing = RecoveryTiming()
        self._files: dict[int, _ImageFile] = {}

    def listing(self, g: Guest, pm: PMem, contents: bool = False) -> tuple[Listing, np.ndarray, np.ndarray]:
        """Mount the image of `pm` on the guest's /dev/pmem1, list it, unmount; (listing, the image
        before, the region after)."""
        n = pm.size
        if n > PMEM_SIZE:
            raise ValueError(f"a crash image of {n} bytes does not fit the guest's {PMEM_SIZE >> 20} MiB region")
        t0 = time.perf_counter()
        pre = pm.load_array(0, n)
        g.rec_pmem(0, n)[:] = pre
        t1 = time.perf_counter()
        r = g.command(f"recover {self.fstype} {self.opts}" + (" contents" if contents else ""))
        t2 = time.perf_counter()
        if r.kind == "err":
            parts = r.value.split()
            buf = g.mailbox(int(parts[2])) if len(parts) > 2 and parts[2].isdigit() else b""
            log = parse_listing(buf).log if buf else ""
            what = parts[3] if len(parts) > 3 else "?"
            self.timing.guest += t2 - t1
            raise RecoveryFailed(f"{what} of the crash image failed: {parts[0]}" + _log_tail(log))
        if r.kind != "ok":
            raise GuestDied(f"the agent answered the recovery with `{r.kind} {r.value}`", g.console())
        listing = parse_listing(g.mailbox(int(r.value)))
        post = np.array(g.rec_pmem(0, n))
        self.timing.guest += t2 - t1
        self.timing.host += (t1 - t0) + (time.perf_counter() - t2)
        self.timing.mounts += 1
        return listing, pre, post

    def mount(self, pm: PMem, contents: bool = False) -> MountedImage:
        """Recover `pm`'s image; the read-only view of the result."""
        g = pool.boot(self.accel, self.tools)
        try:
            listing, pre, post = self.listing(g, pm, contents)
        except GuestDied:
            pool.forget(self.accel, g)
            raise
        t0 = time.perf_counter()
        changed = np.flatnonzero((pre != post).reshape(-1, LINE).any(axis=1))
        overlay = post.reshape(-1, LINE)[changed].copy()
        f = self._files.get(pm.size)
        if f is None:
            f = self._files[pm.size] = _ImageFile(pm.size)
        f.load(post)
        t1 = time.perf_counter()
        problems = repair_problems(f.path)
        self.timing.repair += time.perf_counter() - t1
        self.timing.host += t1 - t0
        problems += [f"kernel: {ln}" for ln in listing.log.splitlines() if any(s in ln for s in _LOG_SIGNS)]
        return MountedImage(pm, listing, changed, overlay, problems)


def _log_tail(log: str, lines: int = 12) -> str:
    kept = [ln for ln in log.splitlines() if ln.strip()][-lines:]
    return ("; kernel log:\n" + "\n".join(kept)) if kept else ""


class MountedImage:
    """The read-only view of a recovered crash image: sizes and extents from the guest's listing,
    data read through the extents from the device, lines recovery wrote from its overlay."""

    def __init__(self, pm: PMem, listing: Listing, lines: np.ndarray, overlay: np.ndarray, problems: list[str]) -> None:
        self.pm = pm
        self.listing = listing
        self.lines = lines
        self.overlay = overlay
        self.problems = list(problems)
        for name, e in sorted(listing.errors.items()):
            self.problems.append(f"{name} cannot be read after recovery: {os.strerror(e)} (errno {e})")
        for name in listing.others:
            self.problems.append(f"recovery left a name the workload never made: {name!r}")
        for name, info in sorted(listing.files.items()):
            for x in info.extents:
                if x.flags & _UNREADABLE:
                    self.problems.append(f"{name}: extent at {x.logical} has flags {x.flags:#x} (not plain data)")
                elif x.physical + x.length > pm.size:
                    where = f"{x.physical:#x}+{x.length}"
                    self.problems.append(f"{name}: extent at {x.logical} maps {where}, off the device")

    def execute(self, index: int, op, payload: bytes | None) -> Result:
        return err(Errno.EIO)  # a recovered image is only read

    def files(self) -> list[str]:
        return sorted(self.listing.files)

    def size(self, name: str) -> int | None:
        f = self.listing.files.get(name)
        return None if f is None else f.size

    def read(self, name: str, off: int, n: int) -> bytes:
        info = self.listing.files[name]
        end = min(off + n, info.size)
        if end <= off:
            return b""
        out = np.zeros(end - off, dtype=np.uint8)
        for x in info.extents:
            lo, hi = max(off, x.logical), min(end, x.logical + x.length)
            if lo >= hi or x.unwritten or x.flags & _UNREADABLE:
                continue
            a = x.physical + lo - x.logical
            if a + (hi - lo) > self.pm.size:
                continue
            out[lo - off : hi - off] = self._load(a, hi - lo)
        return out.tobytes()

    def _load(self, a: int, k: int) -> np.ndarray:
        data = self.pm.load_array(a, k)
        if len(self.lines):
            i = int(np.searchsorted(self.lines, a // LINE))
            last = (a + k - 1) // LINE
            while i < len(self.lines) and self.lines[i] <= last:
                ln = int(self.lines[i])
                lo, hi = max(a, ln * LINE), min(a + k, (ln + 1) * LINE)
                data[lo - a : hi - a] = self.overlay[i][lo - ln * LINE : hi - ln * LINE]
                i += 1
        return data

    def read_mapping(self, name: str, off: int, n: int) -> Result:
        return err(Errno.EINVAL)  # no mapping survives a crash

    def fsck(self) -> list[str]:
        return list(self.problems)
