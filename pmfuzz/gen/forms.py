"""Op forms: which op, with which flags, hit which state of a file -- what a campaign has reached.

Coverage of the model's code says which branches ran; it does not say whether a MAP_SYNC store
ever landed on a block that a write(2) allocated and no log force has made durable yet, or a
truncate up ever ran over bytes a store left past EOF. Those are the forms crash bugs of DAX
live in, so campaigns count them: an op's form is its kind, its flags (fault read/write, pmd,
a MAP_SYNC mapping, a fallocate mode ...) and the state of each block it touches, seen by
the POSIX reference before the op runs:

    hole       no storage                    unwritten  preallocated, never written
    written    storage whose allocation is   fresh      allocated (or copied on write) since
               durable                                  the file's last fsync/sync: not on the log
    shared     shared with a reflink         past-eof   at or beyond EOF

`ALL_FORMS` is the checklist a 10-minute campaign from an empty corpus must reach
(README, "Op forms"); forms outside it (a truncate to the same size) are counted too.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from ..lang.falloc import FallocMode, falloc_words
from ..lang.workload import (
    BLOCK_SIZE,
    PAGE_SIZE,
    Fallocate,
    Fault,
    Fsync,
    Mmap,
    Op,
    OpKind,
    Parallel,
    Persist,
    Punch,
    Read,
    Reflink,
    Store,
    Sync,
    Truncate,
    Unlink,
    Workload,
    Write,
    flatten,
)
from ..reference.files import RefFile
from ..reference.model import Reference

__all__ = ["Hit", "OpForm", "ALL_FORMS", "workload_forms", "missing"]


class Hit(enum.StrEnum):
    HOLE = "hole"
    UNWRITTEN = "unwritten"
    WRITTEN = "written"
    FRESH = "fresh"
    SHARED = "shared"
    PAST_EOF = "past-eof"
    ANY = "*"


@dataclass(frozen=True, order=True)
class OpForm:
    kind: OpKind
    flags: tuple[str, ...]
    hit: Hit

    def __str__(self) -> str:
        return f"{self.kind.value}{',' if self.flags else ''}{','.join(self.flags)}:{self.hit.value}"


_BLOCK_HITS = (Hit.HOLE, Hit.UNWRITTEN, Hit.WRITTEN, Hit.FRESH, Hit.SHARED, Hit.PAST_EOF)


def _universe() -> frozenset[OpForm]:
    out: set[OpForm] = set()

    def add(kind: OpKind, flags: tuple[str, ...], hits: Iterable[Hit]) -> None:
        out.update(OpForm(kind, flags, h) for h in hits)

    for kind in (OpKind.CREATE, OpKind.FSYNC, OpKind.SYNC, OpKind.MUNMAP, OpKind.PIN, OpKind.UNPIN, OpKind.DMA):
        add(kind, (), [Hit.ANY])
    add(OpKind.MADVISE, ("dontneed",), [Hit.ANY])
    add(OpKind.UNLINK, (), [Hit.ANY])
    add(OpKind.UNLINK, ("mapped",), [Hit.ANY])
    add(OpKind.MMAP, (), [Hit.ANY])
    add(OpKind.MMAP, ("sync",), [Hit.ANY])
    add(OpKind.REFLINK, ("whole",), [Hit.ANY])
    add(OpKind.REFLINK, ("range",), [Hit.ANY])
    add(OpKind.PARALLEL, (), [Hit.ANY])
    add(OpKind.WRITE, (), _BLOCK_HITS)
    add(OpKind.WRITE, ("from-map",), [Hit.WRITTEN, Hit.FRESH, Hit.PAST_EOF])
    add(OpKind.READ, (), _BLOCK_HITS)
    add(OpKind.FALLOCATE, (), _BLOCK_HITS)
    add(OpKind.FALLOCATE, ("keep-size",), _BLOCK_HITS)
    add(OpKind.FALLOCATE, ("zero-range",), _BLOCK_HITS)
    add(OpKind.FALLOCATE, ("zero-range", "keep-size"), [Hit.WRITTEN, Hit.SHARED, Hit.PAST_EOF])
    add(OpKind.FALLOCATE, ("unshare-range",), [Hit.WRITTEN, Hit.SHARED, Hit.HOLE, Hit.PAST_EOF])
    add(OpKind.FALLOCATE, ("unshare-range", "keep-size"), [Hit.SHARED])
    add(OpKind.PUNCH, (), _BLOCK_HITS[:-1])
    add(OpKind.TRUNCATE, ("down",), _BLOCK_HITS[:-1])
    add(OpKind.TRUNCATE, ("up",), [Hit.ANY, Hit.PAST_EOF])
    for sync in ((), ("sync",)):
        add(OpKind.STORE, sync, _BLOCK_HITS)
        add(OpKind.PERSIST, sync, [Hit.ANY])
        for rw in ("read", "write"):
            for pmd in ((), ("pmd",)):
                add(OpKind.FAULT, (rw, *pmd, *sync), _BLOCK_HITS)
    return frozenset(out)


ALL_FORMS: frozenset[OpForm] = _universe()


@dataclass
class _Tracker:
    """What the reference does not keep: which backed blocks are preallocated or not yet durable,
    and whether a store left bytes past EOF since the size last changed."""

    ref: Reference
    blocks: dict[int, dict[int, Hit]] = field(default_factory=dict)
    stored_past_eof: set[int] = field(default_factory=set)

    def hit(self, f: RefFile, b: int) -> Hit:
        if b * BLOCK_SIZE >= f.size:
            return Hit.PAST_EOF
        if self.ref.is_shared(f, b):
            return Hit.SHARED
        if b not in f.backed:
            return Hit.HOLE
        return self.blocks.get(f.ino, {}).get(b, Hit.WRITTEN)

    def hits(self, f: RefFile, off: int, n: int) -> set[Hit]:
        if n <= 0:
            return {Hit.PAST_EOF} if off >= f.size else set()
        out = {self.hit(f, b) for b in range(off // BLOCK_SIZE, (off + n - 1) // BLOCK_SIZE + 1)}
        if off + n > f.size:
            out.add(Hit.PAST_EOF)
        return out

    def touched(self, f: RefFile, before: dict[int, Hit], durable: bool = False) -> None:
        """Blocks that got storage (an allocation or a copy on write) are fresh until fsync; `before`
        is each block's state before the op."""
        mine = self.blocks.setdefault(f.ino, {})
        for b, h in before.items():
            if durable:
                mine[b] = Hit.WRITTEN
            elif h in (Hit.HOLE, Hit.UNWRITTEN, Hit.SHARED, Hit.PAST_EOF):
                mine[b] = Hit.FRESH

    def forget_from(self, f: RefFile, first: int) -> None:
        mine = self.blocks.get(f.ino, {})
        for b in [b for b in mine if b >= first]:
            del mine[b]

    def settle(self, f: RefFile | None) -> None:
        """fsync (or sync, for every file): what was fresh is durable now."""
        for ino, mine in self.blocks.items():
            if f is None or ino == f.ino:
                for b, h in mine.items():
                    if h is Hit.FRESH:
                        mine[b] = Hit.WRITTEN


def _forms(t: _Tracker, op: Op) -> Iterator[OpForm]:
    ref = t.ref
    kind = op.kind
    if isinstance(op, (Write, Read, Fallocate, Punch)):
        f = ref.names.get(op.file)
        flags: tuple[str, ...] = ("from-map",) if isinstance(op, Write) and op.map is not None else ()
        if isinstance(op, Fallocate):
            flags = tuple(falloc_words(op.mode))
        hits = t.hits(f, op.off, op.len) if f is not None else {Hit.ANY}
        yield from (OpForm(kind, flags, h) for h in hits)
    elif isinstance(op, Truncate):
        f = ref.names.get(op.file)
        if f is None:
            yield OpForm(kind, (), Hit.ANY)
        elif op.size < f.size:
            yield OpForm(kind, ("down",), t.hit(f, op.size // BLOCK_SIZE))
        elif op.size > f.size:
            yield OpForm(kind, ("up",), Hit.PAST_EOF if f.ino in t.stored_past_eof else Hit.ANY)
        else:
            yield OpForm(kind, ("same",), Hit.ANY)
    elif isinstance(op, Fault):
        m = ref.maps.get(op.map)
        flags = ("write" if op.write else "read",) + (("pmd",) if op.pmd else ())
        if m is None:
            yield OpForm(kind, flags, Hit.ANY)
        else:
            flags += ("sync",) if m.sync else ()
            yield OpForm(kind, flags, t.hit(m.file, (m.off + op.pgoff * PAGE_SIZE) // BLOCK_SIZE))
    elif isinstance(op, (Store, Persist)):
        m = ref.maps.get(op.map)
        if m is None:
            yield OpForm(kind, (), Hit.ANY)
        elif isinstance(op, Persist):
            yield OpForm(kind, ("sync",) if m.sync else (), Hit.ANY)
        else:
            hits = {t.hit(m.file, b) for b in _span(m.off + op.off, op.len)}
            yield from (OpForm(kind, ("sync",) if m.sync else (), h) for h in hits)
    elif isinstance(op, Unlink):
        f = ref.names.get(op.file)
        yield OpForm(kind, ("mapped",) if f is not None and f.mappings else (), Hit.ANY)
    elif isinstance(op, Mmap):
        yield OpForm(kind, ("sync",) if op.sync else (), Hit.ANY)
    elif isinstance(op, Reflink):
        yield OpForm(kind, ("whole",) if op.soff is None else ("range",), Hit.ANY)
    elif kind is OpKind.MADVISE:
        yield OpForm(kind, (str(getattr(op, "advice", "")),), Hit.ANY)
    else:
        yield OpForm(kind, (), Hit.ANY)


def _span(off: int, n: int, unit: int = BLOCK_SIZE) -> range:
    return range(off // unit, (off + max(n, 1) - 1) // unit + 1)


def _before(t: _Tracker, op: Op) -> tuple[RefFile | None, dict[int, Hit]]:
    """The file an op gives storage to and the state of those blocks before it runs."""
    ref = t.ref
    if isinstance(op, (Write, Fallocate)):
        f = ref.names.get(op.file)
        return f, ({} if f is None else {b: t.hit(f, b) for b in _span(op.off, op.len)})
    if isinstance(op, (Fault, Store)):
        m = ref.maps.get(op.map)
        if m is None or (isinstance(op, Fault) and not op.write):
            return None, {}
        off, n = (op.pgoff * PAGE_SIZE, PAGE_SIZE) if isinstance(op, Fault) else (op.off, op.len)
        pages = _span(m.off + off, n, PAGE_SIZE)
        return m.file, {b: t.hit(m.file, b) for p in pages for b in _span(p * PAGE_SIZE, PAGE_SIZE)}
    return None, {}


def _after(t: _Tracker, op: Op, ok: bool, f: RefFile | None, before: dict[int, Hit]) -> None:
    if not ok:
        return
    ref = t.ref
    if isinstance(op, Write) and f is not None:
        t.touched(f, before)
        t.stored_past_eof.discard(f.ino)
    elif isinstance(op, (Fault, Store)) and f is not None:
        m = ref.maps[op.map]
        t.touched(f, before, durable=m.sync)
        if isinstance(op, Store) and m.off + op.off + op.len > f.size:
            t.stored_past_eof.add(f.ino)
    elif isinstance(op, Fallocate) and f is not None:
        # zero-range unmaps its whole blocks and preallocates them again; it and unshare-range copy
        # a shared block they write (an edge, or every block below EOF), which no log force has
        # made durable yet; keep-size leaves the bytes a store put past EOF where they are.
        mine = t.blocks.setdefault(f.ino, {})
        whole = range(-(-op.off // BLOCK_SIZE), (op.off + op.len) // BLOCK_SIZE)
        ranged = op.mode & (FallocMode.ZERO_RANGE | FallocMode.UNSHARE_RANGE)
        for b, h in before.items():
            if h in (Hit.HOLE, Hit.PAST_EOF, Hit.UNWRITTEN) or (op.mode & FallocMode.ZERO_RANGE and b in whole):
                mine[b] = Hit.UNWRITTEN
            elif h is Hit.SHARED and ranged:
                mine[b] = Hit.FRESH
        if not op.mode & FallocMode.KEEP_SIZE:
            t.stored_past_eof.discard(f.ino)
    elif isinstance(op, Truncate):
        g = ref.names.get(op.file)
        if g is not None:
            t.forget_from(g, -(-op.size // BLOCK_SIZE))
            t.stored_past_eof.discard(g.ino)
    elif isinstance(op, Punch):
        g = ref.names.get(op.file)
        if g is not None:
            mine = t.blocks.get(g.ino, {})
            for b in range(-(-op.off // BLOCK_SIZE), (op.off + op.len) // BLOCK_SIZE):
                mine.pop(b, None)
    elif isinstance(op, Reflink):
        g = ref.names.get(op.dst)
        if g is not None:
            t.blocks.pop(g.ino, None)
    elif isinstance(op, Fsync):
        t.settle(ref.names.get(op.file))
    elif isinstance(op, Sync):
        t.settle(None)


def workload_forms(w: Workload | Iterable[Op]) -> set[OpForm]:
    """The forms of every op of `w`, run crash-free on the POSIX reference (ops of a parallel
    group are classified against the state before the group)."""
    ops = tuple(w)
    ref = Reference()
    t = _Tracker(ref)
    out: set[OpForm] = set()
    i = 0
    for top in ops:
        members = top.ops if isinstance(top, Parallel) else (top,)
        if isinstance(top, Parallel):
            out.add(OpForm(OpKind.PARALLEL, (), Hit.ANY))
        for op in members:
            out.update(_forms(t, op))
        for op in members:
            f, before = _before(t, op)
            r = ref.apply(i, op)
            _after(t, op, r.ok, f, before)
            i += 1
    assert i == len(flatten(ops))
    return out


def missing(reached: Iterable[OpForm | str]) -> list[OpForm]:
    """The forms of `ALL_FORMS` not in `reached` (forms or their text), in order."""
    have = {str(f) for f in reached}
    return sorted(f for f in ALL_FORMS if str(f) not in have)
