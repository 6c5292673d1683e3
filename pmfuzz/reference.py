"""The POSIX reference model: what every op must do, crash-free.

Files live as byte arrays that also hold the bytes between EOF and the end of
the EOF block (what a mapping of the last page shows); those bytes are zeroed
whenever the size grows over them, as the kernel's EOF zeroing does, so read(2)
never sees them. The oracles compare targets against this model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from .data import payload
from .target import OK, Errno, Result, Signal, err, sig
from .workload import (
    BLOCK_SIZE,
    PAGE_SIZE,
    Create,
    Fallocate,
    Fault,
    Fsync,
    Mmap,
    Munmap,
    Op,
    Persist,
    Punch,
    Read,
    Reflink,
    Store,
    Sync,
    Truncate,
    Unlink,
    Write,
)

__all__ = ["Reference", "RefFile", "RefMapping", "reflink_error"]


def _round_up(x: int, a: int) -> int:
    return -(-x // a) * a


@dataclass
class RefFile:
    """One incarnation of a file: created by op `ino`."""

    ino: int
    size: int = 0
    data: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.uint8))

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

    def zero(self, off: int, end: int) -> None:
        end = min(end, len(self.data))
        if off < end:
            self.data[off:end] = 0

    def grow_to(self, new: int) -> None:
        """Extend the size; bytes beyond the old EOF read as zero (EOF zeroing)."""
        if new > self.size:
            self.zero(self.size, new)
            self.size = new

    def shrink_to(self, new: int) -> None:
        """Truncate down: the tail of the new EOF block is zeroed and the rest freed."""
        self.zero(new, len(self.data))
        self.size = new


@dataclass
class RefMapping:
    file: RefFile
    off: int
    length: int
    sync: bool


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


class Reference:
    """Executes ops with plain POSIX semantics; names map to file incarnations."""

    def __init__(self) -> None:
        self.names: dict[str, RefFile] = {}
        self.maps: dict[str, RefMapping] = {}

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
        for pos, k in _pages(off, n):
            bad = self._page_fault(m, pos)
            if bad is not None:
                return bad
            fpos = m.off + pos
            m.file.ensure(fpos + k)
            out += m.file.data[fpos : fpos + k].tobytes()
        return Result(bytes(out))

    def payload(self, index: int, op: Op) -> bytes | None:
        """The self-describing bytes op `index` writes, or None if it writes none."""
        if isinstance(op, Write):
            f = self.names.get(op.file)
            return None if f is None else payload(f.ino, index, op.off, op.len)
        if isinstance(op, Store):
            m = self.maps.get(op.map)
            return None if m is None else payload(m.file.ino, index, m.off + op.off, op.len)
        return None

    # -- execution -----------------------------------------------------------

    def apply(self, index: int, op: Op) -> Result:
        method = getattr(self, "_" + op.kind.value)
        return method(index, op)

    def _file(self, name: str) -> RefFile | None:
        return self.names.get(name)

    def _create(self, index: int, op: Create) -> Result:
        if op.file in self.names:
            return err(Errno.EEXIST)
        self.names[op.file] = RefFile(index)
        return OK

    def _unlink(self, index: int, op: Unlink) -> Result:
        if self.names.pop(op.file, None) is None:
            return err(Errno.ENOENT)
        return OK

    def _write(self, index: int, op: Write) -> Result:
        f = self._file(op.file)
        if f is None:
            return err(Errno.ENOENT)
        f.grow_to(op.off)
        f.put(op.off, payload(f.ino, index, op.off, op.len))
        f.size = max(f.size, op.off + op.len)
        return Result(op.len)

    def _read(self, index: int, op: Read) -> Result:
        f = self._file(op.file)
        if f is None:
            return err(Errno.ENOENT)
        return Result(f.read(op.off, op.len))

    def _truncate(self, index: int, op: Truncate) -> Result:
        f = self._file(op.file)
        if f is None:
            return err(Errno.ENOENT)
        if op.size < f.size:
            f.shrink_to(op.size)
        else:
            f.grow_to(op.size)
        return OK

    def _fallocate(self, index: int, op: Fallocate) -> Result:
        f = self._file(op.file)
        if f is None:
            return err(Errno.ENOENT)
        f.grow_to(op.off + op.len)
        return OK

    def _punch(self, index: int, op: Punch) -> Result:
        f = self._file(op.file)
        if f is None:
            return err(Errno.ENOENT)
        f.zero(op.off, op.off + op.len)
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
        span = _round_up(n, BLOCK_SIZE)
        src.ensure(soff + span)
        chunk = src.data[soff : soff + span].copy()
        dst.grow_to(doff)
        dst.put(doff, chunk)
        dst.size = max(dst.size, doff + n)
        return OK

    def _fsync(self, index: int, op: Fsync) -> Result:
        return OK if op.file in self.names else err(Errno.ENOENT)

    def _sync(self, index: int, op: Sync) -> Result:
        return OK

    def _mmap(self, index: int, op: Mmap) -> Result:
        f = self._file(op.file)
        if f is None:
            return err(Errno.ENOENT)
        if op.map in self.maps or op.off % PAGE_SIZE:
            return err(Errno.EINVAL)
        self.maps[op.map] = RefMapping(f, op.off, op.len, op.sync)
        return OK

    def _munmap(self, index: int, op: Munmap) -> Result:
        if self.maps.pop(op.map, None) is None:
            return err(Errno.EINVAL)
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
        return self._page_fault(m, op.pgoff * PAGE_SIZE) or OK

    def _store(self, index: int, op: Store) -> Result:
        m = self.maps.get(op.map)
        if m is None:
            return err(Errno.EINVAL)
        data = payload(m.file.ino, index, m.off + op.off, op.len)
        for pos, k in _pages(op.off, op.len):
            bad = self._page_fault(m, pos)
            if bad is not None:
                return bad
            m.file.put(m.off + pos, data[pos - op.off : pos - op.off + k])
        return OK

    def _persist(self, index: int, op: Persist) -> Result:
        m = self.maps.get(op.map)
        if m is None:
            return err(Errno.EINVAL)
        for pos, _ in _pages(op.off, op.len):
            bad = self._page_fault(m, pos)
            if bad is not None:
                return bad
        return OK


def _pages(off: int, n: int) -> list[tuple[int, int]]:
    """Split [off, off+n) at page boundaries: (position, length) pieces."""
    out = []
    pos, end = off, off + n
    while pos < end:
        k = min(end, (pos // PAGE_SIZE + 1) * PAGE_SIZE) - pos
        out.append((pos, k))
        pos += k
    return out
