"""The POSIX reference model: what every op must do, and what a crash may leave.

Crash-free, `Reference` executes ops with plain POSIX semantics. Files live as
byte arrays that also hold the bytes between EOF and the end of the EOF block
(what a mapping of the last page shows); those bytes are zeroed whenever the
size grows over them, as the kernel's EOF zeroing does.

For crashes, `History` keeps every file's version at every op boundary, the
durability points (fsync, sync, persist on a MAP_SYNC mapping after a write
fault), the blocks each op copied on write, and the ranges a truncate removed.
`Expectation` turns that into what a recovered file system may show after a
crash in a given op. These are the rules of DESIGN.md section 4, kept here so
every oracle reads them the same way:

* A word's window runs from its last durability point to the crash. It may
  hold any value it had at an op boundary in the window while inside the
  file's size, any value an op in the window wrote to it (an in-place write
  tears per word, so old and new are both boundary values), or zero if a
  truncate in the window removed it (the tail is zeroed before the new size
  is durable).
* A file's size is one of its sizes at the window's boundaries; a name exists
  only if it existed at some boundary of its window, and must if at all.
* A write to a block that is shared (cloned by reflink and not since
  rewritten) leaves that block, as a whole, as it was before the write or
  after it.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Protocol

import numpy as np

from .data import payload
from .target import OK, Errno, Result, Signal, err, sig
from .workload import (
    BLOCK_SIZE,
    PAGE_SIZE,
    PMD_SIZE,
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

__all__ = [
    "Reference",
    "RefFile",
    "RefMapping",
    "History",
    "Expectation",
    "FileVersion",
    "CowEvent",
    "reflink_error",
    "page_pieces",
]

_WPB = BLOCK_SIZE // 8


def _round_up(x: int, a: int) -> int:
    return -(-x // a) * a


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

    def shrink_to(self, new: int) -> None:
        """Truncate down: the tail of the new EOF block is zeroed and the rest freed."""
        self.zero(new, len(self.data))
        self.size = new
        self.version += 1


@dataclass(eq=False)
class RefMapping:
    file: RefFile
    off: int
    length: int
    sync: bool
    faulted: set[int] = field(default_factory=set)
    """Pages write-faulted through this MAP_SYNC mapping since the file's layout last changed."""
    pins: dict[int, int] = field(default_factory=dict)
    """Pinned pages of the mapping and their pin counts."""


class _HasSize(Protocol):
    size: int


def reflink_error(src: _HasSize, dst: _HasSize, soff: int, doff: int, n: int) -> Errno | None:
    """The EINVAL rules of FICLONERANGE (generic_remap_checks), shared by every target."""
    if soff % BLOCK_SIZE or doff % BLOCK_SIZE:
        return Errno.EINVAL
    if soff + n > src.size:
        return Errno.EINVAL
    if n % BLOCK_SIZE and not (soff + n == src.size and doff + n >= dst.size):
        return Errno.EINVAL
    if src is dst and soff < doff + n and doff < soff + n:
        return Errno.EINVAL
    return None


@dataclass(frozen=True, slots=True)
class CowEvent:
    """Op `op` wrote (copied on write) block `block` of the file named `name`."""

    op: int
    name: str
    ino: int
    block: int
    at: int = -1
    """The boundary before the write, when it differs from `op` (an op of a parallel group applied out of order)."""

    @property
    def boundary(self) -> int:
        return self.op if self.at < 0 else self.at


@dataclass
class OpEffects:
    """What one op did that the crash rules need."""

    durable_names: frozenset[str] | None = frozenset()
    """Names whose content, size and existence the op made durable; None means every name (sync)."""
    durable_ranges: list[tuple[str, int, int, int]] = field(default_factory=list)
    """(name, incarnation, start, end) byte ranges made durable (persist on MAP_SYNC)."""
    cow: list[CowEvent] = field(default_factory=list)
    removed: list[tuple[str, int, int, int]] = field(default_factory=list)
    """(name, incarnation, start, end) ranges a truncate removed: they may read zero in the window."""


class Reference:
    """Executes ops with plain POSIX semantics; names map to file incarnations."""

    def __init__(self) -> None:
        self.names: dict[str, RefFile] = {}
        self.maps: dict[str, RefMapping] = {}
        self._group_of: dict[tuple[int, int], int] = {}
        self._members: dict[int, set[tuple[int, int]]] = {}
        self._next_group = 0
        self.fx = OpEffects()

    # -- views -------------------------------------------------------------

    def files(self) -> list[str]:
        return sorted(self.names)

    def size(self, name: str) -> int | None:
        f = self.names.get(name)
        return None if f is None else f.size

    def read(self, name: str, off: int, n: int) -> bytes:
        return self.names[name].read(off, n)

    def read_mapping(self, name: str, off: int, n: int) -> Result:
        m = self.maps.get(name)
        if m is None:
            return err(Errno.EINVAL)
        out = bytearray()
        for pos, k in page_pieces(off, n):
            bad = self._page_fault(m, pos)
            if bad is not None:
                return bad
            fpos = m.off + pos
            m.file.ensure(fpos + k)
            out += m.file.data[fpos : fpos + k].tobytes()
        return Result(bytes(out))

    range_locks: bool = False
    """The target locks the byte range write(2) changes (`workload.write_lock_span`) and faults lock
    their page, so a write from a mapping of that very range gets EDEADLK (daxfs `locks=range`)."""

    @classmethod
    def for_target(cls, target: object) -> Reference:
        """A reference for `target`: plain POSIX, plus what the target declares (`range_locks`)."""
        ref = cls()
        ref.range_locks = bool(getattr(target, "range_locks", False))
        return ref

    def payload(self, index: int, op: Op) -> bytes | None:
        """The self-describing bytes op `index` writes, or None if it writes none (or copies them
        from a mapping: `write ... from M MOFF`)."""
        if isinstance(op, Write):
            if op.map is not None:
                return None
            f = self.names.get(op.file)
            return None if f is None else payload(f.ino, index, op.off, op.len)
        if isinstance(op, (Store, Dma)):
            m = self.maps.get(op.map)
            return None if m is None else payload(m.file.ino, index, m.off + op.off, op.len)
        return None

    # -- sharing and backing (what copy-on-write applies to) ---------------------

    def _name_of(self, f: RefFile) -> str:
        return next((n for n, g in self.names.items() if g is f), "")

    def is_shared(self, f: RefFile, b: int) -> bool:
        """Block b of f shares its storage with another file's block (reflink, not since rewritten)."""
        return self._shared(f, b)

    def _shared(self, f: RefFile, b: int) -> bool:
        g = self._group_of.get((f.ino, b))
        return g is not None and len(self._members[g]) >= 2

    def _certain(self, f: RefFile, b: int) -> bool:
        g = self._group_of.get((f.ino, b))
        return g is not None and f.backed.get(b) is Backing.YES and all(self._backed_of(m) for m in self._members[g])

    def _backed_of(self, member: tuple[int, int]) -> bool:
        ino, b = member
        for f in self._live():
            if f.ino == ino:
                return f.backed.get(b) is Backing.YES
        return False

    def _live(self) -> Iterable[RefFile]:
        seen = {id(f): f for f in self.names.values()}
        for m in self.maps.values():
            seen.setdefault(id(m.file), m.file)
        return seen.values()

    def _leave(self, f: RefFile, b: int) -> None:
        g = self._group_of.pop((f.ino, b), None)
        if g is not None:
            self._members[g].discard((f.ino, b))
            if len(self._members[g]) == 1:
                (last,) = self._members.pop(g)
                del self._group_of[last]
            elif not self._members[g]:
                del self._members[g]

    def _write_blocks(
        self, index: int, f: RefFile, start: int, end: int, allocate: bool = True, atomic: bool = True
    ) -> None:
        """An op wrote [start, end) of f: shared blocks are copied on write; holes get storage.

        `atomic=False` for a write fault: the copy holds the old content and the stores that
        follow land in it word by word, so there is no all-or-nothing write to check.
        """
        if end <= start:
            return
        for b in range(start // BLOCK_SIZE, (end - 1) // BLOCK_SIZE + 1):
            if self._shared(f, b):
                if atomic and self._certain(f, b):
                    self.fx.cow.append(CowEvent(index, self._name_of(f), f.ino, b))
                self._leave(f, b)
            if allocate:
                f.backed[b] = Backing.YES

    def _zero_written(self, index: int, f: RefFile, start: int, end: int) -> None:
        """dax_zero_range semantics: zero [start, end); only blocks with storage are touched."""
        if end <= start:
            return
        for b in range(start // BLOCK_SIZE, (end - 1) // BLOCK_SIZE + 1):
            if b in f.backed:
                lo, hi = max(start, b * BLOCK_SIZE), min(end, (b + 1) * BLOCK_SIZE)
                self._write_blocks(index, f, lo, hi, allocate=False)

    def _unback(self, f: RefFile, first_block: int, last_block: int | None = None) -> None:
        for b in [b for b in f.backed if b >= first_block and (last_block is None or b < last_block)]:
            self._leave(f, b)
            del f.backed[b]

    def _drop(self, f: RefFile) -> None:
        for b in list(f.backed):
            self._leave(f, b)

    def _layout_changed(self, f: RefFile) -> None:
        """break_layouts: mappings of f lose their PTEs, so MAP_SYNC pages must fault again."""
        for m in self.maps.values():
            if m.file is f:
                m.faulted.clear()

    # -- execution -----------------------------------------------------------

    def become(self, other: Reference) -> None:
        """Take over `other`'s state in place (a copy that ran a group's ops in another order; the
        History holds this object). What the last op did for crash recovery is forgotten."""
        self.__dict__.update(other.__dict__)
        self.fx = OpEffects()

    def apply(self, index: int, op: Op) -> Result:
        self.fx = OpEffects()
        busy = self._waits_for_pins(op)
        if busy:
            return err(Errno.EBUSY)
        method = getattr(self, "_" + op.kind.value)
        return method(index, op)

    def pinned(self, f: RefFile) -> bool:
        return any(m.file is f and m.pins for m in self.maps.values())

    def _waits_for_pins(self, op: Op) -> bool:
        """Ops that break layouts wait for pinned pages; run alone that wait never ends (EBUSY)."""
        if isinstance(op, (Truncate, Punch, Fallocate)):
            f = self.names.get(op.file)
            return f is not None and self.pinned(f)
        if isinstance(op, Reflink):
            fs = [self.names.get(op.src), self.names.get(op.dst)]
            return all(f is not None for f in fs) and any(self.pinned(f) for f in fs)  # type: ignore[arg-type]
        if isinstance(op, Munmap):
            m = self.maps.get(op.map)
            return m is not None and bool(m.pins)
        return False

    def _file(self, name: str) -> RefFile | None:
        return self.names.get(name)

    def _create(self, index: int, op: Create) -> Result:
        if op.file in self.names:
            return err(Errno.EEXIST)
        self.names[op.file] = RefFile(index)
        return OK

    def _unlink(self, index: int, op: Unlink) -> Result:
        f = self.names.pop(op.file, None)
        if f is None:
            return err(Errno.ENOENT)
        if not f.mappings:
            self._drop(f)
        return OK

    def _write(self, index: int, op: Write) -> Result:
        f = self._file(op.file)
        if f is None:
            return err(Errno.ENOENT)
        data = payload(f.ino, index, op.off, op.len) if op.map is None else self._write_source(f, op)
        if isinstance(data, Errno):
            return err(data)
        n = len(data)
        self._layout_changed(f)
        if op.off > f.size:
            self._zero_written(index, f, f.size, op.off)
        f.grow_to(op.off)
        self._write_blocks(index, f, op.off, op.off + n)
        f.put(op.off, data)
        f.size = max(f.size, op.off + n)
        return Result(n)

    def _write_source(self, f: RefFile, op: Write) -> bytes | Errno:
        """What `write F OFF LEN from M MOFF` copies: M's bytes at the op's start, page by page, up to
        the first page outside M (EFAULT), overlapping the write's own locked range on a range-locking
        target (EDEADLK), or at/past EOF (EFAULT); that page's errno if it is the first."""
        from .fs.file import EFAULT
        from .workload import write_lock_span

        m = self.maps.get(op.map) if op.map is not None else None
        if m is None or op.moff is None:
            return EFAULT
        lo, hi = write_lock_span(f.size, op.off, op.len)
        out = bytearray()
        for pos, k in page_pieces(op.moff, op.len):
            page = m.off + pos // PAGE_SIZE * PAGE_SIZE
            why: Errno | None = None
            if pos >= _round_up(m.length, PAGE_SIZE):
                why = EFAULT
            elif self.range_locks and m.file is f and page < hi and lo < page + PAGE_SIZE:
                why = Errno.EDEADLK
            elif page >= m.file.size:
                why = EFAULT
            if why is not None:
                return bytes(out) if out else why
            m.file.ensure(m.off + pos + k)
            out += m.file.data[m.off + pos : m.off + pos + k].tobytes()
        return bytes(out)

    def _read(self, index: int, op: Read) -> Result:
        f = self._file(op.file)
        if f is None:
            return err(Errno.ENOENT)
        return Result(f.read(op.off, op.len))

    def _truncate(self, index: int, op: Truncate) -> Result:
        f = self._file(op.file)
        if f is None:
            return err(Errno.ENOENT)
        self._layout_changed(f)
        if op.size < f.size:
            self.fx.removed.append((op.file, f.ino, op.size, f.size))
            if op.size % BLOCK_SIZE:
                self._zero_written(index, f, op.size, _round_up(op.size, BLOCK_SIZE))
            self._unback(f, -(-op.size // BLOCK_SIZE))
            f.shrink_to(op.size)
        else:
            self._zero_written(index, f, f.size, op.size)
            f.grow_to(op.size)
        return OK

    def _fallocate(self, index: int, op: Fallocate) -> Result:
        f = self._file(op.file)
        if f is None:
            return err(Errno.ENOENT)
        self._layout_changed(f)
        for b in range(op.off // BLOCK_SIZE, -(-(op.off + op.len) // BLOCK_SIZE)):
            f.backed.setdefault(b, Backing.YES)
        if op.off + op.len > f.size:
            self._zero_written(index, f, f.size, op.off + op.len)
        f.grow_to(op.off + op.len)
        return OK

    def _punch(self, index: int, op: Punch) -> Result:
        f = self._file(op.file)
        if f is None:
            return err(Errno.ENOENT)
        self._layout_changed(f)
        start, end = op.off, op.off + op.len
        first, last = -(-start // BLOCK_SIZE), end // BLOCK_SIZE
        if first >= last:
            self._zero_written(index, f, start, end)
        else:
            self._zero_written(index, f, start, first * BLOCK_SIZE)
            self._zero_written(index, f, last * BLOCK_SIZE, end)
            self._unback(f, first, last)
        f.zero(start, end)
        return OK

    def _reflink(self, index: int, op: Reflink) -> Result:
        src, dst = self._file(op.src), self._file(op.dst)
        if src is None or dst is None:
            return err(Errno.ENOENT)
        if op.soff is None:
            if src is dst:
                return err(Errno.EINVAL)
            soff, doff, n = 0, 0, src.size
            if n == 0:
                return OK
        else:
            soff, doff, n = op.soff, op.doff, op.len  # type: ignore[assignment]
        e = reflink_error(src, dst, soff, doff, n)
        if e is not None:
            return err(e)
        self._layout_changed(src)
        self._layout_changed(dst)
        span = _round_up(n, BLOCK_SIZE)
        if doff > dst.size:
            self._zero_written(index, dst, dst.size, doff)
        dst.grow_to(doff)
        # The gap past the destination's EOF is zeroed before the blocks are shared
        # (xfs_reflink_zero_posteof), which matters when the source is the same file.
        src.ensure(soff + span)
        chunk = src.data[soff : soff + span].copy()
        for i in range(span // BLOCK_SIZE):
            sb, db = soff // BLOCK_SIZE + i, doff // BLOCK_SIZE + i
            self._leave(dst, db)
            dst.backed.pop(db, None)
            state = src.backed.get(sb)
            if state is None:
                continue
            dst.backed[db] = state
            g = self._group_of.get((src.ino, sb))
            if g is None:
                g = self._next_group
                self._next_group += 1
                self._members[g] = {(src.ino, sb)}
                self._group_of[(src.ino, sb)] = g
            self._members[g].add((dst.ino, db))
            self._group_of[(dst.ino, db)] = g
        dst.put(doff, chunk)
        dst.size = max(dst.size, doff + n)
        return OK

    def _fsync(self, index: int, op: Fsync) -> Result:
        if op.file not in self.names:
            return err(Errno.ENOENT)
        self.fx.durable_names = frozenset({op.file})
        return OK

    def _sync(self, index: int, op: Sync) -> Result:
        self.fx.durable_names = None
        return OK

    def _mmap(self, index: int, op: Mmap) -> Result:
        f = self._file(op.file)
        if f is None:
            return err(Errno.ENOENT)
        if op.map in self.maps or op.off % PAGE_SIZE:
            return err(Errno.EINVAL)
        self.maps[op.map] = RefMapping(f, op.off, op.len, op.sync)
        f.mappings += 1
        return OK

    def _munmap(self, index: int, op: Munmap) -> Result:
        m = self.maps.pop(op.map, None)
        if m is None:
            return err(Errno.EINVAL)
        m.file.mappings -= 1
        if not m.file.mappings and m.file not in self.names.values():
            self._drop(m.file)
        return OK

    def _page_fault(self, m: RefMapping, pos: int) -> Result | None:
        """The signal an access at mapping offset `pos` takes, if any."""
        if pos >= _round_up(m.length, PAGE_SIZE):
            return sig(Signal.SIGSEGV)
        if m.off + (pos // PAGE_SIZE) * PAGE_SIZE >= m.file.size:
            return sig(Signal.SIGBUS)
        return None

    def _fault(self, index: int, op: Fault) -> Result:
        m = self.maps.get(op.map)
        if m is None:
            return err(Errno.EINVAL)
        bad = self._page_fault(m, op.pgoff * PAGE_SIZE)
        if bad is not None:
            return bad
        if op.write:
            fpos = m.off + op.pgoff * PAGE_SIZE
            if op.pmd:
                head = fpos - fpos % PMD_SIZE
                for b in range(head // BLOCK_SIZE, (head + PMD_SIZE) // BLOCK_SIZE):
                    m.file.backed.setdefault(b, Backing.UNKNOWN)
            self._write_blocks(index, m.file, fpos, fpos + PAGE_SIZE, atomic=False)
            if m.sync:
                m.faulted.add(op.pgoff)
        return OK

    def _store(self, index: int, op: Store) -> Result:
        m = self.maps.get(op.map)
        if m is None:
            return err(Errno.EINVAL)
        data = payload(m.file.ino, index, m.off + op.off, op.len)
        for pos, k in page_pieces(op.off, op.len):
            bad = self._page_fault(m, pos)
            if bad is not None:
                return bad
            page = pos // PAGE_SIZE
            self._write_blocks(index, m.file, m.off + page * PAGE_SIZE, m.off + (page + 1) * PAGE_SIZE, atomic=False)
            if m.sync:
                m.faulted.add(page)
            m.file.put(m.off + pos, data[pos - op.off : pos - op.off + k])
        return OK

    def _persist(self, index: int, op: Persist) -> Result:
        m = self.maps.get(op.map)
        if m is None:
            return err(Errno.EINVAL)
        pages = page_pieces(op.off, op.len)
        for pos, _ in pages:
            bad = self._page_fault(m, pos)
            if bad is not None:
                return bad
        name = self._name_of(m.file)
        if m.sync and name:
            for pos, k in pages:
                if pos // PAGE_SIZE in m.faulted:
                    self.fx.durable_ranges.append((name, m.file.ino, m.off + pos, m.off + pos + k))
        return OK

    def _madvise(self, index: int, op: Madvise) -> Result:
        m = self.maps.get(op.map)
        if m is None:
            return err(Errno.EINVAL)
        return OK

    def _pin(self, index: int, op: Pin) -> Result:
        r = self._fault(index, Fault(op.map, op.pgoff, True))
        if r.ok:
            m = self.maps[op.map]
            m.pins[op.pgoff] = m.pins.get(op.pgoff, 0) + 1
        return r

    def _unpin(self, index: int, op: Unpin) -> Result:
        m = self.maps.get(op.map)
        if m is None or op.pgoff not in m.pins:
            return err(Errno.EINVAL)
        m.pins[op.pgoff] -= 1
        if not m.pins[op.pgoff]:
            del m.pins[op.pgoff]
        return OK

    def _dma(self, index: int, op: Dma) -> Result:
        m = self.maps.get(op.map)
        if m is None or any(pos // PAGE_SIZE not in m.pins for pos, _ in page_pieces(op.off, op.len)):
            return err(Errno.EINVAL)
        m.file.put(m.off + op.off, payload(m.file.ino, index, m.off + op.off, op.len))
        return OK


def page_pieces(off: int, n: int) -> list[tuple[int, int]]:
    """Split [off, off+n) at page boundaries: (position, length) pieces."""
    out = []
    pos, end = off, off + n
    while pos < end:
        k = min(end, (pos // PAGE_SIZE + 1) * PAGE_SIZE) - pos
        out.append((pos, k))
        pos += k
    return out


# -- history and what a crash may leave ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FileVersion:
    """A file as it was at one op boundary."""

    ino: int
    size: int
    words: np.ndarray
    """The file's bytes up to the end of its last block, as little-endian uint64 words (read-only)."""


def _words(f: RefFile) -> np.ndarray:
    n = _round_up(max(f.size, 1), BLOCK_SIZE)
    f.ensure(n)
    w = f.data[:n].view("<u8").copy()
    w.flags.writeable = False
    return w


class History:
    """Every name's file at every op boundary, and what each op did for crash recovery."""

    def __init__(self, ref: Reference) -> None:
        self.ref = ref
        self.boundaries: list[dict[str, FileVersion]] = [{}]
        self.by_ino: list[dict[int, FileVersion]] = [{}]
        """Every live incarnation at each boundary, unlinked-but-mapped ones (orphans) included."""
        self.effects: list[OpEffects] = []
        self._cache: dict[int, tuple[int, FileVersion]] = {}
        self._expects: dict[tuple, Expectation] = {}
        self.alternatives: dict[int, list[dict[int, tuple[str | None, FileVersion]]]] = {}
        """Boundary -> other states it may stand for: inside a parallel group, the states after the
        same number of ops in every other serial order (values and sizes that existed transiently)."""

    def add_alternative(self, b: int, other: Reference) -> None:
        """Record `other` (a copy of the reference run in another serial order) as a state at boundary b."""
        names = {id(f): n for n, f in other.names.items()}
        live: dict[int, tuple[str | None, FileVersion]] = {}
        for f in [*other.names.values(), *(m.file for m in other.maps.values())]:
            live[f.ino] = (names.get(id(f)), FileVersion(f.ino, f.size, _words(f)))
        self.alternatives.setdefault(b, []).append(live)
        self._expects.clear()

    def _version(self, f: RefFile) -> FileVersion:
        hit = self._cache.get(id(f))
        if hit is None or hit[0] != f.version or hit[1].ino != f.ino:
            hit = (f.version, FileVersion(f.ino, f.size, _words(f)))
            self._cache[id(f)] = hit
        return hit[1]

    def record(self) -> None:
        """Call after each op: snapshot the boundary after it."""
        state = {name: self._version(f) for name, f in self.ref.names.items()}
        live = {v.ino: v for v in state.values()}
        for m in self.ref.maps.values():
            if m.file.ino not in live:
                live[m.file.ino] = self._version(m.file)
        self.boundaries.append(state)
        self.by_ino.append(live)
        fx = self.ref.fx
        pos = len(self.effects)
        if any(ev.op != pos for ev in fx.cow):
            # An op of a parallel group applied out of index order: its COW happened at this boundary.
            fx = OpEffects(fx.durable_names, fx.durable_ranges, [replace(ev, at=pos) for ev in fx.cow], fx.removed)
        self.effects.append(fx)

    @property
    def ops(self) -> int:
        return len(self.effects)

    def expect(self, completed: int, upper: int, *, durable: bool = True, synchronous: bool = False) -> Expectation:
        """What a crash may leave when ops [0, completed) finished and op `completed` may be under way.

        `upper` is the last boundary the crash can reach (completed+1 inside an op).
        With `durable=False` there are no durability points (only stale data is judged);
        with `synchronous=True` every finished op is a durability point.
        """
        key = (completed, upper, durable, synchronous, len(self.effects))
        hit = self._expects.get(key)
        if hit is None:
            hit = self._expects[key] = Expectation(self, completed, upper, durable, synchronous)
        return hit


@dataclass
class WordVerdict:
    """Per-word classification of a found file against its window."""

    ok: np.ndarray
    older: np.ndarray
    """Values the file held at this offset before its last durability point (durability)."""
    stale: np.ndarray
    """Non-zero values the file never held at this offset (stale exposure)."""
    lost: np.ndarray
    """Zero where the file never read zero in the window: its size reached the media before its data."""


class Expectation:
    """The allowed recovered states for one crash, derived from the history."""

    def __init__(self, h: History, completed: int, upper: int, durable: bool, synchronous: bool) -> None:
        self.h = h
        self.completed = completed
        self.upper = upper
        self.durable = durable
        self.synchronous = synchronous
        self._start: dict[str, int] = {}
        self._stacks: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}

    # -- windows -----------------------------------------------------------------

    def start(self, name: str) -> int:
        """The boundary where `name`'s window starts (its last durability point)."""
        hit = self._start.get(name)
        if hit is not None:
            return hit
        d = 0
        if self.synchronous:
            d = self.completed
        elif self.durable:
            for j in range(self.completed):
                dn = self.h.effects[j].durable_names
                if dn is None or name in dn:
                    d = j + 1
        self._start[name] = d
        return d

    def window(self, name: str) -> range:
        return range(self.start(name), self.upper + 1)

    def names(self) -> list[str]:
        out: set[str] = set()
        for b in range(self.upper + 1):
            out.update(self.h.boundaries[b])
        return sorted(out)

    def meta_start(self, name: str) -> int:
        """Where the window of `name`'s size and existence starts: its last durability point, or a
        later persist through a MAP_SYNC mapping of it. The write fault that let the persist count
        forced the inode to the log, and nothing has changed the size since (a size change breaks
        the mapping's layout, so its pages must fault again): data made durable there is reachable
        only if the size that covers it is durable too."""
        d = self.start(name)
        if not self.durable or self.synchronous:
            return d
        inos = self.incarnations(name)
        for j in range(d, self.completed):
            if any(nm == name and {ino} == inos for nm, ino, _s, _e in self.h.effects[j].durable_ranges):
                d = j + 1
        return d

    def must_exist(self, name: str) -> bool:
        return all(name in self.h.boundaries[b] for b in range(self.meta_start(name), self.upper + 1))

    def may_exist(self, name: str) -> bool:
        return any(name in self.h.boundaries[b] for b in self.window(name))

    def existed_before(self, name: str) -> bool:
        return any(name in self.h.boundaries[b] for b in range(self.start(name)))

    def _alt_sizes(self, name: str, bs: Iterable[int]) -> set[int]:
        return {v.size for b in bs for alt in self.h.alternatives.get(b, ()) for nm, v in alt.values() if nm == name}

    def sizes(self, name: str) -> set[int]:
        bs = range(self.meta_start(name), self.upper + 1)
        own = {self.h.boundaries[b][name].size for b in bs if name in self.h.boundaries[b]}
        return own | self._alt_sizes(name, bs)

    def held_sizes(self, name: str) -> set[int]:
        own = {self.h.boundaries[b][name].size for b in range(self.upper + 1) if name in self.h.boundaries[b]}
        return own | self._alt_sizes(name, range(self.upper + 1))

    def versions(self, name: str, bs: Iterable[int]) -> list[FileVersion]:
        return [self.h.boundaries[b][name] for b in bs if name in self.h.boundaries[b]]

    def incarnations(self, name: str) -> set[int]:
        """Incarnations that carried `name` at some boundary of its window."""
        return {self.h.boundaries[b][name].ino for b in self.window(name) if name in self.h.boundaries[b]}

    def candidates(self, name: str, b: int) -> list[FileVersion]:
        """What `name` may be recovered as, as of boundary b: any of its window's incarnations, named or not.

        An incarnation written after its unlink (through a mapping) comes back with those writes
        when the crash loses the unlink.
        """
        live = self.h.by_ino[b]
        incs = sorted(self.incarnations(name))
        out = [live[i] for i in incs if i in live]
        for alt in self.h.alternatives.get(b, ()):
            out += [alt[i][1] for i in incs if i in alt]
        return out

    # -- words ---------------------------------------------------------------------

    def _word_start(self, name: str, idx: np.ndarray) -> np.ndarray:
        """Per word: the boundary its window starts at (a MAP_SYNC persist can move it later)."""
        d = np.full(len(idx), self.start(name), dtype=np.int64)
        if not self.durable or self.synchronous:
            return d
        inos = {self.h.boundaries[b][name].ino for b in self.window(name) if name in self.h.boundaries[b]}
        for j in range(self.completed):
            for nm, ino, s, e in self.h.effects[j].durable_ranges:
                if nm != name or inos != {ino}:
                    continue
                inside = (idx * 8 >= s - 7) & (idx * 8 < e)
                full = (idx * 8 >= s) & (idx * 8 + 8 <= e)
                d = np.where(inside & full, np.maximum(d, j + 1), d)
        return d

    def classify(self, name: str, idx: np.ndarray, found: np.ndarray, size: int | None = None) -> WordVerdict:
        """Judge the words `found` (uint64) at word indices `idx` of the recovered file `name`.

        `size` is the recovered size: in the word it cuts, only the bytes before it count.
        A version's words past its size but inside its last block count too: on DAX that
        block is the media, so a store through a mapping past EOF lands there and shows
        again if a crash brings back an older, larger size. (Zeros there are not counted as
        held: a zero where durable data should be stays "lost", not "older".)
        """
        idx = np.asarray(idx, dtype=np.int64)
        found = np.asarray(found, dtype=np.uint64)
        mask = _eof_mask(idx, size)
        found = found & mask
        dword = self._word_start(name, idx)
        vals, sizes, bidx = self._stack(name)
        if len(vals):
            cap = idx < vals.shape[1]
            cols = np.where(cap, idx, 0)
            got = vals[:, cols] & mask
            eq = (got == found) & cap & ((idx * 8 < sizes[:, None]) | (found != 0))
            held = eq.any(axis=0)
            ok = (eq & (bidx[:, None] >= dword)).any(axis=0)
        else:
            held = np.zeros(len(idx), dtype=bool)
            ok = np.zeros(len(idx), dtype=bool)
        for j in range(min(self.upper, self.h.ops)):
            for nm, _ino, s, e in self.h.effects[j].removed:
                if nm == name:
                    ok |= (found == 0) & (idx * 8 >= s) & (idx * 8 < e) & (j >= dword)
        zero = found == 0
        return WordVerdict(ok, held & ~ok, ~held & ~ok & ~zero, ~held & ~ok & zero)

    def allowed(self, name: str, word: int) -> list[int]:
        """The values `classify` accepts at one word of `name` (for reports: the same rule, listed)."""
        idx = np.array([word], dtype=np.int64)
        dword = int(self._word_start(name, idx)[0])
        vals, sizes, bidx = self._stack(name)
        out: set[int] = set()
        if len(vals) and word < vals.shape[1]:
            for row in np.flatnonzero(bidx >= dword).tolist():
                v = int(vals[row, word])
                if word * 8 < sizes[row] or v:
                    out.add(v)
        for j in range(min(self.upper, self.h.ops)):
            for nm, _ino, s, e in self.h.effects[j].removed:
                if nm == name and s <= word * 8 < e and j >= dword:
                    out.add(0)
        return sorted(out)

    def _stack(self, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every candidate version of `name` up to the crash, as one 2-D array: (words, sizes, boundary)."""
        hit = self._stacks.get(name)
        if hit is not None:
            return hit
        rows: list[FileVersion] = []
        bs: list[int] = []
        seen: dict[int, int] = {}
        for b in range(self.upper + 1):
            for v in self.candidates(name, b):
                key = id(v)
                if key in seen:
                    bs[seen[key]] = max(bs[seen[key]], b)
                    continue
                seen[key] = len(rows)
                rows.append(v)
                bs.append(b)
        if not rows:
            hit = (np.zeros((0, 0), dtype=np.uint64), np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64))
        else:
            width = max(len(v.words) for v in rows)
            vals = np.zeros((len(rows), width), dtype=np.uint64)
            for i, v in enumerate(rows):
                vals[i, : len(v.words)] = v.words
            hit = (vals, np.array([v.size for v in rows], dtype=np.int64), np.array(bs, dtype=np.int64))
        self._stacks[name] = hit
        return hit

    def cow_events(self, name: str) -> list[CowEvent]:
        lo = self.start(name)
        inos = {v.ino for v in self.versions(name, self.window(name))}
        out = []
        for j in range(lo, min(self.upper, self.h.ops)):
            for ev in self.h.effects[j].cow:
                if ev.name == name and inos == {ev.ino}:
                    out.append(ev)
        return out

    def block_side(
        self, name: str, ev: CowEvent, idx: np.ndarray, found: np.ndarray, size: int | None = None
    ) -> tuple[bool, bool]:
        """Do the words of one COW block all match a version from before the write, or all one from after?"""
        mask = _eof_mask(idx, size)
        found = np.asarray(found, dtype=np.uint64) & mask
        lo = self.start(name)
        sides = []
        for bs, ops in (
            (range(lo, ev.boundary + 1), range(lo, ev.boundary)),
            (range(ev.boundary + 1, self.upper + 1), range(ev.boundary, min(self.upper, self.h.ops))),
        ):
            ok = np.zeros(len(idx), dtype=bool)
            for v in self._side_versions(name, bs):
                inside = idx * 8 < v.size
                cap = idx < len(v.words)
                vals = np.zeros(len(idx), dtype=np.uint64)
                vals[cap] = v.words[idx[cap]]
                ok |= ((vals & mask) == found) & inside
            for j in ops:
                for nm, _ino, s, e in self.h.effects[j].removed:
                    if nm == name:
                        ok |= (found == 0) & (idx * 8 >= s) & (idx * 8 < e)
            sides.append(bool(ok.all()))
        return sides[0], sides[1]

    def _side_versions(self, name: str, bs: range) -> list[FileVersion]:
        """The versions a COW block's side is taken from: the boundaries in `bs` and, inside a
        parallel group, the other serial orders' states there (the same states `classify` accepts
        word by word; a crash that drops a racing op's in-flight line shows one of them)."""
        out = self.versions(name, bs)
        incs = self.incarnations(name)
        for b in bs:
            for alt in self.h.alternatives.get(b, ()):
                out += [v for i, (nm, v) in alt.items() if nm == name and i in incs]
        return out

    def state_at(self, b: int) -> dict[str, FileVersion]:
        return self.h.boundaries[b]


WORDS_PER_BLOCK = _WPB


def _eof_mask(idx: np.ndarray, size: int | None) -> np.ndarray:
    """Per word, the bytes that lie inside a file of `size` bytes (all ones except the word EOF cuts)."""
    mask = np.full(len(idx), np.uint64(0xFFFFFFFFFFFFFFFF), dtype=np.uint64)
    if size is not None and size % 8:
        mask[idx == size // 8] = np.uint64((1 << (8 * (size % 8))) - 1)
    return mask
