"""Crash-free execution speed: milliseconds per 50-op workload on daxfs, one core.

The workloads are drawn from the public strategies with fixed seeds; each run
formats nothing (the formatted device is shared copy-on-write, as the engine
does), mounts, and executes every op with its self-describing payload (made
beforehand by the reference model) while the device records its trace. No crash state is built or judged.

    python benchmarks/exec_speed.py
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

from pmfuzz.fs import DaxfsTarget
from pmfuzz.gen.drawing import Drawer
from pmfuzz.gen.strategies import workloads
from pmfuzz.judging.engine import formatted
from pmfuzz.lang.workload import Workload
from pmfuzz.pmem import PMem
from pmfuzz.reference import Reference

SIZE = 8 << 20


def draw(n: int, count: int, seed: int) -> list[Workload]:
    d = Drawer(workloads(min_ops=n, max_ops=n))
    rng = random.Random(seed)
    out: list[Workload] = []
    while len(out) < count:
        w = d(rng.randbytes(16384))
        if w is not None:
            out.append(w)
    return out


def run_once(design: str, w: Workload) -> float:
    t = DaxfsTarget(design=design)
    base = formatted(t, SIZE)
    ref = Reference()
    payloads = []
    for i, op in enumerate(w.ops):
        payloads.append(ref.payload(i, op))
        ref.apply(i, op)
    t0 = time.perf_counter()
    fs = t.mount(PMem.from_image(base))
    for i, op in enumerate(w.ops):
        fs.execute(i, op, payloads[i])
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ops", type=int, default=50)
    ap.add_argument("--count", type=int, default=40)
    args = ap.parse_args()
    ws = draw(args.ops, args.count, seed=1)
    print(f"crash-free execution of {args.count} workloads of {args.ops} ops, one core (ms per workload)")
    print(f"{'design':10} {'median':>8} {'p90':>8} {'max':>8} {'ms/op':>7}")
    for design in ("zero", "unwritten", "cow-remap"):
        for w in ws[:3]:
            run_once(design, w)
        times = sorted(run_once(design, w) * 1000 for w in ws)
        med = statistics.median(times)
        p90 = times[int(0.9 * (len(times) - 1))]
        print(f"{design:10} {med:8.1f} {p90:8.1f} {times[-1]:8.1f} {med / args.ops:7.2f}", flush=True)


if __name__ == "__main__":
    main()
