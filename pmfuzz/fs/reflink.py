"""xfs_reflink.c for daxfs: sharing extents, copy-on-write staging, remap, recovery.

Shared blocks have refcounts (>= 2) in the refcount table. A write to a shared
block stages new blocks (recorded as CoW staging in the refcount table so that
mount can free them: xfs_refcount_alloc_cow_extent), copies into them, and
remaps one extent per transaction (xfs_reflink_end_cow_extent). The cow-remap
design does all of it in one transaction after the copy.
"""

from __future__ import annotations

from .config import Bug, Design
from .core import DaxFS
from .inode import Inode
from .iomap import Iomap, IomapFlag, IomapType, Req
from .layout import BS, COW_STAGING

__all__ = ["allocate_cow", "end_cow", "remap_range"]


def allocate_cow(fs: DaxFS, ip: Inode, lblk: int, n: int, old: int, unwritten: bool, req: Req) -> Iomap:
    """xfs_reflink_allocate_cow: stage new blocks for [lblk, lblk+n) over the shared extent at `old`."""
    pm = fs.pm
    with pm.site("xfs_reflink_allocate_cow"):
        pblk, n = fs.alloc(n, hint=old + n)
    src = Iomap(IomapType.UNWRITTEN if unwritten else IomapType.MAPPED, lblk, n, old)
    m = Iomap(IomapType.MAPPED, lblk, n, pblk, IomapFlag.SHARED | IomapFlag.DIRTY, srcmap=src)
    if fs.cfg.design is Design.COW_REMAP:
        fs.uncommitted.append((pblk, n))
    else:
        with pm.site("xfs_refcount_alloc_cow_extent"), fs.journal.trans("xfs_reflink_allocate_cow") as tp:
            fs.space.refc[pblk : pblk + n] = COW_STAGING
            fs.log_refc(tp, pblk, n)
            fs.log_bitmap(tp, pblk, n)
    if fs.cfg.has(Bug.COW_REMAP_BEFORE_COPY):
        end_cow(fs, ip, m)
    else:
        m.deferred.append("end_cow")
    return m


def end_cow(fs: DaxFS, ip: Inode, m: Iomap) -> None:
    """xfs_reflink_end_cow: map the staged blocks over the old ones, dropping the old references."""
    pm = fs.pm
    pblk = m.pblk
    assert pblk is not None
    if fs.cfg.design is Design.COW_REMAP:
        if (pblk, m.len) in fs.uncommitted:
            fs.uncommitted.remove((pblk, m.len))
        with pm.site("iomap_end.persist"):
            pm.sfence()
        with pm.site("xfs_reflink_end_cow.atomic"), fs.journal.trans("xfs_reflink_end_cow") as tp:
            _remap_one(fs, tp, ip, m.lblk, m.len, pblk)
        return
    # One transaction per extent of the old mapping (xfs_reflink_end_cow_extent).
    pos = m.lblk
    while pos < m.end:
        seg = ip.extents.lookup(pos)
        k = min(seg.len, m.end - pos)
        with pm.site("xfs_reflink_end_cow_extent"), fs.journal.trans("xfs_reflink_end_cow_extent") as tp:
            _remap_one(fs, tp, ip, pos, k, pblk + (pos - m.lblk))
        pos += k


def _remap_one(fs: DaxFS, tp, ip: Inode, lblk: int, n: int, new: int) -> None:
    for seg in ip.extents.set_range(lblk, n, new, unwritten=False):
        fs.drop_ref(tp, seg.pblk, seg.len)  # type: ignore[arg-type]
    fs.space.refc[new : new + n] = 0
    fs.log_refc(tp, new, n)
    fs.log_bitmap(tp, new, n)
    fs.log_inode(tp, ip)


def remap_range(fs: DaxFS, src: Inode, dst: Inode, soff: int, doff: int, n: int) -> None:
    """xfs_reflink_remap_blocks: share src's blocks of [soff, soff+n) at doff in dst, one extent per transaction."""
    pm = fs.pm
    sblk, dblk = soff // BS, doff // BS
    nblk = -(-n // BS)
    pos = 0
    while pos < nblk:
        seg = src.extents.segments(sblk + pos, nblk - pos)[0]
        with pm.site("xfs_reflink_remap_extent"), fs.journal.trans("xfs_reflink_remap_extent") as tp:
            for old in dst.extents.set_range(dblk + pos, seg.len, None):
                fs.drop_ref(tp, old.pblk, old.len)  # type: ignore[arg-type]
            if not seg.hole:
                refc = fs.space.refc
                p = seg.pblk
                assert p is not None
                cur = refc[p : p + seg.len]
                refc[p : p + seg.len] = (cur == 0) * 2 + (cur != 0) * (cur + 1)
                fs.log_refc(tp, p, seg.len)
                dst.extents.set_range(dblk + pos, seg.len, p, seg.unwritten)
            fs.log_inode(tp, dst)
        pos += seg.len
