"""The x86 flushcache copies, split into the instructions they execute (arch/x86/lib, Linux 6.1).

The recorder logs a flushcache copy as (destination, length, data); which bytes
went by cached stores and which by movnti, and which lines were clwb'd, follows
from the destination's alignment alone, exactly as the kernel's code decides
it. These functions return that instruction sequence for the replayer.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = ["Insn", "Op", "memcpy_flushcache", "copy_user_flushcache"]

CLFLUSH_SIZE = 64


class Insn(enum.Enum):
    STORE = "store"
    NTSTORE = "ntstore"
    CLWB = "clwb"
    SFENCE = "sfence"


@dataclass(frozen=True, slots=True)
class Op:
    insn: Insn
    addr: int = 0
    off: int = 0
    """Offset of the bytes in the copy's data (stores)."""
    n: int = 0


def memcpy_flushcache(dst: int, size: int) -> list[Op]:
    """__memcpy_flushcache: cached copy + clean_cache_range up to 8-byte alignment, movnti in 8- and
    4-byte units, cached copy + clean_cache_range of the last < 4 bytes. No fence."""
    out: list[Op] = []
    pos = 0
    if dst % 8:
        k = min(size, -dst % 8)
        out += [Op(Insn.STORE, dst, 0, k), *_clean(dst, k)]
        pos = k
        if pos == size:
            return out
    body = (size - pos) // 4 * 4
    if body:
        out.append(Op(Insn.NTSTORE, dst + pos, pos, body))
        pos += body
    if pos < size:
        k = size - pos
        out += [Op(Insn.STORE, dst + pos, pos, k), *_clean(dst + pos, k)]
    return out


def _nocache(dst: int, size: int) -> list[Op]:
    """__copy_user_nocache (copy_user_64.S): ALIGN_DESTINATION byte copy, movnti 8-byte units, one
    4-byte movnti if 4-aligned, cached byte copy of the rest, then sfence."""
    out: list[Op] = []
    pos = 0
    if size >= 8:
        if dst % 8:
            k = -dst % 8
            out.append(Op(Insn.STORE, dst, 0, k))
            pos = k
        body = (size - pos) // 8 * 8
        if body:
            out.append(Op(Insn.NTSTORE, dst + pos, pos, body))
            pos += body
    left = size - pos
    if left and (dst + pos) % 4 == 0 and left >= 4:
        out.append(Op(Insn.NTSTORE, dst + pos, pos, 4))
        pos += 4
        left -= 4
    if left:
        out.append(Op(Insn.STORE, dst + pos, pos, left))
    out.append(Op(Insn.SFENCE))
    return out


def copy_user_flushcache(dst: int, size: int) -> list[Op]:
    """__copy_user_flushcache: __copy_user_nocache, then clean_cache_range of the cached edges."""
    out = _nocache(dst, size)
    if size < 8:
        if dst % 4 or size != 4:
            out += _clean(dst, size)
    else:
        dest = dst
        if dst % 8:
            dest = -(-dst // CLFLUSH_SIZE) * CLFLUSH_SIZE
            out += _clean(dst, 1)
        flushed = dest - dst
        if size > flushed and (size - flushed) % 8:
            out += _clean(dst + size - 1, 1)
    return out


def _clean(addr: int, n: int) -> list[Op]:
    """clean_cache_range: clwb of every line the range touches."""
    lo = addr - addr % CLFLUSH_SIZE
    return [Op(Insn.CLWB, lo, 0, addr + n - lo)]
