"""A real campaign's speed: execs/s, distinct crash states judged/s, and where the time goes.

Each configuration runs `pmfuzz run` in this process (fixed seed, empty corpus, one core) for
`--seconds`, while a profiling timer (SIGPROF, every few milliseconds of the process's CPU time)
reads the campaign thread's stack and files each sample under the phase it is in (a sampling
thread, as before, could only look when the campaign thread let go of the interpreter lock -- a
numpy call on a large array, a lock wait -- and filed a tenth of a campaign under one binary
search; where there is no SIGPROF, no split is printed); generation, execution, schedules (parallel
groups' interleavings and serial orders), reference (the allowed values of a crash point),
enumeration (crash states), images (digests, patching), recovery (mount), oracles, minimizing,
bookkeeping (the rest: corpus, reports, statistics). The first line also says what share of the
states were recalled (`Stats.recalled`: judged clean earlier in the campaign -- in another
schedule of the workload, or in a workload with the same ops before the crash -- with the same
image, window and history up to it, so not judged again). A third line splits the time spent judging
workloads by kind -- plain, race (a parallel group), huge (a 2 MiB mapping or file: the
`hugezero` scenario) -- with each kind's share of the states and its states/s.
`check_speed.py` measures the engine on a fixed workload set; this measures what a user's
campaign gets.

    python benchmarks/campaign_speed.py --seconds 60
    python benchmarks/campaign_speed.py --seconds 30 --only default,cow-remap
    python benchmarks/campaign_speed.py --strategy 256    # states a crash point, as `pmfuzz run --strategy`
"""

from __future__ import annotations

import argparse
import collections
import signal
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from types import FrameType

import pmfuzz.fuzzing.campaign as campaign_module
from pmfuzz.fuzzing.campaign import CampaignConfig, run_campaign
from pmfuzz.judging.recall import Recall
from pmfuzz.lang.workload import PMD_SIZE, Mmap, Parallel, Truncate, Workload
from pmfuzz.target import TargetSpec

CONFIGS: dict[str, tuple[tuple[str, str], ...]] = {
    "default": (),
    "zero": (("design", "zero"),),
    "unwritten": (("design", "unwritten"),),
    "cow-remap": (("design", "cow-remap"),),
}

PHASES = (
    "generation",
    "execution",
    "schedules",
    "reference",
    "enumeration",
    "images",
    "recovery",
    "oracles",
    "minimizing",
    "bookkeeping",
)

_STICKY = {
    "minimize.py": "minimizing",
    "batch_workloads": "generation",
    "guarded_mount": "recovery",
    "map_blocks": "recovery",
    "meta_groups": "enumeration",
}
"""Frames that own everything below them (an oracle's reads of the view are the oracle's time; a mount's
block maps are recovery, the split of a point's groups into metadata and data is enumeration)."""


def _phase(frame: FrameType | None) -> str:
    stack: list[FrameType] = []
    while frame is not None:
        stack.append(frame)
        frame = frame.f_back
    phase = "bookkeeping"
    for f in reversed(stack):
        path, name = f.f_code.co_filename.replace("\\", "/"), f.f_code.co_name
        base = path.rsplit("/", 1)[-1]
        sticky = _STICKY.get(base) or _STICKY.get(name)
        if sticky:
            return sticky
        if name == "_run_oracle":
            return "oracles"
        if "/execution/" in path:
            phase = "schedules" if base in ("interleave.py", "serial.py", "workers.py") else "execution"
        elif "/reference/" in path and phase != "execution":
            phase = "reference"
        elif "/pmem/" in path and phase not in ("execution", "schedules"):
            phase = "images" if name in ("digest", "group_lines", "base_pages", "from_image") else "enumeration"
        elif name == "patch" and "/judging/" in path:
            phase = "images"
    return phase


def in_process(opts: tuple[tuple[str, str], ...], seed: int, crashes: Path, **budget: float) -> CampaignConfig:
    """A quiet campaign from an empty corpus on daxfs, judged in this process (`recycle_after=0`),
    where a sampler or a wrapper of `check` sees it."""
    return CampaignConfig(
        target=TargetSpec("daxfs", opts),
        seed=seed,
        corpus=None,
        crashes=crashes,
        quiet=True,
        pictures=False,
        recycle_after=0,
        **budget,
    )


def _kind(w: Workload) -> str:
    def huge(o) -> bool:
        return (isinstance(o, Mmap) and o.len >= PMD_SIZE) or (isinstance(o, Truncate) and o.size >= PMD_SIZE)

    if any(huge(o) for o in w.ops):
        return "huge"
    return "race" if any(isinstance(o, Parallel) for o in w.ops) else "plain"


def measure(
    name: str, opts: tuple[tuple[str, str], ...], seconds: float, seed: int, period: float, strategy: int | None = None
) -> None:
    counts: collections.Counter[str] = collections.Counter()
    kinds: dict[str, list[float]] = {k: [0, 0.0, 0] for k in ("plain", "race", "huge")}
    recalled = [0]
    check = campaign_module.check

    def timed(target, w, options, **kw):  # the campaign's own call, timed per workload kind
        t = time.perf_counter()
        v = check(target, w, options, **kw)
        k = kinds[_kind(w)]
        k[0] += 1
        k[1] += time.perf_counter() - t
        k[2] += v.stats.distinct
        recalled[0] += v.stats.recalled
        return v

    def on_prof(signum: int, frame: FrameType | None) -> None:
        counts[_phase(frame)] += 1

    profiling = hasattr(signal, "SIGPROF")
    with tempfile.TemporaryDirectory() as tmp:
        cfg = in_process(opts, seed, Path(tmp), seconds=seconds)
        if strategy is not None:
            cfg = replace(cfg, max_states=strategy)
        t0 = time.perf_counter()
        if profiling:
            before = signal.signal(signal.SIGPROF, on_prof)
            signal.setitimer(signal.ITIMER_PROF, period, period)
        campaign_module.check = timed
        campaign_module._RECALL = Recall()  # each configuration as its own campaign process starts
        try:
            s = run_campaign(cfg, out=open("/dev/null", "w"))  # noqa: SIM115 (closed with the process)
        finally:
            campaign_module.check = check
        wall = time.perf_counter() - t0
        if profiling:
            signal.setitimer(signal.ITIMER_PROF, 0)
            signal.signal(signal.SIGPROF, before)
    total = sum(counts.values()) or 1
    split = "  ".join(f"{p} {100 * counts[p] / total:.0f}%" for p in PHASES if counts[p])
    print(
        f"{name:10} {s.execs:6d} execs {s.execs / wall:6.1f}/s {s.states:9,d} states {s.states / wall:7.0f}/s"
        f"  {len(s.findings)} findings  ({100 * recalled[0] / max(1, s.states):.0f}% of the states recalled clean"
        " from an earlier schedule, not judged again)",
        flush=True,
    )
    print(f"{'':10} {split if profiling else 'no split: this platform has no profiling timer (SIGPROF)'}", flush=True)
    spent = sum(k[1] for k in kinds.values()) or 1.0
    states = sum(k[2] for k in kinds.values()) or 1
    by_kind = "  ".join(
        f"{k} {n:.0f} execs, {100 * t / spent:.0f}% of the time, {100 * d / states:.0f}% of the states, {d / t:,.0f}/s"
        for k, (n, t, d) in kinds.items()
        if n
    )
    print(f"{'':10} {by_kind}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--only", default=",".join(CONFIGS), help=f"configurations ({', '.join(CONFIGS)})")
    ap.add_argument("--period", type=float, default=0.005, help="CPU seconds between stack samples")
    ap.add_argument("--strategy", type=int, help="crash states judged a crash point (default: the campaign's)")
    args = ap.parse_args()
    if args.strategy is not None and args.strategy < 1:
        ap.error(f"--strategy must be at least 1, got {args.strategy}")
    for name in args.only.split(","):
        if name not in CONFIGS:
            ap.error(f"unknown configuration {name!r} (known: {', '.join(CONFIGS)})")
        measure(name, CONFIGS[name], args.seconds, args.seed, args.period, args.strategy)


if __name__ == "__main__":
    main()
