"""tinyfs: a minimal crash-consistent file system on PMem, written as a pmfuzz target.

It is the example of docs/targets.md. Eight files live in fixed 64 KiB slots;
a 64-byte directory entry per slot holds a name word and a size word, each
updated with one 8-byte atomic store. Every op is made durable before it
returns, in an order that keeps every crash state consistent:

* create: store the size word (0), persist, then the name word, persist (one
  16-byte store of both may tear: the name kept over an unlinked file's old size).
* write: zero any gap past EOF, write the data, persist, then store the new
  size and persist it (data before size: a crash never shows a size whose data
  is missing).
* truncate: grow like a write; shrink by storing the new size first, then
  zeroing the cut-off bytes.
* unlink: clear the name word, persist.

Set `bug="size-before-data"` to store the size before the data is durable:
pmfuzz then finds the slot's formatted poison behind the new size.

Run it from the repository root: `PYTHONPATH=. pmfuzz run --target examples.tinyfs:TinyFS --seconds 20`.
"""

from __future__ import annotations

import struct

from pmfuzz.lang.data import poison
from pmfuzz.lang.workload import FILES, Create, Fsync, Op, OpKind, Read, Sync, Truncate, Unlink, Write
from pmfuzz.pmem import PMem
from pmfuzz.target import OK, Errno, Guarantee, Result, Signal, err

SLOT = 64 << 10
DIR = 4096
ENTRY = 64
NAME_SET = 0x4E41_4D45_0000_0000


class MountedTinyFS:
    def __init__(self, pm: PMem, bug: str) -> None:
        self.pm = pm
        self.bug = bug

    # -- on-media layout ----------------------------------------------------

    def _entry(self, slot: int) -> tuple[bool, int]:
        name, size = struct.unpack("<QQ", self.pm.load(slot * ENTRY, 16))
        return name == NAME_SET | slot, size

    def _slot(self, name: str) -> int | None:
        slot = FILES.index(name)
        return slot if self._entry(slot)[0] else None

    def _data(self, slot: int) -> int:
        return DIR + slot * SLOT

    def _set_size(self, slot: int, size: int) -> None:
        self.pm.store(slot * ENTRY + 8, struct.pack("<Q", size))
        self.pm.persist(slot * ENTRY + 8, 8)

    # -- the protocol: ops ------------------------------------------------------

    def execute(self, index: int, op: Op, payload: bytes | None) -> Result:
        with self.pm.op(index):
            if isinstance(op, Sync):
                return OK
            slot = FILES.index(op.file)  # type: ignore[attr-defined]
            exists, size = self._entry(slot)
            if isinstance(op, Create):
                if exists:
                    return err(Errno.EEXIST)
                with self.pm.site("create"):
                    self._set_size(slot, 0)  # first: an unlinked file's size is still there
                    self.pm.store(slot * ENTRY, struct.pack("<Q", NAME_SET | slot))
                    self.pm.persist(slot * ENTRY, 8)
                return OK
            if not exists:
                return err(Errno.ENOENT)
            if isinstance(op, Unlink):
                with self.pm.site("unlink"):
                    self.pm.store(slot * ENTRY, bytes(8))
                    self.pm.persist(slot * ENTRY, 8)
                return OK
            if isinstance(op, Read):
                end = min(op.off + op.len, size)
                return Result(self.pm.load(self._data(slot) + op.off, end - op.off) if op.off < end else b"")
            if isinstance(op, Fsync):
                return OK
            if isinstance(op, Write):
                return self._write(slot, size, op.off, payload or b"")
            if isinstance(op, Truncate):
                return self._truncate(slot, size, op.size)
        raise AssertionError(f"tinyfs: unsupported op {op}")

    def _write(self, slot: int, size: int, off: int, data: bytes) -> Result:
        if off + len(data) > SLOT:
            return err(Errno.ENOSPC)
        base = self._data(slot)
        new = max(size, off + len(data))
        with self.pm.site("write.size") if self.bug == "size-before-data" else self.pm.site("write"):
            if self.bug == "size-before-data" and new > size:
                self._set_size(slot, new)
        with self.pm.site("write.data"):
            if off > size:
                self.pm.store(base + size, bytes(off - size))
            self.pm.store(base + off, data)
            self.pm.persist(base + min(off, size), off + len(data) - min(off, size))
        if new > size and self.bug != "size-before-data":
            with self.pm.site("write.size"):
                self._set_size(slot, new)
        return Result(len(data))

    def _truncate(self, slot: int, size: int, new: int) -> Result:
        if new > SLOT:
            return err(Errno.ENOSPC)
        base = self._data(slot)
        if new > size:
            with self.pm.site("truncate.zero"):
                self.pm.store(base + size, bytes(new - size))
                self.pm.persist(base + size, new - size)
            with self.pm.site("truncate.size"):
                self._set_size(slot, new)
        elif new < size:
            with self.pm.site("truncate.size"):
                self._set_size(slot, new)
            with self.pm.site("truncate.zero"):
                self.pm.store(base + new, bytes(size - new))
                self.pm.persist(base + new, size - new)
        return OK

    # -- the protocol: the read-only view -------------------------------------------

    def files(self) -> list[str]:
        return [n for n in FILES if self._slot(n) is not None]

    def size(self, name: str) -> int | None:
        slot = self._slot(name)
        return None if slot is None else self._entry(slot)[1]

    def read(self, name: str, off: int, n: int) -> bytes:
        slot = self._slot(name)
        assert slot is not None
        size = self._entry(slot)[1]
        end = min(off + n, size)
        return self.pm.load(self._data(slot) + off, end - off) if off < end else b""

    def read_mapping(self, name: str, off: int, n: int) -> Result:
        return Result(signal=Signal.SIGSEGV)

    def fsck(self) -> list[str]:
        out = []
        for slot in range(len(FILES)):
            name, size = struct.unpack("<QQ", self.pm.load(slot * ENTRY, 16))
            if name not in (0, NAME_SET | slot):
                out.append(f"slot {slot}: garbage name word {name:#x}")
            elif name and size > SLOT:
                out.append(f"slot {slot}: size {size} larger than the slot")
        return out


class TinyFS:
    """The target: formats, mounts (nothing to recover: every op is durable when it returns)."""

    name = "tinyfs"
    guarantees = frozenset({Guarantee.POSIX, Guarantee.MOUNTABLE, Guarantee.NO_STALE_DATA, Guarantee.FSYNC_DURABLE})
    ops = frozenset(
        {OpKind.CREATE, OpKind.UNLINK, OpKind.WRITE, OpKind.READ, OpKind.TRUNCATE, OpKind.FSYNC, OpKind.SYNC}
    )

    def __init__(self, bug: str = "") -> None:
        if bug not in ("", "size-before-data"):
            from pmfuzz.errors import PmfuzzError

            raise PmfuzzError(f"tinyfs has no bug {bug!r} (it has: size-before-data)")
        self.bug = bug

    def format(self, pm: PMem) -> None:
        pm.initialize(DIR, poison(DIR, len(FILES) * SLOT))

    def mount(self, pm: PMem) -> MountedTinyFS:
        return MountedTinyFS(pm, self.bug)

    def options(self) -> dict[str, str]:
        return {"bug": self.bug} if self.bug else {}

    def metadata_ranges(self, size: int) -> list[tuple[int, int]]:
        return [(0, DIR)]
