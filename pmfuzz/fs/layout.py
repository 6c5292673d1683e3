"""The daxfs on-media format: geometry, superblock, inodes, extents, refcounts, bitmap, log.

Everything lives on the PMem device in 4 KiB blocks:

    block 0            superblock (one line)
    log                redo log: header, records, commit record
    inode table        64 inodes of 128 bytes
    extent maps        one block per inode: up to 255 extents of 16 bytes
    refcount table     u32 per block: 0 not shared, n>=2 shared n times, COW_STAGING
    free-space bitmap  one bit per block
    data               the rest; formatted with self-describing poison

Block numbers are device-absolute, so a 2 MiB-aligned run of blocks is a
2 MiB-aligned physical range (what a PMD mapping needs).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from ..errors import PmfuzzError

__all__ = [
    "BS",
    "NINODES",
    "MAX_EXTENTS",
    "COW_STAGING",
    "Geometry",
    "SB_FMT",
    "INODE_FMT",
    "EXTENT_FMT",
    "I_INUSE",
    "I_ORPHAN",
    "X_UNWRITTEN",
    "SB_MAGIC",
    "LOG_MAGIC",
    "COMMIT_MAGIC",
]

BS = 4096
NINODES = 64
INODE_SIZE = 128
EXTENT_SIZE = 16
MAX_EXTENTS = BS // EXTENT_SIZE - 1
LOG_BLOCKS = 16
COW_STAGING = 0xFFFFFFFF

SB_MAGIC = 0x3130534658414400  # "\0DAXFS01"
LOG_MAGIC = 0x48474F4C  # "LOGH"
COMMIT_MAGIC = 0x54494D43  # "CMIT"

SB_FMT = struct.Struct("<QIIQIIIIIIIIQ")
"""magic, version, block size, nblocks, log_start, log_blocks, inode_start, extmap_start,
refc_start, bitmap_start, data_start, pad, log_tail (seq of the last checkpointed push)."""
INODE_FMT = struct.Struct("<II8sQI")
"""flags, generation, name, size, nextents."""
EXTENT_FMT = struct.Struct("<IIII")
"""file block, device block, length in blocks, flags."""
LOG_HDR_FMT = struct.Struct("<IIQII")
"""magic, pad, seq, nrecords, record bytes."""
LOG_REC_FMT = struct.Struct("<QII")
"""home address, length, pad; followed by the data padded to 8 bytes."""
COMMIT_FMT = struct.Struct("<IIQII")
"""magic, pad, seq, nrecords, record bytes."""

I_INUSE = 1
I_ORPHAN = 2
X_UNWRITTEN = 1


def _blocks(nbytes: int) -> int:
    return -(-nbytes // BS)


@dataclass(frozen=True, slots=True)
class Geometry:
    size: int
    nblocks: int
    log_start: int
    log_blocks: int
    inode_start: int
    extmap_start: int
    refc_start: int
    bitmap_start: int
    data_start: int

    @classmethod
    def for_size(cls, size: int) -> Geometry:
        if size % BS or size < 256 * BS:
            raise PmfuzzError(f"daxfs needs a device of at least 1 MiB in whole 4 KiB blocks, got {size} bytes")
        nblocks = size // BS
        log_start = 1
        inode_start = log_start + LOG_BLOCKS
        extmap_start = inode_start + _blocks(NINODES * INODE_SIZE)
        refc_start = extmap_start + NINODES
        bitmap_start = refc_start + _blocks(nblocks * 4)
        data_start = bitmap_start + _blocks(-(-nblocks // 8))
        return cls(
            size, nblocks, log_start, LOG_BLOCKS, inode_start, extmap_start, refc_start, bitmap_start, data_start
        )

    @property
    def meta_bytes(self) -> int:
        return self.data_start * BS

    def inode_addr(self, ino: int) -> int:
        return self.inode_start * BS + ino * INODE_SIZE

    def extent_addr(self, ino: int, i: int = 0) -> int:
        return (self.extmap_start + ino) * BS + i * EXTENT_SIZE

    def refc_addr(self, block: int) -> int:
        return self.refc_start * BS + block * 4

    def bitmap_addr(self, block: int) -> int:
        return self.bitmap_start * BS + block // 8

    @property
    def log_addr(self) -> int:
        return self.log_start * BS

    @property
    def log_bytes(self) -> int:
        return self.log_blocks * BS

    def pack_sb(self, log_tail: int) -> bytes:
        return SB_FMT.pack(
            SB_MAGIC,
            1,
            BS,
            self.nblocks,
            self.log_start,
            self.log_blocks,
            self.inode_start,
            self.extmap_start,
            self.refc_start,
            self.bitmap_start,
            self.data_start,
            0,
            log_tail,
        )
