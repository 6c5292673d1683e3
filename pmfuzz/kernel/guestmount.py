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
import hashlib
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
    reused: int = 0
    """Crash images whose metadata had been recovered before (no mount)."""


PAGE = 4096


class _Region:
    """The guest's recovery region and a host file for xfs_repair, kept equal to it, both rewritten
    only where the next image differs: pages of a crash image that are the very page objects written
    last time (copy-on-write pages are shared between states and points) need no comparison at all."""

    def __init__(self, g: Guest, size: int) -> None:
        self.g = g
        self.size = size
        self.mirror = np.array(g.rec_pmem(0, size))
        """What the region holds."""
        self.written: list[object | None] = [None] * (size // PAGE)
        base = Path("/dev/shm") if Path("/dev/shm").is_dir() else None
        self.dir = Path(tempfile.mkdtemp(prefix="pmfuzz-xfsrec-", dir=base))
        self.path = self.dir / f"image-{os.getpid()}"
        self.mirror.tofile(self.path)
        self.file = np.memmap(self.path, dtype=np.uint8, mode="r+", shape=(size,))
        self.stale: set[int] = set()
        """Pages of the file that differ from the mirror."""
        atexit.register(shutil.rmtree, self.dir, True)

    def put(self, pm: PMem) -> None:
        """Write `pm`'s image into the region (and the mirror)."""
        region = self.g.rec_pmem(0, self.size)
        pages = pm.pages
        for p in range(self.size // PAGE):
            page = pages._page(p)  # the copy-on-write page object: identity says "unchanged"
            if page is self.written[p]:
                continue
            a = p * PAGE
            if not np.array_equal(self.mirror[a : a + PAGE], page):
                region[a : a + PAGE] = page
                self.mirror[a : a + PAGE] = page
                self.stale.add(p)
            self.written[p] = page

    def changed(self) -> tuple[np.ndarray, np.ndarray]:
        """Lines the guest changed since `put` (sorted) and their new content; the mirror learns them."""
        region = self.g.rec_pmem(0, self.size)
        neq = region.view("<u8") != self.mirror.view("<u8")
        pages = np.flatnonzero(neq.reshape(-1, PAGE // 8).any(axis=1))
        lines: list[np.ndarray] = []
        for p in map(int, pages):
            within = np.flatnonzero(neq[p * PAGE // 8 : (p + 1) * PAGE // 8].reshape(-1, LINE // 8).any(axis=1))
            lines.append(within + p * (PAGE // LINE))
            a = p * PAGE
            self.mirror[a : a + PAGE] = region[a : a + PAGE]
            self.written[p] = None
            self.stale.add(p)
        idx = np.concatenate(lines) if lines else np.zeros(0, dtype=np.int64)
        return idx, self.mirror.reshape(-1, LINE)[idx].copy()

    def sync_file(self) -> Path:
        """The host file, made equal to the region, for xfs_repair."""
        for p in self.stale:
            a = p * PAGE
            self.file[a : a + PAGE] = self.mirror[a : a + PAGE]
        self.stale.clear()
        self.file.flush()
        return self.path


_Done = tuple[Listing, np.ndarray, np.ndarray, list[str]]

_REGIONS: dict[tuple[str, int], _Region] = {}
"""This process's recovery region per (accelerator, device size): a campaign makes a target object per
workload, and the region's mirror and host file are worth keeping across them."""
_DONE: dict[tuple[str, str, str], dict[bytes, _Done]] = {}
"""Remembered recoveries per (fstype, options, accelerator), by metadata digest."""
_DIGESTS: dict[int, tuple[object, bytes]] = {}
"""Digests of copy-on-write page objects (kept alive while remembered)."""


class GuestRecovery:
    """Recovers crash images by mounting them in this process's guest, image after image.

    Given the pages that hold metadata, a recovery is remembered by their content: a later image
    with the same metadata (another crash point, often) gets the same listing, the same lines
    written by recovery and the same xfs_repair verdict without a mount -- sound for the reason
    the engine's grouping by metadata is (recovery reads metadata only).
    """

    CACHE = 512
    """Recoveries remembered."""

    def __init__(self, fstype: str, opts: str, accel: str, tools: tuple[str, ...], reuse: bool = True) -> None:
        self.fstype = fstype
        self.opts = opts
        self.accel = accel
        self.tools = tools
        self.reuse = reuse
        self.timing = RecoveryTiming()
        self._done = _DONE.setdefault((fstype, opts, accel), {})
        self._digests = _DIGESTS

    def _key(self, pm: PMem, pages: np.ndarray) -> bytes:
        """A digest of the metadata pages' content; a page's digest is computed once per page object."""
        if len(self._digests) > 50_000:
            self._digests.clear()
        h = hashlib.blake2b(digest_size=16)
        h.update(pm.size.to_bytes(8, "little"))
        h.update(np.ascontiguousarray(pages, dtype=np.int64).tobytes())
        src, memo = pm.pages, self._digests
        for p in pages:
            page = src._page(int(p))
            hit = memo.get(id(page))
            if hit is None or hit[0] is not page:
                hit = (page, hashlib.blake2b(page.data, digest_size=16).digest())
                memo[id(page)] = hit
            h.update(hit[1])
        return h.digest()

    def _region_of(self, g: Guest, size: int) -> _Region:
        r = _REGIONS.get((self.accel, size))
        if r is None or r.g is not g:
            if size > PMEM_SIZE:
                raise ValueError(f"a crash image of {size} bytes does not fit the guest's {PMEM_SIZE >> 20} MiB region")
            if r is not None:
                shutil.rmtree(r.dir, ignore_errors=True)
            r = _REGIONS[(self.accel, size)] = _Region(g, size)
        return r

    def mount(self, pm: PMem, meta_pages: np.ndarray | None = None, contents: bool = False) -> MountedImage:
        """Recover `pm`'s image in the guest (or remember its recovery, given its metadata pages); the
        read-only view of the result."""
        key = None
        if meta_pages is not None and self.reuse and not contents:
            t0 = time.perf_counter()
            key = self._key(pm, meta_pages)
            self.timing.host += time.perf_counter() - t0
            hit = self._done.get(key)
            if hit is not None:
                self.timing.reused += 1
                return MountedImage(pm, *hit)
        done = self._recover(pm, contents)
        if key is not None:
            if len(self._done) >= self.CACHE:
                self._done.pop(next(iter(self._done)))
            self._done[key] = done
        return MountedImage(pm, *done)

    def _recover(self, pm: PMem, contents: bool) -> tuple[Listing, np.ndarray, np.ndarray, list[str]]:
        g = pool.boot(self.accel, self.tools)
        t0 = time.perf_counter()
        region = self._region_of(g, pm.size)
        region.put(pm)
        t1 = time.perf_counter()
        try:
            r = g.command(f"recover {self.fstype} {self.opts}" + (" contents" if contents else ""))
        except GuestDied:
            pool.forget(self.accel, g)
            raise
        finally:
            t2 = time.perf_counter()
            self.timing.guest += t2 - t1
            self.timing.host += t1 - t0
        if r.kind == "err":
            parts = r.value.split()
            buf = g.mailbox(int(parts[2])) if len(parts) > 2 and parts[2].isdigit() else b""
            log = parse_listing(buf).log if buf else ""
            what = parts[3] if len(parts) > 3 else "?"
            region.changed()
            raise RecoveryFailed(f"{what} of the crash image failed: {parts[0]}" + _log_tail(log))
        if r.kind != "ok":
            raise GuestDied(f"the agent answered the recovery with `{r.kind} {r.value}`", g.console())
        listing = parse_listing(g.mailbox(int(r.value)))
        lines, overlay = region.changed()
        path = region.sync_file()
        t3 = time.perf_counter()
        problems = repair_problems(path)
        t4 = time.perf_counter()
        self.timing.repair += t4 - t3
        self.timing.host += t4 - t2
        self.timing.mounts += 1
        problems += [f"kernel: {ln}" for ln in listing.log.splitlines() if any(s in ln for s in _LOG_SIGNS)]
        return listing, lines, overlay, problems


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
