"""A crash state an earlier schedule judged clean is recalled, not judged again: only when its image,
window and history are that state's, so that every state's verdict is the one judging it afresh gives."""

from __future__ import annotations

from dataclasses import replace

import hypothesis.strategies as st
import pytest
from hypothesis import HealthCheck, given, settings

from pmfuzz.execution.execute import execute
from pmfuzz.fs.config import Bug
from pmfuzz.gen.strategies import scenario_shape, workloads
from pmfuzz.judging.engine import Options, check
from pmfuzz.judging.judge import judge
from pmfuzz.judging.recall import Recall
from pmfuzz.lang.workload import Workload, parse
from pmfuzz.target import make_target
from tests.test_explored_states import TWO_GROUPS
from tests.test_races import RACE_BUGS

DATA_BUGS = [Bug.FSYNC_NO_FLUSH, Bug.NO_ZERO, Bug.COW_SKIP_TAIL_COPY, Bug.TRUNCATE_NO_ZERO_TAIL]
"""Bugs a race workload's serial ops can show: findings in some states of a run, none in others."""


def _said(spec: str, w: Workload, opts: Options) -> tuple:
    """Everything a verdict says: each state's violations, the findings with their evidence, the counts."""
    v = check(make_target(spec), w, opts)
    return v.state_log, sorted(map(repr, v.findings)), sorted(v.features), v.stats.distinct, v.stats.recalled


STORES_TO_A_COPY = parse(
    "create f1\ncreate f2\nwrite f2 0 6000\nreflink f2 f1\nmmap m1 f1 0 8192 sync\n"
    "parallel { store m1 100 4096 ; store m1 4096 100 }\nfsync f1\n"
)
"""Two stores through one mapping of a reflinked file: schedules that interleave the copies on write
differently order their device stores apart and end with the same history."""


@pytest.mark.parametrize(
    ("w", "bug"),
    [
        (STORES_TO_A_COPY, None),
        (STORES_TO_A_COPY, Bug.FSYNC_NO_FLUSH),  # data lost at the end: the image is clean earlier
        (STORES_TO_A_COPY, Bug.REFCOUNT_NOT_JOURNALED),  # a metadata rule broken in states that recur
        (STORES_TO_A_COPY, Bug.COW_EDGES_UNFLUSHED),
        (TWO_GROUPS, None),
    ],
    ids=["stores-to-a-copy", "fsync-no-flush", "refcount-not-journaled", "cow-edges-unflushed", "two-groups"],
)
def test_schedules_that_end_alike_recall_each_others_clean_states(w: Workload, bug: Bug | None) -> None:
    spec = "daxfs cil=eager" + (f" bugs={bug.value}" if bug is not None else "")
    opts = Options(preemption_bound=1, max_states=8, features=True, log_states=True)
    log, findings, feats, distinct, recalled = _said(spec, w, opts)
    if w is STORES_TO_A_COPY:
        assert recalled > distinct // 4
        assert bool(findings) == (bug is not None)
    assert (log, findings, feats, distinct, 0) == _said(spec, w, replace(opts, recall_clean=False))


@settings(max_examples=14, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(
    workloads(min_ops=6, max_ops=16, shape=scenario_shape("race", weight=400)),
    st.sampled_from([None, *RACE_BUGS, *DATA_BUGS]),
    st.sampled_from(["zero", "unwritten", "cow-remap"]),
)
def test_recalling_clean_states_changes_no_state_verdict(w: Workload, bug: Bug | None, design: str) -> None:
    spec = f"daxfs design={design}" + (f" bugs={bug.value}" if bug is not None else "")
    opts = Options(preemption_bound=1, max_states=6, features=True, log_states=True)
    log, findings, feats, distinct, _ = _said(spec, w, opts)
    assert (log, findings, feats, distinct, 0) == _said(spec, w, replace(opts, recall_clean=False)), str(w)


def test_a_state_clean_under_one_history_is_judged_again_under_another() -> None:
    """The same images, judged against a history in which the file was never written: not recalled."""
    target = make_target("daxfs")
    opts = Options(log_states=True)
    written = execute(target, parse("create f1\nwrite f1 0 4096\nfsync f1\n").ops, opts)
    zeros = execute(target, parse("create f1\ntruncate f1 4096\nfsync f1\n").ops, opts)
    recall = Recall()
    assert judge(written, recall=recall).clean and recall
    lied = replace(written, history=zeros.history)
    fresh = judge(lied)
    assert not fresh.clean
    again = judge(lied, recall=recall)
    assert again.stats.recalled == 0
    assert sorted(map(repr, again.findings)) == sorted(map(repr, fresh.findings))
    assert judge(written, recall=recall).stats.recalled == judge(written).stats.distinct


@pytest.mark.parametrize(
    ("spec", "text"),
    [
        (
            "daxfs cil=eager bugs=no-zero",
            "create f2\nfallocate f2 0 8192\nfallocate f2 8192 4096\nfsync f2\nmmap m0 f2 0 12288\n"
            "fault m0 2 write\nwrite f2 12288 8192\n",
        ),
        (
            "daxfs cil=eager bugs=write-fault-shared-no-cow",
            "create f1\ncreate f0\nwrite f1 0 12288\nreflink f1 f0\nmmap m0 f0 0 12288\nstore m0 0 64\n"
            "fallocate f0 4096 4296 keep-size\nwrite f0 0 8\n",
        ),
    ],
    ids=["no-zero", "write-fault-shared-no-cow"],
)
def test_judging_a_run_again_recalls_exactly_its_clean_states(spec: str, text: str) -> None:
    """Some of these states share a judged state's verdict (they differ in lines no file maps) and
    that verdict has findings: such a state is not clean, whichever way its verdict was reached."""
    run = execute(make_target(spec), parse(text).ops, Options(log_states=True, max_states=16))
    recall = Recall()
    first = judge(run, recall=recall)
    again = judge(run, recall=recall)
    assert first.findings and first.stats.shared
    assert again.state_log == first.state_log
    assert sorted(map(repr, again.findings)) == sorted(map(repr, first.findings))
    assert again.stats.recalled == sum(1 for _, said in first.state_log if not said)


def test_an_exploration_remembers_at_most_its_cap_and_judges_the_rest(monkeypatch: pytest.MonkeyPatch) -> None:
    import pmfuzz.judging.recall as recall_module

    opts = Options(preemption_bound=1, max_states=8, features=True, log_states=True)
    whole = _said("daxfs cil=eager", STORES_TO_A_COPY, replace(opts, recall_clean=False))
    full = _said("daxfs cil=eager", STORES_TO_A_COPY, opts)[4]
    monkeypatch.setattr(recall_module, "CAP", 200)
    log, findings, feats, distinct, recalled = _said("daxfs cil=eager", STORES_TO_A_COPY, opts)
    assert (log, findings, feats, distinct) == whole[:4]
    assert 0 < recalled < full


def enumerations(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The ids of the crash points the judge enumerates from now on (a point recalled whole is not)."""
    import pmfuzz.judging.judge as judge_module

    enumerated: list[str] = []
    states = judge_module._states

    def counted(point, opts):
        enumerated.append(point.id)
        return states(point, opts)

    monkeypatch.setattr(judge_module, "_states", counted)
    return enumerated


@pytest.mark.parametrize("bug", [None, Bug.COW_EDGES_UNFLUSHED], ids=["correct", "cow-edges-unflushed"])
def test_a_crash_point_after_a_group_recurs_whole_in_schedules_that_reach_it_alike(
    monkeypatch: pytest.MonkeyPatch, bug: Bug | None
) -> None:
    """Schedules that reach a crash point after the group with the same media and the same stores in
    flight: its states are recalled without enumerating them, and the verdict is judging's afresh."""
    enumerated = enumerations(monkeypatch)
    spec = "daxfs cil=eager" + (f" bugs={bug.value}" if bug is not None else "")
    opts = Options(preemption_bound=1, max_states=8, features=True)

    def said(o: Options) -> tuple:
        v = check(make_target(spec), STORES_TO_A_COPY, o)
        return sorted(map(repr, v.findings)), sorted(v.features), v.stats.states, v.stats.distinct

    fresh = said(replace(opts, recall_clean=False))
    judged = len(enumerated)
    enumerated.clear()
    assert said(opts) == fresh
    assert len(enumerated) < judged
