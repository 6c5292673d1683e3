"""Hunt false positives of parallel groups on the correct designs.

Random race-heavy workloads (the generator's `race` scenario at weight 12) on each
of the 12 correct configurations (3 designs x 2 log-push modes x ADR/eADR), every
schedule with up to 2 preemptions (at most 200 per group), crash states bounded
at 24 per point. Prints each configuration as clean, or the first (shrunk)
workload that gave a finding: a false positive, to be fixed in the model or the
reference, never in the oracle's expectations.

    python benchmarks/race_hunt.py --examples 60
    python benchmarks/race_hunt.py --examples 200 --only zero-eager
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

from hypothesis import HealthCheck, Phase, given, settings

from pmfuzz.fs import DaxfsTarget
from pmfuzz.gen.strategies import DEFAULT_SHAPE, workloads
from pmfuzz.judging.engine import Options, check
from pmfuzz.judging.report import format_report
from pmfuzz.lang.workload import format_workload
from pmfuzz.pmem import Domain

CONFIGS = [
    (d, c, dom) for d in ("zero", "unwritten", "cow-remap") for c in ("lazy", "eager") for dom in ("adr", "eadr")
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--examples", type=int, default=60, help="workloads per configuration")
    ap.add_argument("--only", default="", help="run the configurations whose name contains this")
    args = ap.parse_args()
    shape = replace(DEFAULT_SHAPE, weights={**DEFAULT_SHAPE.weights, "race": 12})
    dirty = 0
    for design, cil, dom in CONFIGS:
        name = f"{design}-{cil}-{dom}"
        if args.only not in name:
            continue
        t0 = time.perf_counter()
        if _hunt(DaxfsTarget(design=design, cil=cil), Domain(dom), args.examples, shape, name):
            print(f"{name:24} clean   {args.examples} workloads in {time.perf_counter() - t0:.0f} s", flush=True)
        else:
            dirty += 1
    raise SystemExit(1 if dirty else 0)


def _hunt(target: DaxfsTarget, domain: Domain, examples: int, shape, name: str) -> bool:
    opts = Options(domain=domain, max_states=24, exhaustive_upto=24, preemption_bound=2, max_schedules=200)

    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.generate, Phase.shrink],
    )
    @given(workloads(max_ops=14, shape=shape))
    def run(w) -> None:
        v = check(target, w, opts)
        assert v.clean, f"{format_workload(w)}\n{format_report(v)}"

    try:
        run()
    except AssertionError as e:
        print(f"{name:24} FALSE POSITIVE\n{e}", flush=True)
        return False
    return True


if __name__ == "__main__":
    main()
