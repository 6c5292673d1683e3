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
from .inode import CowBlock, Inode
from .iomap_types import Iomap, IomapFlag, IomapType, Req
from .layout import BS, COW_STAGING

__all__ = ["allocate_cow", "end_cow", "remap_range", "staged_run", "take_staged", "uncommit", "unstaged_len"]


def allocate_cow(fs: DaxFS, ip: Inode, lblk: int, n: int, old: int, unwritten: bool, req: Req) -> Iomap:
    """xfs_reflink_allocate_cow: the COW-fork blocks for [lblk, lblk+n) over the shared extent at `old`.

    Blocks already staged in the COW fork (by a racing write(2) or write fault whose remap has not
    run yet) are returned as they are, as xfs_find_trim_cow_extent does; only a range with none
    staged gets new blocks.
    """
    pm = fs.pm
    fork = ip.cow
    staged = staged_run(ip, lblk, n)
    if staged:
        m = _cow_iomap(lblk, len(staged), staged[lblk].pblk, old, unwritten)
        m.staged = staged
        m.deferred.append("end_cow")
        return m
    n = unstaged_len(ip, lblk, n)
    with pm.site("xfs_reflink_allocate_cow"):
        pblk, n = fs.alloc(n, hint=old + n)
    for i in range(n):
        fork[lblk + i] = CowBlock(pblk + i)
    m = _cow_iomap(lblk, n, pblk, old, unwritten)
    m.staged = {lblk + i: fork[lblk + i] for i in range(n)}
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


def staged_run(ip: Inode, lblk: int, n: int) -> dict[int, CowBlock]:
    """xfs_find_trim_cow_extent: the COW-fork blocks from lblk on (at most n), contiguous on the
    device, by file block; empty if lblk has none staged."""
    fork = ip.cow
    first = fork.get(lblk)
    if first is None:
        return {}
    k = 1
    while k < n and (nxt := fork.get(lblk + k)) is not None and nxt.pblk == first.pblk + k:
        k += 1
    return {lblk + i: fork[lblk + i] for i in range(k)}


def unstaged_len(ip: Inode, lblk: int, n: int) -> int:
    """How many of [lblk, lblk+n) precede the first block staged in the COW fork."""
    return next((i for i in range(1, n) if lblk + i in ip.cow), n)


def _cow_iomap(lblk: int, n: int, pblk: int, old: int, unwritten: bool) -> Iomap:
    src = Iomap(IomapType.UNWRITTEN if unwritten else IomapType.MAPPED, lblk, n, old)
    return Iomap(IomapType.MAPPED, lblk, n, pblk, IomapFlag.SHARED | IomapFlag.DIRTY, srcmap=src)


def take_staged(ip: Inode, m: Iomap) -> list[tuple[int, int, int]]:
    """Remove m's blocks that are still in the COW fork; their runs as (lblk, n, pblk).

    A racing op that shared the staging blocks may have remapped them already: then there is
    nothing left to remap (xfs_reflink_end_cow_extent finds no COW-fork extent)."""
    runs: list[tuple[int, int, int]] = []
    for lb in range(m.lblk, m.end):
        cb = ip.cow.get(lb)
        if cb is None or cb is not m.staged.get(lb):
            continue
        del ip.cow[lb]
        if runs and runs[-1][0] + runs[-1][1] == lb:
            runs[-1] = (runs[-1][0], runs[-1][1] + 1, runs[-1][2])
        else:
            runs.append((lb, 1, cb.pblk))
    return runs


def uncommit(fs: DaxFS, pblk: int, n: int) -> None:
    """Drop [pblk, pblk+n) from the runs held open by cow-remap transactions (splitting runs)."""
    out: list[tuple[int, int]] = []
    for b, k in fs.uncommitted:
        lo, hi = max(b, pblk), min(b + k, pblk + n)
        if lo >= hi:
            out.append((b, k))
            continue
        if b < lo:
            out.append((b, lo - b))
        if hi < b + k:
            out.append((hi, b + k - hi))
    fs.uncommitted[:] = out


def end_cow(fs: DaxFS, ip: Inode, m: Iomap) -> None:
    """xfs_reflink_end_cow: map the staged blocks over the old ones, dropping the old references."""
    pm = fs.pm
    runs = take_staged(ip, m)
    if not runs:
        return
    if fs.cfg.design is Design.COW_REMAP:
        for _lb, k, pblk in runs:
            uncommit(fs, pblk, k)
        with pm.site("iomap_end.persist"):
            pm.sfence()
        with pm.site("xfs_reflink_end_cow.atomic"), fs.journal.trans("xfs_reflink_end_cow") as tp:
            for lb, k, pblk in runs:
                _remap_one(fs, tp, ip, lb, k, pblk)
        return
    # One transaction per extent of the old mapping (xfs_reflink_end_cow_extent).
    for lb, k, pblk in runs:
        pos, end = lb, lb + k
        while pos < end:
            seg = ip.extents.lookup(pos)
            j = min(seg.len, end - pos)
            with pm.site("xfs_reflink_end_cow_extent"), fs.journal.trans("xfs_reflink_end_cow_extent") as tp:
                _remap_one(fs, tp, ip, pos, j, pblk + (pos - lb))
            pos += j


def _remap_one(fs: DaxFS, tp, ip: Inode, lblk: int, n: int, new: int) -> None:
    for seg in ip.extents.set_range(lblk, n, new, unwritten=False):
        fs.drop_ref(tp, seg.pblk, seg.len)
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
                fs.drop_ref(tp, old.pblk, old.len)
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
