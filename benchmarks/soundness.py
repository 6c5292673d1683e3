"""The large soundness run: random workloads on every correct configuration must stay clean.

Every crash point is judged exhaustively up to 256 states, else with the bounded
strategy up to 2048 states. Prints workloads and states judged per configuration;
stops at the first violation with its report (which would be a bug in pmfuzz).

    python benchmarks/soundness.py --workloads 2000 --max-ops 20
    python benchmarks/soundness.py --workloads 300 --weight falloc=12 --weight fallocate=10   # fallocate modes up
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace

from hypothesis import HealthCheck, Phase, given, settings

from pmfuzz.engine import Options, check
from pmfuzz.fs import DaxfsTarget
from pmfuzz.gen.strategies import DEFAULT_SHAPE, workloads
from pmfuzz.pmem import Domain
from pmfuzz.report import format_report
from pmfuzz.workload import format_workload

CONFIGS = [
    (d, c, dom) for d in ("zero", "unwritten", "cow-remap") for c in ("lazy", "eager") for dom in ("adr", "eadr")
]


def _run_config(design: str, cil: str, domain: str, n: int, max_ops: int, shape) -> list[int]:
    """Check n workloads on one configuration: [workloads, distinct crash states]; exits at a violation.

    A closure rather than defaults carries the configuration: @given refuses functions with defaults."""
    target = DaxfsTarget(design=design, cil=cil)
    opts = Options(domain=Domain(domain))
    count = [0, 0]

    @settings(
        max_examples=n, deadline=None, database=None, phases=[Phase.generate], suppress_health_check=list(HealthCheck)
    )
    @given(workloads(max_ops=max_ops, shape=shape))
    def run(w) -> None:
        v = check(target, w, opts)
        count[0] += 1
        count[1] += v.stats.distinct
        if not v.clean:
            print(f"VIOLATION on a correct design {design}/{cil}/{domain}:\n{format_workload(w)}\n{format_report(v)}")
            sys.exit(1)

    run()
    return count


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workloads", type=int, default=2000, help="per configuration")
    ap.add_argument("--max-ops", type=int, default=20)
    ap.add_argument("--weight", action="append", default=[], metavar="KIND=N", help="override a generator weight")
    ap.add_argument("--configs", help="only these, e.g. zero/lazy/adr,cow-remap/eager/eadr")
    args = ap.parse_args()
    weights = dict(DEFAULT_SHAPE.weights)
    for kv in args.weight:
        k, _, v = kv.partition("=")
        if k not in weights:
            ap.error(f"unknown weight {k!r} (known: {', '.join(weights)})")
        weights[k] = int(v)
    shape = replace(DEFAULT_SHAPE, weights=weights)
    configs = [tuple(c.split("/")) for c in args.configs.split(",")] if args.configs else CONFIGS
    t0 = time.time()
    total = states = 0
    for design, cil, domain in configs:
        count = _run_config(design, cil, domain, args.workloads, args.max_ops, shape)
        total += count[0]
        states += count[1]
        print(
            f"{design:10} {cil:6} {domain:5} {count[0]:6} workloads {count[1]:9} states clean "
            f"({time.time() - t0:7.0f} s)",
            flush=True,
        )
    print(f"all clean: {total} workloads, {states} distinct crash states")


if __name__ == "__main__":
    main()
