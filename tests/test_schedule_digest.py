"""Schedules with one run digest are judged once: the digest must hold everything a verdict reads,
or a schedule's own finding is lost behind an earlier schedule's clean run."""

from __future__ import annotations

import hypothesis.strategies as st
from hypothesis import HealthCheck, given, settings

from pmfuzz.execution.execute import execute
from pmfuzz.execution.interleave import explore
from pmfuzz.fs import Bug
from pmfuzz.gen.strategies import scenario_shape, workloads
from pmfuzz.judging.engine import Options, check
from pmfuzz.judging.judge import judge
from pmfuzz.lang.workload import Workload, parse
from pmfuzz.target import make_target
from pmfuzz.verdict import filed, filing_key
from tests.test_races import RACE_BUGS

RACE = "create f0\ntruncate f0 8192\nmmap m0 f0 0 8192\nparallel { write f0 0 4096 ; fault m0 0 read }\n"
UNDONE = "create f1\nwrite f1 0 4096\nreflink f1 f0\nmmap m1 f0 0 8192 sync\n"
"""Ops after the group that replace the file's blocks: every schedule ends with one trace and view."""


def test_a_race_found_after_its_group_is_reported_when_later_ops_undo_it() -> None:
    target = make_target("daxfs design=zero bugs=fault-iomap-before-entry-lock")
    v = check(target, parse(RACE + UNDONE), Options(max_states=8))
    assert "mmap-coherency" in v.oracles()
    assert check(make_target("daxfs design=zero"), parse(RACE + UNDONE), Options(max_states=8)).clean


def _by_digest(spec: str, ops: tuple, opts: Options) -> dict[bytes | None, set[frozenset]]:
    """Per run digest, the filing keys of each bounded schedule with it, executed and judged alone."""
    target = make_target(spec)
    out: dict[bytes | None, set[frozenset]] = {}
    for chooser in explore(opts.preemption_bound, prune=False):
        run = execute(target, ops, opts, chooser, digest=True)
        keys = frozenset(filing_key(f) for f in filed(judge(run).findings))
        out.setdefault(run.digest, set()).add(keys)
    return out


@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(
    workloads(min_ops=4, max_ops=12, shape=scenario_shape("race", weight=200)),
    st.sampled_from(RACE_BUGS),
    st.sampled_from(["lazy", "eager"]),
)
def test_schedules_with_one_digest_are_judged_alike(w: Workload, bug: Bug, cil: str) -> None:
    opts = Options(preemption_bound=1, max_states=8)
    for digest, verdicts in _by_digest(f"daxfs design=zero cil={cil} bugs={bug.value}", w.ops, opts).items():
        assert len(verdicts) == 1, (str(w), digest, verdicts)
