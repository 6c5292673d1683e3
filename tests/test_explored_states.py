"""A schedule stops at a group's end when an earlier one reached the same state there: the explorer
must then judge exactly the distinct executions it judged running every schedule to its end."""

from __future__ import annotations

import threading
import weakref
from dataclasses import replace

import hypothesis.strategies as st
import numpy as np
from hypothesis import HealthCheck, given, settings

from pmfuzz.execution.execute import execute, formatted
from pmfuzz.execution.interleave import Chooser, explore
from pmfuzz.fingerprint import fingerprint
from pmfuzz.gen.strategies import scenario_shape, workloads
from pmfuzz.judging.engine import Options, ScheduleHead, ScheduleStep, check
from pmfuzz.lang.workload import Workload, parse
from pmfuzz.pmem import PMem
from pmfuzz.target import DEFAULT_DEVICE_SIZE, make_target
from pmfuzz.verdict import filing_key
from tests.test_races import RACE_BUGS

TWO_GROUPS = parse(
    "create f1\ntruncate f1 6000\nmmap m0 f1 0 8192\npin m0 0\n"
    "parallel { truncate f1 0 ; dma m0 0 100 ; unpin m0 0 }\n"
    "write f1 0 8192\nmmap m0 f1 0 8192 sync\n"
    "parallel { write f1 100 100 ; store m0 4096 4096 }\nfsync f1\n"
)
"""Three threads, then two: the first group's orders mostly end alike, the second is explored once per end."""


# -- the digest --------------------------------------------------------------------------


class _Node:
    def __init__(self, **kw: object) -> None:
        self.__dict__.update(kw)


def _graph(value: int = 1, cell: int = 2, word: int = 3) -> _Node:
    shared = _Node(v=value)

    def closure() -> int:
        return cell

    return _Node(a=shared, b=[shared, {"k": (value, "x")}], f=closure, w=np.array([word, 0], dtype="<u8"))


def test_equal_graphs_digest_alike_and_any_reachable_difference_digests_apart() -> None:
    base = fingerprint(_graph())
    assert base is not None and base == fingerprint(_graph())
    assert fingerprint(_graph(value=9)) != base
    assert fingerprint(_graph(cell=9)) != base, "what a closure holds is part of the state"
    assert fingerprint(_graph(word=9)) != base, "an array's contents are part of the state"


def test_two_lambdas_of_one_line_with_equal_closures_digest_apart() -> None:
    def two(a: int, b: int) -> tuple:
        return (lambda: a + b), (lambda: a - b)

    def const(a: int) -> tuple:
        return (lambda: a + 1), (lambda: a + 2)

    plus, minus = two(1, 2)
    assert fingerprint(_Node(f=plus)) != fingerprint(_Node(f=minus))
    one, other = const(1)
    assert fingerprint(_Node(f=one)) != fingerprint(_Node(f=other))
    assert fingerprint(_Node(f=two(1, 2)[0])) == fingerprint(_Node(f=plus))


def test_a_weak_reference_digests_as_what_it_refers_to() -> None:
    a, b = _Node(v=1), _Node(v=2)
    assert fingerprint(_Node(r=weakref.ref(a))) != fingerprint(_Node(r=weakref.ref(b)))
    assert fingerprint(_Node(r=weakref.ref(a))) == fingerprint(_Node(r=weakref.ref(_Node(v=1))))


def test_left_out_objects_count_by_position_only_and_what_cannot_be_seen_has_no_digest() -> None:
    dev1, dev2 = _Node(big=1), _Node(big=2)
    assert fingerprint(_Node(d=dev1, x=1), left_out=(dev1,)) == fingerprint(_Node(d=dev2, x=1), left_out=(dev2,))
    assert fingerprint(_Node(d=dev1, x=1), left_out=(dev1,)) != fingerprint(_Node(d=dev1, x=2), left_out=(dev1,))
    assert fingerprint(_Node(lock=threading.Lock())) is None
    assert fingerprint(_Node(gen=(i for i in range(3)))) is None


# -- the explorer's bookkeeping -------------------------------------------------------


def _decide(ch: Chooser, picks: int) -> None:
    for _ in range(picks):
        ch.choose(0, (0, 1), 0)


def test_a_state_is_stopped_at_only_when_reached_before_with_no_more_preemptions() -> None:
    reached: dict[bytes, int] = {}
    first = Chooser([1], reached)  # one preemption
    _decide(first, 2)
    assert not first.stop_here(lambda: b"S")
    again = Chooser([1], reached)
    _decide(again, 2)
    assert again.stop_here(lambda: b"S"), "the same state with the same budget left"
    fresh = Chooser([], reached)  # no preemption: more budget left than the first had
    _decide(fresh, 2)
    assert not fresh.stop_here(lambda: b"S")
    assert reached[b"S"] == 0
    assert not Chooser([1], reached).stop_here(lambda: b"T")


def test_a_run_inside_its_forced_decisions_or_outside_an_exploration_never_asks() -> None:
    def never() -> bytes:
        raise AssertionError("the state was digested")

    forced = Chooser([1, 0, 1], {})
    _decide(forced, 2)
    assert not forced.stop_here(never)
    alone = Chooser([1])
    _decide(alone, 2)
    assert not alone.stop_here(never)


# -- the engine: same distinct executions, fewer runs ---------------------------------------


def _judged_digests(spec: str, w: Workload, opts: Options, prune: bool) -> tuple[set[bytes | None], int, int]:
    target = make_target(spec)
    digests: set[bytes | None] = set()
    runs = stopped = 0
    for chooser in explore(opts.preemption_bound, prune=prune):
        run = execute(target, w.ops, opts, chooser, digest=True)
        runs += 1
        if run.explored_on:
            stopped += 1
            assert prune, "only an exploration that prunes stops a run"
        else:
            digests.add(run.digest)
    return digests, runs, stopped


def _verdict(spec: str, w: Workload, opts: Options) -> tuple:
    """What a verdict says, but for which of the schedules that ran alike a finding names."""
    v = check(make_target(spec), w, opts)
    findings = sorted(
        (repr(filing_key(f)), f.message, str([e for e in f.evidence if not isinstance(e, ScheduleHead | ScheduleStep)]))
        for f in v.findings
    )
    return v.stats.distinct, findings, sorted(v.features)


def test_a_second_group_is_explored_once_per_state_the_first_left() -> None:
    opts = Options(preemption_bound=1, max_states=8, features=True)
    whole, runs_whole, _ = _judged_digests("daxfs cil=eager", TWO_GROUPS, opts, prune=False)
    pruned, runs_pruned, stopped = _judged_digests("daxfs cil=eager", TWO_GROUPS, opts, prune=True)
    assert pruned == whole
    assert stopped > 0 and runs_pruned < runs_whole / 2
    assert _verdict("daxfs cil=eager", TWO_GROUPS, opts) == _verdict(
        "daxfs cil=eager", TWO_GROUPS, replace(opts, stop_explored=False)
    )


@settings(max_examples=14, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(
    workloads(min_ops=6, max_ops=16, shape=scenario_shape("race", weight=400)),
    st.sampled_from([None, *RACE_BUGS]),
    st.sampled_from(["lazy", "eager"]),
    st.sampled_from(["zero", "unwritten", "cow-remap"]),
)
def test_stopping_at_explored_states_judges_the_same_executions(
    w: Workload, bug: object, cil: str, design: str
) -> None:
    spec = f"daxfs design={design} cil={cil}" + (f" bugs={bug.value}" if bug is not None else "")  # type: ignore[attr-defined]
    opts = Options(preemption_bound=1, max_states=6, features=True)
    whole, _, _ = _judged_digests(spec, w, opts, prune=False)
    pruned, _, _ = _judged_digests(spec, w, opts, prune=True)
    assert pruned == whole, str(w)
    assert _verdict(spec, w, opts) == _verdict(spec, w, replace(opts, stop_explored=False)), str(w)


def test_daxfs_digests_its_memory_and_not_its_device() -> None:
    """Two mounts of one image digest alike; a change held only in memory (a lazy log's committed
    metadata, an inode's in-core size) digests apart; the device is the engine's to digest."""
    target = make_target("daxfs cil=lazy")
    image = formatted(target, DEFAULT_DEVICE_SIZE)
    a = target.mount(PMem.from_image(image, "adr"))
    b = target.mount(PMem.from_image(image, "adr"))
    assert a.state_fingerprint() == b.state_fingerprint() is not None
    b.execute(0, parse("create f0").ops[0], None)
    after_create = b.state_fingerprint()
    assert after_create != a.state_fingerprint()
    b.fs.journal.dirty.add(1)
    assert b.state_fingerprint() != after_create
    c = target.mount(PMem.from_image(image, "adr"))
    c.fs.pm.store(c.fs.geo.data_start * 4096, b"device only")
    assert c.state_fingerprint() == a.state_fingerprint()
