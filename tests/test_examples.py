"""The tutorial's target: clean when correct, caught with its planted bug."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings

from examples.tinyfs import TinyFS
from pmfuzz.engine import Options, check
from pmfuzz.gen.strategies import DEFAULT_SHAPE, workloads
from pmfuzz.target import supported_ops
from pmfuzz.workload import parse

OPTS = Options(device_size=1 << 20, max_states=64)
SHAPE = DEFAULT_SHAPE.only(supported_ops(TinyFS()))


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(workloads(max_ops=12, shape=SHAPE))
def test_tinyfs_is_clean(w) -> None:
    assert {op.kind for op in w} <= supported_ops(TinyFS())
    v = check(TinyFS(), w, OPTS)
    assert v.clean, [f.message for f in v.findings]


def test_tinyfs_planted_bug_is_stale_exposure() -> None:
    v = check(TinyFS(bug="size-before-data"), parse("create f0\nwrite f0 0 100\n"), OPTS)
    assert "stale-exposure" in v.oracles()
    assert any("poison" in str(e) for f in v.findings for e in f.evidence)
