"""The mounted daxfs: in-memory metadata, its formatting into transactions, mount and recovery.

The op paths live in `file.py` (xfs_file.c), `iomap.py` (xfs_iomap.c),
`dax.py` (fs/dax.c) and `reflink.py` (xfs_reflink.c); they are functions over
this object, as the kernel's are over its structs.
"""

from __future__ import annotations

import numpy as np

from ..lang.workload import FILES
from ..pmem import PMem
from .alloc import NoSpace, Space
from .config import Bug, Config
from .extents import Extent, ExtentMap
from .inode import Inode, Vma
from .journal import Journal, Trans, recover_log
from .layout import (
    BS,
    COW_STAGING,
    EXTENT_FMT,
    I_INUSE,
    I_ORPHAN,
    INODE_FMT,
    MAX_EXTENTS,
    NINODES,
    SB_FMT,
    SB_MAGIC,
    X_UNWRITTEN,
    Geometry,
)
from .layout import (
    INODE_SIZE as INODE_FMT_STRIDE,
)
from .locks import Sched
from .pmemops import memcpy_flushcache, nvdimm_flush

__all__ = ["DaxFS", "MountError", "format_device"]


class MountError(Exception):
    """The device cannot be mounted (bad superblock, corrupt log)."""


def format_device(pm: PMem, poison_fill) -> None:
    """mkfs: superblock, empty log and tables; data blocks hold self-describing poison."""
    geo = Geometry.for_size(pm.size)
    start = geo.data_start * BS
    pm.initialize(start, poison_fill(start, pm.size - start))
    pm.initialize(0, geo.pack_sb(0))
    used = np.zeros(geo.nblocks, dtype=bool)
    used[: geo.data_start] = True
    bits = np.packbits(used, bitorder="little")
    pm.initialize(geo.bitmap_start * BS, bits.tobytes())


class DaxFS:
    """A mounted daxfs instance: the live in-memory state plus the device it runs on."""

    def __init__(self, pm: PMem, cfg: Config, sched: Sched | None = None) -> None:
        self.pm = pm
        self.cfg = cfg
        self.sched = sched or Sched()
        self.geo = Geometry.for_size(pm.size)
        self.inodes: dict[int, Inode] = {}
        self.vmas: dict[str, Vma] = {}
        self.layout_violations: list[tuple[int, str]] = []
        """(op index, what) for every store or DMA that reached a block its file no longer has there."""
        self.uncommitted: list[tuple[int, int]] = []
        """Runs allocated by a transaction held open across a copy (cow-remap): in use in memory, but
        not in any other transaction's view of the bitmap until their own transaction commits them,
        as the AGF buffer the open transaction holds would keep them."""
        self._mount()

    # -- preemption ---------------------------------------------------------

    def preempt(self, label: str) -> None:
        self.sched.preempt(label)

    # -- mount and recovery --------------------------------------------------

    def _mount(self) -> None:
        pm, geo = self.pm, self.geo
        sb = SB_FMT.unpack(pm.load(0, SB_FMT.size))
        if sb[0] != SB_MAGIC:
            raise MountError(f"bad superblock magic {sb[0]:#x}")
        if sb[3] != geo.nblocks or sb[10] != geo.data_start:
            raise MountError(f"superblock geometry ({sb[3]} blocks, data at {sb[10]}) does not match the device")
        try:
            tail = recover_log(pm, geo, sb[12])
        except Exception as e:
            raise MountError(f"log recovery failed: {e}") from e
        self.journal = Journal(pm, geo, self.cfg, None, tail, self._pushed)
        bits = pm.load_array(geo.bitmap_start * BS, -(-geo.nblocks // 8))
        used = np.unpackbits(bits, bitorder="little")[: geo.nblocks].astype(bool)
        refc = pm.load_array(geo.refc_start * BS, geo.nblocks * 4).view("<u4").copy()
        self.space = Space(geo, used, refc)
        table = pm.load(geo.inode_addr(0), NINODES * INODE_FMT_STRIDE)
        in_use = np.frombuffer(table, "<u4")[:: INODE_FMT_STRIDE // 4] & I_INUSE
        for ino in np.flatnonzero(in_use).tolist():
            flags, gen, name, size, next_ = INODE_FMT.unpack_from(table, ino * INODE_FMT_STRIDE)
            if next_ > MAX_EXTENTS:
                raise MountError(f"inode {ino} claims {next_} extents")
            raw = pm.load(geo.extent_addr(ino), max(1, next_) * EXTENT_FMT.size)
            exts = [
                Extent(lblk, pblk, ln, bool(xf & X_UNWRITTEN))
                for lblk, pblk, ln, xf in EXTENT_FMT.iter_unpack(raw[: next_ * EXTENT_FMT.size])
            ]
            nm = name.rstrip(b"\0").decode("ascii", "replace")
            self.inodes[ino] = Inode(
                ino, gen, None if flags & I_ORPHAN else nm, size, bool(flags & I_ORPHAN), ExtentMap(exts)
            )
        self._recover_cow()
        for ip in [ip for ip in self.inodes.values() if ip.orphan]:
            self.inactivate(ip, "xfs_inactive.recover")
        self.journal.force("mount")

    def _recover_cow(self) -> None:
        """xfs_reflink_recover_cow: free CoW staging blocks left by a COW that never remapped."""
        staging = np.flatnonzero(self.space.refc[: self.geo.nblocks] == COW_STAGING)
        if len(staging) == 0:
            return
        with self.pm.site("xfs_reflink_recover_cow"), self.journal.trans("xfs_reflink_recover_cow") as tp:
            for b in staging.tolist():
                self.space.refc[b] = 0
                self.log_refc(tp, b, 1)
                self.free_blocks(tp, b, 1)

    def _pushed(self, busy: list[tuple[int, int]], unshared: list[tuple[int, int]], inodes: set[int]) -> None:
        self.space.clear_busy(busy, unshared)
        for ino in inodes:
            ip = self.inodes.get(ino)
            if ip is not None:
                ip.unpushed = False

    # -- formatting metadata into transactions --------------------------------

    def log_inode(self, tp: Trans, ip: Inode) -> None:
        """Log the inode core and its extent map, formatted at commit time."""
        geo = self.geo
        ino = ip.ino
        tp.inodes.add(ino)
        ip.unpushed = True

        def core() -> tuple[int, bytes]:
            live = self.inodes.get(ino)
            if live is None:
                return geo.inode_addr(ino), bytes(INODE_FMT.size)
            flags = I_INUSE | (I_ORPHAN if live.orphan else 0)
            name = (live.name or "").encode()
            return geo.inode_addr(ino), INODE_FMT.pack(flags, live.gen, name, live.size, len(live.extents))

        def extmap() -> tuple[int, bytes]:
            live = self.inodes.get(ino)
            exts = [] if live is None else live.extents.extents
            if len(exts) > MAX_EXTENTS:
                raise NoSpace
            body = b"".join(EXTENT_FMT.pack(e.lblk, e.pblk, e.len, X_UNWRITTEN if e.unwritten else 0) for e in exts)
            return geo.extent_addr(ino), body or bytes(EXTENT_FMT.size)

        tp.log(core)
        tp.log(extmap)

    def _bitmap_bytes(self, start: int, n: int) -> tuple[int, bytes]:
        lo, hi = start // 8, (start + n - 1) // 8 + 1
        used = self.space.used[lo * 8 : hi * 8]
        if self.uncommitted:
            used = used.copy()
            for b, k in self.uncommitted:
                a, z = max(b, lo * 8), min(b + k, lo * 8 + len(used))
                if a < z:
                    used[a - lo * 8 : z - lo * 8] = False
        bits = np.packbits(used, bitorder="little")
        return self.geo.bitmap_start * BS + lo, bits.tobytes()

    def log_bitmap(self, tp: Trans, start: int, n: int) -> None:
        tp.log(lambda: self._bitmap_bytes(start, n))

    def _refc_bytes(self, start: int, n: int) -> tuple[int, bytes]:
        return self.geo.refc_addr(start), self.space.refc[start : start + n].astype("<u4").tobytes()

    def log_refc(self, tp: Trans, start: int, n: int) -> None:
        if self.cfg.has(Bug.REFCOUNT_NOT_JOURNALED):
            addr, data = self._refc_bytes(start, n)
            with self.pm.site("refcount_update_in_place"):
                memcpy_flushcache(self.pm, addr, data)
                nvdimm_flush(self.pm)
            return
        tp.log(lambda: self._refc_bytes(start, n))

    # -- blocks ----------------------------------------------------------------

    def alloc(self, n: int, hint: int = 0) -> tuple[int, int]:
        """Allocate one run of up to n blocks; when only busy space is left, force the log and retry."""
        try:
            return self.space.alloc(n, hint)
        except NoSpace:
            if not self.space.busy.any() or self.journal.open is not None:
                raise
        self.journal.force("xfs_extent_busy_flush")
        return self.space.alloc(n, hint)

    def free_blocks(self, tp: Trans, start: int, n: int) -> None:
        self.space.free(start, n)
        tp.freed.append((start, n))
        self.log_bitmap(tp, start, n)

    def drop_ref(self, tp: Trans, pblk: int, n: int) -> None:
        """An extent mapping pblk..+n went away: lower refcounts, free blocks nobody else maps."""
        refc = self.space.refc
        shared = np.flatnonzero((refc[pblk : pblk + n] >= 2) & (refc[pblk : pblk + n] != COW_STAGING))
        if len(shared):
            idx = shared + pblk
            last = idx[refc[idx] == 2]
            if len(last):
                self.space.busy_shared[last] = True
                tp.unshared += [(int(b), 1) for b in last]
            refc[idx] = np.where(refc[idx] == 2, 0, refc[idx] - 1)
            lo, hi = int(idx[0]), int(idx[-1]) + 1
            self.log_refc(tp, lo, hi - lo)
        mask = np.ones(n, dtype=bool)
        mask[shared] = False
        run_start = None
        for i in range(n + 1):
            if i < n and mask[i]:
                if run_start is None:
                    run_start = i
            elif run_start is not None:
                self.free_blocks(tp, pblk + run_start, i - run_start)
                run_start = None

    def unmap_range(self, tp: Trans, ip: Inode, lblk: int, n: int) -> None:
        for seg in ip.extents.set_range(lblk, n, None):
            self.drop_ref(tp, seg.pblk, seg.len)
        self.log_inode(tp, ip)

    # -- inodes -----------------------------------------------------------------

    def lookup(self, name: str) -> Inode | None:
        for ip in self.inodes.values():
            if ip.name == name:
                return ip
        return None

    def inactivate(self, ip: Inode, label: str = "xfs_inactive") -> None:
        """Free an unlinked inode's blocks (one transaction per extent) and then the inode."""
        with self.pm.site(label):
            for e in list(ip.extents):
                with self.journal.trans(label) as tp:
                    self.unmap_range(tp, ip, e.lblk, e.len)
            with self.journal.trans(label) as tp:
                self.log_inode(tp, ip)
                del self.inodes[ip.ino]
                ip.entries.clear()

    # -- the read-only view --------------------------------------------------------

    def read_file(self, ip: Inode, off: int, n: int) -> bytes:
        end = min(off + n, ip.size)
        if off >= end:
            return b""
        return self.read_blocks(ip, off, end - off).tobytes()

    def read_blocks(self, ip: Inode, off: int, n: int) -> np.ndarray:
        """Bytes [off, off+n) of a file as its data fork maps them, EOF ignored."""
        out = np.zeros(n, dtype=np.uint8)
        b0, b1 = off // BS, (off + n - 1) // BS
        for seg in ip.extents.segments(b0, b1 - b0 + 1):
            if seg.pblk is None or seg.unwritten:
                continue
            s = max(off, seg.lblk * BS)
            e = min(off + n, (seg.lblk + seg.len) * BS)
            addr = seg.pblk * BS + (s - seg.lblk * BS)
            self.pm.load_into(addr, out[s - off : e - off])
        return out


def valid_name(name: str) -> bool:
    return name in FILES
