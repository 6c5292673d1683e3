"""pmlog: a persistent append-only log with a commit flag, as a pmfuzz target.

Not a file system: every op appends one record to a log on PMem, and mount
rebuilds the files by replaying the log, stopping at the first record whose
commit word is not set. Append, the correct way:

1. write the record (its header without the commit word, then the data),
2. persist it (clwb every line, sfence),
3. store the commit word, persist it.

So every op is atomic and synchronous -- after a crash the files are exactly
as before or after the op in flight -- and the target declares the
`atomic-ops` guarantee, which is what Chipmunk and Vinter check for NOVA-style
file systems.

The bug switch `bug=commit-with-data` folds steps 2 and 3 into one persist,
the classic "flag before data" mistake: the commit word's line can reach the
media while the data's lines are still in the cache, so recovery replays a
record whose data is the log's formatted poison.

    PYTHONPATH=. pmfuzz run --target examples.pmlog:PmLog --seconds 20
    PYTHONPATH=. pmfuzz run --target "examples.pmlog:PmLog bug=commit-with-data" --seconds 20
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

import numpy as np

from pmfuzz.errors import PmfuzzError
from pmfuzz.lang.data import poison
from pmfuzz.lang.workload import FILES, Create, Fsync, Op, OpKind, Read, Sync, Truncate, Unlink, Write
from pmfuzz.pmem import PMem
from pmfuzz.target import OK, Errno, Guarantee, Result, Signal, err

__all__ = ["PmLog"]

LOG = 4096
"""The log starts after a reserved first page (where a real log keeps its superblock)."""
HEADER = struct.Struct("<QQQQQ")
"""commit word, record kind, file index, offset (or new size), data length."""
HDR = 64
COMMIT = 0xC0_4417_0000_0000
MAX_FILE = 1 << 20
BUGS = ("commit-with-data",)


class Rec(enum.IntEnum):
    CREATE = 1
    UNLINK = 2
    WRITE = 3
    TRUNCATE = 4


def _commit_word(pos: int) -> int:
    """The commit word names the record's own position, so no stale word can pass for it."""
    return COMMIT | pos


def _span(n: int) -> int:
    return HDR + -(-n // 64) * 64


@dataclass(frozen=True, slots=True)
class Record:
    pos: int
    kind: Rec
    file: int
    off: int
    data: bytes


class MountedLog:
    """The live log: its tail on media, and the files rebuilt from it."""

    def __init__(self, pm: PMem, bug: str) -> None:
        self.pm = pm
        self.bug = bug
        self.files_: dict[str, bytearray] = {}
        self.tail = LOG
        self.garbage: list[str] = []
        for rec in self._scan():
            self._apply(rec)
            self.tail = rec.pos + _span(len(rec.data))

    # -- recovery -------------------------------------------------------------

    def _scan(self):
        pos = LOG
        while pos + HDR <= self.pm.size:
            word, kind, file, off, n = HEADER.unpack(self.pm.load(pos, HEADER.size))
            if word != _commit_word(pos):
                return
            if (
                kind not in Rec._value2member_map_
                or file >= len(FILES)
                or n > MAX_FILE
                or pos + _span(n) > self.pm.size
            ):
                self.garbage.append(f"record at {pos:#x}: committed but malformed (kind {kind}, file {file}, len {n})")
                return
            yield Record(pos, Rec(kind), file, off, self.pm.load(pos + HDR, n) if n else b"")
            pos += _span(n)

    def _apply(self, r: Record) -> None:
        name = FILES[r.file]
        if r.kind is Rec.CREATE:
            self.files_[name] = bytearray()
        elif r.kind is Rec.UNLINK:
            self.files_.pop(name, None)
        elif r.kind is Rec.WRITE:
            f = self.files_[name]
            if len(f) < r.off + len(r.data):
                f.extend(bytes(r.off + len(r.data) - len(f)))
            f[r.off : r.off + len(r.data)] = r.data
        else:
            f = self.files_[name]
            del f[r.off :]
            f.extend(bytes(r.off - len(f)))

    # -- append ---------------------------------------------------------------

    def _append(self, kind: Rec, file: str, off: int, data: bytes = b"") -> Result:
        pos = self.tail
        if pos + _span(len(data)) > self.pm.size:
            return err(Errno.ENOSPC)
        rec = Record(pos, kind, FILES.index(file), off, data)
        with self.pm.site(f"append.{kind.name.lower()}"):
            self.pm.store(pos + 8, HEADER.pack(0, kind, rec.file, off, len(data))[8:])
            if data:
                self.pm.store(pos + HDR, data)
            if self.bug == "commit-with-data":
                self.pm.store(pos, struct.pack("<Q", _commit_word(pos)))
                self.pm.persist(pos, HDR + len(data))
            else:
                self.pm.persist(pos, HDR + len(data))
        if self.bug != "commit-with-data":
            with self.pm.site("append.commit"):
                self.pm.store(pos, struct.pack("<Q", _commit_word(pos)))
                self.pm.persist(pos, 8)
        self.tail = pos + _span(len(data))
        self._apply(rec)
        return OK

    # -- the protocol: ops ----------------------------------------------------

    def execute(self, index: int, op: Op, payload: bytes | None) -> Result:
        with self.pm.op(index):
            if isinstance(op, Sync):
                return OK
            name = op.file  # type: ignore[attr-defined]
            f = self.files_.get(name)
            if isinstance(op, Create):
                return err(Errno.EEXIST) if f is not None else self._append(Rec.CREATE, name, 0)
            if f is None:
                return err(Errno.ENOENT)
            if isinstance(op, Unlink):
                return self._append(Rec.UNLINK, name, 0)
            if isinstance(op, Fsync):
                return OK
            if isinstance(op, Read):
                return Result(bytes(f[op.off : op.off + op.len]))
            if isinstance(op, Write):
                if op.off + op.len > MAX_FILE:
                    return err(Errno.ENOSPC)
                r = self._append(Rec.WRITE, name, op.off, payload or b"")
                return Result(op.len) if r.ok else r
            if isinstance(op, Truncate):
                if op.size > MAX_FILE:
                    return err(Errno.ENOSPC)
                return self._append(Rec.TRUNCATE, name, op.size)
        raise AssertionError(f"pmlog: unsupported op {op}")

    # -- the protocol: the read-only view --------------------------------------

    def files(self) -> list[str]:
        return sorted(self.files_)

    def size(self, name: str) -> int | None:
        f = self.files_.get(name)
        return None if f is None else len(f)

    def read(self, name: str, off: int, n: int) -> bytes:
        return bytes(self.files_[name][off : off + n])

    def read_mapping(self, name: str, off: int, n: int) -> Result:
        return Result(signal=Signal.SIGSEGV)

    def fsck(self) -> list[str]:
        """A committed record beyond the end of the log means appends were not ordered."""
        out = list(self.garbage)
        end = min(self.pm.size, self.tail + 64 * HDR)
        if end > self.tail:
            words = np.frombuffer(self.pm.load(self.tail, end - self.tail), dtype="<u8")[:: HDR // 8]
            want = np.uint64(COMMIT) | np.arange(self.tail, end, HDR, dtype=np.uint64)
            for i in np.flatnonzero(words == want):
                out.append(
                    f"committed record at {self.tail + int(i) * HDR:#x} after the end of the log at {self.tail:#x}"
                )
        return out


class PmLog:
    """The target: format fills the log with poison; mount replays it.

    It declares no `metadata_ranges`: headers and data share the lines of one log.
    """

    name = "pmlog"
    guarantees = frozenset(
        {
            Guarantee.POSIX,
            Guarantee.MOUNTABLE,
            Guarantee.NO_STALE_DATA,
            Guarantee.FSYNC_DURABLE,
            Guarantee.ATOMIC_OPS,
        }
    )
    ops = frozenset(
        {OpKind.CREATE, OpKind.UNLINK, OpKind.WRITE, OpKind.READ, OpKind.TRUNCATE, OpKind.FSYNC, OpKind.SYNC}
    )

    def __init__(self, bug: str = "") -> None:
        if bug and bug not in BUGS:
            raise PmfuzzError(f"pmlog has no bug {bug!r} (it has: {', '.join(BUGS)})")
        self.bug = bug

    def format(self, pm: PMem) -> None:
        pm.initialize(LOG, poison(LOG, pm.size - LOG))

    def mount(self, pm: PMem) -> MountedLog:
        return MountedLog(pm, self.bug)

    def options(self) -> dict[str, str]:
        return {"bug": self.bug} if self.bug else {}
