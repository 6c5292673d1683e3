"""Rules of the kernel that both the POSIX reference and the built-in daxfs model follow.

They live here, apart from both, so that neither borrows the other's copy: a rule the
reference took from the model (or the model from the reference) could be wrong in both at
once and never show as a functional finding. Each one names the kernel code it stands for.
"""

from __future__ import annotations

from typing import Protocol

from .results import Errno
from .workload import BLOCK_SIZE, PAGE_SIZE

__all__ = ["EFAULT", "page_pieces", "reflink_error", "round_up"]

EFAULT: Errno = Errno.EFAULT
"""copy_from_user's error for a bad user buffer."""


def round_up(x: int, a: int) -> int:
    """x rounded up to a multiple of a (the kernel's round_up, for any positive a)."""
    return -(-x // a) * a


def page_pieces(off: int, n: int) -> list[tuple[int, int]]:
    """Split [off, off+n) at page boundaries: (position, length) pieces, as a fault or a copy
    through a mapping handles one page at a time."""
    out = []
    pos, end = off, off + n
    while pos < end:
        k = min(end, (pos // PAGE_SIZE + 1) * PAGE_SIZE) - pos
        out.append((pos, k))
        pos += k
    return out


class _HasSize(Protocol):
    size: int


def reflink_error(src: _HasSize, dst: _HasSize, soff: int, doff: int, n: int) -> Errno | None:
    """The EINVAL rules of FICLONERANGE: the kernel's, from generic_remap_file_range_prep
    (generic_remap_checks): block-aligned offsets, a source range inside the source file, a
    length that is whole blocks unless it ends at the source's EOF and reaches the destination's,
    and no overlap when a file is cloned onto itself."""
    if soff % BLOCK_SIZE or doff % BLOCK_SIZE:
        return Errno.EINVAL
    if soff + n > src.size:
        return Errno.EINVAL
    if n % BLOCK_SIZE and not (soff + n == src.size and doff + n >= dst.size):
        return Errno.EINVAL
    if src is dst and soff < doff + n and doff < soff + n:
        return Errno.EINVAL
    return None
