"""Crash points of one window share what their mounts judged (`VerdictCache.beside`): each state's
violations are still those it gets judged alone (`Options.crash`), which shares nothing."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import hypothesis.strategies as st
import pytest
from hypothesis import HealthCheck, given, settings

from pmfuzz.fs import DaxfsTarget
from pmfuzz.gen.strategies import workloads
from pmfuzz.judging.engine import Options, check
from pmfuzz.judging.repro import parse_reproducer
from pmfuzz.lang.workload import Workload, groups, parse
from pmfuzz.target import make_target

CONFIGS = [
    ("zero", ""),
    ("zero", "no-zero"),
    ("zero", "zero-after-commit"),
    ("zero", "cow-in-place"),
    ("zero", "fsync-no-flush"),
    ("unwritten", "convert-before-persist"),
    ("cow-remap", "cow-remap-before-copy"),
]

WORKLOADS = [
    # many points in one window: a large write's data lines and its transaction's fences
    "create f0\nwrite f0 0 16384\nfsync f0\nwrite f0 4096 9000\nfsync f0\n",
    "create f0\nwrite f0 0 8192\nfsync f0\ncreate f1\nreflink f0 f1\nwrite f1 100 5000\nfsync f1\n",
    "create f0\ntruncate f0 65536\nwrite f0 60000 9000\npunch f0 0 8192\nfsync f0\n",
]


def _alone_agrees(design: str, bug: str, w: Workload, limit: int) -> int:
    """Judge the workload, then each of its first `limit` logged states alone; the count compared."""
    t = DaxfsTarget(design=design, bugs=bug, cil="lazy")
    opts = Options(max_states=32, log_states=True)
    whole = check(t, w, opts)
    n = 0
    for sid, msgs in whole.state_log[:limit]:
        alone = check(t, w, Options(max_states=32, log_states=True, crash=sid.split("/", 1)[1]))
        assert alone.state_log == ((sid, msgs),), (design, bug, sid)
        n += 1
    return n


@pytest.mark.parametrize(("design", "bug"), CONFIGS)
@pytest.mark.parametrize("text", WORKLOADS)
def test_each_state_of_a_shared_window_is_judged_as_it_is_alone(design: str, bug: str, text: str) -> None:
    assert _alone_agrees(design, bug, parse(text), 400) > 20


@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    w=workloads(max_ops=6).filter(lambda w: not groups(w.ops)),
    config=st.sampled_from(CONFIGS),
)
def test_drawn_workloads_judge_each_state_as_it_is_alone(w: Workload, config: tuple[str, str]) -> None:
    _alone_agrees(*config, w, 60)


CORPUS = sorted((Path(__file__).resolve().parents[1] / "corpora" / "regression").glob("*.pmfuzz"))
DATA_FINDINGS = [
    p
    for p in CORPUS
    if any(f"# expect: {o}" in p.read_text() for o in ("stale-exposure", "durability", "cow-atomicity"))
    and "# schedule:" not in p.read_text()
]


@pytest.mark.parametrize("path", DATA_FINDINGS, ids=lambda p: p.stem)
def test_states_of_the_regression_findings_are_judged_as_they_are_alone(path: Path) -> None:
    r = parse_reproducer(path.read_text(), source=str(path))
    t = make_target(r.target)
    opts = Options(max_states=24, log_states=True, domain=r.domain, device_size=r.device_size)
    whole = check(t, r.workload, opts)
    assert any(m for _, m in whole.state_log), "the reproducer's finding is gone"
    for sid, msgs in whole.state_log:
        alone = check(t, r.workload, replace(opts, crash=sid.split("/", 1)[1]))
        assert alone.state_log == ((sid, msgs),), sid
