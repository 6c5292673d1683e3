"""How the kernel touches persistent memory, as PMem instructions.

`memcpy_flushcache` is x86's `__memcpy_flushcache`: cached stores plus CLWB for
the bytes before the first and after the last aligned 8-byte word, non-temporal
stores in between; no fence. `dax_flush` is `arch_wb_cache_pmem` (CLWB, no
fence). `nvdimm_flush` is the fence a REQ_PREFLUSH/REQ_FUA bio gets.
"""

from __future__ import annotations

from ..pmem import PMem

__all__ = ["memcpy_flushcache", "memset_flush", "dax_flush", "nvdimm_flush", "memcpy_cached"]


def memcpy_flushcache(pm: PMem, addr: int, data: bytes) -> None:
    n = len(data)
    head = min(n, (-addr) % 8)
    body = (n - head) // 8 * 8
    if head:
        pm.store(addr, data[:head])
        pm.clwb(addr, head)
    if body:
        pm.ntstore(addr + head, data[head : head + body])
    tail = n - head - body
    if tail:
        a = addr + head + body
        pm.store(a, data[head + body :])
        pm.clwb(a, tail)


def memcpy_cached(pm: PMem, addr: int, data: bytes) -> None:
    """A plain memcpy (copy_mc_to_kernel): cached stores, nothing flushed."""
    pm.store(addr, data)


def memset_flush(pm: PMem, addr: int, n: int) -> None:
    """dax_memzero: memset the range, then dax_flush it."""
    pm.store(addr, bytes(n))
    pm.clwb(addr, n)


def dax_flush(pm: PMem, addr: int, n: int) -> None:
    pm.clwb(addr, n)


def nvdimm_flush(pm: PMem) -> None:
    pm.sfence()
