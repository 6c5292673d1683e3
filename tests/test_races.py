"""Parallel groups: the scheduler, the CHESS explorer, deadlocks, and the race bugs of the zoo."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import hypothesis.strategies as st
import pytest
from hypothesis import HealthCheck, given, settings

from oracles import OracleName
from pmfuzz.errors import ParseError, PmfuzzError
from pmfuzz.execution.interleave import Chooser, Schedule, Scheduler, explore, preemptions
from pmfuzz.fs import BUG_ORACLE, Bug
from pmfuzz.fs.locks import Lock, Sched
from pmfuzz.judging.engine import Options, check
from pmfuzz.judging.repro import Reproducer, format_reproducer, parse_reproducer
from pmfuzz.lang.workload import parse
from pmfuzz.pmem import Domain
from pmfuzz.target import TargetSpec, make_target

REGRESSION = Path(__file__).resolve().parents[1] / "corpora" / "regression"
DESIGNS = ["zero", "unwritten", "cow-remap"]

ZERO_PAGE_RACE = parse(
    "create f0\ntruncate f0 8192\nmmap m0 f0 0 8192\nparallel { write f0 0 4096 ; fault m0 0 read }\n"
)


# -- the scheduler and the explorer on synthetic threads --------------------------------


def _stepper(sched: Scheduler, name: str, k: int, log: list[str]):
    def run() -> int:
        for i in range(k):
            log.append(f"{name}{i}")
            sched.preempt(f"{name}.{i}")
        log.append(f"{name}.end")
        return k

    return run


def _run(chooser: Chooser, steps: tuple[int, ...]) -> tuple[list[str], tuple]:
    log: list[str] = []
    sched = Scheduler(chooser)
    run = sched.run_group(
        0, [_stepper(sched, f"t{i}", k, log) for i, k in enumerate(steps)], ["a", "b", "c"][: len(steps)]
    )
    assert run.results == steps and run.deadlock is None
    return log, run.steps


def _brute(steps: tuple[int, ...], bound: int) -> int:
    """Decision sequences with at most `bound` preemptions, counted by plain recursion."""

    def go(left: tuple[int, ...], current: int | None, used: int) -> int:
        alive = [i for i, k in enumerate(left) if k >= 0]
        if not alive:
            return 1
        total = 0
        for c in alive:
            cost = used + (current is not None and c != current)
            if cost > bound:
                continue
            nxt = list(left)
            nxt[c] -= 1
            total += go(tuple(nxt), c if nxt[c] >= 0 else None, cost)
        return total

    return go(steps, None, 0)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(0, 4), min_size=2, max_size=3).map(tuple), st.integers(0, 3))
def test_explorer_enumerates_each_bounded_schedule_once(steps: tuple[int, ...], bound: int) -> None:
    seen = set()
    for ch in explore(bound):
        _run(ch, steps)
        seq = tuple(d.chosen for d in ch.decisions)
        assert seq not in seen
        assert preemptions(ch.decisions) <= bound
        seen.add(seq)
    assert len(seen) == _brute(steps, bound)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(0, 3), min_size=2, max_size=3).map(tuple), st.integers(0, 2), st.data())
def test_a_schedule_id_replays_its_run_exactly(steps: tuple[int, ...], bound: int, data) -> None:
    runs = []
    for ch in explore(bound):
        log, slices = _run(ch, steps)
        runs.append((ch.schedule(), log, slices))
    sid, log, slices = data.draw(st.sampled_from(runs))
    again = Chooser(Schedule.parse(str(sid)))
    assert _run(again, steps) == (log, slices)
    assert again.schedule() == sid


@given(
    st.lists(
        st.tuples(st.integers(0, 40), st.lists(st.integers(0, 2), min_size=1, max_size=12).map(tuple)),
        max_size=3,
        unique_by=lambda g: g[0],
    )
)
def test_schedule_text_round_trips(groups) -> None:
    s = Schedule(tuple(sorted(groups)))
    assert Schedule.parse(str(s)) == s


@pytest.mark.parametrize("bad", ["3", "3=", "3=1x0", "a=1", "3=1 3=0", "3=1;0"])
def test_bad_schedule_ids_are_one_clear_error(bad: str) -> None:
    with pytest.raises(ParseError) as e:
        Schedule.parse(bad)
    assert "\n" not in str(e.value)


def test_an_abba_lock_order_deadlocks_with_its_cycle_and_no_thread_is_left_behind() -> None:
    import threading

    found = []
    for ch in explore(2):
        a, b = Lock("i_rwsem[1]"), Lock("mmaplock[1]")
        sched = Scheduler(ch)

        def take(first: Lock, second: Lock):
            def run() -> str:
                with first.hold(sched), second.hold(sched):
                    return "done"

            return run

        before = threading.active_count()
        run = sched.run_group(0, [take(a, b), take(b, a)], ["truncate f0 0", "punch f0 0 4096"])
        assert threading.active_count() == before
        assert not a.held and not b.held
        if run.deadlock is not None:
            found.append((ch.schedule(), run.deadlock))
        else:
            assert run.results == ("done", "done")
    assert found, "some schedule interleaves the two lock orders"
    sid, dl = found[0]
    assert dl.cycle in (("t0", "t1", "t0"), ("t1", "t0", "t1"))
    text = str(dl)
    assert "t0 `truncate f0 0` waits for mmaplock[1] (excl) held by t1" in text
    assert "t1 `punch f0 0 4096` waits for i_rwsem[1] (excl) held by t0" in text
    assert preemptions([]) == 0 and str(sid) != "-"


def test_the_sequential_scheduler_still_treats_a_held_lock_as_a_model_bug() -> None:
    lk = Lock("ilock[0]")
    with lk.hold(Sched()), pytest.raises(AssertionError, match="already held"), lk.hold(Sched()):
        pass


# -- the op language and reproducers --------------------------------------------------------


def test_a_reproducer_keeps_its_schedule() -> None:
    r = Reproducer(ZERO_PAGE_RACE, TargetSpec("daxfs"), schedule="3=1x3,0", expect=("mmap-coherency",))
    text = format_reproducer(r)
    assert "# schedule: 3=1x3,0\n" in text
    assert parse_reproducer(text) == r
    with pytest.raises(ParseError, match="schedule part") as e:
        parse_reproducer("# pmfuzz reproducer v1\n# schedule: 3=x\ncreate f0\n")
    assert e.value.line == 2


# -- the engine on daxfs -----------------------------------------------------------------------


@cache
def _explored(spec: str):
    return check(make_target(spec), ZERO_PAGE_RACE)


def test_the_zero_page_race_is_found_and_its_schedule_replays_it() -> None:
    v = _explored("daxfs design=zero bugs=fault-iomap-before-entry-lock")
    # The zero page over the written block: the mapping disagrees with read(2) and with POSIX, both
    # judged at the group itself (not at the op after it).
    assert v.oracles() == {"mmap-coherency", "functional"}
    assert {f.op_kind for f in v.findings} == {"parallel"}
    f = next(f for f in v.findings if f.oracle.value == "mmap-coherency")
    assert f.schedule and f.schedule != "-"
    assert any(n.startswith("explored ") for n in v.notes)
    again = check(
        make_target("daxfs design=zero bugs=fault-iomap-before-entry-lock"),
        ZERO_PAGE_RACE,
        Options(schedule=f.schedule),
    )
    assert (f.oracle, f.message, f.schedule) in [(g.oracle, g.message, g.schedule) for g in again.findings]
    plain = check(
        make_target("daxfs design=zero bugs=fault-iomap-before-entry-lock"), ZERO_PAGE_RACE, Options(schedule="-")
    )
    assert plain.clean


@pytest.mark.parametrize("design", DESIGNS)
def test_every_schedule_of_the_zero_page_race_is_clean_on_correct_designs(design: str) -> None:
    v = _explored(f"daxfs design={design}")
    assert v.clean, [f.message for f in v.findings]
    assert v.stats.points > 0


def test_a_schedule_that_does_not_fit_the_workload_is_a_user_error() -> None:
    with pytest.raises(PmfuzzError, match="does not fit"):
        check(make_target("daxfs"), ZERO_PAGE_RACE, Options(schedule="3=1x9,2"))


def test_a_multi_page_store_in_a_group_has_a_serial_explanation() -> None:
    w = parse(
        "create f0\nfallocate f0 0 8192\ncreate f1\nmmap m0 f0 0 12288 sync\n"
        "parallel { reflink f0 f1 ; store m0 4000 100 }\nstore m0 0 64\n"
    )
    v = check(make_target("daxfs design=zero"), w, Options(max_states=16))
    assert v.clean, [f.message for f in v.findings]


def test_a_target_without_a_scheduler_hook_says_so() -> None:
    class Plain:
        def __init__(self, inner) -> None:
            self.inner = inner

        def __getattr__(self, k):
            if k == "set_scheduler":
                raise AttributeError(k)
            return getattr(self.inner, k)

    class NoHook(type(make_target("daxfs"))):  # type: ignore[misc]
        def mount(self, pm, sched=None):
            return Plain(super().mount(pm, sched))

    with pytest.raises(PmfuzzError, match="cannot run parallel groups"):
        check(NoHook(), ZERO_PAGE_RACE)


_OPS = [
    "write f0 {o} {n}",
    "fault m0 {p} read",
    "fault m0 {p} write",
    "store m0 {o} {n}",
    "read f0 {o} {n}",
    "truncate f0 {s}",
    "punch f0 {o} {n}",
    "fsync f0",
    "fallocate f0 {o} {n}",
    "persist m0 {o} {n}",
]


@st.composite
def race_workloads(draw) -> str:
    """A short prefix over f0 (and a clone), a mapping, then two ops on the same range at once."""
    size = draw(st.sampled_from([4096, 8192, 6000]))
    lines = ["create f0", draw(st.sampled_from([f"write f0 0 {size}", f"truncate f0 {size}"]))]
    if draw(st.booleans()):
        lines += ["create f1", "reflink f0 f1"]
    lines.append("mmap m0 f0 0 8192" + draw(st.sampled_from(["", " sync"])))
    if draw(st.booleans()):
        lines.append(f"fault m0 0 {draw(st.sampled_from(['read', 'write']))}")
    group = []
    for _ in range(2):
        o = draw(st.sampled_from([0, 100, 4096]))
        n = draw(st.sampled_from([100, 4096]))
        fmt = draw(st.sampled_from(_OPS))
        group.append(fmt.format(o=o, n=n, p=o // 4096, s=draw(st.sampled_from([0, 2000, 4096]))))
    lines.append("parallel { " + " ; ".join(group) + " }")
    if draw(st.booleans()):
        lines.append("fsync f0")
    return "\n".join(lines) + "\n"


@settings(max_examples=6, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(race_workloads(), st.sampled_from(DESIGNS), st.sampled_from(["lazy", "eager"]))
def test_correct_designs_are_clean_over_every_schedule(text: str, design: str, cil: str) -> None:
    v = check(make_target(f"daxfs design={design} cil={cil}"), parse(text), Options(preemption_bound=1, max_states=16))
    assert v.clean, (text, [(f.oracle.value, f.message, f.schedule) for f in v.findings])


# False positives the race hunts found on correct designs, each with the configuration it was found on.
FOUND_FALSE_POSITIVES = [
    # write(2) and a write fault staged separate COW blocks; XFS shares the COW-fork extent.
    (
        "zero",
        "lazy",
        "adr",
        "create f0\nwrite f0 0 1\ncreate f2\nreflink f0 f2\nmmap m0 f2 0 1\nparallel { write f2 0 4 ; store m0 0 1 }\n",
    ),
    # the fault did the COW; the write(2) that staged it first then wrote in place.
    (
        "zero",
        "eager",
        "eadr",
        "create f0\ncreate f1\nwrite f1 0 4096\nreflink f1 f0\nmmap m0 f0 0 8192\n"
        "parallel { write f0 0 100 ; fault m0 0 write }\n",
    ),
    # the fault's COW was remapped before the write(2) copied around its staged block: the staged
    # block must stay known as filled after it left the COW fork.
    (
        "cow-remap",
        "lazy",
        "adr",
        "create f0\ncreate f1\nwrite f1 0 4096\nreflink f1 f0\nmmap m0 f0 0 8192\n"
        "parallel { write f0 0 100 ; store m0 0 4096 }\n",
    ),
    # as above with a store, whose own bytes land after the fault's COW.
    (
        "zero",
        "eager",
        "adr",
        "create f0\ncreate f1\nwrite f1 0 4096\nreflink f1 f0\nmmap m0 f0 0 8192\n"
        "fault m0 0 read\nparallel { write f0 0 100 ; store m0 0 100 }\n",
    ),
    # a store's fault through f2 broke the sharing for both files; the write(2) to the reflink
    # f0 then had nothing to copy and wrote in place.
    (
        "zero",
        "eager",
        "eadr",
        "create f0\nwrite f0 0 4096\ncreate f2\nreflink f0 f2\nmmap m0 f2 0 4096\n"
        "parallel { write f0 0 100 ; store m0 0 100 }\n",
    ),
    # a write fault into a hole or unwritten extent that a racing write(2) had allocated: it zeroed
    # the write's data, or cow-remap committed a block of its own that the write's commit orphaned.
    (
        "cow-remap",
        "lazy",
        "adr",
        "create f0\ntruncate f0 4096\nmmap m0 f0 0 8192\nparallel { write f0 0 100 ; fault m0 0 write }\n",
    ),
    (
        "unwritten",
        "lazy",
        "adr",
        "create f0\ntruncate f0 4096\nmmap m0 f0 0 8192\nparallel { write f0 0 100 ; fault m0 0 write }\n",
    ),
    # ... or the write(2) zeroed the edges of a block the fault had zeroed and a store then wrote.
    (
        "unwritten",
        "eager",
        "eadr",
        "create f0\ntruncate f0 4096\nmmap m0 f0 0 8192\nparallel { write f0 100 100 ; store m0 0 50 }\n",
    ),
    (
        "cow-remap",
        "eager",
        "adr",
        "create f0\ntruncate f0 4096\nmmap m0 f0 0 8192\nparallel { write f0 0 100 ; store m0 0 4096 }\n",
    ),
    # a store over two pages saw its first page after an extending write(2)'s data and its second
    # still beyond EOF (SIGBUS): the write sets the size after its copy, the store faults per page.
    (
        "unwritten",
        "lazy",
        "eadr",
        "create f0\ntruncate f0 4096\nmmap m0 f0 0 8192\nparallel { write f0 100 4096 ; store m0 100 4096 }\n",
    ),
    # a store through the PTE a write fault installed to its COW block, before the fault's
    # iomap_end remapped it: the block is the file's (in its COW fork), not a lost one.
    (
        "cow-remap",
        "lazy",
        "adr",
        "create f1\nwrite f1 0 8192\ncreate f0\nreflink f1 f0\nmmap m0 f0 0 8192\n"
        "parallel { fault m0 0 write ; store m0 0 100 }\n",
    ),
]


@pytest.mark.parametrize(("design", "cil", "domain", "text"), FOUND_FALSE_POSITIVES)
def test_the_false_positives_the_hunts_found_stay_fixed(design: str, cil: str, domain: str, text: str) -> None:
    v = check(make_target(f"daxfs design={design} cil={cil}"), parse(text), Options(domain=Domain(domain)))
    assert v.clean, [(f.oracle.value, f.message, f.schedule) for f in v.findings]


ALL_CONFIGS = [
    (d, c, dom) for d in ("zero", "unwritten", "cow-remap") for c in ("lazy", "eager") for dom in ("adr", "eadr")
]
CAMPAIGN_FALSE_POSITIVES = {
    "map-sync-fault-into-unwritten": "create f0\nfallocate f0 0 4096\nfsync f0\nmmap m0 f0 0 4096 sync\n"
    "store m0 0 64\npersist m0 0 64\n",
    "truncate-vs-store-on-eof-page": "create f0\ntruncate f0 4096\nmmap m0 f0 0 4096\n"
    "parallel { truncate f0 2000 ; store m0 2100 8 }\nread f0 0 1\n",
    "racing-store-write-then-cow": "create f0\ntruncate f0 8192\nmmap m1 f0 0 8192\n"
    "parallel { store m1 100 4096 ; write f0 100 4096 }\ncreate f2\nwrite f2 0 4096\nfsync f2\n"
    "reflink f2 f0\nwrite f0 0 100\n",
    "store-into-eof-page-of-extending-write": "create f0\ntruncate f0 1\nmmap m0 f0 0 8192\n"
    "parallel { store m0 1 4096 ; write f0 1 4096 }\n",
    "map-sync-fault-racing-extending-write": "create f0\ntruncate f0 1\nmmap m1 f0 0 1 sync\n"
    "parallel { write f0 0 2 ; fault m1 0 write }\npersist m1 0 1\n",
    "store-sigbus-decided-before-fallocate-grew-the-file": "create f0\ncreate f2\nwrite f2 0 1\nreflink f2 f0\n"
    "mmap m1 f0 0 8192\nparallel { fallocate f0 1 4096 ; store m1 1 4096 }\n",
    "store-sigbus-decided-before-truncate-grew-the-file": "create f0\ntruncate f0 1\nmmap m1 f0 0 8192\n"
    "fault m1 0 write\nparallel { truncate f0 4097 ; store m1 1 4096 }\n",
}
"""Found by campaigns on correct designs (issue 14's three, then two of 2026-12-05): each on every
configuration, every schedule."""


@pytest.mark.parametrize("name", sorted(CAMPAIGN_FALSE_POSITIVES))
@pytest.mark.parametrize(("design", "cil", "domain"), ALL_CONFIGS, ids=["-".join(c) for c in ALL_CONFIGS])
def test_the_false_positives_campaigns_found_stay_fixed(name: str, design: str, cil: str, domain: str) -> None:
    text = CAMPAIGN_FALSE_POSITIVES[name]
    opts = Options(domain=Domain(domain), max_states=24, exhaustive_upto=24, preemption_bound=1)
    v = check(make_target(f"daxfs design={design} cil={cil}"), parse(text), opts)
    assert v.clean, [(f.oracle.value, f.message, f.schedule) for f in v.findings]


def test_crash_points_before_a_group_are_judged_once_and_still_reported() -> None:
    """The prefix's crash points are the same in every schedule: judged in the first run only."""
    text = (
        "create f0\nwrite f0 0 1\ncreate f2\nreflink f0 f2\nmmap m0 f2 0 1\nparallel { write f2 0 4 ; store m0 0 1 }\n"
    )
    target = make_target("daxfs design=zero bugs=journal-commit-no-fence cil=eager")
    explored = check(target, parse(text), Options(max_states=16))
    one = check(target, parse(text), Options(max_states=16, schedule="5=0,1"))

    def prefix(v) -> set[tuple[str, int, str]]:
        return {(f.oracle.value, f.op, f.message) for f in v.findings if f.op is not None and f.op < 5}

    assert {op for _o, op, _m in prefix(one)} >= {0, 3} and prefix(explored) == prefix(one)
    distinct = int(explored.notes[0].split("; ")[1].split()[0])
    assert distinct > 1 and explored.stats.points < distinct * one.stats.points


# -- the zoo --------------------------------------------------------------------------------------

RACE_BUGS = [
    Bug.TRUNCATE_IGNORES_PINS,
    Bug.FAULT_IOMAP_BEFORE_ENTRY_LOCK,
    Bug.WRITE_FAULT_SHARED_NO_COW,
    Bug.WRITE_KEEPS_HUGE_ZERO_PAGE,
    Bug.COW_REMAP_STALE_MAPPING,
    Bug.COW_RECOPIES_STAGED_BLOCK,
]


@pytest.mark.parametrize("bug", RACE_BUGS, ids=lambda b: b.value)
def test_each_race_bug_has_a_reproducer_caught_by_its_oracle_and_clean_twins(bug: Bug) -> None:
    r = parse_reproducer((REGRESSION / f"{bug.value}.pmfuzz").read_text())
    assert r.expect == (BUG_ORACLE[bug],)
    opts = Options(schedule=r.schedule, max_states=16)
    v = check(make_target(r.target), r.workload, opts)
    assert BUG_ORACLE[bug] in v.oracles()
    for design in DESIGNS:
        twin = parse_reproducer((REGRESSION / f"{bug.value}--{design}.pmfuzz").read_text())
        assert twin.workload == r.workload and twin.expect == ("clean",)
        assert check(make_target(twin.target), twin.workload, Options(max_states=16)).clean


def test_the_stale_pte_after_a_cow_is_named_by_its_block() -> None:
    r = parse_reproducer((REGRESSION / "cow-remap-stale-mapping.pmfuzz").read_text())
    v = check(make_target(r.target), r.workload, Options(max_states=16))
    msgs = [f.message for f in v.findings if f.oracle is OracleName.MMAP_COHERENCY]
    assert msgs and ("no longer owns" in msgs[0] or "differ from read(2)" in msgs[0])


# -- pins and DMA ------------------------------------------------------------------------------

PINNED = "create f0\nwrite f0 0 8192\nmmap m0 f0 0 8192\npin m0 0\n"


def _results(spec: str, text: str) -> list[str]:
    from pmfuzz.fs.daxfs import MountedDaxfs
    from pmfuzz.pmem import PMem
    from pmfuzz.reference import Reference

    t = make_target(spec)
    pm = PMem(8 << 20)
    t.format(pm)
    fs: MountedDaxfs = t.mount(pm)  # type: ignore[assignment]
    ref = Reference()
    out = []
    for i, op in enumerate(parse(text)):
        p = ref.payload(i, op)
        want = ref.apply(i, op)
        got = fs.execute(i, op, p)
        assert got == want, (i, str(op), got, want)
        out.append(str(got))
    return out


def test_pin_dma_unpin_follow_posix_and_a_pinned_file_cannot_be_truncated_alone() -> None:
    text = PINNED + "truncate f0 0\npunch f0 0 4096\nmunmap m0\ndma m0 0 100\ndma m0 4000 200\nunpin m0 0\nunpin m0 0\n"
    got = _results("daxfs design=zero", text)
    assert got[4:] == ["EBUSY", "EBUSY", "EBUSY", "0", "EINVAL", "0", "EINVAL"]


def test_a_truncate_in_a_group_waits_for_the_unpin() -> None:
    w = parse(PINNED + "parallel { truncate f0 0 ; unpin m0 0 }\n")
    for design in DESIGNS:
        v = check(make_target(f"daxfs design={design}"), w, Options(max_states=16))
        assert v.clean, [f.message for f in v.findings]


def test_a_group_that_waits_for_an_unpin_that_never_comes_is_a_hang_not_a_deadlock() -> None:
    v = check(make_target("daxfs"), parse(PINNED + "parallel { truncate f0 0 ; read f0 0 10 }\n"))
    assert v.clean
    assert any("hangs without a lock cycle" in n and "pinned-pages[0]" in n for n in v.notes)


def test_the_layout_oracle_names_the_freed_block_the_dma_reached() -> None:
    v = check(make_target("daxfs bugs=truncate-ignores-pins"), parse(PINNED + "truncate f0 0\ndma m0 0 100\n"))
    msgs = [f.message for f in v.findings if f.oracle is OracleName.LAYOUT]
    assert len(msgs) == 1 and "dma through m0 page 0 reached device block" in msgs[0] and "now free" in msgs[0]


@pytest.mark.parametrize("text", ["pin m0 3", "unpin m7 0", "dma m1 4096 100", "dma m0 0x10 4K", "madvise m2 dontneed"])
def test_pin_ops_round_trip(text: str) -> None:
    from pmfuzz.lang.workload import format_workload

    w = parse(text + "\n")
    assert parse(format_workload(w)) == w


@pytest.mark.parametrize(
    ("text", "schedule"),
    [
        (
            "create f0\nfallocate f0 0 6000\nmmap m0 f0 0 12288\n"
            "parallel { store m0 4000 100 ; write f0 4000 100 }\nstore m0 0 64\n",
            "3=1,0x4,1",
        ),
        (
            "create f0\nfallocate f0 0 4096\ncreate f1\nreflink f0 f1\nmmap m0 f0 0 12288 sync\n"
            "parallel { persist m0 4096 4096 ; write f0 4000 100 ; write f0 100 100 }\nfsync f0\n",
            "5=1,0,2x6,1",
        ),
    ],
    ids=["write-and-store-mix-bytes", "cow-by-the-op-that-ran-first"],
)
def test_outcomes_with_no_single_serial_order_are_judged_soundly(text: str, schedule: str) -> None:
    for design in DESIGNS:
        v = check(make_target(f"daxfs design={design} cil=eager"), parse(text), Options(schedule=schedule))
        assert v.clean, (design, [(f.oracle.value, f.message) for f in v.findings])
