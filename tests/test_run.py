"""execute -> Run -> judge: the split engine gives check's verdicts, and a Run rebuilds a schedule's crash states."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from types import SimpleNamespace

import pytest

from pmfuzz.execution.interleave import Chooser, Schedule
from pmfuzz.fs import DaxfsTarget
from pmfuzz.judging.engine import Options, check, execute, judge
from pmfuzz.judging.repro import parse_reproducer
from pmfuzz.lang.workload import parse
from pmfuzz.pmem import PointKind, StateId
from pmfuzz.target import make_target

REGRESSION = Path(__file__).resolve().parent.parent / "corpora" / "regression"


def _same(a, b) -> None:
    assert [(f.signature, f.message, f.crash) for f in a.findings] == [
        (f.signature, f.message, f.crash) for f in b.findings
    ]
    assert a.notes == b.notes and a.state_log == b.state_log


@pytest.mark.parametrize("bugs", ["", "no-zero", "fsync-no-flush"])
def test_judging_an_executed_run_is_check(bugs: str) -> None:
    w = parse("create f0\nwrite f0 0 8192\nfsync f0\nwrite f0 100 5000\n")
    opts = Options(log_states=True, max_states=64)
    run = execute(DaxfsTarget(bugs=bugs), w, opts)
    with pytest.raises(dataclasses.FrozenInstanceError):
        run.executed = 0  # type: ignore[misc]
    assert run.ran and run.executed == len(w.ops) and run.schedule is None
    _same(judge(run), check(DaxfsTarget(bugs=bugs), w, opts))


def test_a_run_under_a_schedule_rebuilds_its_reproducers_crash_state() -> None:
    r = parse_reproducer((REGRESSION / "fp-racing-store-write-then-cow.pmfuzz").read_text())
    assert r.crash == StateId("E", (("L5505", "0"),)) and r.schedule is not None
    opts = Options(domain=r.domain, device_size=r.device_size, crash=r.crash)
    run = execute(make_target(r.target), r.workload, opts, Chooser(Schedule.parse(r.schedule)))
    assert run.schedule == r.schedule
    assert run.crash_state(r.crash).state_id == r.crash
    start, end = next((s, s + n) for _g, s, n in run.groups)
    assert (start, end) == (3, 5)
    for k in (start, end - 1):  # a crash inside the group may find any of its ops done
        assert run.window(SimpleNamespace(kind=PointKind.FENCE, op=k)) == (start, end)
    assert run.window(SimpleNamespace(kind=PointKind.FENCE, op=end)) == (end, end + 1)
    assert run.window(SimpleNamespace(kind=PointKind.END, op=end)) == (run.executed, run.executed)
    _same(judge(run), check(make_target(r.target), r.workload, dataclasses.replace(opts, schedule=r.schedule)))
