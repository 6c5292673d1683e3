"""A small read-only ext4 reader: the recovered image's files, their sizes and contents.

It reads the superblock, group descriptors, inodes, extent trees and the
root directory (linear entries), as fs/ext4 lays them out. File data is read
from the device at every call (never cached), so the engine may swap data
lines of a crash state into an image that was recovered once per metadata
state. Unwritten extents and holes read as zeros.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["Ext4Image", "Extent", "Ext4Error", "allocated_ranges"]

EXT4_SUPER_MAGIC = 0xEF53
EXT4_EXT_MAGIC = 0xF30A
EXT4_EXTENTS_FL = 0x80000
EXT4_INLINE_DATA_FL = 0x10000000
INCOMPAT_64BIT = 0x80
EXT_INIT_MAX_LEN = 1 << 15
ROOT_INO = 2
S_IFMT, S_IFREG = 0o170000, 0o100000

Reader = Callable[[int, int], bytes]


class Ext4Error(Exception):
    """The image cannot be read as ext4 (a finding of the `mount` oracle when it happens after recovery)."""


@dataclass(frozen=True, slots=True)
class Extent:
    lblk: int
    pblk: int
    len: int
    unwritten: bool


@dataclass(frozen=True, slots=True)
class Inode:
    ino: int
    mode: int
    size: int
    links: int
    flags: int
    extents: tuple[Extent, ...]


class Ext4Image:
    """The files of the root directory of an ext4 image; `read` is the device's bytes at (addr, n)."""

    def __init__(self, read: Reader) -> None:
        self._read = read
        sb = read(1024, 1024)
        (magic,) = struct.unpack_from("<H", sb, 56)
        if magic != EXT4_SUPER_MAGIC:
            raise Ext4Error(f"no ext4 superblock (magic {magic:#x})")
        self.block_size = 1024 << struct.unpack_from("<I", sb, 24)[0]
        self.first_data_block = struct.unpack_from("<I", sb, 20)[0]
        self.inodes_per_group = struct.unpack_from("<I", sb, 40)[0]
        self.inode_size = struct.unpack_from("<H", sb, 88)[0]
        incompat = struct.unpack_from("<I", sb, 96)[0]
        self.desc_size = struct.unpack_from("<H", sb, 254)[0] if incompat & INCOMPAT_64BIT else 32
        self.desc_size = self.desc_size or 32
        self.names = self._root()

    def _block(self, n: int) -> bytes:
        return self._read(n * self.block_size, self.block_size)

    def _inode_table(self, group: int) -> int:
        gdt = (self.first_data_block + 1) * self.block_size
        d = self._read(gdt + group * self.desc_size, self.desc_size)
        lo = struct.unpack_from("<I", d, 8)[0]
        hi = struct.unpack_from("<I", d, 0x28)[0] if self.desc_size >= 64 else 0
        return lo | hi << 32

    def inode(self, ino: int) -> Inode:
        g, i = divmod(ino - 1, self.inodes_per_group)
        raw = self._read(self._inode_table(g) * self.block_size + i * self.inode_size, 160)
        mode, size_lo, links, flags = (
            struct.unpack_from("<H", raw, 0)[0],
            struct.unpack_from("<I", raw, 4)[0],
            struct.unpack_from("<H", raw, 26)[0],
            struct.unpack_from("<I", raw, 32)[0],
        )
        size = size_lo | struct.unpack_from("<I", raw, 108)[0] << 32
        if flags & EXT4_INLINE_DATA_FL:
            raise Ext4Error(f"inode {ino} has inline data (not read by pmfuzz's reader)")
        exts: tuple[Extent, ...] = ()
        if flags & EXT4_EXTENTS_FL:
            exts = tuple(self._extents(raw[40:100], ino, 0))
        elif size:
            raise Ext4Error(f"inode {ino} maps blocks without extents")
        return Inode(ino, mode, size, links, flags, exts)

    def _extents(self, node: bytes, ino: int, level: int) -> list[Extent]:
        magic, entries, _max, depth = struct.unpack_from("<HHHH", node, 0)
        if magic != EXT4_EXT_MAGIC or level > 5:
            raise Ext4Error(f"inode {ino}: bad extent header (magic {magic:#x}, level {level})")
        out: list[Extent] = []
        for k in range(entries):
            e = 12 + 12 * k
            if e + 12 > len(node):
                raise Ext4Error(f"inode {ino}: extent node overflows ({entries} entries)")
            if depth == 0:
                lblk, ln, hi, lo = struct.unpack_from("<IHHI", node, e)
                unwritten = ln > EXT_INIT_MAX_LEN
                out.append(Extent(lblk, lo | hi << 32, ln - EXT_INIT_MAX_LEN if unwritten else ln, unwritten))
            else:
                _lblk, lo, hi = struct.unpack_from("<IIH", node, e)
                out += self._extents(self._block(lo | hi << 32), ino, level + 1)
        return out

    def _root(self) -> dict[str, int]:
        root = self.inode(ROOT_INO)
        names: dict[str, int] = {}
        bs = self.block_size
        for ext in root.extents:
            for b in range(ext.len):
                if ext.unwritten:
                    continue
                blk = self._block(ext.pblk + b)
                pos = 0
                while pos + 8 <= bs:
                    ino, rec_len, name_len, _ftype = struct.unpack_from("<IHBB", blk, pos)
                    if rec_len < 8 or pos + rec_len > bs:
                        raise Ext4Error(f"root directory block {ext.pblk + b}: bad entry at {pos}")
                    if ino and name_len:
                        name = blk[pos + 8 : pos + 8 + name_len].decode(errors="replace")
                        if name not in (".", "..", "lost+found"):
                            names[name] = ino
                    pos += rec_len
        return names

    def files(self) -> list[str]:
        return sorted(self.names)

    def allocated_runs(self) -> list[tuple[int, int]]:
        """(first block, count) of every allocated block, from the groups' block bitmaps."""
        sb = self._read(1024, 1024)
        blocks = struct.unpack_from("<I", sb, 4)[0]
        per_group = struct.unpack_from("<I", sb, 32)[0]
        gdt = (self.first_data_block + 1) * self.block_size
        out: list[tuple[int, int]] = []
        for g in range(-(-(blocks - self.first_data_block) // per_group)):
            d = self._read(gdt + g * self.desc_size, self.desc_size)
            bm = struct.unpack_from("<I", d, 0)[0]
            if self.desc_size >= 64:
                bm |= struct.unpack_from("<I", d, 0x20)[0] << 32
            first = self.first_data_block + g * per_group
            n = min(per_group, blocks - first)
            out += _bitmap_runs(self._block(bm), n, first)
        return out

    def stat(self, name: str) -> Inode | None:
        ino = self.names.get(name)
        return None if ino is None else self.inode(ino)

    def read(self, name: str, off: int, n: int) -> bytes:
        ip = self.stat(name)
        if ip is None:
            raise KeyError(name)
        end = min(ip.size, off + n)
        if off >= end:
            return b""
        out = bytearray(end - off)
        bs = self.block_size
        for ext in ip.extents:
            if ext.unwritten:
                continue
            lo, hi = max(off, ext.lblk * bs), min(end, (ext.lblk + ext.len) * bs)
            if lo < hi:
                out[lo - off : hi - off] = self._read(ext.pblk * bs + (lo - ext.lblk * bs), hi - lo)
        return bytes(out)


def allocated_ranges(base, img) -> list[tuple[int, int]]:
    """Byte ranges of the blocks mke2fs allocated, from the block bitmaps of the formatted image
    (`base`, the poisoned device it was made over, is not needed: ext4 says what it allocated)."""
    buf = img.tobytes()
    fs = Ext4Image(lambda a, n: buf[a : a + n])
    return [(b * fs.block_size, (b + n) * fs.block_size) for b, n in fs.allocated_runs()]


def _bitmap_runs(bitmap: bytes, nbits: int, first: int) -> list[tuple[int, int]]:
    bits = [(bitmap[i // 8] >> (i % 8)) & 1 for i in range(nbits)]
    runs: list[tuple[int, int]] = []
    for i, b in enumerate(bits):
        if not b:
            continue
        if runs and runs[-1][0] + runs[-1][1] == first + i:
            runs[-1] = (runs[-1][0], runs[-1][1] + 1)
        else:
            runs.append((first + i, 1))
    return runs
