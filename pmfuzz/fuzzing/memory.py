"""A long campaign's memory: what one large workload takes is given back to the system after it.

A workload with a 2 MiB zeroing in flight builds tens of thousands of crash-state groups and
arrays; glibc keeps the memory they freed (its mmap threshold rises to the size of the largest
block freed, so later arrays of that size come from the heap, and free heap pages stay mapped).
A 4-hour campaign then sat at its one worst workload's high-water mark from minute 20 on (347 MiB
before, 1,142 MiB after). Trimming after each batch returns the heap's free pages, wherever they
lie. Between trims the heap keeps what it freed: a fixed low mmap threshold (each large array its
own mapping, unmapped when freed) gave memory back sooner but spent a quarter of a campaign's time
in the kernel, mapping and zeroing pages again for every array. Neither call changes what is
computed; on a C library without them nothing is done.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import os
from pathlib import Path
from typing import Any

__all__ = [
    "campaign_resident_mib",
    "freeze_startup_objects",
    "give_back_memory",
    "heap_mib",
    "keep_freed_memory_until_trimmed",
]

_M_TRIM_THRESHOLD = -1
_TRIM_THRESHOLD = 512 << 20
"""Free memory at the heap's top that glibc keeps without a trim (its default, 128 KiB, gave the top
of the heap back after nearly every large array, to fault it in again for the next)."""


def _libc() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or None)
    except OSError:
        return None


_LIBC = _libc()


def keep_freed_memory_until_trimmed() -> None:
    """Let the heap keep what a workload frees until the batch's trim (`give_back_memory`)."""
    fn = getattr(_LIBC, "mallopt", None)
    if fn is not None:
        fn(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD)


_YOUNG = 10_000
"""Container objects allocated (net) before the collector looks at the youngest ones (Python's 700)."""


def freeze_startup_objects() -> None:
    """Move everything alive now (modules, classes, the formatted device) out of the cyclic
    collector's sight: they live as long as the process, and every full collection of a campaign
    walked them again (a fifth of the collector's time). Then let the young generation grow to
    `_YOUNG` objects: a workload's crash points and states are tens of thousands of short-lived
    containers that die by reference count, and at Python's 700 the collector ran 2,100 times over
    seed 1's 232 workloads for 0.85 s of 27 s; at 10,000, 70 times for 0.43 s, cyclic garbage
    waiting for it bounded by the same few MiB."""
    gc.freeze()
    gc.set_threshold(_YOUNG, *gc.get_threshold()[1:])


def give_back_memory() -> None:
    """Return the heap's free pages to the system (between batches: a large workload's are free then)."""
    fn = getattr(_LIBC, "malloc_trim", None)
    if fn is not None:
        fn(0)


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


def _mallinfo2() -> Any:
    fn = getattr(_LIBC, "mallinfo2", None)
    if fn is not None:
        fn.restype = _MallInfo2
    return fn


_MALLINFO2 = _mallinfo2()


def heap_mib() -> tuple[float, float] | None:
    """The C heap's bytes in use and bytes free but kept (MiB, glibc's mallinfo2), so a rising
    resident line can be told apart: live data growing, or freed memory the trim cannot return."""
    if _MALLINFO2 is None:
        return None
    info = _MALLINFO2()
    in_use = info.uordblks + info.hblkhd
    return in_use / (1 << 20), info.fordblks / (1 << 20)


def campaign_resident_mib() -> float | None:
    """The resident memory of this process and every process it started (MiB; Linux's /proc), so
    a campaign's memory over hours is on record whichever process judges: a leak shows as a rising
    line in `pmfuzz plot`. Pages a forked worker still shares with its parent count once (each
    process's proportional share, `Pss`). None where /proc does not say."""
    total, seen, todo = 0.0, set(), ["self"]
    while todo:
        pid = todo.pop()
        mib = _proportional_mib(pid)
        if mib is None:
            if pid == "self":
                return None
            continue  # a worker that ended between the listing and the read
        total += mib
        seen.add(pid)
        todo.extend(c for c in _children(pid) if c not in seen)
    return total


def _proportional_mib(pid: str) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text(encoding="ascii").splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        pages = int(Path(f"/proc/{pid}/statm").read_text(encoding="ascii").split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return pages * os.sysconf("SC_PAGE_SIZE") / (1 << 20)


def _children(pid: str) -> list[str]:
    """The processes `pid`'s threads started (each thread lists its own)."""
    out: list[str] = []
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            try:
                out.extend((task / "children").read_text(encoding="ascii").split())
            except OSError:
                continue
    except OSError:
        pass
    return out
