"""What a file's or a mapping's view is a function of, so the crash-free check reads it again only
when that changed.

Why: `functional` compares every file and mapping with the reference after every op, in every
schedule, and a 4 MiB file or mapping is read whole each time (a fifth of a huge workload's time)
though most ops leave it as it was. daxfs reads a file from its extent map and size and the
device's bytes at the mapped blocks, and a mapping from its page-table entries too; the device
counts its writes per page (`PMem.generation`), so those make a key that changes whenever the view
may.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable

import numpy as np

from ..pmem import PAGE
from .core import DaxFS
from .extents import Extent
from .layout import BS

__all__ = ["content_key", "mapping_key"]


def _pages(exts: Iterable[Extent], blocks: Iterable[int | None] = ()) -> np.ndarray:
    """The device pages the extents and blocks lie in (repeats left in: only their latest write counts)."""
    runs = [np.arange(e.pblk * BS // PAGE, -(-(e.pblk + e.len) * BS // PAGE), dtype=np.int64) for e in exts]
    runs.append(np.fromiter((b * BS // PAGE for b in blocks if b is not None), dtype=np.int64))
    return np.concatenate(runs)


def content_key(fs: DaxFS, name: str) -> Hashable | None:
    """The file's inode, size and extents, and the device's last write to its blocks (None: no such file)."""
    ip = fs.lookup(name)
    if ip is None:
        return None
    exts = tuple(ip.extents)
    return (ip, ip.size, exts, fs.pm.generation(_pages(exts)))


def mapping_key(fs: DaxFS, name: str) -> Hashable | None:
    """The mapping's VMA and page-table entries, its file's key, and the device's last write to any
    block either reaches (None: no such mapping)."""
    vma = fs.vmas.get(name)
    if vma is None:
        return None
    ip = vma.inode
    exts = tuple(ip.extents)
    ptes = tuple(sorted((p, pte.block) for p, pte in vma.ptes.items()))
    gen = fs.pm.generation(_pages(exts, (b for _p, b in ptes)))
    return (vma, vma.pgoff, vma.npages, ip, ip.size, exts, ptes, gen)
