"""fs/dax.c for daxfs: the write actor, COW copy-around, zeroing, faults, writeback.

write(2) copies with flushcache stores (non-temporal, no fence); the fence
that orders data before metadata is the log write's REQ_PREFLUSH. Faults map
blocks (or the zero page) into VMAs and tag mapping entries DIRTY; fsync
write-protects and flushes DIRTY entries.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from contextlib import contextmanager

from ..lang.workload import PAGE_SIZE, PMD_SIZE
from ..pmem import LINE
from ..target import Signal
from .config import Bug, Design, LockScheme
from .core import DaxFS
from .inode import PMD_PAGES, Entry, Inode, PinWait, Pte, Vma
from .iomap import iomap_begin, iomap_end
from .iomap_types import Iomap, IomapFlag, IomapType, Req
from .layout import BS
from .locks import LockMode
from .pmemops import dax_flush, memcpy_cached, memcpy_flushcache, memset_flush

__all__ = [
    "dax_iomap_rw_write",
    "dax_zero_range",
    "dax_iomap_fault",
    "fault_lock",
    "dax_writeback_mapping_range",
    "break_layouts",
    "delete_entries",
    "invalidate_inode_pages2_range",
    "Fault",
]

PAGE = BS


class Fault(enum.StrEnum):
    """What a fault handler returns (VM_FAULT_*)."""

    NOPAGE = "VM_FAULT_NOPAGE"
    SIGBUS = "VM_FAULT_SIGBUS"
    FALLBACK = "VM_FAULT_FALLBACK"


# -- mapping entries ------------------------------------------------------------------


def _unmap_page_ptes(ip: Inode, pgoff: int, npages: int = 1) -> None:
    """unmap_mapping_pages: drop PTEs of file pages [pgoff, pgoff+npages) in every VMA."""
    for vma in ip.vmas:
        lo = max(pgoff, vma.pgoff)
        hi = min(pgoff + npages, vma.pgoff + vma.npages)
        for fp in range(lo, hi):
            vma.ptes.pop(fp - vma.pgoff, None)


def invalidate_inode_pages2_range(fs: DaxFS, ip: Inode, pos: int, end: int) -> None:
    """Drop clean entries over [pos, end) and their PTEs (zero-page PTEs included); dirty ones stay.

    Each entry is locked while it is dropped (__dax_invalidate_entry waits for a locked entry),
    so a fault in progress on the range finishes first and its zero page is dropped with it.
    """
    p0, p1 = pos // PAGE, (end - 1) // PAGE
    keep_huge_zero = fs.cfg.has(Bug.WRITE_KEEPS_HUGE_ZERO_PAGE)
    todo = {i for i in ip.locked_entries(p0 - PMD_PAGES + 1, p1) if i >= p0 or i % PMD_PAGES == 0}
    for idx, e in ip.entries.items():
        if idx + (PMD_PAGES if e.pmd else 1) > p0 and idx <= p1:
            todo.add(idx)
    for idx in sorted(todo):
        with ip.entry_lock(idx).hold(fs.sched):
            cur = ip.entries.get(idx)
            if cur is None:
                continue
            span = PMD_PAGES if cur.pmd else 1
            if idx + span <= p0 or idx > p1 or cur.dirty or cur.towrite:
                continue
            if keep_huge_zero and cur.pmd and cur.zero:
                continue
            del ip.entries[idx]
            _unmap_page_ptes(ip, idx, span)


def _clear_dirty_range(ip: Inode, pos: int, end: int, m: Iomap) -> None:
    """__dax_clear_dirty_range: the COW replaces these pages, so their old dirt is moot -- the copy
    reads it through the cache and persists it in the new block.

    Not a page whose staging block a racing write fault already filled: the copy leaves that
    block alone (`dax_iomap_copy_around`), so what the fault's store left in the cache there is
    new dirt nothing else will write back, and fsync must still flush it."""
    p0, p1 = pos // PAGE, (end - 1) // PAGE
    for idx, e in ip.entries.items():
        span = PMD_PAGES if e.pmd else 1
        if idx + span > p0 and idx <= p1 and not _filled(m, idx * PAGE):
            e.dirty = e.towrite = False


def delete_entries(ip: Inode, first_page: int, last_page: int | None = None) -> None:
    """truncate_inode_pages_range for DAX: delete entries (dirty or not) and unmap them."""
    for idx in list(ip.entries):
        e = ip.entries[idx]
        span = PMD_PAGES if e.pmd else 1
        if idx + span <= first_page or (last_page is not None and idx >= last_page):
            continue
        del ip.entries[idx]
        _unmap_page_ptes(ip, idx, span)


def break_layouts(fs: DaxFS, ip: Inode) -> bool:
    """xfs_break_dax_layouts: unmap the whole file from every VMA, then wait until no page is pinned
    (dax_layout_busy_page). Returns True if the caller must give up with EBUSY instead: run
    sequentially, nobody could ever unpin."""
    fs.preempt("break_layouts")
    for vma in ip.vmas:
        vma.ptes.clear()
    if fs.cfg.has(Bug.TRUNCATE_IGNORES_PINS):
        return False
    busy = PinWait(ip)
    while not busy.free_for(None):
        if not fs.sched.concurrent:
            return True
        fs.sched.block(busy, LockMode.EXCL)
    return False


# -- write(2) ---------------------------------------------------------------------------


def dax_iomap_rw_write(fs: DaxFS, ip: Inode, pos: int, data: bytes) -> int:
    """dax_iomap_rw for writes: iomap_begin -> dax_iomap_iter -> iomap_end until done."""
    done = 0
    while done < len(data):
        p = pos + done
        m = iomap_begin(fs, ip, p, len(data) - done, Req.WRITE)
        n = min(m.end * BS, pos + len(data)) - p
        dax_iomap_iter(fs, ip, m, p, data[done : done + n])
        _iomap_end_invalidate(fs, ip, m, p, p + n)
        done += n
    return done


def _iomap_end_invalidate(fs: DaxFS, ip: Inode, m: Iomap, pos: int, end: int) -> None:
    """iomap_end, then, if it changed the block map (convert, deferred commit, COW remap), drop the
    mappings a fault installed over the range meanwhile -- the post-write invalidation of direct I/O
    (kiocb_invalidate_post_direct_write): until then a fault could map the hole, the unwritten
    extent or the old shared block."""
    remaps = bool(m.deferred)
    iomap_end(fs, ip, m)
    if not remaps or (m.flags & IomapFlag.SHARED and fs.cfg.has(Bug.COW_REMAP_STALE_MAPPING)):
        return
    invalidate_inode_pages2_range(fs, ip, pos, end)


def dax_iomap_iter(fs: DaxFS, ip: Inode, m: Iomap, pos: int, data: bytes) -> None:
    """The write actor: tear down stale mappings, copy around for COW, zero new edges, copy."""
    fs.preempt("dax_iomap_iter")
    pm = fs.pm
    end = pos + len(data)
    if m.flags & (IomapFlag.NEW | IomapFlag.SHARED):
        if m.flags & IomapFlag.SHARED:
            _clear_dirty_range(ip, pos, end, m)
        if not (m.flags & IomapFlag.SHARED and fs.cfg.has(Bug.COW_REMAP_STALE_MAPPING)):
            invalidate_inode_pages2_range(fs, ip, pos, end)
    assert m.pblk is not None
    base = m.pblk * BS - m.lblk * BS
    if m.flags & IomapFlag.SHARED:
        dax_iomap_copy_around(fs, m, pos, end)
    elif m.flags & IomapFlag.NEW and fs.cfg.design is not Design.ZERO:
        head0, tail1 = (pos // BS) * BS, -(-end // BS) * BS
        with pm.site("iomap_dio_zero"):
            if pos > head0 and not _filled(m, head0):
                memcpy_flushcache(pm, base + head0, bytes(pos - head0))
            if tail1 > end and not _filled(m, end):
                memcpy_flushcache(pm, base + end, bytes(tail1 - end))
    with pm.site("dax_copy_from_iter"):
        memcpy_flushcache(pm, base + pos, data)
    for lb in range(pos // BS, (end - 1) // BS + 1):
        if (cb := m.staged.get(lb)) is not None:
            cb.filled = True


def _filled(m: Iomap, pos: int) -> bool:
    """A racing write fault already zeroed (and may have stored into) the block at pos."""
    cb = m.staged.get(pos // BS)
    return cb is not None and cb.filled


def dax_iomap_copy_around(fs: DaxFS, m: Iomap, pos: int, end: int) -> None:
    """Copy the unaligned head and tail of the COW blocks from the source; zero them if it is unwritten.

    An edge whose staging block a racing op already filled is left alone: the old block is no
    longer what the file holds there."""
    if fs.cfg.has(Bug.COW_SKIP_TAIL_COPY):
        return
    pm = fs.pm
    src = m.srcmap
    assert src is not None and src.pblk is not None and m.pblk is not None
    dst_base = m.pblk * BS - m.lblk * BS
    src_base = src.pblk * BS - src.lblk * BS
    head0, tail1 = (pos // BS) * BS, -(-end // BS) * BS
    with pm.site("dax_iomap_copy_around"):
        for lo, hi in ((head0, pos), (end, tail1)):
            if hi <= lo:
                continue
            cb = m.staged.get(lo // BS)
            if cb is not None and cb.filled and not fs.cfg.has(Bug.COW_RECOPIES_STAGED_BLOCK):
                continue
            if src.type is IomapType.UNWRITTEN:
                memset_flush(pm, dst_base + lo, hi - lo)
                continue
            memcpy_cached(pm, dst_base + lo, pm.load(src_base + lo, hi - lo))
            if not fs.cfg.has(Bug.COW_EDGES_UNFLUSHED):
                dax_flush(pm, dst_base + lo, hi - lo)


def dax_zero_range(fs: DaxFS, ip: Inode, start: int, end: int) -> None:
    """dax_zero_range: zero the written parts of [start, end); holes and unwritten stay; shared COWs."""
    if end <= start:
        return
    pm = fs.pm
    pos = start
    while pos < end:
        m = iomap_begin(fs, ip, pos, end - pos, Req.ZERO)
        n = min(m.end * BS, end) - pos
        if m.flags & IomapFlag.SHARED:
            dax_iomap_iter(fs, ip, m, pos, bytes(n))
            _iomap_end_invalidate(fs, ip, m, pos, pos + n)
        elif m.type is IomapType.MAPPED:
            assert m.pblk is not None
            with pm.site("dax_memzero"):
                memset_flush(pm, m.pblk * BS + (pos - m.lblk * BS), n)
        pos += n


# -- faults ------------------------------------------------------------------------------


@contextmanager
def fault_lock(fs: DaxFS, vma: Vma, vpage: int, pmd: bool, *, mmaplock: bool = True) -> Iterator[None]:
    """What a page fault holds around dax_iomap_{pte,pmd}_fault, by lock scheme.

    locks=rwsem: MMAPLOCK shared (`mmaplock=False` leaves it to the caller). locks=range: the
    file's range lock shared over the faulting page, or the 2 MiB a PMD fault may map, instead of
    MMAPLOCK; raises `RangeDeadlock` if this thread holds an overlapping range exclusive (a write(2)
    faulting in its own source).
    """
    ip = vma.inode
    if fs.cfg.locks is not LockScheme.RANGE:
        if not mmaplock:
            yield
            return
        with ip.mmaplock.hold(fs.sched, LockMode.SHARED):
            yield
        return
    pos = (vma.pgoff + vpage) * PAGE_SIZE
    lo, hi = (pos - pos % PMD_SIZE, pos - pos % PMD_SIZE + PMD_SIZE) if pmd else (pos, pos + PAGE_SIZE)
    with ip.range_lock().hold(fs.sched, lo, hi, LockMode.SHARED):
        yield


def _fault_is_synchronous(vma: Vma, write: bool, m: Iomap) -> bool:
    return write and vma.sync and bool(m.flags & IomapFlag.DIRTY)


def dax_iomap_fault(fs: DaxFS, vma: Vma, vpage: int, write: bool, pmd: bool) -> Signal | None:
    """xfs_dax_fault_locked: take MMAPLOCK (the page's range lock under locks=range), try a PMD fault
    if asked, fall back to a PTE fault."""
    with fault_lock(fs, vma, vpage, pmd):
        if pmd:
            r = dax_iomap_pmd_fault(fs, vma, vpage, write)
            if r is not Fault.FALLBACK:
                return Signal.SIGBUS if r is Fault.SIGBUS else None
        r = dax_iomap_pte_fault(fs, vma, vpage, write)
        return Signal.SIGBUS if r is Fault.SIGBUS else None


def beyond_eof(fs: DaxFS, ip: Inode, pos: int) -> bool:
    """Does a fault at file offset `pos` find it past EOF (VM_FAULT_SIGBUS)?"""
    if fs.cfg.has(Bug.FAULT_EOF_ROUND_UP):
        return pos >= ip.size + PAGE - 1
    return pos >= ip.size


def dax_iomap_pte_fault(fs: DaxFS, vma: Vma, vpage: int, write: bool) -> Fault:
    """grab_mapping_entry, iomap_begin, install (zero page, block, or COW copy), iomap_end, unlock.

    The entry lock is held across the whole fault: that is what orders a read fault on a hole
    against a racing write(2) that allocates the block and invalidates the range.
    """
    pm = fs.pm
    ip = vma.inode
    pgoff = vma.pgoff + vpage
    pos = pgoff * PAGE
    if beyond_eof(fs, ip, pos):
        return Fault.SIGBUS
    req = Req.WRITE | Req.FAULT if write else Req.FAULT
    early = fs.cfg.has(Bug.FAULT_IOMAP_BEFORE_ENTRY_LOCK)
    m: Iomap | None = None
    if early:
        with pm.site("dax_iomap_pte_fault"):
            m = iomap_begin(fs, ip, pos, PAGE, req)
    sync = False
    with ip.entry_lock(pgoff).hold(fs.sched):
        cur = ip.entry_at(pgoff)
        if cur is not None and cur[1].pmd and cur[1].zero:
            del ip.entries[cur[0]]
            _unmap_page_ptes(ip, cur[0], PMD_PAGES)
            cur = None
        if m is None:
            with pm.site("dax_iomap_pte_fault"):
                m = iomap_begin(fs, ip, pos, PAGE, req)
        if not write and (m.type is IomapType.HOLE or (m.type is IomapType.UNWRITTEN and not m.deferred)):
            if cur is None:
                ip.entries[pgoff] = Entry(None)
            vma.ptes[vpage] = Pte(None, writable=False)
        else:
            assert m.pblk is not None
            block = m.pblk + (pgoff - m.lblk)
            sync = _fault_is_synchronous(vma, write, m)
            if cur is not None and cur[1].pmd:
                if cur[1].block is not None and cur[1].block + (pgoff - cur[0]) == block:
                    entry = cur[1]
                else:
                    del ip.entries[cur[0]]
                    _unmap_page_ptes(ip, cur[0], PMD_PAGES)
                    cur = None
            if cur is None or not cur[1].pmd:
                old = ip.entries.get(pgoff)
                if old is not None and (old.zero or old.block != block):
                    _unmap_page_ptes(ip, pgoff)
                entry = old if old is not None and old.block == block else Entry(block)
                ip.entries[pgoff] = entry
            if write and not sync:
                entry.dirty = True
            if write and m.flags & IomapFlag.SHARED:
                _copy_page_for_cow(fs, m, pgoff)
            if not sync:
                vma.ptes[vpage] = Pte(block, writable=write)
        with pm.site("dax_iomap_pte_fault.iomap_end"):
            iomap_end(fs, ip, m)
    if sync:
        dax_finish_sync_fault(fs, vma, vpage, pgoff, 1)
    return Fault.NOPAGE


def _copy_page_for_cow(fs: DaxFS, m: Iomap, pgoff: int) -> None:
    """dax_iomap_copy_around for a fault: the whole page from the source (or zeroes), unless a racing
    write(2) or fault already filled the staging block."""
    pm = fs.pm
    src = m.srcmap
    assert src is not None and src.pblk is not None and m.pblk is not None
    cb = m.staged.get(pgoff)
    if cb is not None:
        if cb.filled and not fs.cfg.has(Bug.COW_RECOPIES_STAGED_BLOCK):
            return
        cb.filled = True
    dst = (m.pblk + pgoff - m.lblk) * BS
    with pm.site("dax_iomap_copy_around.fault"):
        if src.type is IomapType.UNWRITTEN:
            memset_flush(pm, dst, PAGE)
            return
        memcpy_cached(pm, dst, pm.load((src.pblk + pgoff - src.lblk) * BS, PAGE))
        if not fs.cfg.has(Bug.COW_EDGES_UNFLUSHED):
            dax_flush(pm, dst, PAGE)


def dax_finish_sync_fault(fs: DaxFS, vma: Vma, vpage: int, pgoff: int, npages: int) -> None:
    """MAP_SYNC: make the block map durable (vfs_fsync_range, datasync), then map it writable."""
    ip = vma.inode
    if not fs.cfg.has(Bug.MAP_SYNC_NO_COMMIT):
        with fs.pm.site("dax_finish_sync_fault"):
            dax_writeback_mapping_range(fs, ip, pgoff, pgoff + npages)
            fs.journal.force("dax_finish_sync_fault")
    fs.preempt("dax_insert_pfn_mkwrite")
    cur = ip.entry_at(pgoff)
    if cur is None:
        return  # invalidated meanwhile by a racing write(2): the access faults again
    head, entry = cur
    entry.dirty = True
    for i in range(npages):
        block = entry.block + (pgoff + i - head) if entry.block is not None else None
        vma.ptes[vpage + i] = Pte(block, writable=True, pmd=npages > 1)


def dax_iomap_pmd_fault(fs: DaxFS, vma: Vma, vpage: int, write: bool) -> Fault:
    """dax_iomap_pmd_fault: map 2 MiB at once, or fall back to PTEs where the kernel does."""
    ip = vma.inode
    pgoff = vma.pgoff + vpage
    index = pgoff - pgoff % PMD_PAGES
    vhead = vpage - (pgoff - index)
    max_pgoff = -(-ip.size // PAGE)
    if beyond_eof(fs, ip, pgoff * PAGE):
        return Fault.SIGBUS
    if vma.pgoff % PMD_PAGES or vhead < 0 or vhead + PMD_PAGES > vma.npages:
        return Fault.FALLBACK
    if (index | (PMD_PAGES - 1)) >= max_pgoff:
        return Fault.FALLBACK
    with ip.entry_lock(index).hold(fs.sched):
        return _pmd_fault_locked(fs, vma, vpage, write, index, vhead)


def _pmd_fault_locked(fs: DaxFS, vma: Vma, vpage: int, write: bool, index: int, vhead: int) -> Fault:
    """The PMD fault with its (head) entry locked."""
    ip = vma.inode
    for idx, e in ip.entries.items():
        if not e.pmd and index <= idx < index + PMD_PAGES:
            return Fault.FALLBACK
    lblk = index
    segs = ip.extents.segments(lblk, PMD_PAGES)
    if any(index <= lb < index + PMD_PAGES for lb in ip.cow):
        return Fault.FALLBACK  # a racing write(2) staged part of it: iomap_begin maps less than a PMD
    whole_hole = len(segs) == 1 and (segs[0].hole or segs[0].unwritten)
    if not write and whole_hole:
        ip.entries[index] = Entry(None, pmd=True)
        for i in range(PMD_PAGES):
            vma.ptes[vhead + i] = Pte(None, writable=False, pmd=True)
        return Fault.NOPAGE
    pm = fs.pm
    if write and len(segs) == 1 and segs[0].hole:
        start = fs.space.alloc_aligned(PMD_PAGES)
        if start is None:
            return Fault.FALLBACK
        with pm.site("dax_iomap_pmd_fault"):
            from .iomap import _zero_then_commit

            m = _zero_then_commit(fs, ip, lblk, PMD_PAGES, start)
        block = start
    else:
        seg = segs[0]
        if (
            len(segs) != 1
            or seg.pblk is None
            or seg.unwritten
            or seg.pblk % PMD_PAGES
            or any(fs.space.shared(seg.pblk + i) for i in range(PMD_PAGES))
        ):
            return Fault.FALLBACK
        block = seg.pblk
        m = Iomap(IomapType.MAPPED, lblk, PMD_PAGES, block, IomapFlag.DIRTY if ip.unpushed else IomapFlag.NONE)
    assert block is not None
    sync = _fault_is_synchronous(vma, write, m)
    old = ip.entries.get(index)
    if old is None or old.zero:
        if old is not None:
            _unmap_page_ptes(ip, index, PMD_PAGES)
        old = Entry(block, pmd=True)
        ip.entries[index] = old
    if write and not sync:
        old.dirty = True
    if sync:
        dax_finish_sync_fault(fs, vma, vhead, index, PMD_PAGES)
    else:
        for i in range(PMD_PAGES):
            vma.ptes[vhead + i] = Pte(block + i, writable=write, pmd=True)
    return Fault.NOPAGE


# -- writeback ---------------------------------------------------------------------------


def dax_writeback_mapping_range(fs: DaxFS, ip: Inode, first: int = 0, last: int | None = None) -> None:
    """fsync's data half: write-protect, flush and clean every DIRTY entry in the page range."""
    if fs.cfg.has(Bug.FSYNC_NO_FLUSH):
        return
    pm = fs.pm
    todo = []
    for idx, e in sorted(ip.entries.items()):
        span = PMD_PAGES if e.pmd else 1
        if e.dirty and idx + span > first and (last is None or idx < last):
            e.towrite = True
            todo.append((idx, e, span))
    for idx, e, span in todo:
        fs.preempt("dax_writeback_one")
        for vma in ip.vmas:
            for fp in range(max(idx, vma.pgoff), min(idx + span, vma.pgoff + vma.npages)):
                pte = vma.ptes.get(fp - vma.pgoff)
                if pte is not None:
                    pte.writable = False
        if e.block is not None:
            with pm.site("dax_writeback_one"):
                dax_flush(pm, e.block * BS, span * PAGE)
        e.dirty = e.towrite = False


def line_span(addr: int, n: int) -> tuple[int, int]:
    return addr - addr % LINE, n + addr % LINE
