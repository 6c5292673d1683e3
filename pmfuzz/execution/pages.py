"""Which block each page of a live mapping reached, op by op and, inside a parallel group, step by step.

A load through a mapping that shows what read(2) does not, or a store through one that changes
another file, went through a page-table entry that should not have allowed it. What the page
showed depends on what was due (`zero for data`, `older data for data`); how the entry came to be
wrong does not, and that is the cause: a fault installed it for a block map a racing op had
already changed (its iomap_begin ran outside the entry lock), a write access made it writable over
a block another file shares (a write fault that skipped its copy on write), or a later change of the
block map left it in place (no invalidation). The run records the target's `mapping_blocks` view
after every op that could move an entry and after every step of a parallel group; the cause reads
that history back.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ..lang.workload import BLOCK_SIZE, PAGE_SIZE, Dma, Fault, Op, Pin, Store
from ..reference import Reference
from ..target import MountedFS, file_extents, mapping_blocks_hook
from .reach import BlockMapLog, Snapshot

__all__ = ["PageFrame", "PageLog", "Entry", "Stale", "view", "entry_cause", "write_access"]

Entry = tuple[int | None, int | None, bool]
"""One mapped page: the block its entry maps (None: the zero page), the block the file has there
(None: a hole), and, under the zero page, whether that block is written (the zero page over an
unwritten block is right; over a written one it hides data). False for any other entry."""


class Stale(enum.StrEnum):
    """How a page-table entry came to reach what it should not."""

    INSTALLED = "installed stale"
    """A fault installed the entry for a block (or the zero page) the file no longer mapped there
    when it did: its lookup ran before a racing change and its install after."""
    WRITABLE_SHARED = "writable on a shared block"
    """A write access mapped a block another file also maps writable, instead of copying it first:
    reflink isolation broken, the cause a store through it that changes the other file has
    (`oracles.ELSEWHERE`), whatever the page shows after a later copy on write left it behind."""
    KEPT = "kept over"
    """The entry was right when installed; a later change of the file's block map left it in place."""


@dataclass(frozen=True, slots=True)
class PageFrame:
    """The mapped pages after op `op` ran (or, in a parallel group, after a step of its thread)."""

    op: int
    pages: Mapping[str, Mapping[int, Entry]]


@dataclass(frozen=True)
class PageLog:
    """Every recorded view of the mappings' pages, in order, with what reading them back needs: the
    run's ops, each op's group (by its first op), the block-map log with the maps now, and how
    far the run got."""

    frames: tuple[PageFrame, ...]
    ops: tuple[Op, ...]
    first: Mapping[int, int]
    maps: BlockMapLog
    maps_now: Snapshot | None
    upto: int
    """The last op that ran (of a parallel group: its last)."""


def view(fs: MountedFS, ref: Reference) -> dict[str, dict[int, Entry]] | None:
    """Every live mapping's pages as the target maps them now, or None if it does not tell."""
    hook = mapping_blocks_hook(fs)
    if hook is None:
        return None
    out: dict[str, dict[int, Entry]] = {}
    for m, mp in sorted(ref.maps.items()):
        name = next((n for n, f in ref.names.items() if f is mp.file), None)
        if name is None:
            continue
        pages = hook(m)
        extents = file_extents(fs, name) if any(b is None and o is not None for b, o in pages.values()) else ()
        out[m] = {
            vpage: (
                mapped,
                owned,
                mapped is None and owned is not None and _written(extents, mp.off + vpage * PAGE_SIZE),
            )
            for vpage, (mapped, owned) in pages.items()
        }
    return out


def _written(extents: Sequence[tuple[int, int, int, bool]] | None, off: int) -> bool:
    """Whether file offset `off` is in a written extent (or the target lists no extents)."""
    if extents is None:
        return True
    return any(o <= off < o + n and not unwritten for o, _dev, n, unwritten in extents)


def _stale(e: Entry) -> bool:
    mapped, owned, readable = e
    return mapped != owned if mapped is not None else owned is not None and readable


def write_access(op: Op, m: str, vpage: int) -> bool:
    """Whether `op` stores (or lets a device store) through page `vpage` of mapping `m`."""
    if isinstance(op, (Store, Dma)) and op.map == m:
        return op.off // PAGE_SIZE <= vpage <= (op.off + max(op.len, 1) - 1) // PAGE_SIZE
    if isinstance(op, (Fault, Pin)) and op.map == m:
        return op.pgoff == vpage and (not isinstance(op, Fault) or op.write)
    return False


def entry_cause(log: PageLog, ref: Reference, m: str, moff: int) -> str | None:
    """How the entry of mapping `m` at offset `moff` came to reach what it should not in the last
    frame (a `Stale` text), or None if it is right."""
    mp = ref.maps.get(m)
    name = next((n for n, f in ref.names.items() if mp is not None and f is mp.file), None)
    if mp is None or name is None or not log.frames:
        return None
    vpage = moff // PAGE_SIZE
    seq = [(f.op, f.pages.get(m, {}).get(vpage)) for f in log.frames]
    now = seq[-1][1]
    if now is None:
        return None
    mapped = now[0]
    k = len(seq) - 1
    while k > 0 and (prev := seq[k - 1][1]) is not None and prev[0] == mapped:
        k -= 1
    held = [(op, e) for op, e in seq[k:] if e is not None]
    # Every op from the install's (or its group's) on, frame or not: a write fault that left the
    # entry on its shared block changed nothing the view shows, only the entry's permission.
    since = range(log.first[held[0][0]], log.upto + 1)
    if mapped is not None and any(
        write_access(log.ops[op], m, vpage) and _shared_around(log, log.first[op], name, mapped) for op in since
    ):
        return Stale.WRITABLE_SHARED.value
    if not _stale(now):
        return None
    if _stale(held[0][1]):
        return Stale.INSTALLED.value
    op = next(op for op, e in held if _stale(e))
    return f"{Stale.KEPT.value} {_changed_how(log.maps, log.first[op], name, mp.off + vpage * PAGE_SIZE, now[1])}"


def _shared_around(log: PageLog, first: int, name: str, block: int) -> bool:
    """Whether a file other than `name` mapped device block `block` before or after the op (or
    group) that begins at op `first`."""
    spans = log.maps.spans
    before = next((sp[3] for sp in reversed(spans) if sp[0] <= first), None)
    after = next((sp[3] for sp in spans if sp[0] > first), log.maps_now)
    dev = block * BLOCK_SIZE
    return any(
        n != name and any(d <= dev < d + length for _o, d, length, _u in ext)
        for maps in (before, after)
        for n, ext in (maps or {}).items()
    )


def _changed_how(log: BlockMapLog, first: int, name: str, off: int, owned: int | None) -> str:
    """How the op (or group) beginning at op `first` changed file `name` at offset `off`: the
    block-map log's kind, `a hole` when it left none, else `a block-map change`."""
    base = off - off % BLOCK_SIZE
    r = next((r for r in reversed(log.entries) if r.op == first and r.name == name and r.off == base), None)
    if r is not None:
        return r.how.value
    return "a hole" if owned is None else "a block-map change"
