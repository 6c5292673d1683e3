"""Which serial order of a parallel group explains what the target did.

A group is correct if some serial order of its ops gives the same results, files and
sizes, with every byte equal to that byte after some such order (write(2) and stores
are not atomic against each other, block by block). Two ops are not atomic even in
results: a store through a mapping takes a page fault per page, and a write(2) that
extends a file copies its data before it sets the new size (xfs_file_dax_write), so a
racing store may see its first page after the write's data and its next page still
beyond EOF (SIGBUS), and may overwrite, in the EOF page, bytes the write put past the old
EOF before the size takes them in. When no order of whole ops explains a run, the ops
are split into those steps and their interleavings are tried.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from math import comb

import numpy as np

from oracles import WrongRead

from ..lang.rules import page_pieces
from ..lang.workload import PAGE_SIZE, Fsync, Op, Persist, Read, Store, Sync, Write
from ..reference.files import RefMapping
from ..reference.history import Alternative, History
from ..reference.model import Reference
from ..target import MountedFS, Result

__all__ = ["OrderRun", "SerialOrder", "Unexplained", "serial_order"]

MAX_INTERLEAVINGS = 2000
"""Split orders tried at most; past this the group is judged by whole-op orders only."""


@dataclass(frozen=True)
class Unexplained:
    """Why no serial order explains a parallel group, and, when it is bytes none leaves, the first
    such word as read against what the first fitting order leaves there."""

    text: str
    read: WrongRead | None = None
    """The first word of a file (or of a read of the group) that no order gives."""
    signal: str = ""
    """When no order gives the same results and every order that differs wanted one signal an op
    did not get (a fault past EOF that mapped a page)."""

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True)
class SerialOrder:
    """The explaining order (by when each op finished), the files whose content is a byte mix
    of orders, and, if only a split order explains the run, the reference it leaves (to adopt
    instead of re-applying whole ops)."""

    order: tuple[int, ...]
    mixed: dict[str, bytes]
    split: Reference | None = None


def serial_order(
    ref: Reference,
    hist: History,
    ops: Sequence[Op],
    start: int,
    n: int,
    got: dict[int, Result],
    fs: MountedFS,
    prefer: tuple[int, ...],
    memo: dict[tuple[int, ...], OrderRun] | None = None,
) -> SerialOrder | Unexplained:
    """A serial order of the group's ops that explains what the target did, or why none does.

    Every order's intermediate states are recorded in `hist` as alternatives of the group's
    boundaries: a crash inside or after the group may show what any of them held. `memo` keeps
    each order's run for other schedules of the same workload, where `ref` is the same before
    the group (the caller's to know): what an order leaves depends on that and the ops alone.
    """
    idx = list(range(start, start + n))
    finish = {start + t: k for k, t in enumerate(prefer)}
    durable = (Fsync, Sync, Persist)

    def rank(order: tuple[int, ...]) -> tuple:
        # The ops that change files in the order they really did (a COW is attributed to the op
        # that made it); durability ops as early as the results then allow, so that a serial order
        # never credits an fsync or persist with data that may have arrived after it flushed.
        changing = tuple(finish.get(j, n) for j in order if not isinstance(ops[j], durable))
        early = tuple(p for p, j in enumerate(order) if isinstance(ops[j], durable))
        return changing, early

    actual = {f: fs.read(f, 0, fs.size(f) or 0) for f in fs.files()}
    seen: dict[tuple[str, int, int], Result] = {}
    """The target's mapping reads, asked once for every order (the target does not change between them)."""
    fitting: list[tuple[tuple[int, ...], Reference]] = []
    signals: set[str] = set()
    misread: Unexplained | None = None
    near: Unexplained | None = None
    failed = signalled = misreads = 0
    for order in sorted(itertools.permutations(idx), key=rank):
        ran = None if memo is None else memo.get(order)
        if ran is None:
            ran = _run_order(ref, hist, ops, order)
            if memo is not None:
                memo[order] = ran
        want, r2, states = ran
        for k, live in enumerate(states):
            hist.add_state(start + k + 1, live)
        fit = _fits(want, got, r2, fs, idx, seen)
        if fit is True:
            fitting.append((order, r2))
        else:
            if near is None and isinstance(fit, WrongRead):
                near = Unexplained("", fit)
            failed += 1
            due = {str(want[j]) for j in idx if want[j] != got[j] and str(want[j]).startswith("SIG")}
            if isinstance(fit, str):
                due.add(fit)
            signals |= due
            signalled += bool(due)
            read = _misread(ops, idx, want, got)
            misreads += read is not None
            misread = misread or read
    whole = _explain(fitting, actual)
    if isinstance(whole, Unexplained) and not fitting:
        # Named so only when every order fails the same way: one signal it wanted, or a read.
        if signalled == failed and len(signals) == 1:
            whole = replace(whole, signal=signals.pop())
        elif misread is not None and misreads == failed:
            whole = replace(misread, text=whole.text)
        elif near is not None:
            whole = replace(near, text=whole.text)
    if not isinstance(whole, Unexplained):
        return SerialOrder(fitting[whole[0]][0], whole[1])
    split = _split_orders(ref, hist, ops, start, idx, got, fs)
    found = _explain(split, actual) if split else whole
    if isinstance(found, Unexplained):
        return whole
    order, r2 = split[found[0]]
    return SerialOrder(order, found[1], r2)


OrderRun = tuple[dict[int, Result], Reference, tuple[Alternative, ...]]
"""One serial order run on a copy of the reference: each op's result, the copy after the last, and
the files after each op as `History` records them."""


def _run_order(ref: Reference, hist: History, ops: Sequence[Op], order: tuple[int, ...]) -> OrderRun:
    r2 = copy.deepcopy(ref)
    want: dict[int, Result] = {}
    states: list[Alternative] = []
    for j in order:
        want[j] = r2.apply(j, ops[j])
        states.append(hist.state_of(r2, ref))
    return want, r2, tuple(states)


def _misread(ops: Sequence[Op], idx: list[int], want: dict[int, Result], got: dict[int, Result]) -> Unexplained | None:
    """The first read of the group whose bytes differ from what this order gives: where a read
    returned media nobody wrote, that is why no order explains the group."""
    for j in idx:
        op, w, g = ops[j], want[j], got[j]
        if not (isinstance(op, Read) and w.ok and g.ok and isinstance(w.value, bytes) and isinstance(g.value, bytes)):
            continue
        a, b = g.value, w.value
        i = next((k for k in range(min(len(a), len(b))) if a[k] != b[k]), None)
        if i is not None:
            lo = max(0, i - (op.off + i) % 8)
            return Unexplained("", WrongRead(op.file, op.off + lo, a[lo : lo + 8], b[lo : lo + 8]))
    return None


def _fits(
    want: dict[int, Result],
    got: dict[int, Result],
    r2: Reference,
    fs: MountedFS,
    idx: list[int],
    seen: dict[tuple[str, int, int], Result] | None = None,
) -> bool | WrongRead | str:
    """True if this order gives the target's results, files, sizes and mappings; else False, or,
    when only a mapping differs, the first word it shows that the order does not leave, or the
    signal a load through it did not get (a page this order leaves past EOF)."""
    if any(want[j] != got[j] for j in idx) or r2.files() != fs.files():
        return False
    if not all(fs.size(f) == r2.size(f) for f in r2.files()):
        return False
    misfit = _maps_misfit(r2, fs, seen)
    return True if misfit is None else misfit


def _maps_misfit(
    r2: Reference, fs: MountedFS, seen: dict[tuple[str, int, int], Result] | None = None
) -> WrongRead | bool | str | None:
    """Every live mapping shows what this order leaves past EOF (and faults where it does).

    Inside EOF a mapping is the file, whose bytes may mix orders (judged by `_explain`); past EOF,
    in the EOF page, only stores and EOF zeroing write, and which came last is visible through the
    mapping alone: a truncate-down that zeroed the tail before a racing store shows the store's
    bytes there, the other order shows zeroes. An order that disagrees there would be adopted and
    then flagged by the next op's functional check.

    None when every mapping fits; else False, or, when a mapping shows bytes past EOF that this
    order does not leave, the first such word as a read of the mapped file (bytes nobody wrote,
    past EOF, are why no order explains a group as much as a read of them would be), or the signal
    a load wanted where the target maps a page this order leaves wholly past EOF. `seen`: the
    target's mapping reads so far, kept for the group's next order (a 4 MiB mapping is 1,024 reads).
    """
    reads = {} if seen is None else seen

    def target_read(m: str, pos: int, k: int) -> Result:
        got = reads.get((m, pos, k))
        if got is None:
            got = reads[m, pos, k] = fs.read_mapping(m, pos, k)
        return got

    for m, mp in r2.maps.items():
        size = mp.file.size
        start = 0
        # The pages this order leaves readable, read whole: past EOF they must agree byte for byte.
        readable = min(mp.length, max(0, -(-(size - mp.off) // PAGE_SIZE) * PAGE_SIZE))
        got = target_read(m, 0, readable) if readable else None
        if got is not None and got.ok:
            want = r2.read_mapping(m, 0, readable)
            gv, wv = got.value, want.value
            assert isinstance(gv, bytes) and isinstance(wv, bytes), "a mapping read that succeeds returns bytes"
            eof = max(0, size - mp.off)
            if gv[eof:] != wv[eof:]:
                i = eof + int(np.flatnonzero(np.frombuffer(gv, np.uint8)[eof:] != np.frombuffer(wv, np.uint8)[eof:])[0])
                pos = i - i % PAGE_SIZE
                k = min(PAGE_SIZE, mp.length - pos)
                cut = min(k, max(0, size - (mp.off + pos)))
                return _mapping_read(r2, m, mp, pos, gv[pos : pos + k], wv[pos : pos + k], cut)
            start = readable
        for pos, k in page_pieces(start, mp.length - start):
            want = r2.read_mapping(m, pos, k)
            got = target_read(m, pos, k)
            if not (want.ok and got.ok):
                if want != got:
                    return str(want) if got.ok and str(want).startswith("SIG") else False
                continue
            cut = min(k, max(0, size - (mp.off + pos)))
            gv, wv = got.value, want.value
            assert isinstance(gv, bytes) and isinstance(wv, bytes), "a mapping read that succeeds returns bytes"
            if gv[cut:] != wv[cut:]:
                return _mapping_read(r2, m, mp, pos, gv, wv, cut)
    return None


def _mapping_read(
    r2: Reference, m: str, mp: RefMapping, pos: int, got: bytes, want: bytes, cut: int
) -> WrongRead | bool:
    """The first word past `cut` where a mapping's page shows what the order does not leave, as a
    read of its file at that offset; False if the file has no name left to read it by."""
    name = next((n for n, f in r2.names.items() if f is mp.file), None)
    if name is None:
        return False
    n = min(len(got), len(want))
    a = np.frombuffer(got, dtype=np.uint8)[cut:n]
    b = np.frombuffer(want, dtype=np.uint8)[cut:n]
    if not (a != b).any():
        return False  # only the lengths differ: no word to name
    i = cut + int(np.argmax(a != b))
    fpos = mp.off + pos + i
    lo = i - fpos % 8
    return WrongRead(name, fpos - fpos % 8, got[max(0, lo) : lo + 8], want[max(0, lo) : lo + 8], (m, pos + lo))


def _explain(
    fitting: list[tuple[tuple[int, ...], Reference]], actual: dict[str, bytes]
) -> tuple[int, dict[str, bytes]] | Unexplained:
    """The first fitting order whose files hold what the target's do, or a byte mix of them (then
    the first fitting order with the files it mixes), as its index in `fitting`; or why none does.

    Split orders that finish their ops in the same order are different interleavings: the one
    that explains the run is the one whose state is adopted."""
    for k, (_order, r2) in enumerate(fitting):
        if all(actual[f] == r2.read(f, 0, r2.size(f) or 0) for f in actual):
            return k, {}
    if not fitting:
        return Unexplained("no serial order gives the same results, files, sizes and mappings")
    mixed: dict[str, bytes] = {}
    for f, data in actual.items():
        if data == fitting[0][1].read(f, 0, len(data)):
            continue
        mine = np.frombuffer(data, dtype=np.uint8)
        explained = np.zeros(len(mine), dtype=bool)
        for _order, r2 in fitting:
            explained |= np.frombuffer(r2.read(f, 0, len(data)), dtype=np.uint8) == mine
        if not explained.all():
            first = int(np.argmin(explained))
            rest = explained[first:]
            end = first + int(np.argmax(rest)) if rest.any() else len(explained)
            lo, hi = first - first % 8, min(len(explained), -(-end // 8) * 8)
            return Unexplained(
                f"{f}[{lo}:{hi}] holds what no serial order with these results leaves there "
                f"(read(2) gives {hexcut(data[lo:hi])}, serial order {' '.join(map(str, fitting[0][0]))} "
                f"gives {hexcut(fitting[0][1].read(f, lo, hi - lo))})",
                WrongRead(f, lo, data[lo : lo + 8], fitting[0][1].read(f, lo, min(8, hi - lo))),
            )
        mixed[f] = data
    return 0, mixed


def hexcut(b: bytes, n: int = 8) -> str:
    return b[:n].hex() + ("..." if len(b) > n else "")


# -- split orders ---------------------------------------------------------------------------------

_HEAD, _DATA, _SIZE, _PAGE = "head", "data", "size", "page"


def _steps(op: Op) -> list[tuple[str, Op]]:
    """The steps a racing op may see `op` take one by one."""
    if isinstance(op, Store):
        return [(_PAGE, replace(op, off=pos, len=k)) for pos, k in page_pieces(op.off, op.len)]
    if isinstance(op, Write) and op.map is None:
        return [(_HEAD, op), (_DATA, op), (_SIZE, op)]
    return [(_PAGE, op)]


def _interleavings(chains: list[list[int]]) -> Iterator[list[int]]:
    """Every merge of the chains that keeps each chain's order (as chain numbers)."""
    left = [len(c) for c in chains]
    total = sum(left)
    out: list[int] = []

    def go() -> Iterator[list[int]]:
        if len(out) == total:
            yield list(out)
            return
        for c in range(len(chains)):
            if left[c]:
                left[c] -= 1
                out.append(c)
                yield from go()
                out.pop()
                left[c] += 1

    return go()


def _split_orders(
    ref: Reference,
    hist: History,
    ops: Sequence[Op],
    start: int,
    idx: list[int],
    got: dict[int, Result],
    fs: MountedFS,
) -> list[tuple[tuple[int, ...], Reference]]:
    steps = {j: _steps(ops[j]) for j in idx}
    if all(len(s) == 1 for s in steps.values()):
        return []
    counts = [len(steps[j]) for j in idx]
    ways = 1
    total = 0
    for c in counts:
        total += c
        ways *= comb(total, c)
    if ways > MAX_INTERLEAVINGS:
        return []
    fitting: list[tuple[tuple[int, ...], Reference]] = []
    for merge in _interleavings([[0] * c for c in counts]):
        r2 = copy.deepcopy(ref)
        done = {j: 0 for j in idx}
        res: dict[int, Result | None] = {j: None for j in idx}
        cut: dict[int, tuple[int, int]] = {}
        finished: list[int] = []
        for c in merge:
            j = idx[c]
            kind, op = steps[j][done[j]]
            done[j] += 1
            r = res[j]
            if r is None or r.ok:
                res[j] = _apply_step(r2, j, kind, op, r, cut)
            if done[j] == len(steps[j]):
                finished.append(j)
            hist.add_alternative(start + min(len(finished) + (done[j] < len(steps[j])), len(idx)), r2, ref)
        want = {j: r for j, r in res.items() if r is not None}
        if len(want) == len(idx) and _fits(want, got, r2, fs, idx) is True:
            fitting.append((tuple(finished), r2))
    return fitting


def _apply_step(
    r2: Reference, j: int, kind: str, op: Op, so_far: Result | None, cut: dict[int, tuple[int, int]]
) -> Result | None:
    """Apply one step of op j; the op's result so far (None: nothing visible done yet).

    A write(2) takes three: its bytes inside the old EOF (`_HEAD`), its bytes past it with the old
    size still in force (`_DATA`: read(2) does not see them, a mapping of the EOF page does, and
    pages past it still fault SIGBUS), then the new size over whatever those bytes hold (`_SIZE`).
    `cut[j]`: the bytes the head wrote and the size the data step grew the file to (-1: none)."""
    if kind == _PAGE:
        return r2.apply(j, op)
    assert isinstance(op, Write)
    if kind == _HEAD:
        size = r2.size(op.file)
        c = 0 if size is None else max(0, min(op.len, size - op.off))
        cut[j] = (c, -1)
        if c == 0:
            return None
        return r2.apply(j, op if c == op.len else replace(op, len=c))
    c, grown = cut[j]
    if kind == _SIZE:
        f = r2.names.get(op.file)
        if grown >= 0 and f is not None:
            f.set_size(grown)
        return so_far
    if c == op.len:
        return so_far
    old = r2.size(op.file)
    tail = r2.apply(j, op if c == 0 else replace(op, off=op.off + c, len=op.len - c))
    f = r2.names.get(op.file)
    if tail.ok and old is not None and f is not None and f.size > old:
        cut[j] = (c, f.size)
        f.set_size(old)
    if so_far is None or not tail.ok:
        return tail
    return Result(int(so_far.value) + int(tail.value))
