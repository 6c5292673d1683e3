"""In-memory inodes, VMAs, page-table entries and DAX mapping entries (the xarray)."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

from .extents import ExtentMap
from .locks import Lock, RangeLock

__all__ = ["Inode", "Entry", "Pte", "Vma", "PMD_PAGES", "PinWait", "CowBlock"]

PMD_PAGES = 512


@dataclass(eq=False)
class Entry:
    """A DAX mapping entry for one page (or a PMD of 512 pages at an aligned index)."""

    block: int | None
    """Device block mapped; None for the (huge) zero page."""
    pmd: bool = False
    dirty: bool = False
    towrite: bool = False

    @property
    def zero(self) -> bool:
        return self.block is None


@dataclass(eq=False)
class Pte:
    block: int | None
    writable: bool = False
    pmd: bool = False


@dataclass(eq=False)
class Vma:
    name: str
    inode: Inode
    pgoff: int
    npages: int
    sync: bool
    ptes: dict[int, Pte] = field(default_factory=dict)
    pins: dict[int, list[int]] = field(default_factory=dict)
    """Pinned pages: vpage -> [device block pinned, pin count] (a GUP pin holds the pfn, not the PTE)."""


@dataclass(eq=False)
class CowBlock:
    """One block of the in-memory COW fork: the staging block a copy-on-write of a shared block
    goes to, until xfs_reflink_end_cow moves it into the data fork."""

    pblk: int
    filled: bool = False
    """The block already holds a whole new version (copied around or over): a racing write(2) or
    write fault on the same block finds it here and must not copy the old block over it again."""


@dataclass(eq=False)
class Inode:
    ino: int
    gen: int
    name: str | None
    size: int = 0
    orphan: bool = False
    extents: ExtentMap = field(default_factory=ExtentMap)
    entries: dict[int, Entry] = field(default_factory=dict)
    vmas: list[Vma] = field(default_factory=list)
    unpushed: bool = False
    """Metadata of this inode committed but not yet on the log (drives IOMAP_F_DIRTY)."""
    cow: dict[int, CowBlock] = field(default_factory=dict)
    """The COW fork by file block: staged, not yet remapped (one per in-flight copy-on-write, shared
    by every op that writes the block meanwhile, as XFS's COW fork is)."""
    filling: dict[int, CowBlock] = field(default_factory=dict)
    """Unwritten blocks a write(2) or write fault is initialising, by file block, until its iomap_end
    converts them: a racing write fault zeroes only those not filled yet, and a write(2) leaves the
    edges of one a fault zeroed (and a store may have written) alone."""
    entry_locks: dict[int, Lock] = field(default_factory=dict)
    """The DAX_LOCKED bit of each mapping entry, by page index (a PMD entry locks its head index)."""
    rangelock: RangeLock | None = field(default=None, init=False)
    """The byte-range lock that replaces i_rwsem under locks=range; made on first use."""

    # Made on first use: a recovered image the oracles read takes no lock, and mounts are per crash state.
    @cached_property
    def iolock(self) -> Lock:
        return Lock(f"i_rwsem[{self.ino}]")

    @cached_property
    def mmaplock(self) -> Lock:
        return Lock(f"mmaplock[{self.ino}]")

    @cached_property
    def ilock(self) -> Lock:
        return Lock(f"ilock[{self.ino}]")

    def entry_lock(self, pgoff: int) -> Lock:
        lk = self.entry_locks.get(pgoff)
        if lk is None:
            lk = self.entry_locks[pgoff] = Lock(f"entry[{self.ino}:{pgoff}]")
        return lk

    def range_lock(self) -> RangeLock:
        if self.rangelock is None:
            self.rangelock = RangeLock(f"rangelock[{self.ino}]")
        return self.rangelock

    def locked_entries(self, first: int, last: int) -> list[int]:
        """Page indices in [first, last] whose entry lock is held right now (a fault in progress)."""
        return sorted(i for i, lk in self.entry_locks.items() if first <= i <= last and lk.held)

    def entry_at(self, pgoff: int) -> tuple[int, Entry] | None:
        """The entry covering a file page: its own, or a PMD entry over it."""
        e = self.entries.get(pgoff)
        if e is not None:
            return pgoff, e
        head = pgoff - pgoff % PMD_PAGES
        e = self.entries.get(head)
        if e is not None and e.pmd:
            return head, e
        return None


@dataclass(eq=False)
class PinWait:
    """What dax_layout_busy_page waits on: the pinned pages of one inode, seen as a lock.

    It is free once no VMA of the inode pins a page; its holders are the pinned pages, which belong to
    no thread (a device's DMA), so a wait on it never closes a cycle among threads.
    """

    inode: Inode

    @property
    def name(self) -> str:
        return f"pinned-pages[{self.inode.ino}]"

    def free_for(self, mode: object) -> bool:
        return not any(v.pins for v in self.inode.vmas)

    def holders(self) -> list[str]:
        return [f"{v.name}:{pg}" for v in self.inode.vmas for pg in sorted(v.pins)]
