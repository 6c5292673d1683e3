"""How fast `pmfuzz trace check` gets through every distinct crash image of a pmemcheck log.

Synthetic logs in pmemcheck's format: E epochs, each of K 8-byte stores to K
distinct cache lines, each store flushed, then one FENCE. Every image is
checked in-process by a trivial checker, so the figures are pmfuzz's own
cost: replay, enumeration, digest dedup, laying out the image.

Under Px86 a fence point has 2^K states (each line kept or not); under
pmreorder's ReorderFull each replay point yields ⌊e·K!⌋ sequences, whose
images are the same 2^K subsets. Both columns count images checked once.

    python benchmarks/trace_vs_pmreorder.py            # K = 4, 8, 12; 3 epochs
    python benchmarks/trace_vs_pmreorder.py --quick    # K = 4, 8
    python benchmarks/trace_vs_pmreorder.py --with-program   # also a program checker (/bin/true)
"""

from __future__ import annotations

import argparse
import math
import shutil

from pmfuzz.traces import CheckOptions, PythonChecker, Semantics, check_trace, make_checker, parse_pmemcheck

BASE = 0x7F3A5C000000


def synthetic_log(k: int, epochs: int, pool: int = 1 << 20) -> str:
    """A pmemcheck store log: per epoch, K stores to K lines, each flushed, then a fence."""
    recs = ["START", f"REGISTER_FILE;/mnt/pmem/bench.pool;{BASE:#x};{pool:#x};0x0"]
    n = 0
    for e in range(epochs):
        recs.append(f"EPOCH{e}.BEGIN")
        for i in range(k):
            addr = BASE + 64 * n
            recs.append(f"STORE;{addr:#x};{(e << 32 | i) + 1:#x};0x8")
            recs.append(f"FLUSH;{addr:#x};0x40")
            n += 1
        recs.append("FENCE")
        recs.append(f"EPOCH{e}.END")
    recs.append("STOP\n")
    return "|".join(recs)


def run(k: int, epochs: int, semantics: Semantics, program: str | None = None) -> tuple[int, int, float]:
    trace = parse_pmemcheck(synthetic_log(k, epochs), source=f"k{k}.log")
    checker = make_checker(program) if program else PythonChecker("trivial", lambda image: True, 60)
    try:
        report = check_trace(trace, checker, CheckOptions(semantics=semantics, minimize=False))
    finally:
        checker.close()
    assert report.clean
    return report.states, report.distinct, report.seconds


def full_sequences(k: int) -> int:
    """pmreorder ReorderFull's sequences for K flushed stores: sum over l of K!/(K-l)!."""
    return sum(math.perm(k, n) for n in range(k + 1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="K = 4 and 8 only")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--with-program", action="store_true", help="also time /bin/true as a program checker (K = 4, 8)")
    args = ap.parse_args()
    ks = (4, 8) if args.quick else (4, 8, 12)
    print(f"{args.epochs} epochs of K stores to K lines, each flushed, then a fence; trivial in-process checker")
    print(
        f"{'K':>3} | {'semantics':<21} | {'states':>8} | {'distinct images':>15} | {'seconds':>8} | "
        f"{'images/s':>9} | {'ReorderFull sequences':>21}"
    )
    for k in ks:
        for sem in (Semantics.PX86, Semantics.PMREORDER):
            states, distinct, secs = run(k, args.epochs, sem)
            seqs = full_sequences(k) * args.epochs
            label = "px86 (adr)" if sem is Semantics.PX86 else "pmreorder ReorderFull"
            print(
                f"{k:>3} | {label:<21} | {states:>8,} | {distinct:>15,} | {secs:>8.2f} | "
                f"{distinct / secs:>9,.0f} | {seqs:>21,}"
            )
    if args.with_program:
        true = shutil.which("true") or "/bin/true"
        for k in (4, 8):
            states, distinct, secs = run(k, args.epochs, Semantics.PX86, true)
            print(
                f"{k:>3} | {'px86, program true':<21} | {states:>8,} | {distinct:>15,} | {secs:>8.2f} | "
                f"{distinct / secs:>9,.0f} | {full_sequences(k) * args.epochs:>21,}"
            )


if __name__ == "__main__":
    main()
