"""The engine: fast and plain paths agree; target errors are findings; pmfuzz errors are not swallowed."""

from __future__ import annotations

from pathlib import Path

import hypothesis.strategies as st
import pytest
from hypothesis import HealthCheck, given, settings

from oracles import OracleName
from pmfuzz.fs import Bug, DaxfsTarget
from pmfuzz.gen.strategies import workloads
from pmfuzz.judging.engine import Options, check
from pmfuzz.judging.repro import parse_reproducer
from pmfuzz.lang.workload import parse
from pmfuzz.pmem import PMem
from pmfuzz.target import Guarantee, make_target

BUGS = [b.value for b in Bug]


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(workloads(max_ops=7), st.sampled_from(["", *BUGS]), st.sampled_from(["lazy", "eager"]))
def test_grouping_by_metadata_gives_the_same_verdict(w, bug: str, cil: str) -> None:
    t = DaxfsTarget(design="zero", bugs=bug, cil=cil)
    fast = check(t, w, Options(max_states=64, log_states=True))
    slow = check(t, w, Options(max_states=64, group_by_metadata=False, log_states=True))
    assert fast.state_log == slow.state_log
    assert {f.signature for f in fast.findings} == {f.signature for f in slow.findings}


@pytest.mark.parametrize("bug", ["", "zero-after-commit", "cow-skip-tail-copy"])
def test_states_differing_only_in_unmapped_lines_share_a_verdict_that_is_theirs(bug: str) -> None:
    """A write's data into blocks its lost transaction would have mapped is invisible after the crash:
    those states are judged once, and each still gets exactly the verdict it would get alone."""
    text = "create f0\nwrite f0 0 8192\ncreate f1\nreflink f0 f1\nwrite f1 100 5000\nfsync f1\n"
    t = DaxfsTarget(design="zero", bugs=bug, cil="lazy")
    fast = check(t, parse(text), Options(max_states=128, log_states=True))
    slow = check(t, parse(text), Options(max_states=128, group_by_metadata=False, log_states=True))
    assert fast.stats.shared > 0 and slow.stats.shared == 0
    assert fast.state_log == slow.state_log
    assert {f.signature for f in fast.findings} == {f.signature for f in slow.findings}


CORPUS = sorted((Path(__file__).resolve().parents[1] / "corpora" / "regression").glob("*.pmfuzz"))


@pytest.mark.parametrize("path", [p for p in CORPUS if "--" not in p.name], ids=lambda p: p.stem)
def test_grouping_agrees_state_by_state_on_the_regression_corpus(path: Path) -> None:
    r = parse_reproducer(path.read_text(), source=str(path))
    t = make_target(r.target)
    fast = check(t, r.workload, Options(max_states=96, log_states=True))
    slow = check(t, r.workload, Options(max_states=96, group_by_metadata=False, log_states=True))
    assert fast.state_log == slow.state_log


class _Exploding(DaxfsTarget):
    """daxfs, but its recovery or an op raises (a bug in the target, not in pmfuzz)."""

    def __init__(self, where: str) -> None:
        super().__init__()
        self.where = where
        self.mounts = 0

    def mount(self, pm: PMem, sched=None):
        self.mounts += 1
        if self.where == "recovery" and self.mounts > 1:
            raise ValueError("corrupt inode table")
        fs = super().mount(pm, sched)
        if self.where == "op":
            real = fs.execute

            def execute(index, op, payload):
                if index == 1:
                    raise KeyError("extent")
                return real(index, op, payload)

            fs.execute = execute
        return fs


def test_target_exception_in_recovery_is_a_mount_finding_with_traceback() -> None:
    v = check(_Exploding("recovery"), parse("create f0\nwrite f0 0 100\n"), Options(max_states=4))
    [f] = [f for f in v.findings if f.oracle is OracleName.MOUNT]
    assert "corrupt inode table" in f.message
    assert f.traceback and "ValueError" in f.traceback
    assert f.crash is not None


def test_target_exception_in_an_op_is_a_target_error_finding() -> None:
    v = check(_Exploding("op"), parse("create f0\nwrite f0 0 100\ncreate f1\n"), Options(max_states=4))
    [f] = [f for f in v.findings if f.oracle is OracleName.TARGET_ERROR]
    assert f.op == 1 and "KeyError" in f.traceback
    assert any("stopped at op 1" in n for n in v.notes)


def test_pmfuzz_own_errors_propagate() -> None:
    class Broken(DaxfsTarget):
        guarantees = frozenset({Guarantee.NO_STALE_DATA})

    opts = Options(crash="F999")
    with pytest.raises(Exception, match="no crash point"):
        check(Broken(), parse("create f0\n"), opts)


def test_enospc_stops_the_run_without_a_finding() -> None:
    w = parse("\n".join(["create f0"] + [f"write f0 {i << 20} 1048576" for i in range(12)]))
    v = check(DaxfsTarget(), w, Options(max_states=8, device_size=4 << 20))
    assert v.clean
    assert any("ENOSPC" in n for n in v.notes)


def test_crash_option_judges_exactly_one_state() -> None:
    v = check(DaxfsTarget(bugs="no-zero"), parse("create f0\nwrite f0 100 200\nfsync f0\n"), Options(crash="E"))
    assert v.stats.distinct == 1 and v.stats.points == 1
    assert "stale-exposure" in v.oracles()


MAP_SYNC_STORES = "create f0\ntruncate f0 1048576\nmmap m0 f0 0 1048576 sync\nstore m0 0 65536\nfsync f0\n"


def test_points_past_the_inflight_budget_are_sampled_evenly_and_the_report_says_so() -> None:
    """Each page fault of a MAP_SYNC store pushes the log while the pages stored before are still in
    flight: points times lines grows as the square of the store. Past the budget every k-th point
    is judged, the same ones every run, and the verdict's notes say how many."""
    t = DaxfsTarget(design="zero", cil="lazy")
    w = parse(MAP_SYNC_STORES)
    full = check(t, w, Options(max_states=8))
    a = check(t, w, Options(max_states=8, max_inflight=5000, log_states=True))
    b = check(t, w, Options(max_states=8, max_inflight=5000, log_states=True))
    assert not any("sampled" in n for n in full.notes)
    (note,) = [n for n in a.notes if n.startswith("crash points sampled: 1 in ")]
    k = int(note.split()[5])
    assert k > 1 and a.stats.points < full.stats.points
    assert a.stats.points >= full.stats.points // k
    assert a.state_log == b.state_log and a.notes == b.notes
    assert check(t, w, Options(max_states=8, max_inflight=10**9)).stats.points == full.stats.points
