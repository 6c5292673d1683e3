"""Decoding the recorder's trace (pmtrace.ko's ring in the guest's shared RAM) into typed events.

The layout is the one `module/pmtrace.c` writes: a 64-byte head, then events of
a 24-byte header (kind, frame count, flags, length, pmem offset, data bytes),
the caller's stack frames (kernel addresses), and the data padded to 8 bytes.
`Symbols` names the frames from the guest's /proc/kallsyms, so each event is
tagged with the kernel function that issued it.
"""

from __future__ import annotations

import bisect
import enum
import struct
from dataclasses import dataclass

import numpy as np

__all__ = ["Kind", "RawEvent", "Head", "decode", "Symbols", "PLUMBING"]

MAGIC = 0x65636172746D70
HEAD = 64
EVENT = struct.Struct("<BBHIQQ")


class Kind(enum.IntEnum):
    """What one recorded event is; the names are the probed kernel functions and the agent's records."""

    MEMCPY_FLUSHCACHE = 1
    """__memcpy_flushcache: cached head/tail + clwb, movnti body (pmem_do_write: block I/O)."""
    COPY_USER_FLUSHCACHE = 2
    """__copy_user_flushcache: __copy_user_nocache (cached head/tail, movnti body, sfence) + clwb of the edges."""
    WB_CACHE_PMEM = 3
    """arch_wb_cache_pmem: clwb of a range (dax_flush); the data is the lines' content at the flush."""
    NVDIMM_FLUSH = 4
    """generic_nvdimm_flush: pmem_wmb(), the sfence of REQ_PREFLUSH / REQ_FUA."""
    USER_STORE = 5
    USER_CLWB = 6
    USER_SFENCE = 7
    MARK = 8
    BIO_END = 9
    """bio_endio: a bio completed (its completion runs locked instructions; see `Fences.LOCKED`)."""
    COPY_MC = 10
    """copy_mc_to_kernel into pmem: the fsdax copy-on-write's copy from the source extent
    (dax_iomap_cow_copy, dax_unshare_iter), cached stores with no clwb."""


F_DATA_MISSING = 1


@dataclass(frozen=True, slots=True)
class RawEvent:
    kind: Kind
    addr: int
    """Offset in the pmem range (for a store with no block behind it: -1)."""
    len: int
    data: bytes | None
    frames: tuple[int, ...]
    missing: bool = False


@dataclass(frozen=True, slots=True)
class Head:
    used: int
    events: int
    overflow: int
    misses: int


def head(region: np.ndarray) -> Head:
    h = region[:HEAD].view(np.uint64)
    if int(h[0]) != MAGIC:
        raise ValueError(f"no pmtrace ring in the guest (magic {int(h[0]):#x})")
    return Head(int(h[1]), int(h[2]), int(h[3]), int(h[5]))


def decode(region: np.ndarray, start: int, end: int) -> tuple[list[RawEvent], int]:
    """Events in ring bytes [start, end); returns them and the offset after the last one."""
    buf = region[HEAD + start : HEAD + end].tobytes()
    out: list[RawEvent] = []
    pos = 0
    while pos + EVENT.size <= len(buf):
        kind, nframes, flags, length, addr, dlen = EVENT.unpack_from(buf, pos)
        p = pos + EVENT.size
        frames = struct.unpack_from(f"<{nframes}Q", buf, p) if nframes else ()
        p += 8 * nframes
        data = buf[p : p + dlen] if dlen else None
        p += (dlen + 7) & ~7
        if p > len(buf):
            break
        if addr == (1 << 64) - 1:
            addr = -1
        out.append(RawEvent(Kind(kind), addr, length, data, frames, bool(flags & F_DATA_MISSING)))
        pos = p
    return out, start + pos


# Frames that say nothing about which file-system path wrote: the pmem driver, the block
# layer, the DAX copy helpers, the recorder and kprobes themselves.
PLUMBING = (
    "pmem_",
    "__pmem",
    "submit_bio",
    "__submit_bio",
    "blk_",
    "__blk",
    "bio_",
    "submit_bh",
    "__submit_bh",
    "__blkdev_issue",
    "blkdev_issue",
    "dax_copy_from_iter",
    "_copy_from_iter",
    "copy_page_from_iter",
    "__copy_user",
    "__memcpy_flushcache",
    "arch_wb_cache_pmem",
    "generic_nvdimm_flush",
    "nvdimm_flush",
    "pre_",
    "entry_",
    "ret_",
    "reserve",
    "stack_trace",
    "arch_stack_walk",
    "kprobe",
    "__kprobe",
    "opt_pre",
    "optimized_callback",
    "kretprobe",
    "__kretprobe",
    "arch_rethook",
    "rethook",
    "ftrace",
    "0x",
    "write_dirty_buffer",
    "sync_dirty_buffer",
    "__sync_dirty_buffer",
    "submit_bio_wait",
    "iov_iter",
    "copy_mc",
    "dax_iomap_cow_copy",
)


class Symbols:
    """Kernel text symbols of the guest (from its /proc/kallsyms) for naming frames."""

    def __init__(self, kallsyms: str) -> None:
        rows = []
        for line in kallsyms.splitlines():
            parts = line.split()
            if len(parts) >= 3:
                rows.append((int(parts[0], 16), parts[2]))
        rows.sort()
        self.addrs = [a for a, _ in rows]
        self.names = [n for _, n in rows]
        self._cache: dict[int, str] = {}

    def name(self, addr: int) -> str:
        hit = self._cache.get(addr)
        if hit is None:
            i = bisect.bisect_right(self.addrs, addr) - 1
            hit = self.names[i] if i >= 0 and addr - self.addrs[i] < 1 << 20 else hex(addr)
            self._cache[addr] = hit
        return hit

    def site(self, kind: Kind, frames: tuple[int, ...]) -> str:
        """`caller.primitive`: the first frame outside the plumbing, then the probed primitive."""
        prim = _PRIMITIVE[kind]
        for a in frames:
            n = self.name(a)
            if not n.startswith(PLUMBING):
                return f"{n}.{prim}"
        return prim


_PRIMITIVE = {
    Kind.MEMCPY_FLUSHCACHE: "memcpy_flushcache",
    Kind.COPY_USER_FLUSHCACHE: "copy_user_flushcache",
    Kind.WB_CACHE_PMEM: "wb_cache_pmem",
    Kind.NVDIMM_FLUSH: "nvdimm_flush",
    Kind.USER_STORE: "store",
    Kind.USER_CLWB: "clwb",
    Kind.USER_SFENCE: "sfence",
    Kind.MARK: "mark",
    Kind.BIO_END: "bio_endio",
    Kind.COPY_MC: "copy_mc",
}
