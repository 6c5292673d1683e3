"""How many fresh workloads the campaign's generator needs to reach every op form.

Draws workloads as `pmfuzz run` does for fresh inputs (the default shape, seeded bytes of a few
sizes, `--max-ops` ops), replays each on the reference to name its op forms
(`pmfuzz.gen.forms`), and prints after how many workloads the checklist `ALL_FORMS` was
reached, with the forms still missing at each checkpoint and the rarest ones. No crash states
are judged: this measures the generator, the campaign's `op forms` line measures a whole run.

    python benchmarks/op_forms.py --workloads 3000 --seed 1
"""

from __future__ import annotations

import argparse
import collections
import random
import time

from pmfuzz.gen.drawing import Drawer
from pmfuzz.gen.forms import ALL_FORMS, missing, workload_forms
from pmfuzz.gen.strategies import DEFAULT_SHAPE, workloads


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workloads", type=int, default=3000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--max-ops", type=int, default=10, help="as `pmfuzz run --max-ops` (default 10)")
    args = ap.parse_args()
    draw = Drawer(workloads(max_ops=args.max_ops, shape=DEFAULT_SHAPE))
    rng = random.Random(args.seed)
    checklist = {str(f) for f in ALL_FORMS}
    seen: set[str] = set()
    count: collections.Counter[str] = collections.Counter()
    t0 = time.perf_counter()
    done_at = None
    marks = {50, 100, 200, 400, 800, 1600, 3200, 6400}
    drawn = 0
    while drawn < args.workloads:
        w = draw(rng.randbytes(rng.choice((512, 2048, 8192))))
        if w is None or not w.ops:
            continue
        drawn += 1
        forms = {str(f) for f in workload_forms(w)}
        count.update(forms)
        seen |= forms
        if done_at is None and checklist <= seen:
            done_at = drawn
        if drawn in marks:
            gaps = [str(f) for f in missing(seen)]
            print(f"{drawn:6d} workloads: {len(checklist & seen)} of {len(checklist)} forms", *gaps[:8])
    print(f"all {len(checklist)} forms after {done_at} workloads" if done_at else f"missing: {missing(seen)}")
    rare = sorted((c, f) for f, c in count.items() if f in checklist)[:8]
    print("rarest:", ", ".join(f"{f} x{c}" for c, f in rare))
    print(f"{drawn} workloads in {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
