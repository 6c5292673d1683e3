"""Time to the first detection of each zoo bug from an empty corpus, and silence on correct designs.

For every bug: a native campaign on one core, no seed corpus, stopped at the first
finding whose oracle is the bug's intended one; median and max seconds over 5 seeds,
and the ops of its minimized reproducer (the shortest when that oracle fired under
several signatures; the table shows the worst seed). Then every correct design runs
for the same wall time and must find nothing. (FuzzBench/Magma: median of seeds.)

    python benchmarks/time_to_bug.py                   # all bugs, 5 seeds, 300 s cap each
    python benchmarks/time_to_bug.py --bugs no-zero --seeds 3 --cap 60
    python benchmarks/time_to_bug.py --bugs "" --wall 120       # only the correct designs
    python benchmarks/time_to_bug.py --strategy 256             # 256 states a crash point (`pmfuzz run --strategy`)
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from pmfuzz.fs import BUG_ORACLE, Bug
from pmfuzz.fuzzing.campaign import CampaignConfig, run_campaign
from pmfuzz.judging.repro import parse_reproducer
from pmfuzz.signature import oracle_of
from pmfuzz.target import TargetSpec

DESIGN_OF = {Bug.CONVERT_BEFORE_PERSIST: "unwritten"}


def one(
    bug: Bug | None, design: str, seed: int, cap: float, strategy: int | None = None
) -> tuple[float | None, int | None, int]:
    opts = (("design", design),) + ((("bugs", bug.value),) if bug else ())
    with tempfile.TemporaryDirectory() as tmp:
        cfg = CampaignConfig(
            target=TargetSpec("daxfs", opts),
            seed=seed,
            seconds=cap,
            corpus=None,
            crashes=Path(tmp),
            quiet=True,
            stop_on=BUG_ORACLE[bug] if bug else None,
            pictures=False,
        )
        if strategy is not None:
            cfg = replace(cfg, max_states=strategy)
        s = run_campaign(cfg)
        if bug is None:
            return None, None, len(s.findings)
        if s.first_hit is None:
            return None, None, len(s.findings)
        # The group of the bug's oracle, or the group its finding was filed under through a link
        # (`also`: loads through a mapping and read(2) that saw one wrong block are one group) or
        # by root cause (`signatures`: a COW torn where it left stale data is one cause).
        want = BUG_ORACLE[bug]
        ops = min(
            len(parse_reproducer((Path(tmp) / v["file"]).read_text()).workload)
            for k, v in s.findings.items()
            if any(oracle_of(a) == want for a in (k, *v.get("also", ()), *v.get("signatures", ())))
        )
        return s.first_hit, ops, len(s.findings)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bugs", default=",".join(b.value for b in Bug))
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--cap", type=float, default=300.0, help="seconds per campaign before giving up")
    ap.add_argument("--wall", type=float, help="seconds per correct design (default: the longest time to a bug)")
    ap.add_argument("--each", action="store_true", help="also print every seed's time")
    ap.add_argument("--strategy", type=int, help="crash states judged a crash point (default: the campaign's)")
    args = ap.parse_args()
    if args.strategy is not None and args.strategy < 1:
        ap.error(f"--strategy must be at least 1, got {args.strategy}")
    bugs = [Bug(b) for b in args.bugs.split(",") if b]
    print(f"{'bug':30} {'oracle':15} {'found':>5} {'median s':>9} {'max s':>8} {'ops':>7}")
    longest = 0.0
    for bug in bugs:
        times, opsn = [], []
        for seed in range(1, args.seeds + 1):
            t, n, _ = one(bug, DESIGN_OF.get(bug, "zero"), seed, args.cap, args.strategy)
            if args.each:
                print(f"  {bug.value} seed {seed}: {'not found' if t is None else f'{t:.1f} s'}", flush=True)
            if t is not None:
                times.append(t)
                opsn.append(n)
        found = f"{len(times)}/{args.seeds}"
        med = f"{statistics.median(times):9.1f}" if len(times) * 2 > args.seeds else f"{'>' + str(int(args.cap)):>9}"
        mx = f"{max(times):8.1f}" if len(times) == args.seeds else f"{'>' + str(int(args.cap)):>8}"
        mops = f"{max(opsn):7d}" if opsn else f"{'-':>7}"
        longest = max([longest, *times])
        print(f"{bug.value:30} {BUG_ORACLE[bug]:15} {found:>5} {med} {mx} {mops}", flush=True)
    wall = args.wall or max(30.0, longest)
    why = "" if args.wall else " (the longest time to a bug above)"
    print(f"\ncorrect designs, {wall:.0f} s each{why}:")
    for design in ("zero", "unwritten", "cow-remap"):
        t0 = time.time()
        _, _, n = one(None, design, 1, wall, args.strategy)
        print(f"  {design:10} {n} findings in {time.time() - t0:.0f} s", flush=True)


if __name__ == "__main__":
    main()
