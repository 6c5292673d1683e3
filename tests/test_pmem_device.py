"""Specific Px86 facts and the device's API contract."""

from __future__ import annotations

import hypothesis.strategies as st
import numpy as np
import pytest
from hypothesis import given, settings

from pmfuzz.errors import PMemError, PmfuzzError
from pmfuzz.pmem import Domain, EventKind, PMem, PointKind, distinct


def images(point) -> set[bytes]:
    return {s.image().to_bytes() for s in point.states()}


def test_sixteen_byte_store_persists_as_first_half_never_second_half_alone() -> None:
    pm = PMem(128)
    pm.store(0, b"A" * 8 + b"B" * 8)
    got = {img[:16] for img in images(pm.crash_points()[-1])}
    assert got == {bytes(16), b"A" * 8 + bytes(8), b"A" * 8 + b"B" * 8}


def test_fence_alone_does_not_persist_an_unflushed_line() -> None:
    pm = PMem(128)
    pm.store(0, b"X" * 8)
    pm.sfence()
    pm.store(64, b"Y" * 8)
    end = pm.crash_points()[-1]
    assert any(img[:8] == bytes(8) for img in images(end))


def test_flushed_and_fenced_line_is_in_every_later_state() -> None:
    pm = PMem(256)
    pm.store(0, b"X" * 8)
    pm.clwb(0)
    pm.sfence()
    for i in range(1, 4):
        pm.store(64 * i, bytes([i]) * 8)
        pm.sfence()
        pm.ntstore(64 * i + 8, bytes([i]) * 8)
    for point in pm.crash_points()[1:]:
        assert all(img[:8] == b"X" * 8 for img in images(point)), point.id


def test_flush_without_fence_is_not_durable() -> None:
    pm = PMem(128)
    pm.store(0, b"X" * 8)
    pm.clwb(0)
    assert bytes(8) in {img[:8] for img in images(pm.crash_points()[-1])}


def test_clflush_is_durable_without_a_fence() -> None:
    pm = PMem(128)
    pm.store(0, b"X" * 8)
    pm.clflush(0)
    pm.store(64, b"Y" * 8)
    end = pm.crash_points()[-1]
    assert end.kind is PointKind.END
    assert all(img[:8] == b"X" * 8 for img in images(end))


def test_ntstore_units_persist_in_any_order_until_the_fence() -> None:
    pm = PMem(128)
    pm.ntstore(0, b"A" * 8 + b"B" * 8)
    got = {img[:16] for img in images(pm.crash_points()[-1])}
    assert bytes(8) + b"B" * 8 in got
    pm.sfence()
    pm.store(64, b"C")
    assert {img[:16] for img in images(pm.crash_points()[-1])} == {b"A" * 8 + b"B" * 8}


def test_eadr_store_is_durable_when_it_executes_but_can_tear_between_words() -> None:
    pm = PMem(128, "eadr")
    pm.store(0, b"A" * 8 + b"B" * 8)
    pm.store(64, b"C" * 8)
    every = {img[:16] + img[64:72] for p in pm.crash_points() for img in images(p)}
    assert b"A" * 8 + bytes(8) + bytes(8) in every
    assert bytes(8) + b"B" * 8 + bytes(8) not in every
    assert b"A" * 8 + b"B" * 8 + b"C" * 8 in every
    end = pm.crash_points()[-1]
    assert images(end) == {pm.load(0, 128)}


def test_eadr_op_points_fall_on_op_boundaries() -> None:
    pm = PMem(256, "eadr")
    for i in range(3):
        with pm.op(i), pm.site(f"op{i}"):
            pm.store(64 * i, bytes([i + 1]) * 64)
    points = pm.crash_points("ops")
    assert [p.id for p in points] == ["O0", "O1", "O2", "E"]
    assert [p.op for p in points[:3]] == [0, 1, 2]
    assert [len(images(p)) for p in points] == [1, 1, 1, 1]


def test_trace_events_carry_op_and_innermost_site() -> None:
    pm = PMem(128)
    with pm.op(7), pm.site("iomap_begin"):
        pm.store(0, b"a")
        with pm.site("dax_zero"):
            pm.ntstore(8, b"b")
        pm.persist(0, 16)
    kinds = [(e.kind, e.op, e.site) for e in pm.trace]
    assert kinds == [
        (EventKind.STORE, 7, "iomap_begin"),
        (EventKind.NTSTORE, 7, "dax_zero"),
        (EventKind.CLWB, 7, "iomap_begin"),
        (EventKind.SFENCE, 7, "iomap_begin"),
    ]
    point = pm.crash_points()[0]
    assert (point.id, point.op, point.site) == ("F0", 7, "iomap_begin")
    [outcome] = point.state().outcomes()
    assert outcome.sites == ("iomap_begin", "dax_zero") and outcome.verdict == "kept"


def test_state_outcomes_say_what_was_kept_and_dropped() -> None:
    pm = PMem(256)
    with pm.site("data"):
        pm.store(0, b"d" * 64)
    with pm.site("commit"):
        pm.store(128, b"c" * 8)
    pm.sfence()
    state = pm.crash_state("F0:L0=3,L2=0")
    got = {(o.name, o.verdict, o.kept, o.total, o.sites) for o in state.outcomes()}
    assert got == {("L0", "partial", 3, 8, ("data",)), ("L2", "dropped", 0, 1, ("commit",))}
    assert state.image().to_bytes()[:64] == b"d" * 24 + bytes(40)


@pytest.mark.parametrize(
    "bad",
    ["F9", "X1", "F0:L5=1", "F0:L0=9", "F0:L0=-1", "F0:L0", "F0:L0=1,L0=1", "F0:L0=x1", ""],
)
def test_bad_state_ids_are_one_clear_error(bad: str) -> None:
    pm = PMem(256)
    pm.store(0, b"d" * 64)
    pm.sfence()
    with pytest.raises(PMemError) as exc:
        pm.crash_state(bad)
    assert "\n" not in str(exc.value)


@pytest.mark.parametrize(
    "call",
    [
        lambda pm: pm.store(4096, b"x"),
        lambda pm: pm.store(-1, b"x"),
        lambda pm: pm.store(4090, b"x" * 8),
        lambda pm: pm.store(0, b""),
        lambda pm: pm.load(0, 0),
        lambda pm: pm.load(0, -3),
        lambda pm: pm.clwb(0, 0),
        lambda pm: pm.clflush(5000),
        lambda pm: pm.persist(4095, 2),
        lambda pm: pm.store("0", b"x"),
        lambda pm: pm.store(0, "text"),
        lambda pm: pm.crash_points()[0].states("everything"),
        lambda pm: list(pm.crash_points()[0].states("everything")),
        lambda pm: pm.crash_points("sometimes"),
    ],
)
def test_misuse_raises_a_pmfuzz_error_not_a_numpy_error(call) -> None:
    pm = PMem(4096)
    with pytest.raises(PmfuzzError):
        call(pm)


@pytest.mark.parametrize("size", [0, -64, 100, 1.5, "4096"])
def test_bad_device_size(size) -> None:
    with pytest.raises(PMemError, match="size"):
        PMem(size)


def test_unknown_domain() -> None:
    with pytest.raises(PMemError, match="domain 'nvram'"):
        PMem(4096, "nvram")
    assert PMem(4096, "eadr").domain is Domain.EADR


def test_initialize_only_before_the_trace() -> None:
    pm = PMem(4096)
    pm.initialize(0, b"\x01" * 64)
    pm.store(0, b"x")
    with pytest.raises(PMemError, match="initialize"):
        pm.initialize(0, b"y")
    pm.quiesce()
    pm.initialize(64, b"z")
    assert pm.load(0, 1) == b"x" and pm.load(64, 1) == b"z"


def test_quiesce_makes_everything_durable() -> None:
    pm = PMem(4096)
    pm.store(0, b"x" * 8)
    pm.quiesce()
    pm.store(64, b"y")
    assert all(img[:8] == b"x" * 8 for img in images(pm.crash_points()[-1]))


def test_distinct_drops_identical_images() -> None:
    pm = PMem(128)
    pm.store(0, bytes(8))  # a store of what the media already holds
    pm.store(8, b"q" * 8)
    states = list(pm.crash_points()[-1].states())
    assert len(states) == 3
    assert len(list(distinct(states))) == 2


def test_mounted_image_is_private() -> None:
    pm = PMem(8192)
    pm.store(0, b"a" * 64)
    pm.persist(0, 64)
    pm.store(4096, b"b" * 64)
    state = pm.crash_state("E:L64=0")
    img = state.image()
    mounted = PMem.from_image(img)
    assert mounted.load(0, 2) == b"aa" and mounted.load(4096, 1) == b"\0"
    mounted.store(0, b"zz")
    assert img.read(0, 2).tobytes() == b"aa"
    assert pm.crash_state("E:L64=0").image().read(0, 2).tobytes() == b"aa"


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_image_read_of_any_range_matches_the_whole_image(data: st.DataObject) -> None:
    pm = PMem(3 * 4096)
    for i in range(data.draw(st.integers(1, 6))):
        addr = data.draw(st.integers(0, 3 * 4096 - 200))
        pm.store(addr, bytes([i + 1]) * data.draw(st.integers(1, 200)))
        if data.draw(st.booleans()):
            pm.persist(addr, 1)
    end = pm.crash_points()[-1]
    state = data.draw(st.sampled_from(list(end.states("bounded", limit=30))))
    img = state.image()
    whole = img.to_array()
    a = data.draw(st.integers(0, 3 * 4096 - 1))
    n = data.draw(st.integers(1, 3 * 4096 - a))
    assert np.array_equal(img.read(a, n), whole[a : a + n])
    assert PMem.from_image(img).load(a, n) == whole[a : a + n].tobytes()


def test_image_cost_does_not_touch_untouched_pages() -> None:
    pm = PMem(64 << 20)
    pm.store(5 << 20, b"x" * 64)
    img = pm.crash_points()[-1].state().image()
    assert img.lines and len(img.lines) == 1
    assert img.base._top == {}
