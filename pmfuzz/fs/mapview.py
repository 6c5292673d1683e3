"""What loads through a mapping return, read as whole runs of pages.

The oracles read every mapping after every op, and a 2 MiB mapping is 512 pages: reading it page by
page (one extent lookup and one device read each) was most of a huge-page workload's time.
"""

from __future__ import annotations

from ..lang.workload import PAGE_SIZE
from ..target import Errno, Result, Signal, err, sig
from .core import DaxFS
from .inode import Vma
from .layout import BS

__all__ = ["mapping_view"]


def mapping_view(fs: DaxFS, name: str, off: int, n: int) -> Result:
    """What loads through a mapping would return, without faulting anything in: a mapped page reads
    its PTE's block (the zero page reads zeroes), an unmapped one the file's data; the first page in
    order that cannot be read gives the signal (past the VMA SIGSEGV, past EOF and unmapped SIGBUS)."""
    vma = fs.vmas.get(name)
    if vma is None:
        return err(Errno.EINVAL)
    if n <= 0:
        return Result(b"")
    first, last = off // PAGE_SIZE, (off + n - 1) // PAGE_SIZE
    bad = _first_bad_page(vma, first, last)
    if bad is not None:
        return sig(bad)
    out = fs.read_blocks(vma.inode, vma.pgoff * PAGE_SIZE + off, n)
    for lo, hi, block in _pte_runs(vma, first, last):
        s, e = max(off, lo * PAGE_SIZE), min(off + n, (hi + 1) * PAGE_SIZE)
        if block is None:
            out[s - off : e - off] = 0
        else:
            out[s - off : e - off] = fs.pm.load_array(block * BS + (s - lo * PAGE_SIZE), e - s)
    return Result(out.tobytes())


def _first_bad_page(vma: Vma, first: int, last: int) -> Signal | None:
    eof_page = -(-vma.inode.size // PAGE_SIZE) - vma.pgoff
    for vpage in range(max(first, eof_page), min(last, vma.npages - 1) + 1):
        if vpage not in vma.ptes:
            return Signal.SIGBUS
    return Signal.SIGSEGV if last >= vma.npages else None


def _pte_runs(vma: Vma, first: int, last: int) -> list[tuple[int, int, int | None]]:
    """The mapped pages in [first, last] as runs (first page, last page, block of the first page or
    None for the zero page) over which the blocks are consecutive."""
    ptes = vma.ptes
    pages = (
        sorted(p for p in ptes if first <= p <= last)
        if len(ptes) < last - first
        else [p for p in range(first, last + 1) if p in ptes]
    )
    runs: list[tuple[int, int, int | None]] = []
    for p in pages:
        b = ptes[p].block
        if runs:
            lo, hi, b0 = runs[-1]
            if hi == p - 1 and (b == b0 if b is None or b0 is None else b == b0 + (p - lo)):
                runs[-1] = (lo, p, b0)
                continue
        runs.append((p, p, b))
    return runs
