"""The crash states pmfuzz enumerates equal what a brute-force Px86 machine can leave behind."""

from __future__ import annotations

import hypothesis.strategies as st
from hypothesis import HealthCheck, given, settings

from pmfuzz.pmem import PMem, PointKind

from .pmem_bruteforce import Op, adr, eadr, units_of

SIZE = 256
INITIAL = bytes([0xEE]) * SIZE


@st.composite
def traces(draw: st.DrawFn, max_units: int = 12) -> list[Op]:
    ops: list[Op] = []
    units = 0
    stamp = 1
    for _ in range(draw(st.integers(1, 14))):
        kind = draw(
            st.sampled_from(
                ["store", "store", "store", "ntstore", "ntstore", "clwb", "clflushopt", "clflush", "sfence", "mfence"]
            )
        )
        if kind in ("store", "ntstore"):
            n = draw(st.integers(1, 16))
            addr = draw(st.integers(0, SIZE - n))
            words = (addr + n - 1) // 8 - addr // 8 + 1
            if units + words > max_units:
                continue
            units += words
            data = bytes((stamp * 37 + i) % 251 + 1 for i in range(n))
            stamp += 1
            ops.append(Op(kind, addr, data))
        elif kind in ("clwb", "clflushopt", "clflush"):
            line = draw(st.integers(0, SIZE // 64 - 1))
            ops.append(Op(kind, line * 64 + draw(st.integers(0, 63)), size=1))
        else:
            ops.append(Op(kind))
    return ops


def run(ops: list[Op], domain: str) -> PMem:
    pm = PMem(SIZE, domain)
    pm.initialize(0, INITIAL)
    for op in ops:
        if op.kind in ("store", "ntstore"):
            getattr(pm, op.kind)(op.addr, op.data)
        elif op.kind in ("clwb", "clflushopt", "clflush"):
            getattr(pm, op.kind)(op.addr, op.size)
        else:
            getattr(pm, op.kind)()
    return pm


def model_images(pm: PMem, strategy: str = "exhaustive", eadr_points: str = "stores") -> set[bytes]:
    return {s.image().to_bytes() for p in pm.crash_points(eadr_points) for s in p.states(strategy)}


SETTINGS = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(traces())
def test_adr_exhaustive_equals_brute_force(ops: list[Op]) -> None:
    pm = run(ops, "adr")
    images, _ = adr(ops, INITIAL)
    assert model_images(pm) == images


@SETTINGS
@given(traces())
def test_adr_each_point_equals_brute_force_just_before_it(ops: list[Op]) -> None:
    pm = run(ops, "adr")
    _, before = adr(ops, INITIAL)
    for point in pm.crash_points():
        pc = len(ops) if point.kind is PointKind.END else point.event.seq
        assert {s.image().to_bytes() for s in point.states()} == before[pc], point.id


@SETTINGS
@given(traces())
def test_eadr_exhaustive_equals_brute_force(ops: list[Op]) -> None:
    pm = run(ops, "eadr")
    assert model_images(pm) == eadr(ops, INITIAL)


@SETTINGS
@given(traces())
def test_eadr_op_points_are_a_subset(ops: list[Op]) -> None:
    pm = run(ops, "eadr")
    assert model_images(pm, eadr_points="ops") <= model_images(pm)


@SETTINGS
@given(traces(), st.sampled_from(["adr", "eadr"]))
def test_bounded_and_sample_are_subsets_of_exhaustive(ops: list[Op], domain: str) -> None:
    pm = run(ops, domain)
    for point in pm.crash_points():
        every = {s.choices for s in point.states("exhaustive")}
        assert {s.choices for s in point.states("bounded")} <= every
        assert {s.choices for s in point.states("sample", seed=3, limit=20)} <= every


@SETTINGS
@given(traces(), st.sampled_from(["adr", "eadr"]))
def test_state_ids_round_trip_to_the_same_image(ops: list[Op], domain: str) -> None:
    pm = run(ops, domain)
    fresh = run(ops, domain)
    for point in pm.crash_points():
        for s in point.states("exhaustive", limit=50):
            again = fresh.crash_state(s.id)
            assert again.id == s.id
            assert again.choices == s.choices
            assert again.image().to_bytes() == s.image().to_bytes()


@SETTINGS
@given(traces(), st.sampled_from(["adr", "eadr"]))
def test_digest_identifies_the_image(ops: list[Op], domain: str) -> None:
    pm = run(ops, domain)
    by_digest: dict[int, bytes] = {}
    by_image: dict[bytes, int] = {}
    for point in pm.crash_points():
        for s in point.states():
            img = s.image().to_bytes()
            assert by_digest.setdefault(s.digest, img) == img
            assert by_image.setdefault(img, s.digest) == s.digest


@SETTINGS
@given(traces(), st.sampled_from(["adr", "eadr"]))
def test_the_enumerators_digest_each_state_as_its_image_does(ops: list[Op], domain: str) -> None:
    """Enumerated states carry a digest computed from what changed since the state before (odometer)
    or from their deviations (bounded): it is the one computed from scratch."""
    pm = run(ops, domain)
    by_image: dict[bytes, int] = {}
    for point in pm.crash_points():
        for s in [*point.states("bounded", limit=200), *point.states("exhaustive", limit=200)]:
            assert s.digest == point.state(s.choices).digest
            img = s.image().to_bytes()
            assert by_image.setdefault(img, s.digest) == s.digest


@SETTINGS
@given(traces(), st.sampled_from(["adr", "eadr"]))
def test_all_kept_is_what_the_cpu_saw(ops: list[Op], domain: str) -> None:
    pm = run(ops, domain)
    end = pm.crash_points()[-1]
    assert end.state().image().to_bytes() == pm.load(0, SIZE)


def test_brute_force_units_split_at_words() -> None:
    [us] = units_of([Op("store", 4, bytes(16))])
    assert [(u.lo, u.hi) for u in us] == [(4, 8), (8, 16), (16, 20)]


@SETTINGS
@given(traces(), st.sampled_from(["adr", "eadr"]), st.randoms(use_true_random=False))
def test_points_read_in_any_order_or_after_forget_give_the_same_states(ops: list[Op], domain: str, rnd) -> None:
    """A point's groups are rebuilt from the changes since the point before (`GroupFrames`), and a
    judged point forgets what it cached: neither may change a state, whatever order points are read in."""
    in_order = {
        p.id: (tuple(g.name for g in p.groups), {s.digest: s.image().to_bytes() for s in p.states()})
        for p in run(ops, domain).crash_points()
    }
    points = list(run(ops, domain).crash_points())
    rnd.shuffle(points)
    for p in points + points[: len(points) // 2]:
        names = tuple(g.name for g in p.groups)
        images = {s.digest: s.image().to_bytes() for s in p.states()}
        assert (names, images) == in_order[p.id], p.id
        if rnd.random() < 0.5:
            p.forget()


def test_a_point_shares_the_groups_that_did_not_change_since_the_point_before() -> None:
    """1,000 lines in flight and a fence after each store: one group per store, not one per line per
    point (a tuple per point of every line in flight was 15 GB on 2 MiB stored through MAP_SYNC)."""
    pm = PMem(64 * 1024, "adr")
    for line in range(1000):
        pm.store(line * 64, b"\x01" * 8)
        pm.sfence()
    points = pm.crash_points()
    assert len(points) == 1001
    assert len(points[-1].spec.groups) == 1000
    specs = {id(g) for p in points for g in p.spec.groups}
    assert len(specs) == 1000
