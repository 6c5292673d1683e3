"""Schedules of one workload share what their common prefix showed: a schedule run beside the
others (skipping the run-phase oracles on the ops before the first parallel group once one
schedule ran them clean) is the run it is alone -- same digest, findings and notes."""

from __future__ import annotations

import pytest

from pmfuzz.execution.execute import execute
from pmfuzz.execution.interleave import Chooser, Schedule, explore
from pmfuzz.lang.workload import groups, parse
from pmfuzz.target import make_target
from pmfuzz.verdict import Options

CASES = [
    (
        "daxfs",
        "create f0\nwrite f0 0 8192\nmmap m0 f0 0 8192 sync\nstore m0 100 8\n"
        "parallel { write f0 0 100 ; fault m0 0 read }\nfsync f0\n",
    ),
    (
        "daxfs design=zero bugs=no-zero",  # the prefix shows stale media crash-free
        "create f0\nwrite f0 100 5000\ncreate f1\nparallel { write f1 0 100 ; read f0 0 8192 }\n",
    ),
    (
        "daxfs bugs=fault-eof-round-up",
        "create f0\ntruncate f0 4000\nmmap m0 f0 0 8192 sync\nfault m0 1 read\n"
        "parallel { punch f0 0 100 ; fault m0 0 read }\nfsync f0\n",
    ),
    (
        "daxfs design=cow-remap bugs=cow-in-place",
        "create f0\nwrite f0 0 8192\nfsync f0\ncreate f1\nreflink f0 f1\n"
        "parallel { write f1 100 200 ; read f0 0 300 }\nwrite f0 0 10\n",
    ),
]


def _facts(run) -> tuple:
    return (
        run.digest,
        sorted((f.oracle, f.message, f.op) for f in run.findings),
        run.notes,
        run.executed,
        run.results,
    )


@pytest.mark.parametrize(("spec", "text"), CASES)
def test_a_schedule_beside_the_others_is_the_run_it_is_alone(spec: str, text: str) -> None:
    w = parse(text)
    first = min(start for _g, start, _n in groups(w.ops))
    opts = Options(features=True)
    shared: dict = {}
    runs = 0
    prefix_found = False
    for chooser in explore(2, prune=False):
        beside = execute(make_target(spec), w, opts, chooser, digest=True, orders=shared)
        alone = execute(make_target(spec), w, opts, Chooser(Schedule.parse(beside.schedule)), digest=True)
        assert _facts(beside) == _facts(alone), beside.schedule
        prefix_found = prefix_found or any(f.op is not None and f.op < first for f in alone.findings)
        runs += 1
    assert runs > 2
    assert prefix_found is ("no-zero" in spec or "round-up" in spec)
