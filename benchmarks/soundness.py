"""The large soundness run: random workloads on every correct configuration must stay clean.

Each configuration (design x cil mode x domain) draws workloads round-robin over every
generator scenario (single ops, and each multi-op scenario weighted up: `race` gives
parallel groups, most followed by further ops) from a fixed seed, until it has judged
`--states` distinct crash states. Every crash point is judged exhaustively up to 256
states, else with the bounded strategy up to 2048; parallel groups over every schedule
with one preemption. Prints per configuration the workloads, groups (and how many had
ops after them), distinct states and time; stops at the first violation with its
report and the workload (which would be a bug in pmfuzz), exit 1.

    python benchmarks/soundness.py --states 1000000 --jobs 2
    python benchmarks/soundness.py --only zero-lazy-adr --states 20000
    python benchmarks/soundness.py --kinds falloc,prealloc,share,ops --states 200000   # fallocate modes up
"""

from __future__ import annotations

import argparse
import multiprocessing
import random
import sys
import time
from dataclasses import dataclass

from pmfuzz.fs import DaxfsTarget
from pmfuzz.gen.drawing import Drawer
from pmfuzz.gen.strategies import SCENARIOS, scenario_shape, workloads
from pmfuzz.judging.engine import Options, check
from pmfuzz.judging.report import format_report
from pmfuzz.lang.workload import Parallel, format_workload
from pmfuzz.pmem import Domain

CONFIGS = [
    (d, c, dom) for d in ("zero", "unwritten", "cow-remap") for c in ("lazy", "eager") for dom in ("adr", "eadr")
]
KINDS = ("ops", *SCENARIOS)


@dataclass
class Tally:
    config: str
    workloads: int = 0
    groups: int = 0
    groups_then_ops: int = 0
    states: int = 0
    seconds: float = 0.0
    violation: str | None = None


def run_config(
    cfg: tuple[str, str, str], states: int, max_ops: int, seed: int, kinds: tuple[str, ...] = KINDS
) -> Tally:
    design, cil, domain = cfg
    name = "-".join(cfg)
    target = DaxfsTarget(design=design, cil=cil)
    opts = Options(domain=Domain(domain), preemption_bound=1)
    drawers = {k: Drawer(workloads(min_ops=6, max_ops=max_ops, shape=scenario_shape(k))) for k in kinds}
    rng = random.Random(f"{seed}/{name}")
    t = Tally(name)
    t0 = time.time()
    i = 0
    while t.states < states:
        kind = kinds[i % len(kinds)]
        i += 1
        w = drawers[kind](rng.randbytes(4096))
        if w is None:
            continue
        v = check(target, w, opts)
        t.workloads += 1
        t.states += v.stats.distinct
        ops = list(w)
        for j, op in enumerate(ops):
            if isinstance(op, Parallel):
                t.groups += 1
                t.groups_then_ops += j < len(ops) - 1
        if not v.clean:
            t.violation = f"VIOLATION on a correct design {name}:\n{format_workload(w)}\n{format_report(v)}"
            break
    t.seconds = time.time() - t0
    return t


def _one(args: tuple) -> Tally:
    return run_config(*args)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--states", type=int, default=1_000_000, help="distinct crash states per configuration")
    ap.add_argument("--max-ops", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--jobs", type=int, default=1, help="configurations run at once (one process each)")
    ap.add_argument("--only", action="append", default=[], help="a configuration such as zero-lazy-adr")
    ap.add_argument("--kinds", default=",".join(KINDS), help="the round-robin's kinds (default: all)")
    args = ap.parse_args()
    kinds = tuple(k for k in args.kinds.split(",") if k)
    if not kinds or set(kinds) - set(KINDS):
        sys.exit(f"soundness.py: error: --kinds takes some of {', '.join(KINDS)}")
    todo = [c for c in CONFIGS if not args.only or "-".join(c) in args.only]
    if not todo:
        sys.exit(f"soundness.py: error: no configuration named {args.only} (names like zero-lazy-adr)")
    work = [(c, args.states, args.max_ops, args.seed, kinds) for c in todo]
    t0 = time.time()
    head = ("configuration", "workloads", "groups", "then ops", "states", "s", "states/s")
    print("{:22} {:>9} {:>7} {:>8} {:>10} {:>7} {:>8}".format(*head))
    bad = False
    with multiprocessing.Pool(args.jobs) as pool:
        for t in pool.imap_unordered(_one, work):
            print(
                f"{t.config:22} {t.workloads:9} {t.groups:7} {t.groups_then_ops:8} {t.states:10} "
                f"{t.seconds:7.0f} {t.states / max(t.seconds, 1e-9):8.0f}" + ("  VIOLATION" if t.violation else ""),
                flush=True,
            )
            if t.violation:
                print(t.violation, flush=True)
                bad = True
    print(f"{'all clean' if not bad else 'VIOLATIONS FOUND'}: {time.time() - t0:.0f} s wall")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
