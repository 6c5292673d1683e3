"""include/linux/iomap.h for daxfs: the mapping `iomap_begin` returns and its type and flags.

Apart from iomap.py (fs/iomap) so that the COW code in reflink.py can build and read
mappings without importing the code that calls it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from .inode import CowBlock

__all__ = ["IomapType", "IomapFlag", "Req", "Iomap"]


class IomapType(enum.StrEnum):
    HOLE = "IOMAP_HOLE"
    MAPPED = "IOMAP_MAPPED"
    UNWRITTEN = "IOMAP_UNWRITTEN"


class IomapFlag(enum.IntFlag):
    NONE = 0
    NEW = 1
    SHARED = 2
    DIRTY = 4


class Req(enum.IntFlag):
    """Request flags: IOMAP_WRITE, IOMAP_ZERO, IOMAP_FAULT, IOMAP_UNSHARE (IOMAP_DAX is implied)."""

    READ = 0
    WRITE = 1
    ZERO = 2
    FAULT = 4
    UNSHARE = 8
    """dax_file_unshare (with WRITE): a shared extent gets its COW staging extent; holes and unwritten
    extents are returned as they are, never allocated ("We never need to allocate blocks for zeroing
    or unsharing a hole", xfs_buffered_write_iomap_begin)."""


@dataclass
class Iomap:
    """One mapping: file blocks [lblk, lblk+len) and what backs them."""

    type: IomapType
    lblk: int
    len: int
    pblk: int | None = None
    flags: IomapFlag = IomapFlag.NONE
    srcmap: Iomap | None = None
    """For SHARED (COW): the old extent to copy the unaligned head and tail from."""
    deferred: list[str] = field(default_factory=list)
    """Work iomap_end must do: "convert", "commit_alloc", "end_cow"."""
    staged: dict[int, CowBlock] = field(default_factory=dict)
    """The blocks this op stages by file block: COW-fork blocks (over a shared extent, or a hole in
    cow-remap) or unwritten blocks a write(2) fills. They stay this op's even after a racing op
    committed them, so whether they are already filled is still known then."""

    @property
    def end(self) -> int:
        return self.lblk + self.len
