"""In-memory inodes, VMAs, page-table entries and DAX mapping entries (the xarray)."""

from __future__ import annotations

from dataclasses import dataclass, field

from .extents import ExtentMap
from .locks import Lock

__all__ = ["Inode", "Entry", "Pte", "Vma", "PMD_PAGES"]

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
    iolock: Lock = field(init=False)
    mmaplock: Lock = field(init=False)
    ilock: Lock = field(init=False)

    def __post_init__(self) -> None:
        self.iolock = Lock(f"i_rwsem[{self.ino}]")
        self.mmaplock = Lock(f"mmaplock[{self.ino}]")
        self.ilock = Lock(f"ilock[{self.ino}]")

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
