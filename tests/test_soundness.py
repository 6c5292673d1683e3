"""Soundness: no correct design ever gets a violation.

Random workloads over the 12 correct configurations (3 designs x 2 domains x 2
log-push modes) x every generator scenario (single ops only, and each
multi-op scenario weighted up, `race` among them: parallel groups judged over
every schedule with one preemption, most of them followed by further ops).
Every crash point is judged exhaustively up to 24 states, else by the most
telling 24 of its bounded states (both bases and the single deviations from
"all kept"). The larger run -- exhaustive up to 256, bounded up to 2048 per
point, a million distinct crash states per configuration -- is
`benchmarks/soundness.py`.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

from pmfuzz.fs import DaxfsTarget
from pmfuzz.gen.strategies import SCENARIOS, scenario_shape, workloads
from pmfuzz.judging.engine import Options, check
from pmfuzz.judging.report import format_report
from pmfuzz.lang.workload import format_workload
from pmfuzz.pmem import Domain

CONFIGS = [
    (d, c, dom) for d in ("zero", "unwritten", "cow-remap") for c in ("lazy", "eager") for dom in ("adr", "eadr")
]
KINDS = ("ops", *SCENARIOS)
PER_CASE = {"ops": 6, "race": 5, "hugezero": 2}
"""Workloads per configuration and scenario (4 unless named): parallel groups cost a run per
schedule and huge pages a 2 MiB zeroing; their volume is benchmarks/soundness.py's."""
ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(("design", "cil", "domain"), CONFIGS, ids=["-".join(c) for c in CONFIGS])
def test_correct_design_is_never_flagged(design: str, cil: str, domain: str, kind: str) -> None:
    target = DaxfsTarget(design=design, cil=cil)
    opts = Options(domain=Domain(domain), max_states=24, exhaustive_upto=24, preemption_bound=1, max_schedules=32)

    @settings(max_examples=PER_CASE.get(kind, 4), deadline=None, suppress_health_check=list(HealthCheck))
    @given(workloads(min_ops=6, max_ops=16, shape=scenario_shape(kind)))
    def run(w) -> None:
        v = check(target, w, opts)
        assert v.clean, f"false positive on {design}/{cil}/{domain}:\n{format_workload(w)}\n{format_report(v)}"

    run()


SEEDS = sorted((ROOT / "corpora" / "seeds").glob("*.pmfuzz"))


@pytest.mark.parametrize("shard", range(8))
def test_seed_corpus_is_clean(shard: int) -> None:
    """Every seed, each on one of the 12 correct configurations in turn (all configurations get seeds)."""
    from pmfuzz.judging.repro import parse_reproducer

    assert len(SEEDS) > 300
    for i, path in enumerate(SEEDS):
        if i % 8 != shard:
            continue
        design, cil, domain = CONFIGS[i % len(CONFIGS)]
        w = parse_reproducer(path.read_text(), source=str(path)).workload
        v = check(
            DaxfsTarget(design=design, cil=cil), w, Options(domain=Domain(domain), max_states=24, exhaustive_upto=24)
        )
        assert v.clean, f"{path.name} on {design}/{cil}/{domain}:\n{format_report(v)}"
