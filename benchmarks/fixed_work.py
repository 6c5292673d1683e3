"""Fixed work: the workloads a campaign's first N execs judge, replayed, in CPU seconds by kind.

A campaign's states/s moves with the host and with what it draws; this holds the draw fixed.
`--save` records (as JSON: seed, execs, and per workload its kind, text and target variant) the
workloads the first `--execs` of `pmfuzz run --no-corpus --seed S` judge; `--load` replays a
recording with the campaign's options, so two versions of the code can be compared on the same
work (alternate them: this host varies by 10-25% between runs). The workloads are judged in
their recorded order sharing one `Recall`, as the campaign's judging process does (`--kind`
leaves the other kinds out, and with them what they would have added to it). Each kind --
plain, race (a parallel group), huge (a 2 MiB mapping or file) -- is printed with its
workloads, CPU seconds, distinct crash states, states/s and the share recalled; race also with
its executions and distinct runs.

    python benchmarks/fixed_work.py --seed 3 --execs 300 --save /tmp/ws3.json
    python benchmarks/fixed_work.py --load /tmp/ws3.json --kind race
    python benchmarks/fixed_work.py --load /tmp/ws3.json --strategy 48   # 48 states a point (`pmfuzz run --strategy`)

Timing on a shared host moves more than a small change does; instruction counts do not. For an
A/B of a few per cent, count both versions' instructions on the first workloads of a recording:

    valgrind --tool=callgrind --callgrind-out-file=/dev/null \
        python benchmarks/fixed_work.py --load /tmp/ws1.json --first 60   # "I refs" on stderr
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import pmfuzz.fuzzing.campaign as campaign_module
import pmfuzz.judging.engine as engine
from pmfuzz.errors import PmfuzzError
from pmfuzz.fuzzing.campaign import run_campaign
from pmfuzz.fuzzing.reporting import campaign_options
from pmfuzz.judging.recall import Recall
from pmfuzz.lang.workload import format_workload, parse
from pmfuzz.target import TargetSpec, make_target
from pmfuzz.verdict import Options

sys.path.insert(0, str(Path(__file__).resolve().parent))
from campaign_speed import _kind, in_process

KINDS = ("plain", "race", "huge")
SPEC = TargetSpec("daxfs", ())


def options(seed: int) -> Options:
    """The options every workload of the recorded campaign was judged with."""
    return campaign_options(in_process(SPEC.options, seed, Path(".")))


def record(seed: int, execs: int) -> list[tuple[str, str, dict[str, str]]]:
    """(kind, workload text, target variant) of every workload the campaign judged."""
    out: list[tuple[str, str, dict[str, str]]] = []
    check, make = campaign_module.check, campaign_module.make_target
    last: dict[str, str] = {}
    want = options(seed)

    def making(spec, **variant):
        last.clear()
        last.update(variant)
        return make(spec, **variant)

    def checking(target, w, opts, **kw):
        assert opts == want, "the campaign judged with options a replay would not rebuild"
        out.append((_kind(w), format_workload(w), dict(last)))
        return check(target, w, opts, **kw)

    campaign_module.check, campaign_module.make_target = checking, making
    try:
        with tempfile.TemporaryDirectory() as tmp:
            cfg = in_process(SPEC.options, seed, Path(tmp), max_execs=execs)
            run_campaign(cfg, out=open("/dev/null", "w"))  # noqa: SIM115 (closed with the process)
    finally:
        campaign_module.check, campaign_module.make_target = check, make
    return out


def replay(recorded: list[tuple[str, str, dict[str, str]]], opts: Options, kinds: tuple[str, ...]) -> None:
    """Judge the recorded workloads of `kinds` in their recorded order, sharing one `Recall` as the
    campaign's judging process does; print each kind's CPU time, states and recalled share."""
    counted: collections.Counter[tuple[str, str]] = collections.Counter()
    execute, judged = engine.execute, engine._judged
    kind = ""

    def counting(fn, name):
        def wrapper(*a, **k):
            counted[kind, name] += 1
            return fn(*a, **k)

        return wrapper

    engine.execute, engine._judged = counting(execute, "executions"), counting(judged, "runs")
    recall = Recall()
    try:
        for kind, text, var in recorded:
            if kind not in kinds:
                continue
            w = parse(text)
            t = time.process_time()
            v = engine.check(make_target(SPEC, **var), w, opts, recall=recall)
            counted[kind, "cpu"] += time.process_time() - t
            counted[kind, "workloads"] += 1
            counted[kind, "states"] += v.stats.distinct
            counted[kind, "recalled"] += v.stats.recalled
    finally:
        engine.execute, engine._judged = execute, judged
    for kind in kinds:
        n, cpu, states = counted[kind, "workloads"], counted[kind, "cpu"], counted[kind, "states"]
        if not n:
            continue
        runs = f"  {counted[kind, 'executions']:,} executions, {counted[kind, 'runs']:,} distinct runs"
        print(
            f"{kind:6} {n:4d} workloads {cpu:7.2f} s {states:8,d} states {states / cpu:7,.0f}/s"
            f"  {100 * counted[kind, 'recalled'] / max(1, states):3.0f}% recalled" + (runs if kind == "race" else "")
        )


def load(path: Path) -> tuple[int, list[tuple[str, str, dict[str, str]]]]:
    """A recording's seed and workloads; ValueError (one line) when it is not one."""
    try:
        doc = json.loads(path.read_text())
        seed, rows = doc["seed"], doc["workloads"]
        recorded = [(str(k), str(text), {str(a): str(b) for a, b in var.items()}) for k, text, var in rows]
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise ValueError(f"cannot read the recording {path}: {type(e).__name__}: {e}") from None
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ValueError(f"cannot read the recording {path}: seed {seed!r} is not an integer")
    if bad := [k for k, _t, _v in recorded if k not in KINDS]:
        raise ValueError(f"cannot read the recording {path}: unknown kind {bad[0]!r}")
    return seed, recorded


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--execs", type=int, default=300)
    ap.add_argument("--save", type=Path, help="record the workloads here (JSON; and replay them)")
    ap.add_argument("--load", type=Path, help="replay a recording instead of recording")
    ap.add_argument("--kind", default=",".join(KINDS), help=f"kinds to replay ({', '.join(KINDS)})")
    ap.add_argument("--first", type=int, help="replay only the first N recorded workloads")
    ap.add_argument("--strategy", type=int, help="crash states judged a crash point (default: the campaign's)")
    args = ap.parse_args()
    kinds = tuple(args.kind.split(","))
    if bad := [k for k in kinds if k not in KINDS]:
        ap.error(f"unknown kind {bad[0]!r} (known: {', '.join(KINDS)})")
    if args.first is not None and args.first < 1:
        ap.error(f"--first must be at least 1, got {args.first}")
    if args.strategy is not None and args.strategy < 1:
        ap.error(f"--strategy must be at least 1, got {args.strategy}")
    try:
        if args.load:
            seed, recorded = load(args.load)
        else:
            seed, recorded = args.seed, record(args.seed, args.execs)
            if args.save:
                args.save.write_text(json.dumps({"seed": seed, "execs": args.execs, "workloads": recorded}))
        opts = options(seed)
        if args.strategy is not None:
            opts = replace(opts, max_states=args.strategy, exhaustive_upto=args.strategy)
        replay(recorded[: args.first], opts, kinds)
    except (ValueError, PmfuzzError) as e:
        ap.exit(2, f"fixed_work.py: error: {e}\n")


if __name__ == "__main__":
    main()
