"""A real campaign's speed: execs/s, distinct crash states judged/s, and where the time goes.

Each configuration runs `pmfuzz run` in this process (fixed seed, empty corpus, one core) for
`--seconds`, while a sampling thread reads the campaign thread's stack every few milliseconds
and files each sample under the phase it is in: generation, execution, schedules (parallel
groups' interleavings and serial orders), reference (the allowed values of a crash point),
enumeration (crash states), images (digests, patching), recovery (mount), oracles, minimizing,
bookkeeping (the rest: corpus, reports, statistics). `check_speed.py` measures the engine on
a fixed workload set; this measures what a user's campaign gets.

    python benchmarks/campaign_speed.py --seconds 60
    python benchmarks/campaign_speed.py --seconds 30 --only default,cow-remap
"""

from __future__ import annotations

import argparse
import collections
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import FrameType

from pmfuzz.fuzzing.campaign import CampaignConfig, run_campaign
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

_STICKY = {"minimize.py": "minimizing", "batch_workloads": "generation", "guarded_mount": "recovery"}
"""Frames that own everything below them (an oracle's reads of the view are the oracle's time)."""


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
            phase = "schedules" if base in ("interleave.py", "serial.py") else "execution"
        elif "/reference/" in path and phase != "execution":
            phase = "reference"
        elif "/pmem/" in path and phase not in ("execution", "schedules"):
            phase = "images" if name in ("digest", "group_lines", "base_pages", "from_image") else "enumeration"
        elif name == "patch" and "/judging/" in path:
            phase = "images"
    return phase


def measure(name: str, opts: tuple[tuple[str, str], ...], seconds: float, seed: int, period: float) -> None:
    counts: collections.Counter[str] = collections.Counter()
    main = threading.get_ident()
    done = threading.Event()

    def sample() -> None:
        while not done.wait(period):
            counts[_phase(sys._current_frames().get(main))] += 1

    with tempfile.TemporaryDirectory() as tmp:
        cfg = CampaignConfig(
            target=TargetSpec("daxfs", opts),
            seed=seed,
            seconds=seconds,
            corpus=None,
            crashes=Path(tmp),
            quiet=True,
            pictures=False,
        )
        sampler = threading.Thread(target=sample, daemon=True)
        t0 = time.perf_counter()
        sampler.start()
        s = run_campaign(cfg, out=open("/dev/null", "w"))  # noqa: SIM115 (closed with the process)
        wall = time.perf_counter() - t0
        done.set()
        sampler.join()
    total = sum(counts.values()) or 1
    split = "  ".join(f"{p} {100 * counts[p] / total:.0f}%" for p in PHASES if counts[p])
    print(
        f"{name:10} {s.execs:6d} execs {s.execs / wall:6.1f}/s {s.states:9,d} states {s.states / wall:7.0f}/s"
        f"  {len(s.findings)} findings",
        flush=True,
    )
    print(f"{'':10} {split}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--only", default=",".join(CONFIGS), help=f"configurations ({', '.join(CONFIGS)})")
    ap.add_argument("--period", type=float, default=0.005, help="seconds between stack samples")
    args = ap.parse_args()
    for name in args.only.split(","):
        if name not in CONFIGS:
            ap.error(f"unknown configuration {name!r} (known: {', '.join(CONFIGS)})")
        measure(name, CONFIGS[name], args.seconds, args.seed, args.period)


if __name__ == "__main__":
    main()
