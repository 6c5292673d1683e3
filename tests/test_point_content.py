"""A crash point's contents (the media as of it and the groups in flight) decide its states: two
points of equal contents enumerate the same states with the same images, wherever they fall."""

from __future__ import annotations

import hypothesis.strategies as st
from hypothesis import HealthCheck, given, settings

from pmfuzz.pmem import PMem, Strategy
from tests.test_pmem_outcomes import SIZE, _run, traces


def _states(point) -> list[tuple[tuple, int, bytes]]:
    return [
        (s.state_id.deviations, s.digest, s.image().to_bytes()) for s in point.states(Strategy.EXHAUSTIVE, limit=64)
    ]


def _eadr(ops: list[tuple]) -> PMem:
    """The trace on an eADR device: a crash point at every cached store, its store torn (the `T` group)."""
    pm = PMem(SIZE, "eadr")
    pm.initialize(0, bytes([0xEE]) * SIZE)
    for kind, *args in ops:
        if kind in ("clwb", "clflush"):
            getattr(pm, kind)(args[0], min(args[1], SIZE - args[0]))
        else:
            getattr(pm, kind)(*args)
    return pm


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(traces(), traces(), st.integers(0, 12), st.sampled_from(["adr", "eadr"]))
def test_points_of_equal_contents_have_equal_states(
    ops: list[tuple], other: list[tuple], keep: int, domain: str
) -> None:
    """Two traces that share their first ops: the points in those ops have equal contents, and
    wherever two points' contents are equal (in one trace or across both) so are their states."""
    run = _run if domain == "adr" else _eadr
    a = run(ops).crash_points()
    b = run(ops[:keep] + other).crash_points()
    ends = ("sfence", "clflush") if domain == "adr" else ("sfence", "store")
    shared = sum(1 for op in ops[:keep] if op[0] in ends)
    for p, q in zip(a[:shared], b[:shared], strict=True):
        assert p.content() == q.content(), p.id
    by_content: dict[bytes, list[tuple[tuple, int, bytes]]] = {}
    for p in (*a, *b):
        got = _states(p)
        assert by_content.setdefault(p.content(), got) == got, p.id


def test_the_media_under_equal_groups_tells_points_apart() -> None:
    """The same store in flight over media that differ in a line it does not touch."""
    head = [("store", 0, b"\x01" * 8), ("clwb", 0, 8), ("sfence",)]
    tail = [("store", 128, b"\x05" * 8), ("sfence",)]
    p = _run(head + tail).crash_points()
    q = _run([("store", 0, b"\x02" * 8), *head[1:], *tail]).crash_points()
    assert [g.content for g in p[1].groups] == [g.content for g in q[1].groups]
    assert p[1].content() != q[1].content()


def test_a_piece_in_flight_tells_points_apart() -> None:
    """The same media, one in-flight store's bytes, address or kind changed."""
    base = [("store", 64, b"\x07" * 16), ("sfence",)]
    variants = [
        [("store", 64, b"\x08" * 16), ("sfence",)],
        [("store", 72, b"\x07" * 16), ("sfence",)],
        [("ntstore", 64, b"\x07" * 16), ("sfence",)],
    ]
    want = _run(base).crash_points()[0].content()
    assert all(_run(v).crash_points()[0].content() != want for v in variants)
