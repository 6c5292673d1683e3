"""Crash states judged per second: one process against Dask LocalClusters of 1, 2 and 4 workers.

Every configuration judges the same fixed list of workloads (drawn once from
the seed), cut into the same batches that `pmfuzz run --scheduler` ships; the
time runs from the first batch submitted to the last result back, after one
warm-up batch per worker (imports, the formatted device). The ratios are
against the single process; they cannot exceed the machine's core count.

    python benchmarks/scale_out.py            # the figures in the README
    python benchmarks/scale_out.py --quick    # a smaller run
"""

from __future__ import annotations

import argparse
import os
import time
from concurrent.futures import wait

from pmfuzz.fuzzing.campaign import BatchResult, CampaignConfig, batch_workloads, run_batch
from pmfuzz.fuzzing.distributed import open_scheduler
from pmfuzz.lang.workload import format_workload
from pmfuzz.target import TargetSpec


def fixed_batches(cfg: CampaignConfig, workloads: int) -> list[tuple[str, ...]]:
    texts: list[str] = []
    index = 0
    while len(texts) < workloads:
        texts += [format_workload(w) for w, _ in batch_workloads(cfg, 10_000 + index, ())]
        index += 1
    texts = texts[:workloads]
    return [tuple(texts[i : i + cfg.batch]) for i in range(0, len(texts), cfg.batch)]


def states(results: list[BatchResult]) -> int:
    return sum(e.distinct for r in results for e in r.execs)


def one_process(cfg: CampaignConfig, batches: list[tuple[str, ...]]) -> tuple[float, int]:
    run_batch(cfg, 0, (), batches[0][:1])
    t0 = time.perf_counter()
    results = [run_batch(cfg, i, (), todo) for i, todo in enumerate(batches)]
    return time.perf_counter() - t0, states(results)


def cluster(cfg: CampaignConfig, batches: list[tuple[str, ...]], workers: int) -> tuple[float, int]:
    with open_scheduler(f"local:{workers}") as runner:
        runner.client.wait_for_workers(workers)
        warm = [runner.submit(run_batch, cfg, 0, (), batches[0][:1]) for _ in range(workers)]
        wait(warm)
        t0 = time.perf_counter()
        futures = [runner.submit(run_batch, cfg, i, (), todo) for i, todo in enumerate(batches)]
        results = [f.result() for f in futures]
        return time.perf_counter() - t0, states(results)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer workloads (a smoke run)")
    ap.add_argument("--workloads", type=int, default=128)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    n = 32 if args.quick else args.workloads
    cfg = CampaignConfig(target=TargetSpec("daxfs", (("design", "unwritten"),)), seed=args.seed, batch=args.batch)
    batches = fixed_batches(cfg, n)
    cores = os.cpu_count() or 1
    start = os.getloadavg()[0]
    print(
        f"{n} workloads in {len(batches)} batches of {args.batch}, daxfs design=unwritten, seed {args.seed}; "
        f"this machine has {cores} cores (load average {start:.1f} at start)"
    )
    rows = [("one process (no Dask)", *one_process(cfg, batches))]
    for w in (1, 2, 4):
        rows.append((f"LocalCluster, {w} worker{'s' if w > 1 else ''}", *cluster(cfg, batches, w)))
    base = rows[0][2] / rows[0][1]
    print(f"{'configuration':28} {'seconds':>8} {'states':>8} {'states/s':>9} {'vs one process':>15}")
    for name, secs, total in rows:
        rate = total / secs
        print(f"{name:28} {secs:8.1f} {total:8d} {rate:9.0f} {rate / base:14.2f}x")
    if len({total for _, _, total in rows}) != 1:
        raise SystemExit("the configurations judged different numbers of states: not the same work")
    if cores < 4:
        print(f"note: with {cores} cores, more than {cores} workers can only share them")
    load = os.getloadavg()[0]
    if max(load, start) > cores / 2:
        print(f"note: other work kept the machine busy (load average {start:.1f} -> {load:.1f}): the ratios are rough")


if __name__ == "__main__":
    main()
