"""Many groups' "all kept" outcomes computed together equal each group's computed alone."""

from __future__ import annotations

import hypothesis.strategies as st
import numpy as np
from hypothesis import HealthCheck, given, settings

import pmfuzz.pmem.crash as crash
import pmfuzz.pmem.outcomes as outcomes
from pmfuzz.pmem import LINE, PAGE, Pages, PMem
from pmfuzz.pmem.outcomes import full_outcomes, line_hash, read_lines
from pmfuzz.pmem.persistency import Piece

SIZE = 2 * PAGE + 3 * LINE  # a short last page too


@st.composite
def traces(draw: st.DrawFn) -> list[tuple]:
    ops: list[tuple] = []
    for stamp in range(draw(st.integers(1, 12))):
        kind = draw(st.sampled_from(["store", "ntstore", "ntstore", "clwb", "clflush", "sfence"]))
        if kind in ("store", "ntstore"):
            n = draw(st.integers(1, 3 * LINE))
            addr = draw(st.integers(0, SIZE - n))
            byte = draw(st.sampled_from([0, 0xEE, stamp + 1]))  # 0xEE: the media's own bytes, a no-op line
            ops.append((kind, addr, bytes([byte]) * n))
        elif kind in ("clwb", "clflush"):
            ops.append((kind, draw(st.integers(0, SIZE - 1)), draw(st.integers(1, 2 * LINE))))
        else:
            ops.append((kind,))
    return ops


def _run(ops: list[tuple]) -> PMem:
    pm = PMem(SIZE, "adr")
    pm.initialize(0, bytes([0xEE]) * SIZE)
    for kind, *args in ops:
        if kind == "clwb":
            pm.clwb(args[0], min(args[1], SIZE - args[0]))
            continue
        if kind == "clflush":
            pm.clflush(args[0], min(args[1], SIZE - args[0]))
            continue
        getattr(pm, kind)(*args)
    return pm


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(traces())
def test_full_outcomes_equal_each_group_alone(ops: list[tuple]) -> None:
    alone, together = _run(ops).crash_points(), _run(ops).crash_points()
    for a, b in zip(alone, together, strict=True):
        snap = b.timeline._snapshot(b.spec.log_len)
        full_outcomes(b.groups, range(len(b.groups)), snap.pages)
        for gi, (ga, gb) in enumerate(zip(a.groups, b.groups, strict=True)):
            want = a._outcome(gi, ga.full)
            if len(gb.lines) == 1:
                assert gb.outcomes[gb.full] == want, (a.id, gb.name)
            else:
                assert gb.full not in gb.outcomes


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(traces())
def test_base_digests_do_not_depend_on_the_bulk_path(ops: list[tuple]) -> None:
    old = crash._BULK
    try:
        crash._BULK = 1 << 30
        alone = [p._base_digests for p in _run(ops).crash_points()]
        crash._BULK = 1
        together = [p._base_digests for p in _run(ops).crash_points()]
    finally:
        crash._BULK = old
    assert alone == together


@given(st.lists(st.integers(0, SIZE // LINE - 1), max_size=40), st.integers(0, 2**32 - 1))
def test_read_lines_gathers_each_line(lines: list[int], seed: int) -> None:
    data = np.random.default_rng(seed).integers(0, 256, SIZE, dtype=np.uint8).tobytes()
    pages = Pages.from_array(np.frombuffer(data, dtype=np.uint8))
    got = read_lines(pages, np.array(lines, dtype=np.int64))
    assert [row.tobytes() for row in got] == [data[ln * LINE : (ln + 1) * LINE] for ln in lines]


@st.composite
def _pieces(draw: st.DrawFn) -> list[Piece]:
    out = []
    for seq in range(draw(st.integers(0, 60))):
        line = draw(st.integers(0, SIZE // LINE - 1))
        lo = draw(st.integers(0, LINE - 1))
        n = draw(st.integers(1, LINE - lo))
        byte = draw(st.sampled_from([0, 0xEE, seq + 1]))  # 0, 0xEE: often what the line holds already
        out.append(Piece(seq, line, line * LINE + lo, bytes([byte]) * n, False, 1))
    return out


@settings(max_examples=150, deadline=None)
@given(_pieces(), st.booleans())
def test_a_log_changes_the_digest_by_its_changed_lines_whichever_path(pieces: list[Piece], bulk: bool) -> None:
    data = bytearray([0xEE]) * SIZE
    data[PAGE : PAGE + 3 * LINE] = bytes(3 * LINE)
    pages = Pages.from_array(np.frombuffer(bytes(data), dtype=np.uint8))
    before = {ln: pages.read_bytes(ln * LINE, LINE) for ln in range(SIZE // LINE)}
    old = outcomes._BULK_LINES
    try:
        outcomes._BULK_LINES = 0 if bulk else 1 << 30
        got = outcomes.log_delta(pages, pieces)
    finally:
        outcomes._BULK_LINES = old
    for p in pieces:
        data[p.addr : p.addr + len(p.data)] = p.data
    assert pages.read_bytes(0, SIZE) == bytes(data)
    after = {ln: bytes(data[ln * LINE : (ln + 1) * LINE]) for ln in range(SIZE // LINE)}
    assert got == sum(line_hash(ln, after[ln]) - line_hash(ln, before[ln]) for ln in after)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(traces(), st.lists(st.sampled_from([1, 2, 3, 5, 8, 49, 1 << 20]), min_size=1, max_size=4))
def test_a_group_counts_its_choices_under_any_cap_in_any_order(ops: list[tuple], caps: list[int]) -> None:
    for p in _run(ops).crash_points():
        for g in p.groups:
            every = len(list(g.choices()))
            want = [every if g.chain else min(every, cap) for cap in caps]  # a chain's count costs nothing
            assert [g.count(cap) for cap in caps] == want, g.name


def test_a_count_that_reached_its_cap_is_counted_again_under_a_larger_one() -> None:
    pm = PMem(SIZE, "adr")
    pm.ntstore(0, bytes(range(1, 17)))  # two words, either may persist alone: four choices
    (g,) = [g for p in pm.crash_points() for g in p.groups if not g.chain]
    assert [g.count(4), g.count(5), g.count(3), g.count(1 << 20)] == [4, 4, 3, 4]
