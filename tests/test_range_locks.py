"""Range locks (daxfs `locks=range`) and write(2) from a live mapping (`write F OFF LEN from M MOFF`)."""

from __future__ import annotations

import threading

import hypothesis.strategies as st
import pytest
from hypothesis import HealthCheck, given, settings

from oracles import OracleName, RunContext
from oracles.functional import Functional
from pmfuzz.errors import ParseError, PmfuzzError
from pmfuzz.execution.interleave import Scheduler, explore
from pmfuzz.fs import DaxfsTarget
from pmfuzz.fs.file import EFAULT
from pmfuzz.fs.locks import LockMode, RangeDeadlock, RangeLock, Sched
from pmfuzz.gen.strategies import workloads
from pmfuzz.judging.engine import check
from pmfuzz.judging.repro import Reproducer, format_reproducer, parse_reproducer
from pmfuzz.lang.workload import (
    FILES,
    MAPPINGS,
    MAX_FILE_SIZE,
    RANGE_END,
    Create,
    Mmap,
    Op,
    Workload,
    Write,
    flatten,
    format_workload,
    parse,
    write_lock_span,
)
from pmfuzz.pmem import PMem
from pmfuzz.reference import Reference
from pmfuzz.target import Errno, Result, TargetSpec, make_target, parse_target_spec

K = 4096
DESIGNS = ["zero", "unwritten", "cow-remap"]
SELF = parse("create f0\nwrite f0 0 4096\nmmap m0 f0 0 4096\nwrite f0 0 4096 from m0 0\n")
ABBA = parse(
    "create f0\nwrite f0 0 4096\ncreate f1\nwrite f1 0 4096\nmmap m0 f0 0 4096\nmmap m1 f1 0 4096\n"
    "parallel { write f0 0 4096 from m1 0 ; write f1 0 4096 from m0 0 }\n"
)


def _run(locks: str, w: Workload, design: str = "zero") -> tuple[list[Result], list[Result], object, Reference]:
    """Run a sequential workload on daxfs and on the reference the target configures; the functional
    oracle judges every op. Returns (target results, reference results, mounted fs, reference)."""
    target = DaxfsTarget(design=design, locks=locks)
    pm = PMem(8 << 20, domain="adr")
    target.format(pm)
    fs = target.mount(pm)
    ref = Reference.for_target(target)
    got, want = [], []
    oracle = Functional()
    for i, op in enumerate(flatten(w.ops)):
        payload = ref.payload(i, op)
        want.append(ref.apply(i, op))
        got.append(fs.execute(i, op, payload))
        assert oracle.check(RunContext(i, op, got[-1], want[-1], fs, ref)) == [], f"op {i} `{op}`"
    return got, want, fs, ref


# -- the op form --------------------------------------------------------------------------

_num = st.one_of(st.sampled_from([0, 1, 100, K - 1, K, K + 1, 2 * K]), st.integers(0, 1 << 22))
_write_ops = st.builds(
    lambda f, off, n, src: Write(f, off, n, *(src or (None, None))),
    st.sampled_from(FILES),
    _num,
    st.integers(1, 1 << 20),
    st.none() | st.tuples(st.sampled_from(MAPPINGS), _num),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(_write_ops, min_size=1, max_size=6))
def test_write_forms_round_trip(ops: list[Write]) -> None:
    w = Workload(tuple(ops))
    text = format_workload(w)
    assert parse(text) == w
    assert format_workload(parse(text)) == text
    for op in ops:
        assert ("from" in str(op)) == (op.map is not None)


@pytest.mark.parametrize(
    ("text", "col", "what"),
    [
        ("write f0 0 8 to m0 0", 14, "from"),
        ("write f0 0 8 from f1 0", 19, "mapping name"),
        ("write f0 0 8 from m9 0", 19, "mapping name"),
        ("write f0 0 8 from m0 x", 22, "mapping offset"),
        ("write f0 0 8 from m0 0 1", 24, "FILE OFF LEN [from MAP MOFF]"),
        (f"write f0 0 8 from m0 {MAX_FILE_SIZE}", 22, "source range"),
    ],
)
def test_write_from_parse_errors_name_line_and_column(text: str, col: int, what: str) -> None:
    with pytest.raises(ParseError) as e:
        parse("create f0\n" + text + "\n")
    assert e.value.line == 2 and e.value.column == col and what in str(e.value)


def test_write_from_too_few_arguments() -> None:
    with pytest.raises(ParseError, match="FILE OFF LEN \\[from MAP MOFF\\]"):
        parse("write f0 0 8 from m0")


def test_write_needs_map_and_offset_together() -> None:
    with pytest.raises(ValueError, match="both map and moff"):
        Write("f0", 0, 8, "m0")


def test_write_from_in_parallel_group_round_trips() -> None:
    assert str(parse(format_workload(ABBA))) == format_workload(ABBA)
    assert ABBA.ops[-1].ops[0] == Write("f0", 0, K, "m1", 0)  # type: ignore[attr-defined]


# -- the target option ----------------------------------------------------------------------


def test_locks_option_parses_and_prints_back() -> None:
    spec = parse_target_spec("daxfs design=zero locks=range")
    t = make_target(spec)
    assert t.options()["locks"] == "range" and t.range_locks  # type: ignore[attr-defined]
    again = TargetSpec(t.name, tuple(t.options().items()))
    assert make_target(str(again)).options() == t.options()
    r = Reproducer(SELF, again)
    assert parse_reproducer(format_reproducer(r)).target == again
    default = make_target("daxfs design=zero")
    assert "locks" not in default.options() and not default.range_locks  # type: ignore[attr-defined]
    assert make_target("daxfs locks=rwsem").options() == default.options()


def test_unknown_lock_scheme_is_one_line_error() -> None:
    with pytest.raises(PmfuzzError) as e:
        make_target("daxfs locks=mutex")
    assert "'mutex'" in str(e.value) and "\n" not in str(e.value)


def test_reference_reads_the_target_declaration() -> None:
    assert Reference.for_target(DaxfsTarget(locks="range")).range_locks
    assert not Reference.for_target(DaxfsTarget()).range_locks
    assert not Reference.for_target(object()).range_locks


# -- the range lock ---------------------------------------------------------------------------


def test_range_lock_overlap_and_modes() -> None:
    lk = RangeLock("rl")
    with lk.hold(Sched(), 0, K, LockMode.SHARED):
        assert lk.conflicting(0, K, LockMode.SHARED, besides="t9") == []
        assert len(lk.conflicting(K - 1, K + 1, LockMode.EXCL, besides="t9")) == 1
        assert lk.conflicting(K, 2 * K, LockMode.EXCL, besides="t9") == []
        with lk.hold(Sched(), 100, 200, LockMode.SHARED):  # shared over shared, same thread
            assert len(lk.holds) == 2
        with lk.hold(Sched(), K, RANGE_END, LockMode.EXCL):  # disjoint, same thread
            assert len(lk.conflicting(5 * K, 6 * K, LockMode.SHARED, besides="t9")) == 1
    assert lk.holds == []


@pytest.mark.parametrize(
    ("held", "want"),
    [(LockMode.EXCL, LockMode.SHARED), (LockMode.SHARED, LockMode.EXCL), (LockMode.EXCL, LockMode.EXCL)],
)
def test_range_lock_self_conflict_refuses(held: LockMode, want: LockMode) -> None:
    lk = RangeLock("rl")
    with lk.hold(Sched(), 0, 2 * K, held):
        with pytest.raises(RangeDeadlock) as e, lk.hold(Sched(), K, 3 * K, want):
            pass
        assert e.value.held.mode is held and e.value.start == K
        assert len(lk.holds) == 1
    assert lk.holds == []


def test_range_lock_blocks_other_threads_and_finds_cycles() -> None:
    """Two threads on two range locks: overlapping requests wait, crossing ones deadlock."""
    a, b = RangeLock("A"), RangeLock("B")

    def runs(sched: Scheduler, first: RangeLock, then: RangeLock, lo: int, hi: int):
        def go() -> int:
            with first.hold(sched, 0, K), then.hold(sched, lo, hi, LockMode.SHARED):
                return 1

        return go

    cycles, clean = 0, 0
    for ch in explore(2):
        sched = Scheduler(ch)
        run = sched.run_group(0, [runs(sched, a, b, 0, K), runs(sched, b, a, 100, 200)], ["x", "y"])
        if run.deadlock is not None:
            cycles += 1
            assert run.deadlock.cycle in (("t0", "t1", "t0"), ("t1", "t0", "t1"))
            assert {w[2] for w in run.deadlock.waits} == {"A[100:200]", "B[0:4096]"}
        else:
            clean += 1
            assert run.results == (1, 1)
        assert a.holds == [] and b.holds == []
    assert cycles and clean
    for ch in explore(2):  # disjoint ranges never wait
        sched = Scheduler(ch)
        run = sched.run_group(0, [runs(sched, a, b, K, 2 * K), runs(sched, b, a, K, 2 * K)], ["x", "y"])
        assert run.deadlock is None and run.results == (1, 1)


def test_write_lock_span() -> None:
    assert write_lock_span(3 * K, 100, 200) == (0, K)
    assert write_lock_span(3 * K, K, K) == (K, 2 * K)
    assert write_lock_span(K + 10, 5 * K, 1) == (K, RANGE_END)
    assert write_lock_span(3 * K, 2 * K + 5, K) == (2 * K, RANGE_END)


# -- self-deadlock: EDEADLK under range locks, success under i_rwsem --------------------------


def test_self_deadlock_gives_edeadlk_and_does_not_hang() -> None:
    box: list = []
    t = threading.Thread(target=lambda: box.append(_run("range", SELF)), daemon=True)
    t.start()
    t.join(30)
    assert not t.is_alive(), "write(2) from its own mapping hung under locks=range"
    got, want, fs, ref = box[0]
    assert got[-1] == want[-1] == Result(errno=Errno.EDEADLK)
    assert fs.read("f0", 0, K) == ref.read("f0", 0, K) != bytes(K)
    assert fs.fs.lookup("f0").rangelock.holds == []


def test_rwsem_writes_from_own_mapping() -> None:
    w = parse(
        "create f0\nwrite f0 0 8192\nmmap m0 f0 0 8192\nread f0 0 4096\n"
        "write f0 4096 4096 from m0 0\nwrite f0 0 4096 from m0 0\n"
    )
    got, _, fs, _ = _run("rwsem", w)
    before = got[3].value
    assert got[4] == got[5] == Result(K)
    assert fs.read("f0", 0, 2 * K) == before * 2
    assert check(DaxfsTarget(), w).clean


def test_range_locks_allow_disjoint_source_and_cut_short() -> None:
    w = parse(
        "create f0\nwrite f0 0 12288\nmmap m0 f0 0 12288\nread f0 8192 4096\n"
        "write f0 0 4096 from m0 8192\n"  # source page outside the locked range: fine
        "write f0 4096 8192 from m0 0\n"  # page 0 copies, page 1 is in the locked range: short
        "write f0 100 10 from m0 200\n"  # same block: EDEADLK
    )
    got, _, fs, _ = _run("range", w)
    assert got[4] == Result(K) and fs.read("f0", 0, K) == got[3].value
    assert got[5] == Result(K) and fs.read("f0", K, K) == got[3].value
    assert got[6] == Result(errno=Errno.EDEADLK)
    rw, _, _, _ = _run("rwsem", w)
    assert rw[5] == Result(2 * K) and rw[6] == Result(10)


def test_bad_source_is_efault_or_short() -> None:
    w = parse(
        "create f0\nwrite f0 0 5000\nmmap m0 f0 0 16384\ncreate f1\n"
        "write f1 0 100 from m1 0\n"  # not mapped
        "write f1 0 100 from m0 8192\n"  # page wholly past EOF
        "write f1 0 8192 from m0 4000\n"  # pages 0 and 1 (past-EOF bytes read as the mapping shows them), then EOF
        "write f1 0 100 from m0 20000\n"  # outside the mapping
    )
    for locks in ("rwsem", "range"):
        got, _, fs, _ = _run(locks, w)
        assert got[4] == got[5] == got[7] == Result(errno=EFAULT)
        assert got[6] == Result(K - 4000 + K)
        assert fs.read("f1", 96, 904) == fs.read("f0", 4096, 904)


# -- cross-thread: an ABBA cycle of range locks ---------------------------------------------


def test_crosswise_writes_deadlock_under_range_locks_only() -> None:
    v = check(make_target("daxfs design=zero locks=range"), ABBA)
    dl = [f for f in v.findings if f.oracle is OracleName.DEADLOCK]
    assert len(dl) == 1 and len(v.findings) == 1
    assert "rangelock[0][0:4096] (shared)" in dl[0].message and "rangelock[1][0:4096] (shared)" in dl[0].message
    assert "cycle: t0 -> t1 -> t0" in dl[0].message
    assert check(make_target("daxfs design=zero"), ABBA).clean


# -- correct designs stay clean ---------------------------------------------------------------


@st.composite
def _with_copies(draw: st.DrawFn) -> Workload:
    """A generated workload, then a mapping of one file and writes from it into files and itself."""
    w = draw(workloads(max_ops=5))
    src = draw(st.sampled_from(["f0", "f1"]))
    extra: list[Op] = [Create(src), Create("f1"), Mmap("m7", src, 0, 4 * K)]
    for _ in range(draw(st.integers(1, 3))):
        extra.append(
            Write(
                draw(st.sampled_from(["f0", "f1"])),
                draw(st.sampled_from([0, 100, K, 2 * K + 8])),
                draw(st.sampled_from([1, 100, K, 2 * K])),
                "m7",
                draw(st.sampled_from([0, 8, K - 8, K, 3 * K])),
            )
        )
    return Workload((*w.ops, *extra))


@pytest.mark.parametrize("design", DESIGNS)
@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(w=workloads(max_ops=6))
def test_range_locks_clean_on_generated_workloads(design: str, w: Workload) -> None:
    v = check(make_target(f"daxfs design={design} locks=range"), w)
    assert v.clean, [f.message for f in v.findings]


@pytest.mark.parametrize("design", DESIGNS)
@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(w=_with_copies())
def test_writes_from_mappings_agree_with_reference(design: str, w: Workload) -> None:
    for locks in ("rwsem", "range"):
        _run(locks, w, design)
    v = check(make_target(f"daxfs design={design}"), w)
    assert v.clean, [f.message for f in v.findings]
