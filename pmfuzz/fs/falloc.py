"""xfs_file_fallocate for daxfs: allocate, zero-range and unshare-range, each with or without keep-size.

The modes run as __xfs_file_fallocate dispatches them (fs/xfs/xfs_file.c since the v6.12 helper
split): IOLOCK_EXCL and MMAPLOCK_EXCL, xfs_break_layouts, then

* allocate (xfs_falloc_allocate_range): xfs_alloc_file_space with XFS_BMAPI_PREALLOC, so every hole
  of the range becomes an unwritten extent;
* zero-range (xfs_falloc_zero_range): xfs_free_file_space (unmap the whole blocks, zero the partial
  edge blocks in place below EOF) and xfs_alloc_file_space over the range rounded out to blocks;
* unshare-range (xfs_falloc_unshare_range): xfs_reflink_unshare -> dax_file_unshare copies every
  shared block of the range, clamped to EOF, into a COW staging block that xfs_reflink_end_cow remaps,
  then xfs_alloc_file_space;

and, unless keep-size, xfs_falloc_setsize extends i_size to the end of the range (xfs_falloc_newsize).
"""

from __future__ import annotations

from ..lang.falloc import FallocMode
from ..lang.workload import PAGE_SIZE, write_lock_span
from ..target import OK, Errno, Result, err
from .config import Bug
from .core import DaxFS
from .dax import (
    _iomap_end_invalidate,
    break_layouts,
    dax_writeback_mapping_range,
    dax_zero_range,
    delete_entries,
    invalidate_inode_pages2_range,
)
from .file import _blocks, _free_blocks_from, _layout_locks, xfs_flush_unmap_range
from .inode import Inode
from .iomap import iomap_begin
from .iomap_types import Iomap, IomapFlag, IomapType, Req
from .layout import BS
from .pmemops import dax_flush, memcpy_cached, memset_flush

__all__ = ["xfs_file_fallocate", "dax_file_unshare"]


def xfs_file_fallocate(fs: DaxFS, ip: Inode, off: int, n: int, mode: FallocMode) -> Result:
    """__xfs_file_fallocate: the new size is decided before the mode's work (xfs_falloc_newsize) and
    applied after it, so a crash in between shows the old size over the new blocks, never the new
    size over blocks not yet allocated or zeroed. Under locks=range the range lock covers the blocks
    the mode touches, to EOF and beyond when the size grows."""
    end = off + n
    keep = bool(mode & FallocMode.KEEP_SIZE)
    span = (lambda: _blocks(off, end)) if keep else (lambda: write_lock_span(ip.size, off, n))
    with _layout_locks(fs, ip, span):
        if break_layouts(fs, ip):
            return err(Errno.EBUSY)
        new_size = end if not keep and end > ip.size else 0
        if mode & FallocMode.ZERO_RANGE:
            xfs_flush_unmap_range(fs, ip, off, end)
            _free_file_space(fs, ip, off, end)
        elif mode & FallocMode.UNSHARE_RANGE:
            _reflink_unshare(fs, ip, off, min(end, ip.size))
        _alloc_file_space(fs, ip, off, end)
        if new_size:
            _falloc_setsize(fs, ip, new_size)
    return OK


def _alloc_file_space(fs: DaxFS, ip: Inode, off: int, end: int) -> None:
    """xfs_alloc_file_space (XFS_BMAPI_PREALLOC): every hole of the blocks under [off, end) becomes unwritten."""
    pm = fs.pm
    b0, b1 = off // BS, -(-end // BS)
    for seg in ip.extents.segments(b0, b1 - b0):
        if not seg.hole:
            continue
        pos, left = seg.lblk, seg.len
        while left:
            with pm.site("xfs_alloc_file_space"):
                pblk, got = fs.alloc(left, hint=0)
            with pm.site("xfs_alloc_file_space"), fs.journal.trans("xfs_alloc_file_space") as tp:
                ip.extents.set_range(pos, got, pblk, unwritten=True)
                fs.log_bitmap(tp, pblk, got)
                fs.log_inode(tp, ip)
            pos += got
            left -= got


def _falloc_setsize(fs: DaxFS, ip: Inode, new: int) -> None:
    """xfs_falloc_setsize -> xfs_setattr_size growing the file: zero past the old EOF, log the size."""
    pm = fs.pm
    with pm.site("xfs_setattr_size.zero"):
        dax_zero_range(fs, ip, ip.size, new)
    ip.size = new
    with pm.site("xfs_setattr_size"), fs.journal.trans("xfs_setattr_size") as tp:
        fs.log_inode(tp, ip)


def _free_file_space(fs: DaxFS, ip: Inode, off: int, end: int) -> None:
    """xfs_free_file_space for zero-range: unmap the whole blocks, then zero what is left of [off, end)
    below EOF ("we must take care not to zero beyond EOF and enlarge i_size"); the holes just made
    are skipped by the zeroing, so only the partial edge blocks are written."""
    first, last = -(-off // BS), end // BS
    if first < last:
        delete_entries(ip, first * BS // PAGE_SIZE, last * BS // PAGE_SIZE)
        _free_blocks_from(fs, ip, first, "xfs_free_file_space", last)
    with fs.pm.site("xfs_free_file_space.zero"):
        dax_zero_range(fs, ip, off, min(end, ip.size))


def _reflink_unshare(fs: DaxFS, ip: Inode, off: int, end: int) -> None:
    """xfs_reflink_unshare: dax_file_unshare, then filemap_write_and_wait_range over the range."""
    if off >= end:
        return
    dax_file_unshare(fs, ip, off, end)
    dax_writeback_mapping_range(fs, ip, off // PAGE_SIZE, -(-end // PAGE_SIZE))


def dax_file_unshare(fs: DaxFS, ip: Inode, pos: int, end: int) -> None:
    """iomap_iter over [pos, end) with IOMAP_WRITE|IOMAP_UNSHARE: iomap_begin stages a COW extent over
    each shared one, dax_unshare_iter fills it, iomap_end (xfs_dax_write_iomap_end) remaps it."""
    while pos < end:
        m = iomap_begin(fs, ip, pos, end - pos, Req.WRITE | Req.UNSHARE)
        k = min(m.end * BS, end) - pos
        if m.flags & IomapFlag.SHARED:
            dax_unshare_iter(fs, ip, m, pos, pos + k)
        _iomap_end_invalidate(fs, ip, m, pos, pos + k)
        pos += k


def dax_unshare_iter(fs: DaxFS, ip: Inode, m: Iomap, pos: int, end: int) -> None:
    """Copy the shared blocks under [pos, end) whole into their staging blocks, and flush the copy.

    Whole blocks: "fsdax: dax_unshare_iter needs to copy entire blocks" (50793801fc7f, v6.12) -- the
    byte range alone left the rest of each staging block stale (bug `unshare-partial-copy`). The
    kernel copies with copy_mc_to_kernel and flushes nothing, so on ADR the copy can still be in the
    cache when the remap reaches the log (bug `unshare-copy-unflushed`); daxfs flushes it, so the
    next fence (the log write's) orders it before the remap. A block a racing op already filled
    holds the file's newest data and is left alone. daxfs shares unwritten extents (XFS does not),
    so an unwritten source is copied as the zeroes it reads as.
    """
    pm = fs.pm
    src = m.srcmap
    assert src is not None and src.pblk is not None and m.pblk is not None
    lo, hi = pos // BS * BS, -(-end // BS) * BS
    invalidate_inode_pages2_range(fs, ip, lo, hi)
    with pm.site("dax_unshare_iter"):
        if fs.cfg.has(Bug.UNSHARE_PARTIAL_COPY):
            _copy_bytes_from_block_start(fs, m, lo // BS, end - pos)
            return
        for lb in range(lo // BS, hi // BS):
            cb = m.staged.get(lb)
            if cb is not None:
                if cb.filled:
                    continue
                cb.filled = True
            dst = (m.pblk + lb - m.lblk) * BS
            if src.type is IomapType.UNWRITTEN:
                memset_flush(pm, dst, BS)
                continue
            memcpy_cached(pm, dst, pm.load((src.pblk + lb - src.lblk) * BS, BS))
            if not fs.cfg.has(Bug.UNSHARE_COPY_UNFLUSHED):
                dax_flush(pm, dst, BS)


def _copy_bytes_from_block_start(fs: DaxFS, m: Iomap, lb: int, n: int) -> None:
    """dax_unshare_iter before 50793801fc7f: dax_iomap_direct_access hands back the start of the page
    whatever pos is, and only iomap_length bytes are copied -- to and from the wrong place when pos is
    unaligned, and never to the end of the last block."""
    pm = fs.pm
    src = m.srcmap
    assert src is not None and src.pblk is not None and m.pblk is not None
    for cb in m.staged.values():
        cb.filled = True
    dst = (m.pblk + lb - m.lblk) * BS
    if src.type is IomapType.UNWRITTEN:
        memset_flush(pm, dst, n)
        return
    memcpy_cached(pm, dst, pm.load((src.pblk + lb - src.lblk) * BS, n))
    dax_flush(pm, dst, n)
