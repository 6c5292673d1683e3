"""Fixed work: the workloads a campaign's first N execs judge, replayed by kind, in CPU seconds.

A campaign's states/s moves with the host and with what it draws; this holds the draw fixed.
`--save` records the workloads (text, target variant, options) the first `--execs` of `pmfuzz run
--no-corpus --seed S` judge; `--load` replays a recording, so two versions of the code can be
compared on the same work (alternate them: this host varies by 10-25% between runs). Each kind --
plain, race (a parallel group), huge (a 2 MiB mapping or file) -- is printed with its workloads,
CPU seconds, distinct crash states and states/s; race also with its executions and distinct runs.

    python benchmarks/fixed_work.py --seed 3 --execs 300 --save /tmp/ws3.pkl
    python benchmarks/fixed_work.py --load /tmp/ws3.pkl --kind race
"""

from __future__ import annotations

import argparse
import collections
import pickle
import sys
import tempfile
import time
from pathlib import Path

import pmfuzz.fuzzing.campaign as campaign_module
import pmfuzz.judging.engine as engine
from pmfuzz.fuzzing.campaign import run_campaign
from pmfuzz.lang.workload import format_workload, parse
from pmfuzz.target import make_target

sys.path.insert(0, str(Path(__file__).resolve().parent))
from campaign_speed import _kind, in_process

KINDS = ("plain", "race", "huge")


def record(seed: int, execs: int) -> list[tuple]:
    """(kind, workload text, target spec, variant, options) of every workload the campaign judged."""
    out: list[tuple] = []
    check, make = campaign_module.check, campaign_module.make_target
    last: dict[str, tuple] = {}

    def making(spec, **variant):
        last["v"] = (spec, variant)
        return make(spec, **variant)

    def checking(target, w, options):
        out.append((_kind(w), format_workload(w), *last["v"], options))
        return check(target, w, options)

    campaign_module.check, campaign_module.make_target = checking, making
    try:
        with tempfile.TemporaryDirectory() as tmp:
            cfg = in_process((), seed, Path(tmp), max_execs=execs)
            run_campaign(cfg, out=open("/dev/null", "w"))  # noqa: SIM115 (closed with the process)
    finally:
        campaign_module.check, campaign_module.make_target = check, make
    return out


def replay(recorded: list[tuple], kinds: tuple[str, ...]) -> None:
    counted = collections.Counter()
    execute, judged = engine.execute, engine._judged

    def counting(fn, name):
        def wrapper(*a, **k):
            counted[name] += 1
            return fn(*a, **k)

        return wrapper

    engine.execute, engine._judged = counting(execute, "executions"), counting(judged, "runs")
    try:
        for kind in kinds:
            todo = [(parse(text), spec, var, o) for k, text, spec, var, o in recorded if k == kind]
            if not todo:
                continue
            counted.clear()
            distinct = 0
            t = time.process_time()
            for w, spec, var, o in todo:
                distinct += engine.check(make_target(spec, **var), w, o).stats.distinct
            cpu = time.process_time() - t
            runs = f"  {counted['executions']:,} executions, {counted['runs']:,} distinct runs"
            print(
                f"{kind:6} {len(todo):4d} workloads {cpu:7.2f} s {distinct:8,d} states {distinct / cpu:7,.0f}/s"
                + (runs if kind == "race" else "")
            )
    finally:
        engine.execute, engine._judged = execute, judged


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--execs", type=int, default=300)
    ap.add_argument("--save", type=Path, help="record the workloads here (and replay them)")
    ap.add_argument("--load", type=Path, help="replay a recording instead of recording")
    ap.add_argument("--kind", default=",".join(KINDS), help=f"kinds to replay ({', '.join(KINDS)})")
    args = ap.parse_args()
    kinds = tuple(args.kind.split(","))
    if bad := [k for k in kinds if k not in KINDS]:
        ap.error(f"unknown kind {bad[0]!r} (known: {', '.join(KINDS)})")
    if args.load:
        try:
            recorded = pickle.loads(args.load.read_bytes())
        except (OSError, pickle.UnpicklingError, EOFError) as e:
            ap.error(f"cannot read the recording {args.load}: {e}")
    else:
        recorded = record(args.seed, args.execs)
        if args.save:
            args.save.write_bytes(pickle.dumps(recorded))
    replay(recorded, kinds)


if __name__ == "__main__":
    main()
