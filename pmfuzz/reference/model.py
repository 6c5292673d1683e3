"""The POSIX reference model: what every op must do when nothing crashes.

`Reference` executes ops with plain POSIX semantics. Files live as byte arrays that also
hold the bytes between EOF and the end of the EOF block (what a mapping of the last page
shows); those bytes are zeroed whenever the size grows over them, as the kernel's EOF
zeroing does. Each op also records what it did that the crash rules need
(`effects.OpEffects`), which `history.History` keeps.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

from ..lang.data import payload
from ..lang.results import OK, Errno, Result, Signal, err, sig
from ..lang.rules import EFAULT, page_pieces, reflink_error, round_up
from ..lang.workload import (
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
    write_lock_span,
)
from ..target import declares_range_locks
from .effects import CowEvent, OpEffects
from .falloc import FallocateSemantics
from .files import Backing, RefFile, RefMapping

__all__ = ["Reference"]


class Reference(FallocateSemantics):
    """Executes ops with plain POSIX semantics; names map to file incarnations (fallocate: `falloc`)."""

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
        if n <= 0:
            return Result(b"")
        # The first page that faults, in order: past the mapping (SIGSEGV), else past EOF (SIGBUS).
        first, last = off // PAGE_SIZE, (off + n - 1) // PAGE_SIZE
        bad = max(first, min(-(-m.length // PAGE_SIZE), max(0, -(-(m.file.size - m.off) // PAGE_SIZE))))
        fault = self._page_fault(m, bad * PAGE_SIZE) if bad <= last else None
        if fault is not None:
            return fault
        fpos = m.off + off
        m.file.ensure(fpos + n)
        return Result(m.file.data[fpos : fpos + n].tobytes())

    range_locks: bool = False
    """The target locks the byte range write(2) changes (`workload.write_lock_span`) and faults lock
    their page, so a write from a mapping of that very range gets EDEADLK (daxfs `locks=range`)."""

    @classmethod
    def for_target(cls, target: object) -> Reference:
        """A reference for `target`: plain POSIX, plus what the target declares (`range_locks`)."""
        ref = cls()
        ref.range_locks = declares_range_locks(target)
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

    def _edges(self, f: RefFile, start: int, end: int) -> None:
        """Record the words [start, end) covers only in part (see `OpEffects.torn`)."""
        if end <= start:
            return
        name = self._name_of(f)
        words = {start // 8} if start % 8 else set()
        if end % 8:
            words.add((end - 1) // 8)
        self.fx.torn += [(name, f.ino, w) for w in sorted(words)]

    def _layout_changed(self, f: RefFile) -> None:
        """break_layouts: mappings of f lose their PTEs, so MAP_SYNC pages must fault again."""
        for m in self.maps.values():
            if m.file is f:
                m.faulted.clear()

    # -- execution -----------------------------------------------------------

    def become(self, other: Reference) -> None:
        """Take over `other`'s state in place (a copy that ran a group's ops in another order; the
        History holds this object). What the last op did for crash recovery is forgotten."""
        self.names, self.maps = other.names, other.maps
        self._group_of, self._members, self._next_group = other._group_of, other._members, other._next_group
        self.range_locks = other.range_locks
        self.fx = OpEffects()

    def forget_cows(self) -> None:
        """The last op's copies on write are not held to atomicity: in a parallel group with a write
        fault on the file, the fault may have copied the block first and the op then wrote in place."""
        self.fx = replace(self.fx, cow=[])

    def apply(self, index: int, op: Op) -> Result:
        self.fx = OpEffects()
        if self._waits_for_pins(op):
            return err(Errno.EBUSY)
        match op:
            case Create():
                return self._create(index, op)
            case Unlink():
                return self._unlink(index, op)
            case Write():
                return self._write(index, op)
            case Read():
                return self._read(index, op)
            case Truncate():
                return self._truncate(index, op)
            case Fallocate():
                return self._fallocate(index, op)
            case Punch():
                return self._punch(index, op)
            case Reflink():
                return self._reflink(index, op)
            case Fsync():
                return self._fsync(index, op)
            case Sync():
                return self._sync(index, op)
            case Mmap():
                return self._mmap(index, op)
            case Munmap():
                return self._munmap(index, op)
            case Fault():
                return self._fault(index, op)
            case Store():
                return self._store(index, op)
            case Persist():
                return self._persist(index, op)
            case Madvise():
                return self._madvise(index, op)
            case Pin():
                return self._pin(index, op)
            case Unpin():
                return self._unpin(index, op)
            case Dma():
                return self._dma(index, op)
        raise TypeError(f"the reference has no semantics for a {op.kind.value} op")

    def pinned(self, f: RefFile) -> bool:
        return any(m.file is f and m.pins for m in self.maps.values())

    def _waits_for_pins(self, op: Op) -> bool:
        """Ops that break layouts wait for pinned pages; run alone that wait never ends (EBUSY)."""
        if isinstance(op, (Truncate, Punch, Fallocate)):
            f = self.names.get(op.file)
            return f is not None and self.pinned(f)
        if isinstance(op, Reflink):
            src, dst = self.names.get(op.src), self.names.get(op.dst)
            return src is not None and dst is not None and (self.pinned(src) or self.pinned(dst))
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
        self._edges(f, op.off, op.off + n)
        f.put(op.off, data)
        f.size = max(f.size, op.off + n)
        return Result(n)

    def _write_source(self, f: RefFile, op: Write) -> bytes | Errno:
        """What `write F OFF LEN from M MOFF` copies: M's bytes at the op's start, page by page, up to
        the first page outside M (EFAULT), overlapping the write's own locked range on a range-locking
        target (EDEADLK), or at/past EOF (EFAULT); that page's errno if it is the first."""
        m = self.maps.get(op.map) if op.map is not None else None
        if m is None or op.moff is None:
            return EFAULT
        lo, hi = write_lock_span(f.size, op.off, op.len)
        out = bytearray()
        for pos, k in page_pieces(op.moff, op.len):
            page = m.off + pos // PAGE_SIZE * PAGE_SIZE
            why: Errno | None = None
            if pos >= round_up(m.length, PAGE_SIZE):
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
        if op.size <= f.size:
            # Truncating to the same size still zeroes the EOF block's tail and frees blocks past it
            # (xfs_setattr_size: xfs_truncate_page whenever newsize <= oldsize; ext4_setattr likewise,
            # "even if i_size didn't change to truncate possible preallocated blocks").
            if op.size < f.size:
                self.fx.removed.append((op.file, f.ino, op.size, f.size))
            self._edges(f, op.size, round_up(op.size, BLOCK_SIZE))
            if op.size % BLOCK_SIZE:
                self._zero_written(index, f, op.size, round_up(op.size, BLOCK_SIZE))
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
        self._fallocate_file(index, f, op)
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
        self._edges(f, start, end)
        f.zero(start, end)
        return OK

    def _reflink(self, index: int, op: Reflink) -> Result:
        src, dst = self._file(op.src), self._file(op.dst)
        if src is None or dst is None:
            return err(Errno.ENOENT)
        if op.range is None:
            soff, doff, n = 0, 0, src.size
            if n == 0:  # a clone from EOF to EOF does nothing, even onto itself (generic_remap_file_range_prep)
                return OK
            if src is dst:
                return err(Errno.EINVAL)
        else:
            soff, doff, n = op.range
        e = reflink_error(src, dst, soff, doff, n)
        if e is not None:
            return err(e)
        self._layout_changed(src)
        self._layout_changed(dst)
        span = round_up(n, BLOCK_SIZE)
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
        if pos >= round_up(m.length, PAGE_SIZE):
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
                m.first_fault.setdefault(op.pgoff, index)
        return OK

    def _store(self, index: int, op: Store) -> Result:
        m = self.maps.get(op.map)
        if m is None:
            return err(Errno.EINVAL)
        data = payload(m.file.ino, index, m.off + op.off, op.len)
        self._edges(m.file, m.off + op.off, m.off + op.off + op.len)
        for pos, k in page_pieces(op.off, op.len):
            bad = self._page_fault(m, pos)
            if bad is not None:
                return bad
            page = pos // PAGE_SIZE
            self._write_blocks(index, m.file, m.off + page * PAGE_SIZE, m.off + (page + 1) * PAGE_SIZE, atomic=False)
            if m.sync:
                m.faulted.add(page)
                m.first_fault.setdefault(page, index)
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
                    self.fx.meta_synced.append((name, m.file.ino, m.first_fault[pos // PAGE_SIZE]))
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
