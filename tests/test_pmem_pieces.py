"""A store is cut into one piece per cache line it touches, each with the words it touches: checked
against a byte-by-byte cut for stores of every alignment and length, and a trace of multi-line
stores has the crash points of the same trace stored a line at a time."""

from __future__ import annotations

import hypothesis.strategies as st
from hypothesis import given, settings

from pmfuzz.pmem import PMem
from pmfuzz.pmem.persistency import compute_points, split_pieces
from pmfuzz.pmem.trace import Domain, Event, EventKind

LINE, WORD = 64, 8


def _by_bytes(addr: int, data: bytes) -> list[tuple[int, int, bytes, int]]:
    """(line, addr, data, words) per line, cut one byte at a time."""
    out: dict[int, list[int]] = {}
    for i in range(len(data)):
        out.setdefault((addr + i) // LINE, []).append(addr + i)
    return [
        (line, at[0], data[at[0] - addr : at[-1] + 1 - addr], len({a // WORD for a in at}))
        for line, at in sorted(out.items())
    ]


@settings(max_examples=400, deadline=None)
@given(st.integers(0, 4 * LINE), st.integers(1, 6 * LINE), st.booleans(), st.integers(0, 99))
def test_pieces_cut_a_store_at_every_line_boundary(addr: int, n: int, nt: bool, seq: int) -> None:
    data = bytes((i * 7 + 3) % 256 for i in range(n))
    kind = EventKind.NTSTORE if nt else EventKind.STORE
    pieces = split_pieces(Event(seq, kind, addr, n, data))
    assert [(p.line, p.addr, p.data, p.units) for p in pieces] == _by_bytes(addr, data)
    assert all(p.seq == seq and p.nt == nt for p in pieces)


@st.composite
def _wide_traces(draw: st.DrawFn) -> list[tuple]:
    ops: list[tuple] = []
    for stamp in range(draw(st.integers(1, 10))):
        kind = draw(st.sampled_from(["store", "ntstore", "clwb", "clflush", "sfence"]))
        if kind in ("store", "ntstore"):
            n = draw(st.integers(1, 3 * LINE))
            addr = draw(st.integers(0, 8 * LINE - n))
            ops.append((kind, addr, bytes((stamp * 31 + i) % 251 + 1 for i in range(n))))
        elif kind in ("clwb", "clflush"):
            at = draw(st.integers(0, 7)) * LINE
            ops.append((kind, at, draw(st.integers(1, 8 * LINE - at))))
        else:
            ops.append((kind,))
    return ops


def _points(ops: list[tuple], by_line: bool) -> list[tuple]:
    pm = PMem(8 * LINE, "adr")
    for op in ops:
        if op[0] in ("store", "ntstore"):
            _, addr, data = op
            cuts = [(addr, data)] if not by_line else [(p.addr, p.data) for p in _pieces(addr, data)]
            for a, d in cuts:
                getattr(pm, op[0])(a, d)
        elif op[0] in ("clwb", "clflush"):
            getattr(pm, op[0])(op[1], op[2])
        else:
            pm.sfence()
    specs, log = compute_points(tuple(pm.trace), Domain.ADR)

    def cut(pieces) -> tuple:
        return tuple((p.line, p.addr, p.data, p.nt, p.units) for p in pieces)

    return [(s.kind, s.log_len if not by_line else None, tuple(cut(g.pieces) for g in s.groups)) for s in specs] + [
        cut(log)
    ]


def _pieces(addr: int, data: bytes):
    return split_pieces(Event(0, EventKind.STORE, addr, len(data), data))


@settings(max_examples=300, deadline=None)
@given(_wide_traces())
def test_multi_line_stores_leave_the_points_of_the_same_stores_a_line_at_a_time(ops: list[tuple]) -> None:
    whole, by_line = _points(ops, False), _points(ops, True)
    assert [(k, g) for k, _n, g in whole[:-1]] == [(k, g) for k, _n, g in by_line[:-1]]
    assert whole[-1] == by_line[-1]
