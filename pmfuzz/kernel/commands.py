"""The op language as agent command lines, and the agent's answers as op results."""

from __future__ import annotations

import struct
from dataclasses import dataclass

from ..lang.falloc import FALLOC_MODES, FallocMode
from ..lang.workload import (
    Create,
    Fallocate,
    Fault,
    Fsync,
    Madvise,
    Mmap,
    Munmap,
    Op,
    OpKind,
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
from ..target import Errno, Result, Signal, err, sig
from .guest import Reply

__all__ = ["OPS", "FALLOC_MODES_EXT4", "command", "result", "View", "parse_view", "UnknownErrno"]

OPS = frozenset(
    {
        OpKind.CREATE,
        OpKind.UNLINK,
        OpKind.WRITE,
        OpKind.READ,
        OpKind.TRUNCATE,
        OpKind.FALLOCATE,
        OpKind.PUNCH,
        OpKind.FSYNC,
        OpKind.SYNC,
        OpKind.MMAP,
        OpKind.MUNMAP,
        OpKind.FAULT,
        OpKind.STORE,
        OpKind.PERSIST,
        OpKind.MADVISE,
    }
)
"""What every kernel target runs (XFS adds reflink; ext4 has none): no pin/unpin/dma (no in-guest DMA
engine), no parallel groups (one agent thread)."""

FALLOC_MODES_EXT4 = tuple(m for m in FALLOC_MODES if not m & FallocMode.UNSHARE_RANGE)
"""The fallocate modes ext4_fallocate accepts: no FALLOC_FL_UNSHARE_RANGE (EOPNOTSUPP; ext4 shares no blocks)."""


class UnknownErrno(Exception):
    """The kernel answered with an errno the op language has no name for (a functional difference)."""

    is_target_error = True


def command(op: Op) -> str:
    if isinstance(op, Create):
        return f"create {op.file}"
    if isinstance(op, Unlink):
        return f"unlink {op.file}"
    if isinstance(op, Write):
        tail = f" {op.map} {op.moff}" if op.map is not None else ""
        return f"write {op.file} {op.off} {op.len}{tail}"
    if isinstance(op, Read):
        return f"read {op.file} {op.off} {op.len}"
    if isinstance(op, Truncate):
        return f"truncate {op.file} {op.size}"
    if isinstance(op, Reflink):
        return "reflink " + " ".join(op.args())
    if isinstance(op, Fallocate):
        return f"fallocate {op.file} {op.off} {op.len}" + (f" {int(op.mode)}" if op.mode else "")
    if isinstance(op, Punch):
        return f"punch {op.file} {op.off} {op.len}"
    if isinstance(op, Fsync):
        return f"fsync {op.file}"
    if isinstance(op, Sync):
        return "sync"
    if isinstance(op, Mmap):
        return f"mmap {op.map} {op.file} {op.off} {op.len}" + (" sync" if op.sync else "")
    if isinstance(op, Munmap):
        return f"munmap {op.map}"
    if isinstance(op, Fault):
        return f"fault {op.map} {op.pgoff} {'w' if op.write else 'r'}"
    if isinstance(op, Store):
        return f"store {op.map} {op.off} {op.len}"
    if isinstance(op, Persist):
        return f"persist {op.map} {op.off} {op.len}"
    if isinstance(op, Madvise):
        return f"madvise {op.map}"
    raise ValueError(f"the kernel targets cannot run `{op}`")


def result(r: Reply) -> Result:
    """An answer as a Result (the value of `read` is fetched from the mailbox by the caller)."""
    if r.kind == "ok":
        return Result(int(r.value.split()[0]))
    if r.kind == "sig":
        return sig(Signal(r.value.split()[0]))
    if r.kind == "err":
        name = r.value.split()[0]
        try:
            return err(Errno(name))
        except ValueError:
            raise UnknownErrno(f"the kernel answered {r.value} (no such errno in the op language)") from None
    raise ValueError(f"agent answered {r.kind} {r.value}")


@dataclass(frozen=True, slots=True)
class View:
    """What the live file system shows after an op: files with their bytes, and each mapping's pages."""

    files: dict[str, tuple[int, bytes]]
    """name -> (size, content)"""
    pages: dict[tuple[str, int], bytes | Signal]


SIGNALS = {7: Signal.SIGBUS, 11: Signal.SIGSEGV}


def parse_view(buf: bytes) -> View:
    files: dict[str, tuple[int, bytes]] = {}
    pages: dict[tuple[str, int], bytes | Signal] = {}
    pos = 0
    while pos < len(buf):
        kind, idx, a, b = struct.unpack_from("<IIQQ", buf, pos)
        pos += 24
        if kind == 1:
            files[f"f{idx}"] = (a, buf[pos : pos + b])
            pos += b
        elif b == 0x200:  # a page of zeros
            pages[(f"m{idx}", a)] = bytes(4096)
        elif 0x100 <= b < 0x200:  # a signal, not a page
            pages[(f"m{idx}", a)] = SIGNALS.get(b - 0x100, Signal.SIGSEGV)
        else:
            pages[(f"m{idx}", a)] = buf[pos : pos + b]
            pos += b
    return View(files, pages)
