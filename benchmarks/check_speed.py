"""Distinct crash states judged per second on one core, and where the time goes.

The fixed workload set: writes into holes, overwrites, reflink + COW write,
MAP_SYNC fault + store + persist, and truncate, each on the three designs
(ADR, lazy log pushes, the engine's default state choice).

    python benchmarks/check_speed.py
"""

from __future__ import annotations

import argparse
import time

from pmfuzz.fs import DaxfsTarget
from pmfuzz.judging.engine import Options, Stats, check
from pmfuzz.lang.workload import parse

WORKLOADS = {
    "write into holes": "create f0\nwrite f0 0 8192\nwrite f0 20000 100\nfsync f0\n",
    "overwrite": "create f0\nwrite f0 0 8192\nfsync f0\nwrite f0 100 5000\nfsync f0\n",
    "reflink + COW write": (
        "create f0\nwrite f0 0 8192\nfsync f0\ncreate f1\nreflink f0 f1\nwrite f1 100 200\nfsync f1\n"
    ),
    "MAP_SYNC fault + store + persist": (
        "create f0\ntruncate f0 8192\nfsync f0\nmmap m0 f0 0 8192 sync\nfault m0 0 write\n"
        "store m0 0 64\npersist m0 0 64\nstore m0 4096 100\npersist m0 4096 100\n"
    ),
    "truncate": "create f0\nwrite f0 0 12288\nfsync f0\ntruncate f0 5000\ntruncate f0 9000\nfsync f0\n",
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--designs", default="zero,unwritten,cow-remap")
    args = ap.parse_args()
    total = Stats()
    wall = 0.0
    print(f"{'workload':34} {'design':10} {'states':>7} {'distinct':>8} {'mounts':>6} {'seconds':>8} {'states/s':>9}")
    for name, text in WORKLOADS.items():
        w = parse(text)
        for design in args.designs.split(","):
            t = DaxfsTarget(design=design)
            check(t, w, Options())  # warm the formatted-device cache
            t0 = time.perf_counter()
            v = check(t, w, Options())
            dt = time.perf_counter() - t0
            assert v.clean, f"{name} on {design} is not clean: {[f.message for f in v.findings]}"
            s = v.stats
            wall += dt
            for f in ("states", "distinct", "mounts"):
                setattr(total, f, getattr(total, f) + getattr(s, f))
            for f in ("t_exec", "t_image", "t_mount", "t_oracles"):
                setattr(total, f, getattr(total, f) + getattr(s, f))
            print(
                f"{name:34} {design:10} {s.states:>7} {s.distinct:>8} {s.mounts:>6} {dt:>8.2f} {s.distinct / dt:>9,.0f}"
            )
    print(
        f"\ntotal: {total.distinct} distinct states ({total.states} enumerated, {total.mounts} mounts) "
        f"in {wall:.2f} s: {total.distinct / wall:,.0f} distinct states judged per second"
    )
    rest = wall - (total.t_exec + total.t_image + total.t_mount + total.t_oracles)
    print(
        "time: "
        + ", ".join(
            f"{k} {v / wall:.0%}"
            for k, v in (
                ("execution", total.t_exec),
                ("state enumeration + images", total.t_image + rest),
                ("recovery (mount)", total.t_mount),
                ("oracles", total.t_oracles),
            )
        )
    )


if __name__ == "__main__":
    main()
