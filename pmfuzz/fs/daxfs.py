"""The built-in target `daxfs`: a Linux-style DAX file system on the PMem model."""

from __future__ import annotations

from collections.abc import Hashable

from ..fingerprint import fingerprint
from ..lang.data import poison
from ..lang.workload import (
    Create,
    Dma,
    Fallocate,
    Fault,
    Fsync,
    Madvise,
    Mmap,
    Munmap,
    Op,
    Persist,
    Pin,
    Punch,
    Read,
    Reflink,
    Store,
    Sync,
    Truncate,
    Unlink,
    Unpin,
    Write,
)
from ..pmem import PMem
from ..target import Errno, Guarantee, Result, err
from . import contentkey
from . import file as F
from .alloc import NoSpace
from .config import Config, LockScheme
from .core import DaxFS, format_device
from .falloc import xfs_file_fallocate
from .fsck import fsck
from .inode import Inode
from .layout import BS
from .locks import Sched

__all__ = ["DaxfsTarget", "MountedDaxfs"]


class MountedDaxfs:
    """A mounted daxfs, speaking the target protocol."""

    def __init__(self, fs: DaxFS) -> None:
        self.fs = fs

    def execute(self, index: int, op: Op, payload: bytes | None) -> Result:
        with self.fs.pm.op(index):
            try:
                return self._execute(op, payload)
            except NoSpace:
                return err(Errno.ENOSPC)

    def _inode(self, name: str) -> Inode | None:
        return self.fs.lookup(name)

    def _execute(self, op: Op, payload: bytes | None) -> Result:
        fs = self.fs
        if isinstance(op, Create):
            return F.create(fs, op.file)
        if isinstance(op, Unlink):
            return F.unlink(fs, op.file)
        if isinstance(op, Sync):
            return F.sync(fs)
        if isinstance(op, Munmap):
            return F.munmap(fs, op.map)
        if isinstance(op, Fault):
            return F.fault(fs, op.map, op.pgoff, op.write, op.pmd)
        if isinstance(op, Store):
            return F.store(fs, op.map, op.off, payload if payload is not None else bytes(op.len))
        if isinstance(op, Persist):
            return F.persist(fs, op.map, op.off, op.len)
        if isinstance(op, Madvise):
            return F.madvise_dontneed(fs, op.map)
        if isinstance(op, Pin):
            return F.pin(fs, op.map, op.pgoff)
        if isinstance(op, Unpin):
            return F.unpin(fs, op.map, op.pgoff)
        if isinstance(op, Dma):
            return F.dma(fs, op.map, op.off, payload if payload is not None else bytes(op.len))
        if isinstance(op, Reflink):
            src, dst = self._inode(op.src), self._inode(op.dst)
            if src is None or dst is None:
                return err(Errno.ENOENT)
            if op.range is None:
                return F.reflink(fs, src, dst, 0, 0, src.size, whole=True)
            return F.reflink(fs, src, dst, *op.range)
        if not isinstance(op, Write | Read | Truncate | Fallocate | Punch | Fsync | Mmap):
            raise AssertionError(f"daxfs: unhandled op {op}")
        ip = self._inode(op.file)
        if ip is None:
            return err(Errno.ENOENT)
        if isinstance(op, Write):
            if op.map is not None:
                assert op.moff is not None
                return F.file_dax_write(fs, ip, op.off, F.MappedSource(op.map, op.moff, op.len))
            assert payload is not None
            return F.file_dax_write(fs, ip, op.off, payload)
        if isinstance(op, Read):
            return F.file_read(fs, ip, op.off, op.len)
        if isinstance(op, Truncate):
            return F.setattr_size(fs, ip, op.size)
        if isinstance(op, Fallocate):
            return xfs_file_fallocate(fs, ip, op.off, op.len, op.mode)
        if isinstance(op, Punch):
            return F.punch(fs, ip, op.off, op.len)
        if isinstance(op, Fsync):
            return F.fsync(fs, ip)
        return F.mmap(fs, op.map, ip, op.off, op.len, op.sync)

    # -- the read-only view ----------------------------------------------------

    def files(self) -> list[str]:
        return sorted(ip.name for ip in self.fs.inodes.values() if ip.name is not None)

    def size(self, name: str) -> int | None:
        ip = self.fs.lookup(name)
        return None if ip is None else ip.size

    def read(self, name: str, off: int, n: int) -> bytes:
        ip = self.fs.lookup(name)
        if ip is None:
            raise KeyError(name)
        return self.fs.read_file(ip, off, n)

    def read_mapping(self, name: str, off: int, n: int) -> Result:
        return F.mapping_view(self.fs, name, off, n)

    def content_key(self, name: str) -> Hashable | None:
        """What `read(name, ...)` is a function of (`target.KeysContent`)."""
        return contentkey.content_key(self.fs, name)

    def mapping_key(self, name: str) -> Hashable | None:
        """What `read_mapping(name, ...)` is a function of (`target.KeysContent`)."""
        return contentkey.mapping_key(self.fs, name)

    def mapping_blocks(self, name: str) -> dict[int, tuple[int | None, int | None]]:
        """Introspection for `mmap-coherency`: per mapped page, (block mapped, block the file owns there)."""
        return F.mapping_blocks(self.fs, name)

    def layout_violations(self) -> list[tuple[int, str]]:
        """Introspection for `layout`: (op index, what) per store or DMA that reached a block its file lost."""
        return list(self.fs.layout_violations)

    def file_blocks(self, name: str, size: int) -> list[tuple[int, int | None, bool]]:
        """Introspection for pictures: per block of `name` up to `size`, (file offset, device offset
        or None for a hole, unwritten), from its extent map."""
        ip = self.fs.lookup(name)
        if ip is None:
            return []
        n = -(-max(size, 1) // BS)
        return [
            ((seg.lblk + k) * BS, None if seg.pblk is None else (seg.pblk + k) * BS, seg.unwritten)
            for seg in ip.extents.segments(0, n)
            for k in range(seg.len)
        ]

    def file_extents(self, name: str) -> list[tuple[int, int, int, bool]]:
        """The data fork's extents of `name` (FIEMAP's view): (file offset, device offset, length, unwritten)."""
        ip = self.fs.lookup(name)
        if ip is None:
            return []
        return [(e.lblk * BS, e.pblk * BS, e.len * BS, e.unwritten) for e in ip.extents]

    def set_scheduler(self, sched: Sched | None) -> None:
        """Run the next ops under `sched` (the interleaving explorer's), or sequentially with None."""
        self.fs.sched = sched if sched is not None else Sched()

    def state_fingerprint(self) -> bytes | None:
        """Everything the mounted fs keeps in memory (inodes, mappings, journal, allocator, locks):
        what it does next depends on nothing else but the device, whose trace the engine digests."""
        return fingerprint(self.fs, left_out=(self.fs.pm,))

    def fsck(self) -> list[str]:
        return fsck(self.fs)


class DaxfsTarget:
    """daxfs with one design, a set of zoo bugs, a log-push policy and a lock scheme."""

    name = "daxfs"
    guarantees = frozenset(
        {
            Guarantee.POSIX,
            Guarantee.MOUNTABLE,
            Guarantee.NO_STALE_DATA,
            Guarantee.COW_ATOMIC,
            Guarantee.FSYNC_DURABLE,
        }
    )

    def __init__(
        self, design: str = "zero", bugs: str = "", cil: str = "lazy", locks: str = "rwsem", **unknown: str
    ) -> None:
        if unknown:
            k = next(iter(unknown))
            raise_unknown(k)
        self.config = Config.parse(design, bugs, cil, locks)

    @property
    def range_locks(self) -> bool:
        """Declared to the reference model (`Reference.for_target`): write(2) locks the byte range it
        writes, so a write whose source is a mapping of that range fails with EDEADLK."""
        return self.config.locks is LockScheme.RANGE

    def format(self, pm: PMem) -> None:
        format_device(pm, poison)

    def mount(self, pm: PMem, sched: Sched | None = None) -> MountedDaxfs:
        return MountedDaxfs(DaxFS(pm, self.config, sched))

    def options(self) -> dict[str, str]:
        return self.config.options()

    def variants(self) -> list[dict[str, str]]:
        """Configurations a campaign alternates between when the user fixes none: both log-push modes."""
        return [{"cil": "lazy"}, {"cil": "eager"}]

    def metadata_ranges(self, size: int) -> list[tuple[int, int]]:
        """Everything below the data area: superblock, log, inodes, extent maps, refcounts, bitmap."""
        from .layout import Geometry

        return [(0, Geometry.for_size(size).meta_bytes)]

    def regions(self, size: int) -> list[tuple[str, int, int]]:
        """The on-device layout by name, in bytes, for pictures of a crash state."""
        from .layout import Geometry

        g = Geometry.for_size(size)
        bounds = [
            ("superblock", 0, g.log_start),
            ("journal", g.log_start, g.inode_start),
            ("inode table", g.inode_start, g.extmap_start),
            ("extent maps", g.extmap_start, g.refc_start),
            ("refcounts", g.refc_start, g.bitmap_start),
            ("free-space bitmap", g.bitmap_start, g.data_start),
            ("data blocks", g.data_start, g.nblocks),
        ]
        return [(n, a * BS, b * BS) for n, a, b in bounds if b > a]

    def __repr__(self) -> str:
        return "DaxfsTarget(" + " ".join(f"{k}={v}" for k, v in self.options().items()) + ")"


def raise_unknown(key: str) -> None:
    from ..errors import PmfuzzError

    raise PmfuzzError(f"daxfs has no option {key!r} (options: design, bugs, cil, locks)")
