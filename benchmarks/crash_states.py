"""Crash-state images built per second, by lines in flight and device size.

Each configuration runs a trace of R rounds; a round stores to N cache lines
spread over the whole device, flushes them and fences, so every fence is a
crash point with N lines in flight. For every point, up to 64 sampled states
are built: the image (overlay + content hash) and a mountable device over it.
The cost per state must not grow with the device size.

    python benchmarks/crash_states.py            # the table in the README
    python benchmarks/crash_states.py --quick    # a smaller run
"""

from __future__ import annotations

import argparse
import time

from pmfuzz.pmem import PMem

MiB = 1 << 20


def trace(size: int, lines: int, rounds: int) -> PMem:
    pm = PMem(size)
    stride = (size // 64) // (lines * rounds + 1)
    n = 0
    for r in range(rounds):
        for i in range(lines):
            addr = (n * stride) * 64
            pm.store(addr, bytes([(r + i) % 250 + 1]) * 64)
            pm.clwb(addr, 64)
            n += 1
        pm.sfence()
    return pm


def measure(size: int, lines: int, rounds: int, per_point: int) -> tuple[float, float, int]:
    pm = trace(size, lines, rounds)
    points = pm.crash_points()
    t0 = time.perf_counter()
    n = 0
    for point in points:
        for state in point.states("sample", seed=1, limit=per_point):
            state.image()
            n += 1
    t1 = time.perf_counter()
    m = 0
    for point in points:
        for state in point.states("sample", seed=1, limit=per_point):
            PMem.from_image(state.image())
            m += 1
    t2 = time.perf_counter()
    return n / (t1 - t0), m / (t2 - t1), n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer rounds (a smoke run)")
    args = ap.parse_args()
    rounds, per_point = (20, 16) if args.quick else (200, 64)
    sizes = [1, 16, 64]
    print(f"crash-state images per second on one core ({rounds} crash points x up to {per_point} states each)")
    print(
        f"{'lines in flight':>16} | "
        + " | ".join(f"{s:>3} MiB image/s  mount/s" for s in sizes)
        + " | 64/1 MiB cost ratio"
    )
    for lines in (1, 4, 8):
        cells = []
        first = last = 0.0
        for s in sizes:
            rate, mount, _ = measure(s * MiB, lines, rounds, per_point)
            cells.append(f"{rate:>15,.0f} {mount:>8,.0f}")
            first = first or rate
            last = rate
        print(f"{lines:>16} | " + " | ".join(cells) + f" | {first / last:>6.2f}x")


if __name__ == "__main__":
    main()
