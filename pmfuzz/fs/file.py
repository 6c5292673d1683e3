"""xfs_file.c / xfs_iops.c / xfs_bmap_util.c for daxfs: the ops of the workload language (fallocate: falloc.py).

Each function takes the mounted fs and returns a `Result`; an op that is
invalid in context returns the errno or signal the op language defines.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass

from ..lang.rules import EFAULT, page_pieces, reflink_error, round_up
from ..lang.workload import PAGE_SIZE, RANGE_END, write_lock_span
from ..target import OK, Errno, Result, Signal, err, sig
from .config import Bug, LockScheme
from .core import DaxFS
from .dax import (
    beyond_eof,
    break_layouts,
    dax_iomap_fault,
    dax_iomap_rw_write,
    dax_writeback_mapping_range,
    dax_zero_range,
    delete_entries,
    fault_lock,
)
from .inode import Inode, Vma
from .layout import BS, NINODES
from .locks import LockMode, RangeDeadlock
from .mapview import mapping_view
from .pmemops import memcpy_flushcache
from .reflink import remap_range

__all__ = [
    "EFAULT",
    "MappedSource",
    "create",
    "unlink",
    "file_dax_write",
    "copy_from_mapping",
    "file_read",
    "setattr_size",
    "punch",
    "reflink",
    "fsync",
    "sync",
    "mmap",
    "munmap",
    "fault",
    "store",
    "persist",
    "mapping_view",
    "mapping_blocks",
    "madvise_dontneed",
    "pin",
    "unpin",
    "dma",
]


@dataclass(frozen=True, slots=True)
class MappedSource:
    """write(2)'s user buffer when it is a live mapping: `len` bytes at offset `off` of mapping `map`."""

    map: str
    off: int
    len: int


def _ranged(fs: DaxFS) -> bool:
    return fs.cfg.locks is LockScheme.RANGE


@contextmanager
def _range_held(fs: DaxFS, ip: Inode, span, mode: LockMode = LockMode.EXCL) -> Iterator[None]:
    """Hold the range `span()` names, re-taking it if the size it depends on moved while we waited."""
    lk = ip.range_lock()
    while True:
        lo, hi = span()
        with lk.hold(fs.sched, lo, hi, mode):
            now = span()
            if lo <= now[0] and now[1] <= hi:
                yield
                return


_WHOLE = (0, RANGE_END)


def _blocks(off: int, end: int) -> tuple[int, int]:
    return off // BS * BS, max(round_up(end, BS), off // BS * BS + BS)


@contextmanager
def _layout_locks(fs: DaxFS, ip: Inode, span, *, mmaplock: bool = True) -> Iterator[None]:
    """i_rwsem, then (locks=range) the range lock on `span()`, then MMAPLOCK, all exclusive.

    Under locks=range, write(2) and read(2) no longer take i_rwsem, so the range lock is what
    excludes them; it comes before MMAPLOCK because a fault takes the range lock first too.
    """
    with ExitStack() as held:
        held.enter_context(ip.iolock.hold(fs.sched))
        if _ranged(fs):
            held.enter_context(_range_held(fs, ip, span))
        if mmaplock:
            held.enter_context(ip.mmaplock.hold(fs.sched))
        yield


@contextmanager
def _io_lock(fs: DaxFS, ip: Inode, span, mode: LockMode) -> Iterator[None]:
    """What read(2) and write(2) hold: i_rwsem (locks=rwsem) or the range lock on `span()` (locks=range)."""
    if _ranged(fs):
        with _range_held(fs, ip, span, mode):
            yield
        return
    with ip.iolock.hold(fs.sched, mode):
        yield


def create(fs: DaxFS, name: str) -> Result:
    """xfs_create: allocate an inode and give it the name, in one transaction."""
    if fs.lookup(name) is not None:
        return err(Errno.EEXIST)
    free = [i for i in range(NINODES) if i not in fs.inodes]
    if not free:
        return err(Errno.ENOSPC)
    ino = free[0]
    ip = Inode(ino, gen=fs.journal.tail + 1, name=name)
    with fs.pm.site("xfs_create"), fs.journal.trans("xfs_create") as tp:
        fs.inodes[ino] = ip
        fs.log_inode(tp, ip)
    return OK


def unlink(fs: DaxFS, name: str) -> Result:
    """xfs_remove, then xfs_inactive once nothing maps the inode (an orphan until then)."""
    ip = fs.lookup(name)
    if ip is None:
        return err(Errno.ENOENT)
    removing = _layout_locks(fs, ip, lambda: _WHOLE, mmaplock=False)
    with removing, fs.pm.site("xfs_remove"), fs.journal.trans("xfs_remove") as tp:
        ip.name = None
        ip.orphan = True
        fs.log_inode(tp, ip)
    if not ip.vmas:
        fs.inactivate(ip)
    return OK


def file_dax_write(fs: DaxFS, ip: Inode, pos: int, data: bytes | MappedSource) -> Result:
    """xfs_file_dax_write: zero the gap past EOF, dax_iomap_rw, then log the new size.

    A `MappedSource` buffer is read once, under the write's lock and before anything changes
    (`copy_from_mapping`); a copy that comes up short makes a short write, one that copies nothing
    fails with the errno of its first page.
    """
    n = data.len if isinstance(data, MappedSource) else len(data)
    with _io_lock(fs, ip, lambda: write_lock_span(ip.size, pos, n), LockMode.EXCL):
        if isinstance(data, MappedSource):
            got = copy_from_mapping(fs, data)
            if isinstance(got, Errno):
                return err(got)
            data = got
        if pos > ip.size:
            with ip.mmaplock.hold(fs.sched), fs.pm.site("xfs_file_write_zero_eof"):
                dax_zero_range(fs, ip, ip.size, pos)
        written = dax_iomap_rw_write(fs, ip, pos, data)
        if pos + written > ip.size:
            ip.size = pos + written
            with fs.pm.site("xfs_setfilesize"), fs.journal.trans("xfs_setfilesize") as tp:
                fs.log_inode(tp, ip)
    return Result(written)


def file_read(fs: DaxFS, ip: Inode, pos: int, n: int) -> Result:
    with _io_lock(fs, ip, lambda: _blocks(pos, pos + n), LockMode.SHARED):
        return Result(fs.read_file(ip, pos, n))


def copy_from_mapping(fs: DaxFS, src: MappedSource) -> bytes | Errno:
    """copy_from_user from a DAX mapping: fault the source pages in (read faults, through the normal
    fault path and its locks), then load them all with no preemption point in between, so that the
    snapshot is one instant against other threads.

    Under locks=range the fault's range lock is taken on every source page, PTE present or not (the
    model does not let the outcome hang on page-table state the reference cannot see; the kernel
    would copy from a page still mapped without faulting). The first page that cannot be read ends
    the copy: outside the mapping or at/past EOF is EFAULT, a range lock refused because this thread
    holds the range (its own write) is EDEADLK. Returns the bytes before that page, or its errno if
    there are none.
    """
    vma = fs.vmas.get(src.map)
    if vma is None:
        return EFAULT
    pages = page_pieces(src.off, src.len)
    for _ in range(_FAULT_RETRIES):
        limit, why = len(pages), None
        for i, (pos, _k) in enumerate(pages):
            vpage = pos // PAGE_SIZE
            if _check_page(vma, vpage) is not None:
                limit, why = i, EFAULT
                break
            try:
                with fault_lock(fs, vma, vpage, False, mmaplock=False):
                    s = None if vma.ptes.get(vpage) is not None else dax_iomap_fault(fs, vma, vpage, False, False)
            except RangeDeadlock:
                limit, why = i, Errno.EDEADLK
                break
            if s is not None:
                limit, why = i, EFAULT
                break
        if any(vma.ptes.get(pos // PAGE_SIZE) is None for pos, _k in pages[:limit]):
            continue
        if limit == 0:
            assert why is not None
            return why
        out = bytearray()
        for pos, k in pages[:limit]:
            pte = vma.ptes[pos // PAGE_SIZE]
            out += bytes(k) if pte.block is None else fs.pm.load(pte.block * BS + pos % PAGE_SIZE, k)
        return bytes(out)
    raise AssertionError(f"copy from {src.map} never found its pages mapped")


def setattr_size(fs: DaxFS, ip: Inode, new: int) -> Result:
    """xfs_setattr_size: zero, set the size, log it, then free the blocks past it. A truncate to the
    same size is a truncate down: xfs_truncate_page zeroes the EOF block's tail, and
    xfs_itruncate_extents frees what lies past EOF."""
    pm = fs.pm
    with _layout_locks(fs, ip, lambda: (min(ip.size, new) // BS * BS, RANGE_END)):
        if break_layouts(fs, ip):
            return err(Errno.EBUSY)
        old = ip.size
        with pm.site("xfs_setattr_size.zero"):
            if new > old:
                dax_zero_range(fs, ip, old, new)
            elif new <= old and new % BS and not fs.cfg.has(Bug.TRUNCATE_NO_ZERO_TAIL):
                dax_zero_range(fs, ip, new, round_up(new, BS))
        ip.size = new
        delete_entries(ip, -(-new // PAGE_SIZE))
        with pm.site("xfs_setattr_size"), fs.journal.trans("xfs_setattr_size") as tp:
            fs.log_inode(tp, ip)
        if new <= old:
            _free_blocks_from(fs, ip, -(-new // BS), "xfs_itruncate_extents")
    return OK


def _free_blocks_from(fs: DaxFS, ip: Inode, first: int, label: str, last: int | None = None) -> None:
    """Unmap file blocks [first, last) one extent per transaction."""
    end = ip.extents.last_block() if last is None else last
    for e in list(ip.extents):
        lo, hi = max(e.lblk, first), min(e.end, end)
        if lo >= hi:
            continue
        with fs.pm.site(label), fs.journal.trans(label) as tp:
            fs.unmap_range(tp, ip, lo, hi - lo)


def xfs_flush_unmap_range(fs: DaxFS, ip: Inode, off: int, end: int) -> None:
    """Before a punch, zero-range or collapse: write back the dirty entries over [off, end) rounded out
    to blocks (filemap_write_and_wait_range), so what was stored through a mapping there is flushed
    before the entries go -- a PMD entry overlapping the range is flushed whole."""
    rounding = max(BS, PAGE_SIZE)
    start, last = off - off % rounding, -(-end // rounding) * rounding
    dax_writeback_mapping_range(fs, ip, start // PAGE_SIZE, last // PAGE_SIZE)


def punch(fs: DaxFS, ip: Inode, off: int, n: int) -> Result:
    """xfs_free_file_space: flush the range, zero the partial edges in place, free the whole blocks inside."""
    pm = fs.pm
    end = off + n
    with _layout_locks(fs, ip, lambda: _blocks(off, end)):
        if break_layouts(fs, ip):
            return err(Errno.EBUSY)
        xfs_flush_unmap_range(fs, ip, off, end)
        first, last = -(-off // BS), end // BS
        with pm.site("xfs_free_file_space.zero"):
            if first >= last:
                dax_zero_range(fs, ip, off, end)
            else:
                dax_zero_range(fs, ip, off, first * BS)
                dax_zero_range(fs, ip, last * BS, end)
        if first < last:
            delete_entries(ip, first * BS // PAGE_SIZE, last * BS // PAGE_SIZE)
            _free_blocks_from(fs, ip, first, "xfs_free_file_space", last)
    return OK


def reflink(fs: DaxFS, src: Inode, dst: Inode, soff: int, doff: int, n: int, *, whole: bool = False) -> Result:
    """xfs_reflink_remap_range: flush both, share the blocks, then update the size.

    As xfs_reflink_remap_prep does, layouts are broken (waiting for pinned pages)
    under the locks before generic_remap_file_range_prep checks the ranges (`whole`:
    FICLONE, which rejects a file cloned onto itself and clones nothing from an empty one).
    """
    pm = fs.pm
    with ExitStack() as locks:
        for ip in sorted({src, dst}, key=lambda i: i.ino):
            locks.enter_context(_layout_locks(fs, ip, lambda: _WHOLE))
        for ip in sorted({src, dst}, key=lambda i: i.ino):
            if break_layouts(fs, ip):
                return err(Errno.EBUSY)
        if whole and n == 0:  # before the overlap check, as generic_remap_file_range_prep does
            return Result(0)
        if whole and src is dst:
            return err(Errno.EINVAL)
        e = reflink_error(src, dst, soff, doff, n)
        if e is not None:
            return err(e)
        for ip in sorted({src, dst}, key=lambda i: i.ino):
            dax_writeback_mapping_range(fs, ip)
        if doff > dst.size:
            with pm.site("xfs_reflink_zero_posteof"):
                dax_zero_range(fs, dst, dst.size, doff)
        delete_entries(dst, doff // PAGE_SIZE, -(-(doff + n) // PAGE_SIZE))
        remap_range(fs, src, dst, soff, doff, n)
        if doff + n > dst.size:
            dst.size = doff + n
            with pm.site("xfs_reflink_update_dest"), fs.journal.trans("xfs_reflink_update_dest") as tp:
                fs.log_inode(tp, dst)
    return OK


def fsync(fs: DaxFS, ip: Inode) -> Result:
    """xfs_file_fsync: write back DIRTY mapping entries, then force the log."""
    with fs.pm.site("xfs_file_fsync"):
        dax_writeback_mapping_range(fs, ip)
        fs.journal.force("xfs_file_fsync")
    return OK


def sync(fs: DaxFS) -> Result:
    """syncfs: every inode's dirty entries, then the log."""
    with fs.pm.site("sync_filesystem"):
        for ip in list(fs.inodes.values()):
            dax_writeback_mapping_range(fs, ip)
        fs.journal.force("sync_filesystem")
    return OK


def mmap(fs: DaxFS, name: str, ip: Inode, off: int, n: int, sync_flag: bool) -> Result:
    if name in fs.vmas or off % PAGE_SIZE:
        return err(Errno.EINVAL)
    vma = Vma(name, ip, off // PAGE_SIZE, -(-n // PAGE_SIZE), sync_flag)
    fs.vmas[name] = vma
    ip.vmas.append(vma)
    return OK


def munmap(fs: DaxFS, name: str) -> Result:
    vma = fs.vmas.get(name)
    if vma is None:
        return err(Errno.EINVAL)
    if vma.pins:
        return err(Errno.EBUSY)
    del fs.vmas[name]
    ip = vma.inode
    ip.vmas.remove(vma)
    if ip.orphan and not ip.vmas and ip.ino in fs.inodes:
        fs.inactivate(ip)
    return OK


_FAULT_RETRIES = 16
"""An access faults again while a racing thread keeps zapping the PTE; more retries is a model bug."""


def _check_page(vma: Vma, vpage: int) -> Signal | None:
    if vpage >= vma.npages:
        return Signal.SIGSEGV
    return None


def _mapped_page(fs: DaxFS, name: str, vpage: int) -> Vma | Result:
    """The mapping an access through `name` at page `vpage` uses, or the error that access gets."""
    vma = fs.vmas.get(name)
    if vma is None:
        return err(Errno.EINVAL)
    bad = _check_page(vma, vpage)
    return vma if bad is None else sig(bad)


def fault(fs: DaxFS, name: str, pgoff: int, write: bool, pmd: bool) -> Result:
    vma = _mapped_page(fs, name, pgoff)
    if isinstance(vma, Result):
        return vma
    pte = vma.ptes.get(pgoff)
    if pte is not None and (pte.writable or not write):
        return OK
    with fs.pm.site("dax_iomap_fault"):
        s = dax_iomap_fault(fs, vma, pgoff, write, pmd)
    return OK if s is None else sig(s)


def store(fs: DaxFS, name: str, off: int, data: bytes) -> Result:
    """User stores through a mapping: a write fault where the PTE is missing or read-only."""
    vma = fs.vmas.get(name)
    if vma is None:
        return err(Errno.EINVAL)
    if fs.sched.concurrent:
        return _store_atomic(fs, vma, name, off, data)
    for pos, k in page_pieces(off, len(data)):
        vpage = pos // PAGE_SIZE
        bad = _check_page(vma, vpage)
        if bad is not None:
            return sig(bad)
        pte = _fault_in_writable(fs, vma, vpage, f"write fault on {name}")
        if isinstance(pte, Signal):
            return sig(pte)
        _check_layout(fs, vma, vpage, pte.block, "store")
        with fs.pm.site("user_store"):
            fs.pm.store(pte.block * BS + pos % PAGE_SIZE, data[pos - off : pos - off + k])
    return OK


def _store_atomic(fs: DaxFS, vma: Vma, name: str, off: int, data: bytes) -> Result:
    """A store under the interleaving explorer: fault every page in, then store them all with no
    preemption point in between, so that the op is one step against the other threads (hardware
    promises less; the explorer stays sound by asking less). A page past EOF ends the store there,
    the pages before it stored: decided in the last pass, with the stores, since a SIGBUS a fault
    returned goes stale at the fault's unlock (a racing fallocate may grow the file there)."""
    pages = page_pieces(off, len(data))
    for _ in range(_FAULT_RETRIES):
        limit, signal = len(pages), None
        faulted = False
        for i, (pos, _k) in enumerate(pages):
            vpage = pos // PAGE_SIZE
            pte = vma.ptes.get(vpage)
            bad = _check_page(vma, vpage)
            if bad is None and (pte is None or not pte.writable):
                bad = Signal.SIGBUS if beyond_eof(fs, vma.inode, (vma.pgoff + vpage) * PAGE_SIZE) else None
            if bad is not None:
                limit, signal = i, bad
                break
            if pte is None or not pte.writable:
                dax_iomap_fault(fs, vma, vpage, True, False)  # a SIGBUS it returns: re-decided above
                faulted = True
                break
        if faulted:
            continue
        for pos, k in pages[:limit]:
            pte = vma.ptes[pos // PAGE_SIZE]
            assert pte.block is not None
            _check_layout(fs, vma, pos // PAGE_SIZE, pte.block, "store")
            with fs.pm.site("user_store"):
                fs.pm.store(pte.block * BS + pos % PAGE_SIZE, data[pos - off : pos - off + k])
        return OK if signal is None else sig(signal)
    raise AssertionError(f"store through {name} never found its pages mapped writable")


def persist(fs: DaxFS, name: str, off: int, n: int) -> Result:
    """pmem_persist on a mapped range: CLWB each line (faulting pages in for read), then SFENCE."""
    vma = fs.vmas.get(name)
    if vma is None:
        return err(Errno.EINVAL)
    for pos, k in page_pieces(off, n):
        vpage = pos // PAGE_SIZE
        bad = _check_page(vma, vpage)
        if bad is not None:
            return sig(bad)
        pte = vma.ptes.get(vpage)
        tries = 0
        while pte is None:
            s = dax_iomap_fault(fs, vma, vpage, False, False)
            if s is not None:
                return sig(s)
            pte = vma.ptes.get(vpage)
            tries += 1
            if tries > _FAULT_RETRIES:
                raise AssertionError(f"read fault on {name} page {vpage} never installed a PTE")
        if pte.block is not None:
            with fs.pm.site("user_persist"):
                fs.pm.clwb(pte.block * BS + pos % PAGE_SIZE, k)
    with fs.pm.site("user_persist"):
        fs.pm.sfence()
    return OK


def mapping_blocks(fs: DaxFS, name: str) -> dict[int, tuple[int | None, int | None]]:
    """Per mapped page of mapping `name`: (block its PTE maps, None for the zero page; block the file has there).

    The file's block is its data-fork block at that offset, written or unwritten, None for a hole:
    a PTE to any other block reaches memory the file no longer owns.
    """
    vma = fs.vmas.get(name)
    if vma is None:
        return {}
    out: dict[int, tuple[int | None, int | None]] = {}
    for vpage, pte in sorted(vma.ptes.items()):
        lblk = (vma.pgoff + vpage) * PAGE_SIZE // BS
        seg = vma.inode.extents.segments(lblk, 1)[0]
        out[vpage] = (pte.block, seg.block_of(lblk))
    return out


def madvise_dontneed(fs: DaxFS, name: str) -> Result:
    """zap_page_range over the whole VMA: the PTEs go; mapping entries, pins and the file stay."""
    vma = fs.vmas.get(name)
    if vma is None:
        return err(Errno.EINVAL)
    fs.preempt("zap_page_range")
    vma.ptes.clear()
    return OK


def _fault_in_writable(fs: DaxFS, vma, vpage: int, what: str):
    """Write-fault a page until it is mapped writable (a racing thread may undo a fault); its PTE or the signal."""
    pte = vma.ptes.get(vpage)
    tries = 0
    while pte is None or not pte.writable:
        s = dax_iomap_fault(fs, vma, vpage, True, False)
        if s is not None:
            return s
        pte = vma.ptes.get(vpage)
        tries += 1
        if tries > _FAULT_RETRIES:
            raise AssertionError(f"{what} page {vpage} never installed a writable PTE")
    assert pte.block is not None
    return pte


def pin(fs: DaxFS, name: str, vpage: int) -> Result:
    """pin_user_pages(FOLL_WRITE|FOLL_LONGTERM): write-fault the page in and hold its block."""
    vma = _mapped_page(fs, name, vpage)
    if isinstance(vma, Result):
        return vma
    pte = _fault_in_writable(fs, vma, vpage, f"pin of {name}")
    if isinstance(pte, Signal):
        return sig(pte)
    held = vma.pins.setdefault(vpage, [pte.block, 0])
    held[1] += 1
    return OK


def unpin(fs: DaxFS, name: str, vpage: int) -> Result:
    vma = fs.vmas.get(name)
    if vma is None or vpage not in vma.pins:
        return err(Errno.EINVAL)
    vma.pins[vpage][1] -= 1
    if not vma.pins[vpage][1]:
        del vma.pins[vpage]
    fs.preempt("unpin_user_page")
    return OK


def dma(fs: DaxFS, name: str, off: int, data: bytes) -> Result:
    """A device writes through the pinned pages (by pfn: no fault, no PTE), as a DMA does."""
    vma = fs.vmas.get(name)
    if vma is None:
        return err(Errno.EINVAL)
    pages = page_pieces(off, len(data))
    if any(pos // PAGE_SIZE not in vma.pins for pos, _ in pages):
        return err(Errno.EINVAL)
    for pos, k in pages:
        vpage = pos // PAGE_SIZE
        block = vma.pins[vpage][0]
        _check_layout(fs, vma, vpage, block, "dma")
        with fs.pm.site("dma"):
            memcpy_flushcache(fs.pm, block * BS + pos % PAGE_SIZE, data[pos - off : pos - off + k])
    return OK


def _check_layout(fs: DaxFS, vma: Vma, vpage: int, block: int, what: str) -> None:
    """Record an access that reaches a block the mapped file no longer has at that page."""
    ip = vma.inode
    lblk = (vma.pgoff + vpage) * PAGE_SIZE // BS
    seg = ip.extents.segments(lblk, 1)[0]
    if seg.block_of(lblk) == block:
        return
    staged = ip.cow.get(lblk)
    if staged is not None and staged.pblk == block:
        return  # a write fault mapped its COW block before its iomap_end remaps it, as the kernel does
    owner = "free"
    for other in fs.inodes.values():
        for e in other.extents:
            if e.pblk <= block < e.pblk + e.len:
                owner = f"block {e.lblk + block - e.pblk} of inode {other.ino} ({other.name or 'unlinked'})"
    if owner == "free" and fs.space.used[block]:
        owner = "allocated, not yet mapped"
    fs.layout_violations.append(
        (fs.pm.current_op, f"{what} through {vma.name} page {vpage} reached device block {block}, now {owner}")
    )
