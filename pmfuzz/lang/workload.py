"""The op language: typed ops over small symbolic names, and their one text form.

A workload is an immutable sequence of ops over files `f0..f7` and mappings
`m0..m7`, one op a line, `#` comments allowed. `format_workload(parse(t))`
is canonical and `parse(format_workload(w)) == w` always.

Semantics every target must follow (the reference model implements them):

* An op naming a file that does not exist gives ENOENT; `create` of an
  existing name EEXIST; an op naming a mapping that is not mapped EINVAL;
  `mmap` of a name already mapped EINVAL; `mmap` at an offset that is not
  page-aligned EINVAL.
* `write` returns the bytes written, `read` the bytes read (short at EOF),
  every other op 0.
* `reflink SRC DST [SOFF DOFF LEN]`: offsets block-aligned, the source range
  inside the source, LEN block-aligned unless it ends at the source's EOF
  and reaches the destination's EOF, and no overlap within one file; else
  EINVAL. The short form clones [0, size(SRC)) to offset 0.
* `pin M PGOFF` write-faults one page in and pins it (SIGSEGV/SIGBUS as a
  fault); `unpin M PGOFF` drops one pin (EINVAL if none); `dma M OFF LEN`
  writes through pinned pages only (EINVAL unless every page of the range is
  pinned). While any page of a file is pinned, the ops that break layouts
  (truncate, punch, fallocate, reflink of it) and munmap of a pinned mapping
  wait for the unpin: inside a parallel group they block; run sequentially,
  where the wait could never end, they return EBUSY.
* `fallocate F OFF LEN [zero-range|unshare-range] [keep-size]`: FALLOC_FL_* modes, see `falloc.py`.
* `madvise M dontneed` drops the mapping's page-table entries (EINVAL if
  unmapped); the data and any pins stay.
* Mapping ops walk the range page by page: a page outside the mapping is
  SIGSEGV, a page at or beyond EOF is SIGBUS; what was done before the
  faulting page stays done.
* `write F OFF LEN from M MOFF` is write(2) whose user buffer is mapping M at
  MOFF. The bytes written are what M shows at [MOFF, MOFF+LEN) when the write
  starts (the kernel faults the source in inside the write's locks; the model
  reads it once there, before the write changes anything, and copies from
  that snapshot), past-EOF bytes of the last page included. Source pages are
  taken in order; the first one that cannot be read ends the copy there: a
  page outside M or at or beyond its file's EOF (copy_from_user's EFAULT),
  or, on a target that declares `range_locks`, a page of F that overlaps the
  range the write locks (`write_lock_span`: EDEADLK, the fault would wait for
  the write itself). If the first page fails the write returns that errno and
  changes nothing; otherwise it writes the pages before it and returns their
  byte count (a short write). An unmapped M gives EFAULT as well.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, fields
from typing import ClassVar

from ..errors import clip
from .falloc import FallocMode, falloc_words, parse_falloc_words
from .textform import Line

__all__ = [
    "OpKind",
    "Op",
    "Create",
    "Unlink",
    "Write",
    "Read",
    "Truncate",
    "Fallocate",
    "FallocMode",
    "Punch",
    "Reflink",
    "Fsync",
    "Sync",
    "Mmap",
    "Munmap",
    "Fault",
    "Store",
    "Persist",
    "Pin",
    "Unpin",
    "Dma",
    "Madvise",
    "Parallel",
    "Workload",
    "flatten",
    "groups",
    "parse",
    "parse_op",
    "format_workload",
    "FILES",
    "MAPPINGS",
    "PAGE_SIZE",
    "BLOCK_SIZE",
    "PMD_SIZE",
    "MAX_FILE_SIZE",
    "MAX_OPS",
    "MAX_PARALLEL",
    "write_lock_span",
    "RANGE_END",
]

PAGE_SIZE = 4096
BLOCK_SIZE = 4096
PMD_SIZE = 2 << 20
MAX_FILE_SIZE = 1 << 30
"""Largest offset + length an op may name; keeps self-describing data unambiguous."""
MAX_OPS = 4000
MAX_PARALLEL = 3
"""Most ops one `parallel { ... }` group may hold: the explorer's cost grows fast with threads."""
RANGE_END = 1 << 62
"""The open end of a locked byte range (to EOF and beyond)."""
FILES = tuple(f"f{i}" for i in range(8))
MAPPINGS = tuple(f"m{i}" for i in range(8))


class OpKind(enum.StrEnum):
    CREATE = "create"
    UNLINK = "unlink"
    WRITE = "write"
    READ = "read"
    TRUNCATE = "truncate"
    FALLOCATE = "fallocate"
    PUNCH = "punch"
    REFLINK = "reflink"
    FSYNC = "fsync"
    SYNC = "sync"
    MMAP = "mmap"
    MUNMAP = "munmap"
    FAULT = "fault"
    STORE = "store"
    PERSIST = "persist"
    PIN = "pin"
    UNPIN = "unpin"
    DMA = "dma"
    MADVISE = "madvise"
    PARALLEL = "parallel"


@dataclass(frozen=True, slots=True)
class Op:
    """Base of all ops; `kind` names the op in the text form."""

    kind: ClassVar[OpKind]

    def args(self) -> list[str]:
        return [str(getattr(self, f.name)) for f in fields(self)]

    def __str__(self) -> str:
        return " ".join([self.kind.value, *self.args()])

    @property
    def files(self) -> tuple[str, ...]:
        """File names this op refers to."""
        return tuple(getattr(self, f.name) for f in fields(self) if f.name in ("file", "src", "dst"))


@dataclass(frozen=True, slots=True)
class Create(Op):
    file: str
    kind = OpKind.CREATE


@dataclass(frozen=True, slots=True)
class Unlink(Op):
    file: str
    kind = OpKind.UNLINK


@dataclass(frozen=True, slots=True)
class Write(Op):
    """write(2) of LEN bytes at OFF: self-describing data, or (`from M MOFF`) what mapping M shows at MOFF."""

    file: str
    off: int
    len: int
    map: str | None = None
    """The mapping whose bytes are the user buffer (None: the op's own self-describing data)."""
    moff: int | None = None
    """Offset of the user buffer inside `map`."""
    kind = OpKind.WRITE

    def __post_init__(self) -> None:
        if (self.map is None) != (self.moff is None):
            raise ValueError(f"write from a mapping needs both map and moff, got map={self.map} moff={self.moff}")

    def args(self) -> list[str]:
        out = [self.file, str(self.off), str(self.len)]
        if self.map is not None:
            out += ["from", self.map, str(self.moff)]
        return out


@dataclass(frozen=True, slots=True)
class Read(Op):
    file: str
    off: int
    len: int
    kind = OpKind.READ


@dataclass(frozen=True, slots=True)
class Truncate(Op):
    file: str
    size: int
    kind = OpKind.TRUNCATE


@dataclass(frozen=True, slots=True)
class Fallocate(Op):
    """fallocate(2) with FALLOC_FL_* `mode` (see `pmfuzz.lang.falloc`); a mode the kernel rejects is unrepresentable."""

    file: str
    off: int
    len: int
    mode: FallocMode = FallocMode.ALLOCATE_RANGE
    kind = OpKind.FALLOCATE

    def __post_init__(self) -> None:
        if not FallocMode(self.mode).valid:
            raise ValueError(f"fallocate mode {self.mode!r} is rejected by the kernel")

    def args(self) -> list[str]:
        return [self.file, str(self.off), str(self.len), *falloc_words(self.mode)]


@dataclass(frozen=True, slots=True)
class Punch(Op):
    file: str
    off: int
    len: int
    kind = OpKind.PUNCH


@dataclass(frozen=True, slots=True)
class Reflink(Op):
    """FICLONE (`range is None`) or FICLONERANGE (soff, doff, len)."""

    src: str
    dst: str
    soff: int | None = None
    doff: int | None = None
    len: int | None = None
    kind = OpKind.REFLINK

    @property
    def range(self) -> tuple[int, int, int] | None:
        """(soff, doff, len) of a FICLONERANGE, None for a FICLONE; typed, as the three come together."""
        if self.soff is None:
            return None
        assert self.doff is not None and self.len is not None, "a FICLONERANGE carries soff, doff and len"
        return self.soff, self.doff, self.len

    def args(self) -> list[str]:
        out = [self.src, self.dst]
        if self.soff is not None:
            out += [str(self.soff), str(self.doff), str(self.len)]
        return out


@dataclass(frozen=True, slots=True)
class Fsync(Op):
    file: str
    kind = OpKind.FSYNC


@dataclass(frozen=True, slots=True)
class Sync(Op):
    kind = OpKind.SYNC


@dataclass(frozen=True, slots=True)
class Mmap(Op):
    map: str
    file: str
    off: int
    len: int
    sync: bool = False
    kind = OpKind.MMAP

    def args(self) -> list[str]:
        return [self.map, self.file, str(self.off), str(self.len)] + (["sync"] if self.sync else [])


@dataclass(frozen=True, slots=True)
class Munmap(Op):
    map: str
    kind = OpKind.MUNMAP


@dataclass(frozen=True, slots=True)
class Fault(Op):
    map: str
    pgoff: int
    write: bool
    pmd: bool = False
    kind = OpKind.FAULT

    def args(self) -> list[str]:
        return [self.map, str(self.pgoff), "write" if self.write else "read"] + (["pmd"] if self.pmd else [])


@dataclass(frozen=True, slots=True)
class Store(Op):
    map: str
    off: int
    len: int
    kind = OpKind.STORE


@dataclass(frozen=True, slots=True)
class Persist(Op):
    map: str
    off: int
    len: int
    kind = OpKind.PERSIST


@dataclass(frozen=True, slots=True)
class Pin(Op):
    """pin_user_pages(FOLL_WRITE|FOLL_LONGTERM) on one page of a mapping, as O_DIRECT into a DAX buffer does."""

    map: str
    pgoff: int
    kind = OpKind.PIN


@dataclass(frozen=True, slots=True)
class Unpin(Op):
    map: str
    pgoff: int
    kind = OpKind.UNPIN


@dataclass(frozen=True, slots=True)
class Dma(Op):
    """A device writes [OFF, OFF+LEN) of a mapping through the pages pinned there (every page must be)."""

    map: str
    off: int
    len: int
    kind = OpKind.DMA


@dataclass(frozen=True, slots=True)
class Madvise(Op):
    """madvise(MADV_DONTNEED) on a whole mapping: its page-table entries go, the file stays.

    The next access faults again, which is how a workload reaches a PTE fault under a range that
    a PMD entry used to map (and the other way round).
    """

    map: str
    advice: str = "dontneed"
    kind = OpKind.MADVISE


@dataclass(frozen=True, slots=True)
class Parallel(Op):
    """Two or three ops run as threads of the target, interleaved at its preemption points.

    The ops keep their own op indices (a group occupies consecutive indices, as if it were
    inlined), so data they write stays self-describing; which interleaving ran is named by the
    reproducer's `schedule:` header, not by the workload.
    """

    ops: tuple[Op, ...]
    kind = OpKind.PARALLEL

    def args(self) -> list[str]:
        return ["{", " ; ".join(str(op) for op in self.ops), "}"]

    @property
    def files(self) -> tuple[str, ...]:
        return tuple(f for op in self.ops for f in op.files)


def write_lock_span(size: int, off: int, n: int) -> tuple[int, int]:
    """The byte range a range-locking target locks for write(2) of [off, off+n) to a file of `size`.

    Whole blocks, since a sub-block write zeroes or copies the rest of its block; from the lower of
    `off` and EOF to an open end when the write extends the file (the EOF zeroing and the size
    change are part of what it changes). The end is `RANGE_END` there.
    """
    if off + n > size:
        return min(off, size) // BLOCK_SIZE * BLOCK_SIZE, RANGE_END
    return off // BLOCK_SIZE * BLOCK_SIZE, -(-(off + n) // BLOCK_SIZE) * BLOCK_SIZE


def flatten(ops: Iterable[Op]) -> tuple[Op, ...]:
    """The ops with every parallel group inlined: index i of this tuple is op index i."""
    out: list[Op] = []
    for op in ops:
        out.extend(op.ops if isinstance(op, Parallel) else (op,))
    return tuple(out)


def groups(ops: Iterable[Op]) -> tuple[tuple[int, int, int], ...]:
    """Each parallel group as (index among the top-level ops, first flat op index, op count)."""
    out = []
    flat = 0
    for i, op in enumerate(ops):
        if isinstance(op, Parallel):
            out.append((i, flat, len(op.ops)))
            flat += len(op.ops)
        else:
            flat += 1
    return tuple(out)


@dataclass(frozen=True, slots=True)
class Workload:
    """An immutable sequence of ops."""

    ops: tuple[Op, ...] = ()

    def __len__(self) -> int:
        return len(self.ops)

    def __iter__(self) -> Iterator[Op]:
        return iter(self.ops)

    def __getitem__(self, i: int) -> Op:
        return self.ops[i]

    def __str__(self) -> str:
        return format_workload(self)

    @classmethod
    def of(cls, ops: Iterable[Op]) -> Workload:
        return cls(tuple(ops))


def format_workload(w: Workload | Sequence[Op]) -> str:
    ops = w.ops if isinstance(w, Workload) else w
    return "".join(f"{op}\n" for op in ops)


def _range(ln: Line, i: int) -> tuple[int, int]:
    off = ln.num(i, "offset")
    length = ln.num(i + 1, "length", positive=True)
    if off + length > MAX_FILE_SIZE:
        raise ln.fail(f"range {off}+{length} ends beyond the limit of {MAX_FILE_SIZE}", ln.tokens[i][1])
    return off, length


def _parse_parallel(ln: Line) -> Parallel:
    """`parallel { OP ; OP [; OP] }` on one line; each op is parsed with its own columns."""
    text = ln.text
    kw_end = ln.tokens[0][1] - 1 + len("parallel")
    open_at = text.find("{", kw_end)
    if open_at < 0 or text[kw_end:open_at].strip():
        raise ln.fail("parallel takes { OP ; OP [; OP] }: expected '{'", kw_end + 1)
    close_at = text.rfind("}")
    if close_at < open_at:
        raise ln.fail("parallel group is not closed with '}'", len(text.rstrip()) + 1)
    if text[close_at + 1 :].strip():
        raise ln.fail("text after the closing '}' of a parallel group", close_at + 2)
    ops: list[Op] = []
    start = open_at + 1
    for part in text[open_at + 1 : close_at].split(";"):
        sub = Line(" " * start + part, ln.lineno, ln.source, ln.limit)
        if not sub.tokens:
            raise ln.fail("empty op in a parallel group", start + 1)
        if sub.tokens[0][0] == OpKind.PARALLEL.value:
            raise sub.fail("parallel groups do not nest", sub.tokens[0][1])
        ops.append(_parse_line(sub))
        start += len(part) + 1
    if not 2 <= len(ops) <= MAX_PARALLEL:
        raise ln.fail(f"a parallel group holds 2 to {MAX_PARALLEL} ops, got {len(ops)}", open_at + 1)
    return Parallel(tuple(ops))


def _parse_line(ln: Line) -> Op:
    kw, col = ln.tokens[0]
    if kw == OpKind.PARALLEL.value:
        return _parse_parallel(ln)
    try:
        kind = OpKind(kw)
    except ValueError:
        raise ln.fail(f"unknown op {clip(kw)} (expected one of: {', '.join(k.value for k in OpKind)})", col) from None
    f = lambda i: ln.name(i, FILES, "file name")
    m = lambda i: ln.name(i, MAPPINGS, "mapping name")
    if kind in (OpKind.CREATE, OpKind.UNLINK, OpKind.FSYNC):
        ln.arity(1, 1, "FILE")
        return {OpKind.CREATE: Create, OpKind.UNLINK: Unlink, OpKind.FSYNC: Fsync}[kind](f(1))
    if kind is OpKind.WRITE and len(ln.tokens) > 4:
        ln.arity(6, 6, "FILE OFF LEN [from MAP MOFF]")
        ln.word(4, ("from",), "the source keyword")
        off, length = _range(ln, 2)
        moff = ln.num(6, "mapping offset")
        if moff + length > MAX_FILE_SIZE:
            raise ln.fail(f"source range {moff}+{length} ends beyond the limit of {MAX_FILE_SIZE}", ln.tokens[6][1])
        return Write(f(1), off, length, m(5), moff)
    if kind is OpKind.FALLOCATE:
        ln.arity(3, 6, "FILE OFF LEN [zero-range|unshare-range] [keep-size]")
        return Fallocate(f(1), *_range(ln, 2), parse_falloc_words(ln.tokens[4:], ln.fail))
    if kind in (OpKind.WRITE, OpKind.READ, OpKind.PUNCH):
        ln.arity(3, 3, "FILE OFF LEN")
        cls = {OpKind.WRITE: Write, OpKind.READ: Read, OpKind.PUNCH: Punch}[kind]
        return cls(f(1), *_range(ln, 2))
    if kind is OpKind.TRUNCATE:
        ln.arity(2, 2, "FILE SIZE")
        return Truncate(f(1), ln.num(2, "size"))
    if kind is OpKind.REFLINK:
        if len(ln.tokens) - 1 not in (2, 5):
            ln.arity(2, 2 if len(ln.tokens) - 1 < 2 else 5, "SRC DST [SOFF DOFF LEN]")
            raise ln.fail("reflink takes SRC DST or SRC DST SOFF DOFF LEN", ln.tokens[-1][1])
        if len(ln.tokens) == 3:
            return Reflink(f(1), f(2))
        soff = ln.num(3, "source offset")
        doff, length = _range(ln, 4)
        if soff + length > MAX_FILE_SIZE:
            raise ln.fail(f"source range {soff}+{length} ends beyond the limit", ln.tokens[3][1])
        return Reflink(f(1), f(2), soff, doff, length)
    if kind is OpKind.SYNC:
        ln.arity(0, 0, "no arguments")
        return Sync()
    if kind is OpKind.MMAP:
        ln.arity(4, 5, "MAP FILE OFF LEN [sync]")
        sync = len(ln.tokens) == 6 and ln.word(5, ("sync",), "the flag") == "sync"
        return Mmap(m(1), f(2), *_range(ln, 3), sync)
    if kind is OpKind.MUNMAP:
        ln.arity(1, 1, "MAP")
        return Munmap(m(1))
    if kind in (OpKind.PIN, OpKind.UNPIN):
        ln.arity(2, 2, "MAP PGOFF")
        pg = ln.num(2, "page offset", limit=MAX_FILE_SIZE // PAGE_SIZE - 1)
        return (Pin if kind is OpKind.PIN else Unpin)(m(1), pg)
    if kind is OpKind.MADVISE:
        ln.arity(2, 2, "MAP dontneed")
        return Madvise(m(1), ln.word(2, ("dontneed",), "the advice"))
    if kind is OpKind.DMA:
        ln.arity(3, 3, "MAP OFF LEN")
        return Dma(m(1), *_range(ln, 2))
    if kind is OpKind.FAULT:
        ln.arity(3, 4, "MAP PGOFF read|write [pmd]")
        pgoff = ln.num(2, "page offset", limit=MAX_FILE_SIZE // PAGE_SIZE - 1)
        write = ln.word(3, ("read", "write"), "the access") == "write"
        pmd = len(ln.tokens) == 5 and ln.word(4, ("pmd",), "the size flag") == "pmd"
        return Fault(m(1), pgoff, write, pmd)
    ln.arity(3, 3, "MAP OFF LEN")
    return (Store if kind is OpKind.STORE else Persist)(m(1), *_range(ln, 2))


def parse_op(text: str) -> Op:
    """One op from one line of text."""
    ln = Line(text, 1, None, MAX_FILE_SIZE)
    if not ln.tokens:
        raise ln.fail("empty op")
    return _parse_line(ln)


def parse(text: str, *, source: str | None = None) -> Workload:
    """A workload from its text form; `#` starts a comment. Errors name the line and column."""
    ops: list[Op] = []
    count = 0
    for i, raw in enumerate(text.splitlines(), 1):
        body = raw.split("#", 1)[0]
        ln = Line(body, i, source, MAX_FILE_SIZE)
        if not ln.tokens:
            continue
        op = _parse_line(ln)
        ops.append(op)
        count += len(op.ops) if isinstance(op, Parallel) else 1
        if count > MAX_OPS:
            raise ln.fail(f"more than {MAX_OPS} ops")
    return Workload(tuple(ops))
