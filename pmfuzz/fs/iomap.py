"""xfs_iomap.c for daxfs: what a range of a file maps to, allocating as the design says.

`iomap_begin` returns one mapping for a prefix of the requested range (a hole,
an extent, or a COW staging extent over a shared one) and may allocate;
`iomap_end` finishes what the design deferred (unwritten conversion, the COW
remap, or the held-open allocation of `cow-remap`).
"""

from __future__ import annotations

from .config import Bug, Design
from .core import DaxFS
from .inode import CowBlock, Inode
from .iomap_types import Iomap, IomapFlag, IomapType, Req
from .layout import BS
from .locks import LockMode
from .pmemops import memcpy_flushcache, nvdimm_flush
from .reflink import allocate_cow, staged_run, unstaged_len

__all__ = ["IomapType", "IomapFlag", "Req", "Iomap", "iomap_begin", "iomap_end", "MAX_MAP_BLOCKS"]

MAX_MAP_BLOCKS = 1024
"""xfs_direct_write_iomap_begin caps an allocation at 1024 pages."""


def _zero_blocks(fs: DaxFS, pblk: int, n: int) -> None:
    """xfs_zero_extent: blkdev_issue_zeroout on pmem, i.e. flushcache stores of zeroes, no fence."""
    with fs.pm.site("xfs_zero_extent"):
        memcpy_flushcache(fs.pm, pblk * BS, bytes(n * BS))


def _dirty(fs: DaxFS, ip: Inode, lblk: int, n: int) -> IomapFlag:
    if ip.unpushed or (lblk + n) * BS > ip.size:
        return IomapFlag.DIRTY
    return IomapFlag.NONE


def iomap_begin(fs: DaxFS, ip: Inode, pos: int, length: int, req: Req) -> Iomap:
    """xfs_direct_write_iomap_begin for writes and zeroing; xfs_read_iomap_begin otherwise.

    The extent lookup and any allocation run under ILOCK, with no preemption point inside. A mapping
    whose iomap_end will log a transaction (convert, commit, COW remap) is IOMAP_F_DIRTY, as
    xfs_bmbt_to_iomap marks an inode with logged changes: a MAP_SYNC write fault must force that
    transaction before it installs the writable entry, or a persisted store can be lost with it.
    """
    fs.preempt("iomap_begin")
    mode = LockMode.EXCL if req & (Req.WRITE | Req.ZERO) else LockMode.SHARED
    with ip.ilock.hold(fs.sched, mode, preempt=False):
        m = _iomap_begin_locked(fs, ip, pos, length, req)
    if m.deferred:
        m.flags |= IomapFlag.DIRTY
    return m


def _iomap_begin_locked(fs: DaxFS, ip: Inode, pos: int, length: int, req: Req) -> Iomap:
    lblk = pos // BS
    nblk = (pos + length - 1) // BS - lblk + 1
    seg = ip.extents.segments(lblk, min(nblk, MAX_MAP_BLOCKS))[0]
    if seg.pblk is not None:
        shared = [fs.space.shared(seg.pblk + i) for i in range(seg.len)]
        no_cow = fs.cfg.has(Bug.COW_IN_PLACE) or (req & Req.FAULT and fs.cfg.has(Bug.WRITE_FAULT_SHARED_NO_COW))
        if req & (Req.WRITE | Req.ZERO) and shared[0] and not no_cow:
            k = shared.index(False) if False in shared else seg.len
            return allocate_cow(fs, ip, seg.lblk, k, seg.pblk, seg.unwritten, req)
        if True in shared:
            k = shared.index(True) if not shared[0] else (shared.index(False) if False in shared else seg.len)
            seg = type(seg)(seg.lblk, k, seg.pblk, seg.unwritten)
    flags = _dirty(fs, ip, seg.lblk, seg.len)
    if not req & Req.WRITE or req & Req.UNSHARE:
        if seg.hole:
            return Iomap(IomapType.HOLE, seg.lblk, seg.len, None, flags)
        t = IomapType.UNWRITTEN if seg.unwritten else IomapType.MAPPED
        return Iomap(t, seg.lblk, seg.len, seg.pblk, flags)
    if not seg.hole and not seg.unwritten:
        return Iomap(IomapType.MAPPED, seg.lblk, seg.len, seg.pblk, flags)
    return _write_alloc(fs, ip, seg.lblk, seg.len, seg.pblk, req)


def _write_alloc(fs: DaxFS, ip: Inode, lblk: int, n: int, pblk: int | None, req: Req) -> Iomap:
    """A write into a hole or an unwritten extent, the way the design does it."""
    design = fs.cfg.design
    pm = fs.pm
    if design is Design.COW_REMAP and pblk is None:
        return _cow_remap_hole(fs, ip, lblk, n, req)
    if pblk is None:
        with pm.site("xfs_bmapi_allocate"):
            pblk, n = fs.alloc(n, hint=_hint(ip, lblk))
        fresh = True
    else:
        fresh = False
    if design is Design.ZERO or (req & Req.FAULT and design is Design.COW_REMAP):
        return _zero_then_commit(fs, ip, lblk, n, pblk)
    if design is Design.UNWRITTEN:
        if fresh:
            with pm.site("xfs_iomap_write_direct"), fs.journal.trans("xfs_iomap_write_direct") as tp:
                ip.extents.set_range(lblk, n, pblk, unwritten=True)
                fs.log_bitmap(tp, pblk, n)
                fs.log_inode(tp, ip)
        if fs.cfg.has(Bug.CONVERT_BEFORE_PERSIST):
            _convert(fs, ip, lblk, n, pblk)
            if req & Req.FAULT:
                with pm.site("dax_fault.zero_block"):
                    memcpy_flushcache(pm, pblk * BS, bytes(n * BS))
            return Iomap(IomapType.MAPPED, lblk, n, pblk, IomapFlag.NEW | _dirty(fs, ip, lblk, n))
        m = Iomap(IomapType.UNWRITTEN, lblk, n, pblk, IomapFlag.NEW | _dirty(fs, ip, lblk, n))
        m.deferred.append("convert")
        m.staged = _filling(ip, lblk, n, pblk)
        if req & Req.FAULT:
            with pm.site("dax_fault.zero_block"):
                _zero_unfilled(fs, m.staged, lblk, n, pblk)
        return m
    # cow-remap into a preallocated (unwritten) extent: write the data, then convert.
    m = Iomap(IomapType.UNWRITTEN, lblk, n, pblk, IomapFlag.NEW | _dirty(fs, ip, lblk, n))
    m.deferred.append("convert")
    m.staged = _filling(ip, lblk, n, pblk)
    return m


def _filling(ip: Inode, lblk: int, n: int, pblk: int) -> dict[int, CowBlock]:
    """Register unwritten blocks as being filled by this op until it converts them (sharing the
    entries a racing op registered: whoever fills a block first marks it filled for both)."""
    out = {}
    for i in range(n):
        cb = ip.filling.get(lblk + i)
        if cb is None or cb.pblk != pblk + i:
            cb = ip.filling[lblk + i] = CowBlock(pblk + i)
        out[lblk + i] = cb
    return out


def _zero_unfilled(fs: DaxFS, staged: dict[int, CowBlock], lblk: int, n: int, pblk: int) -> None:
    """Zero the blocks [pblk, pblk+n) a racing write(2) has not filled yet, and mark them filled:
    a fault that zeroed a block the write already filled would lose the write's data."""
    i = 0
    while i < n:
        cb = staged.get(lblk + i)
        if cb is not None and cb.pblk == pblk + i and cb.filled:
            i += 1
            continue
        j = i
        while j < n and not ((c := staged.get(lblk + j)) is not None and c.pblk == pblk + j and c.filled):
            if c is not None and c.pblk == pblk + j:
                c.filled = True
            j += 1
        memcpy_flushcache(fs.pm, (pblk + i) * BS, bytes((j - i) * BS))
        i = j


def _cow_remap_hole(fs: DaxFS, ip: Inode, lblk: int, n: int, req: Req) -> Iomap:
    """cow-remap into a hole, as XFS's always-COW mode does: the new blocks are staged in the COW
    fork and committed by iomap_end after the data is in. A racing write fault finds them there
    (xfs_find_trim_cow_extent), zeroes what is not yet filled and commits them itself; before,
    each op allocated its own block and the later commit orphaned the other's, with its mapping."""
    pm = fs.pm
    blocks = staged_run(ip, lblk, n)
    if blocks:
        pblk, n = blocks[lblk].pblk, len(blocks)
    else:
        n = unstaged_len(ip, lblk, n)
        with pm.site("xfs_bmapi_allocate"):
            pblk, n = fs.alloc(n, hint=_hint(ip, lblk))
        if req & Req.FAULT:
            return _zero_then_commit(fs, ip, lblk, n, pblk)
        blocks = {lblk + i: CowBlock(pblk + i) for i in range(n)}
        ip.cow.update(blocks)
        fs.uncommitted.append((pblk, n))
    m = Iomap(IomapType.MAPPED, lblk, n, pblk, IomapFlag.NEW | IomapFlag.DIRTY)
    m.staged = blocks
    m.deferred.append("commit_alloc")
    if req & Req.FAULT:
        with pm.site("dax_fault.zero_block"):
            _zero_unfilled(fs, blocks, lblk, n, pblk)
    return m


def _zero_then_commit(fs: DaxFS, ip: Inode, lblk: int, n: int, pblk: int) -> Iomap:
    """xfs_iomap_write_direct with XFS_BMAPI_ZERO|XFS_BMAPI_CONVERT: zero, then commit as written.

    Blocks of an unwritten extent that a racing write(2) of cow-remap already filled are not zeroed."""
    pm = fs.pm
    zero = not fs.cfg.has(Bug.NO_ZERO)
    late = fs.cfg.has(Bug.ZERO_AFTER_COMMIT)
    if zero and not late:
        with pm.site("xfs_zero_extent"):
            _zero_unfilled(fs, ip.filling, lblk, n, pblk)
    with pm.site("xfs_iomap_write_direct"), fs.journal.trans("xfs_iomap_write_direct") as tp:
        ip.extents.set_range(lblk, n, pblk, unwritten=False)
        fs.log_bitmap(tp, pblk, n)
        fs.log_inode(tp, ip)
    if zero and late:
        _zero_blocks(fs, pblk, n)
    return Iomap(IomapType.MAPPED, lblk, n, pblk, IomapFlag.NEW | _dirty(fs, ip, lblk, n))


def _convert(fs: DaxFS, ip: Inode, lblk: int, n: int, pblk: int) -> None:
    """xfs_iomap_write_unwritten: unwritten -> written in its own transaction."""
    with fs.pm.site("xfs_iomap_write_unwritten"), fs.journal.trans("xfs_iomap_write_unwritten") as tp:
        ip.extents.set_range(lblk, n, pblk, unwritten=False)
        fs.log_inode(tp, ip)


def _hint(ip: Inode, lblk: int) -> int:
    seg = None
    for e in ip.extents:
        if e.end <= lblk:
            seg = e
    return 0 if seg is None else seg.pblk + seg.len + (lblk - seg.end)


def iomap_end(fs: DaxFS, ip: Inode, m: Iomap) -> None:
    """xfs_dax_write_iomap_end, plus what the unwritten and cow-remap designs defer to it."""
    fs.preempt("iomap_end")
    with ip.ilock.hold(fs.sched, LockMode.EXCL, preempt=False):
        _iomap_end_locked(fs, ip, m)


def _iomap_end_locked(fs: DaxFS, ip: Inode, m: Iomap) -> None:
    pm = fs.pm
    for work in m.deferred:
        if work == "convert":
            with pm.site("iomap_end.persist"):
                nvdimm_flush(pm)
            assert m.pblk is not None, "only a mapping over blocks defers a conversion"
            _convert(fs, ip, m.lblk, m.len, m.pblk)
            for lb, cb in m.staged.items():
                if ip.filling.get(lb) is cb:
                    del ip.filling[lb]
        elif work == "commit_alloc":
            with pm.site("iomap_end.persist"):
                nvdimm_flush(pm)
            from .reflink import take_staged, uncommit

            runs = take_staged(ip, m)
            if not runs:
                continue
            for _lb, k, pblk in runs:
                uncommit(fs, pblk, k)
            with pm.site("iomap_end.commit_alloc"), fs.journal.trans("xfs_iomap_write_direct") as tp:
                for lb, k, pblk in runs:
                    ip.extents.set_range(lb, k, pblk, unwritten=False)
                    fs.log_bitmap(tp, pblk, k)
                fs.log_inode(tp, ip)
        elif work == "end_cow":
            from .reflink import end_cow

            end_cow(fs, ip, m)
