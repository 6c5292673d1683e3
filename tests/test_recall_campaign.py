"""A campaign's judging process recalls clean crash states across workloads: a state is recalled only
under the same target, options, window and history up to the window, so that every state's verdict is
the one judging it afresh gives."""

from __future__ import annotations

import copy
import random
from dataclasses import replace
from pathlib import Path

import hypothesis.strategies as st
import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings

from pmfuzz.errors import PmfuzzError
from pmfuzz.execution.execute import execute
from pmfuzz.fs.config import Bug
from pmfuzz.fuzzing.campaign_config import CampaignConfig
from pmfuzz.fuzzing.reporting import campaign_options
from pmfuzz.gen.mutate import mutate
from pmfuzz.gen.strategies import scenario_shape, workloads
from pmfuzz.judging.engine import Options, Verdict, check
from pmfuzz.judging.judge import judge
from pmfuzz.judging.recall import PointRecall, Recall, scope
from pmfuzz.judging.repro import parse_reproducer
from pmfuzz.lang.workload import Workload, parse
from pmfuzz.pmem import Domain
from pmfuzz.reference import History
from pmfuzz.reference.effects import FileVersion
from pmfuzz.target import make_target, parse_target_spec
from tests.test_races import RACE_BUGS
from tests.test_recall import enumerations

BUGS = [
    Bug.FSYNC_NO_FLUSH,
    Bug.NO_ZERO,
    Bug.ZERO_AFTER_COMMIT,
    Bug.COW_SKIP_TAIL_COPY,
    Bug.TRUNCATE_NO_ZERO_TAIL,
    Bug.REFCOUNT_NOT_JOURNALED,
    Bug.JOURNAL_COMMIT_NO_FENCE,
    Bug.MAP_SYNC_NO_COMMIT,
]
"""Data and metadata bugs whose findings show in some crash states of a workload and not in others."""

OPTS = Options(preemption_bound=1, max_states=6, features=True, log_states=True)


def _said(spec: str, w: Workload, opts: Options, recall: Recall | None = None) -> tuple:
    """Everything a verdict says: each state's violations, the findings with their evidence, the counts."""
    v = check(make_target(spec), w, opts, recall=recall)
    return v.state_log, sorted(map(repr, v.findings)), sorted(v.features), v.stats.distinct, v.stats.recalled


def _spec(bug: Bug | None, design: str = "zero") -> str:
    return f"daxfs design={design} cil=eager" + (f" bugs={bug.value}" if bug is not None else "")


PARENT = parse("create f1\nwrite f1 0 6000\nfsync f1\ncreate f2\nmmap m1 f1 0 8192\nstore m1 100 64\n")


@pytest.mark.parametrize("bug", [None, Bug.FSYNC_NO_FLUSH, Bug.NO_ZERO], ids=["correct", "fsync-no-flush", "no-zero"])
def test_a_child_recalls_its_parents_first_crash_states(bug: Bug | None) -> None:
    spec = _spec(bug)
    child = parse(str_ops(PARENT.ops[:4]) + "write f2 0 100\nfsync f2\n")
    recall = Recall()
    parent = _said(spec, PARENT, OPTS, recall)
    got = _said(spec, child, OPTS, recall)
    fresh = _said(spec, child, replace(OPTS, recall_clean=False))
    assert got[:4] == fresh[:4]
    assert got[4] > 0 and got[4] >= sum(1 for _, said in parent[0][:8] if not said) // 2
    assert _said(spec, PARENT, OPTS, recall)[4] == sum(1 for _, said in parent[0] if not said)


def str_ops(ops) -> str:
    return "".join(f"{op}\n" for op in ops)


def test_a_state_clean_under_one_targets_is_judged_again_under_another() -> None:
    """The same workload on the correct design, then with a bug, sharing one store: nothing of the
    first is recalled for the second, whose findings are those it has alone."""
    w = parse("create f1\ntruncate f1 4096\nmmap m1 f1 0 4096\nstore m1 0 64\nfsync f1\n")
    recall = Recall()
    assert not _said(_spec(None), w, OPTS, recall)[1]
    buggy = _said(_spec(Bug.FSYNC_NO_FLUSH), w, OPTS, recall)
    assert buggy[1] and buggy[4] == 0
    assert buggy[:4] == _said(_spec(Bug.FSYNC_NO_FLUSH), w, replace(OPTS, recall_clean=False))[:4]


def test_what_an_op_made_durable_is_part_of_the_history_a_state_is_recalled_under() -> None:
    """Two histories with the same files at every boundary, one fsyncing f2 and one f1: a state that
    lost the store through f1's mapping is clean under the first, a durability finding under the
    second, and a store filled under the first recalls nothing from the fsync on."""
    head = "create f1\ncreate f2\nwrite f2 0 4096\nfsync f2\ntruncate f1 4096\nmmap m1 f1 0 4096\nstore m1 0 64\n"
    tails = ("fsync f2\n", "fsync f1\n")
    histories = [execute(make_target("daxfs"), parse(head + t).ops, Options()).history for t in tails]
    assert _same_files(*(h.boundaries for h in histories if h is not None))
    first, fresh, again = _lent("daxfs", head + tails[0], head + tails[1], lend_to_judged=True)
    assert first.clean and not fresh.clean
    assert 0 < again.stats.recalled < again.stats.distinct
    assert sorted(map(repr, again.findings)) == sorted(map(repr, fresh.findings))


def _lent(spec: str, judged: str, lender: str, *, lend_to_judged: bool) -> tuple[Verdict, Verdict, Verdict]:
    """Judge the run of `judged` into a fresh store; then a lie: one workload's run with the other's
    history (`judged`'s run with the lender's, or the lender's run with `judged`'s), judged afresh
    and with the store. The verdicts: the first, the lie's fresh, the lie's with the store."""
    target, opts = make_target(spec), Options(log_states=True)
    mine, other = (execute(target, parse(text).ops, opts) for text in (judged, lender))
    recall = Recall()
    first = judge(mine, recall=recall)
    lied = replace(mine, history=other.history) if lend_to_judged else replace(other, history=mine.history)
    return first, judge(lied), judge(lied, recall=recall)


def _same_files(a: list, b: list) -> bool:
    return len(a) == len(b) and all(
        x.keys() == y.keys() and all(x[n].size == y[n].size and (x[n].words == y[n].words).all() for n in x)
        for x, y in zip(a, b, strict=True)
    )


def test_prefix_digests_agree_up_to_the_first_boundary_the_histories_differ_at() -> None:
    target = make_target("daxfs")
    head = "create f1\ncreate f2\nwrite f1 0 5000\n"
    digests = {
        tail: execute(target, parse(head + tail).ops, Options()).history.prefix_digests()  # type: ignore[union-attr]
        for tail in ("fsync f2\nwrite f2 0 10\n", "fsync f1\nwrite f2 0 10\n", "fsync f2\nwrite f2 0 11\n")
    }
    a, durable, content = digests.values()
    assert a[:4] == durable[:4] == content[:4]
    assert a[4] != durable[4] and a[5] != durable[5]  # the fsync's effects differ, its files do not
    assert a[4] == content[4] and a[5] != content[5]
    assert len(set(a)) == len(a)


def test_the_scope_tells_targets_and_options_apart() -> None:
    base = scope(make_target("daxfs"), Options(), ["stale-exposure"])
    others = [
        scope(make_target("daxfs cil=eager"), Options(), ["stale-exposure"]),
        scope(make_target("daxfs design=unwritten"), Options(), ["stale-exposure"]),
        scope(make_target("daxfs bugs=no-zero"), Options(), ["stale-exposure"]),
        scope(make_target("daxfs"), Options(device_size=16 << 20), ["stale-exposure"]),
        scope(make_target("daxfs"), Options(domain=Domain.EADR), ["stale-exposure"]),
        scope(make_target("daxfs"), Options(), ["stale-exposure", "durability"]),
    ]
    assert base == scope(make_target("daxfs"), Options(seed=7), ["stale-exposure"])
    assert len({base, *others}) == 1 + len(others)


def test_a_full_store_forgets_its_oldest_keys_first() -> None:
    r = Recall(cap=100)
    for k in range(250):
        r.add(k)
        r.add(k)  # again: not a second entry
    assert len(r) == 100
    assert all(k in r for k in range(150, 250))
    assert not any(k in r for k in range(150))


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(
    workloads(min_ops=4, max_ops=12),
    workloads(min_ops=2, max_ops=8, shape=scenario_shape("race", weight=100)),
    st.integers(0, 2**32 - 1),
    st.sampled_from([None, *BUGS, *RACE_BUGS]),
    st.one_of(st.just("same"), st.sampled_from([None, *BUGS])),
    st.sampled_from(["zero", "unwritten", "cow-remap"]),
)
def test_recalling_a_parents_clean_states_changes_no_state_verdict_of_its_child(
    parent: Workload, donor: Workload, seed: int, bug: Bug | None, parent_bug: Bug | str | None, design: str
) -> None:
    """As a campaign's judging process does: the parent judged (under the same target, or under
    another one, whose states must not be recalled), then a mutation of it, sharing one store."""
    child = mutate(random.Random(seed), parent, donors=[donor])
    recall = Recall()
    try:
        check(make_target(_spec(bug if parent_bug == "same" else parent_bug, design)), parent, OPTS, recall=recall)
        got = _said(_spec(bug, design), child, OPTS, recall)
    except PmfuzzError:
        assume(False)
        return
    assert got[:4] == _said(_spec(bug, design), child, replace(OPTS, recall_clean=False))[:4], str(child)


REGRESSION = sorted(
    p
    for p in (Path(__file__).resolve().parent.parent / "corpora" / "regression").glob("*.pmfuzz")
    if "# expect: clean" not in p.read_text()
)
"""The regression corpus's reproducers of zoo bugs (the rest are their workloads on correct designs)."""


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(
    st.sampled_from(REGRESSION),
    workloads(min_ops=2, max_ops=6),
    st.one_of(st.none(), st.integers(0, 2**32 - 1)),
    st.booleans(),
)
def test_a_mutated_bug_reproducer_recalls_only_what_judging_it_afresh_finds_clean(
    path: Path, donor: Workload, seed: int | None, same: bool
) -> None:
    """The regression corpus's reproducers (most show a zoo bug) as parents, and as children the
    campaign's mutations of them or the reproducer with the donor's ops after it: the children keep
    the bug's first ops, so recalled states sit beside states with findings."""
    r = parse_reproducer(path.read_text(), source=str(path))
    spec = str(r.target)
    opts = replace(OPTS, domain=r.domain, device_size=r.device_size, eadr_points=r.eadr_points, max_states=48)
    if seed is None:
        child = Workload((*r.workload.ops, *donor.ops))
    else:
        child = mutate(random.Random(seed), r.workload, donors=[donor])
    recall = Recall()
    try:
        check(make_target(spec if same else "daxfs"), r.workload, opts, recall=recall)
        got = _said(spec, child, opts, recall)
    except PmfuzzError:
        assume(False)
        return
    assert got[:4] == _said(spec, child, replace(opts, recall_clean=False))[:4], f"{path.name}: {child}"


def test_a_crash_inside_an_op_is_recalled_only_under_that_ops_own_result() -> None:
    """Two histories alike up to the op in flight, which writes elsewhere in the other: the states
    inside it that show its data are clean under its own history and stale under the other's."""
    head = "create f1\nwrite f1 0 4096\nfsync f1\n"
    tails = ("write f1 0 5000\n", "write f1 8192 5000\n")
    first, fresh, again = _lent("daxfs cil=eager", head + tails[0], head + tails[1], lend_to_judged=True)
    assert first.clean
    assert any(f.crash is not None and f.op == 3 for f in fresh.findings)
    assert 0 < again.stats.recalled < again.stats.distinct
    assert sorted(map(repr, again.findings)) == sorted(map(repr, fresh.findings))


def _perturbed(h: History, what: str, b: int) -> History:
    """A copy of `h` that differs from it only in `what` at boundary (or op) b."""
    out = copy.copy(h)
    v = next(iter(h.by_ino[b].values()))
    other = FileVersion(v.ino + 100, v.size, v.words)
    if what == "boundaries":
        out.boundaries = [*h.boundaries[:b], {**h.boundaries[b], "g9": other}, *h.boundaries[b + 1 :]]
    elif what == "by_ino":
        out.by_ino = [*h.by_ino[:b], {**h.by_ino[b], other.ino: other}, *h.by_ino[b + 1 :]]
    elif what == "alternatives":
        out.alternatives = {**h.alternatives, b: [{other.ino: (None, other)}]}
    elif what == "groups":
        out.groups = {**h.groups, b - 1: b - 2}
    elif what == "effects":
        out.effects = [*h.effects[: b - 1], replace(h.effects[b - 1], torn=[("f1", 0, 3)]), *h.effects[b:]]
    return out


@pytest.mark.parametrize("what", ["boundaries", "by_ino", "alternatives", "groups", "effects"])
def test_prefix_digests_cover_every_part_of_the_history_an_expectation_reads(what: str) -> None:
    run = execute(make_target("daxfs"), parse("create f1\nwrite f1 0 5000\nfsync f1\nwrite f1 0 10\n").ops, Options())
    assert run.history is not None
    base = run.history.prefix_digests()
    got = _perturbed(run.history, what, 3).prefix_digests()
    assert got[:3] == base[:3]
    assert all(x != y for x, y in zip(got[3:], base[3:], strict=True))


def test_a_campaigns_workloads_share_one_store_and_find_what_they_find_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`campaign.judge`, as a batch runs it: the child's states in its parent's ops are recalled,
    and what it reports is what it reports judged alone."""
    import pmfuzz.fuzzing.campaign as campaign

    recalled: list[int] = []

    def counted(*a, **kw):
        v = check(*a, **kw)
        recalled.append(v.stats.recalled)
        return v

    monkeypatch.setattr(campaign, "check", counted)
    monkeypatch.setattr(campaign, "_RECALL", Recall())
    cfg = CampaignConfig(corpus=None, crashes=tmp_path, target=parse_target_spec("daxfs bugs=fsync-no-flush"))
    opts = campaign_options(cfg)
    parent = parse("create f1\nwrite f1 0 5000\nfsync f1\ntruncate f1 4096\nmmap m1 f1 0 4096\nstore m1 0 64\n")
    child = parse(str_ops(parent.ops) + "fsync f1\n")
    campaign.judge(cfg, parent, {"cil": "eager"}, opts)
    shared = campaign.judge(cfg, child, {"cil": "eager"}, opts)
    monkeypatch.setattr(campaign, "_RECALL", Recall())  # the child alone: nothing of the parent to recall
    alone = campaign.judge(cfg, child, {"cil": "eager"}, opts)
    assert recalled[0] == 0 and recalled[1] > 0 and recalled[2] == 0
    assert shared.found and shared == alone


@pytest.mark.parametrize("words", [100, 1 << 15])
def test_a_file_versions_digest_tells_apart_contents_of_one_length(words: int) -> None:
    """Small versions are hashed whole, large ones by their nonzero words: either way, any word's
    change (a zero made nonzero, a value moved to another offset) changes the digest."""
    run = execute(make_target("daxfs"), parse("create f1\nwrite f1 0 100\n").ops, Options())
    h = run.history
    assert h is not None
    v = h.boundaries[2]["f1"]
    base = np.zeros(words, dtype=np.uint64)
    base[3] = 5
    variants = [base.copy() for _ in range(4)]
    variants[1][4] = 5  # one more nonzero word
    variants[2][3], variants[2][4] = 0, 5  # the value moved
    variants[3][3] = 6
    got = set()
    for w in variants:
        h.boundaries[2] = {"f1": replace(v, words=w)}
        got.add(h.prefix_digests()[2])
    assert len(got) == 4


def test_a_childs_crash_points_in_its_parents_ops_are_recalled_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    """The child's points in the ops it shares with its parent (not its end, nor any in a parallel
    group) are neither enumerated nor judged, and it says what it says judged alone."""
    enumerated = enumerations(monkeypatch)
    spec = _spec(None)
    parent = parse("create f1\nwrite f1 0 5000\nfsync f1\ncreate f2\nwrite f2 0 100\nfsync f2\n")
    child = parse(str_ops(parent.ops[:5]) + "truncate f1 100\nfsync f1\n")
    recall = Recall()
    _said(spec, parent, OPTS, recall)
    n_parent = len(enumerated)
    enumerated.clear()
    got = _said(spec, child, OPTS, recall)
    shared_points = {p.id for p in execute(make_target(spec), parent.ops[:5], OPTS).crash_points()} - {"E"}
    assert shared_points and not shared_points & set(enumerated)
    assert n_parent > len(enumerated)
    assert got[:4] == _said(spec, child, replace(OPTS, recall_clean=False))[:4]


def test_a_crash_point_is_recalled_whole_only_after_the_same_ops() -> None:
    """The same history (lent), other ops: the points of the op that differs are the other run's,
    so none of the first run's points stands for them."""
    head = "create f1\nwrite f1 0 4096\nfsync f1\n"
    tails = ("write f1 0 5000\nfsync f1\n", "write f1 8192 5000\nfsync f1\n")
    first, fresh, again = _lent("daxfs cil=eager", head + tails[0], head + tails[1], lend_to_judged=False)
    assert first.clean and again.stats.recalled > 0
    assert again.state_log == fresh.state_log
    assert (again.stats.distinct, sorted(map(repr, again.findings))) == (
        fresh.stats.distinct,
        sorted(map(repr, fresh.findings)),
    )


@pytest.mark.parametrize("path", REGRESSION, ids=lambda p: p.stem)
def test_a_bug_reproducer_with_more_ops_after_it_says_what_it_says_alone(path: Path) -> None:
    """Each zoo bug's reproducer judged, then with ops after it, sharing one store: the crash points
    of the reproducer's ops recur in the longer workload, the bug's among them (a recovery that
    raises, a metadata rule a reordering broke, data lost or exposed), and none is recalled whole."""
    r = parse_reproducer(path.read_text(), source=str(path))
    spec = str(r.target)
    opts = replace(OPTS, domain=r.domain, device_size=r.device_size, eadr_points=r.eadr_points, max_states=48)
    longer = Workload((*r.workload.ops, *parse("create f7\nwrite f7 0 100\nfsync f7\n").ops))
    recall = Recall()
    alone = _said(spec, r.workload, opts, recall)
    assert alone[1], "a zoo bug's reproducer shows its bug"
    got = _said(spec, longer, opts, recall)
    assert got[:4] == _said(spec, longer, replace(opts, recall_clean=False))[:4]


def test_a_store_keeps_whole_points_of_few_states_and_forgets_the_oldest(monkeypatch: pytest.MonkeyPatch) -> None:
    import pmfuzz.judging.recall as recall_module

    small = PointRecall(1, bytes(16), None)
    monkeypatch.setattr(recall_module, "POINT_BYTES", 3 * (16 + recall_module.POINT_OVERHEAD))
    r = Recall()
    r.add_point(b"big", PointRecall(recall_module.POINT_STATES + 1, bytes(16), None))
    assert r.point(b"big") is None
    for k in range(5):
        r.add_point(bytes([k]), small)
    assert [r.point(bytes([k])) for k in range(5)] == [None, None, small, small, small]
    wide = PointRecall(2, bytes(32), None)
    r.add_point(b"wide", wide)
    assert [r.point(k) for k in (b"\x02", b"\x03", b"\x04", b"wide")] == [None, None, small, wide], (
        "the budget is in bytes: a point twice as wide pushes out two"
    )


def test_a_store_filled_without_state_logs_serves_a_judge_that_logs_them() -> None:
    spec, w = "daxfs cil=eager", parse("create f1\nwrite f1 0 5000\nfsync f1\ncreate f2\nwrite f2 0 100\nfsync f2\n")
    recall = Recall()
    check(make_target(spec), w, replace(OPTS, log_states=False), recall=recall)
    got = _said(spec, w, OPTS, recall)
    assert got[4] > 0 and got[:4] == _said(spec, w, replace(OPTS, recall_clean=False))[:4]
