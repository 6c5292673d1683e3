"""The state of the reference model: files (incarnations), their blocks' backing, and mappings."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

import numpy as np

from ..lang.rules import round_up
from ..lang.workload import BLOCK_SIZE

__all__ = ["Backing", "RefFile", "RefMapping"]


class Backing(enum.Enum):
    """Whether a file block has storage behind it (a hole has none)."""

    YES = 1
    UNKNOWN = 2
    """Maybe: a PMD write fault may or may not have allocated the whole 2 MiB."""


@dataclass(eq=False)
class RefFile:
    """One incarnation of a file: created by op `ino`."""

    ino: int
    size: int = 0
    data: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.uint8))
    backed: dict[int, Backing] = field(default_factory=dict)
    version: int = 0
    mappings: int = 0

    def ensure(self, n: int) -> None:
        if len(self.data) < n:
            grown = np.zeros(max(n, 2 * len(self.data)), dtype=np.uint8)
            grown[: len(self.data)] = self.data
            self.data = grown

    def read(self, off: int, n: int) -> bytes:
        end = min(off + n, self.size)
        if off >= end:
            return b""
        self.ensure(end)
        return self.data[off:end].tobytes()

    def put(self, off: int, b: bytes | np.ndarray) -> None:
        self.ensure(off + len(b))
        self.data[off : off + len(b)] = np.frombuffer(b, dtype=np.uint8) if isinstance(b, bytes) else b
        self.version += 1

    def zero(self, off: int, end: int) -> None:
        end = min(end, len(self.data))
        if off < end:
            self.data[off:end] = 0
            self.version += 1

    def grow_to(self, new: int) -> None:
        """Extend the size; bytes beyond the old EOF read as zero (EOF zeroing)."""
        if new > self.size:
            self.zero(self.size, new)
            self.size = new
            self.version += 1

    def set_size(self, new: int) -> None:
        """The size alone, every byte kept: i_size_write, which an extending write(2) does after its
        data is in place (xfs_file_dax_write), so a racing store may change the bytes in between."""
        self.size = new
        self.version += 1

    def shrink_to(self, new: int) -> None:
        """Truncate down: the tail of the new EOF block is zeroed and the rest freed."""
        self.zero(new, len(self.data))
        self.size = new
        self.version += 1

    def words(self) -> np.ndarray:
        """The bytes up to the end of the last block as read-only little-endian uint64 words."""
        n = round_up(max(self.size, 1), BLOCK_SIZE)
        self.ensure(n)
        w = self.data[:n].view("<u8").copy()
        w.flags.writeable = False
        return w


@dataclass(eq=False)
class RefMapping:
    file: RefFile
    off: int
    length: int
    sync: bool
    faulted: set[int] = field(default_factory=set)
    """Pages write-faulted through this MAP_SYNC mapping since the file's layout last changed."""
    first_fault: dict[int, int] = field(default_factory=dict)
    """The op that first write-faulted each page of this MAP_SYNC mapping (never forgotten: the
    earliest fault that may have made the inode's metadata durable, so a window from it is safe)."""
    pins: dict[int, int] = field(default_factory=dict)
    """Pinned pages of the mapping and their pin counts."""
