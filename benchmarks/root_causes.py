"""How many findings one bug makes: root causes (what a campaign now reports) against signatures (crash sites).

Per zoo bug: a native campaign from an empty corpus until the first finding of the bug's oracle,
then `--extra` seconds more on the same corpus and crashes directory (a second seed); the table
gives the root causes the campaign filed and the distinct signatures they were seen under (what
it reported before grouping by cause). Goal: one root cause per bug, never more than two.

Then campaigns with several bugs on at once (`--mix`): every root cause's reproducer is replayed
with each of the bugs alone (`replay --against`); a cause must reproduce, as that cause, under
exactly one bug (goal: groups = bugs, none missed, none mixed). Where the finding shows alone
under another bug with that bug's own cause, the line says so: that bug has its own group.

    python benchmarks/root_causes.py --jobs 2                        # every bug, 120 s after the first finding
    python benchmarks/root_causes.py --bugs no-zero,fsync-no-flush --extra 30
    python benchmarks/root_causes.py --bugs "" --mix zero-after-commit,fsync-no-flush,cow-remap-before-copy
    python benchmarks/root_causes.py --bugs no-zero --keep /tmp/groups   # keep the reproducers to read
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import tempfile
import time
from pathlib import Path

from pmfuzz.fs import BUG_ORACLE, Bug
from pmfuzz.fuzzing.campaign import CampaignConfig, run_campaign
from pmfuzz.fuzzing.replaying import load_reproducer, replay_against
from pmfuzz.target import TargetSpec

DESIGN_OF = {Bug.CONVERT_BEFORE_PERSIST: "unwritten"}


def _cfg(opts: tuple[tuple[str, str], ...], seed: int, seconds: float, tmp: Path, stop_on: str | None):
    return CampaignConfig(
        target=TargetSpec("daxfs", opts),
        seed=seed,
        seconds=seconds,
        corpus=tmp / "corpus",
        crashes=tmp / "crashes",
        quiet=True,
        stop_on=stop_on,
        pictures=False,
    )


def _workdir(keep: str | None, name: str):
    """A campaign's corpus and crashes: kept under `keep`/NAME when asked (to read the reproducers), else temporary."""
    if keep is None:
        return tempfile.TemporaryDirectory()
    path = Path(keep) / name
    path.mkdir(parents=True, exist_ok=False)
    return contextlib.nullcontext(str(path))


def one_bug(args: tuple[str, int, float, float, str | None]) -> dict:
    name, seed, cap, extra, keep = args
    bug = Bug(name)
    opts = (("design", DESIGN_OF.get(bug, "zero")), ("bugs", bug.value))
    with _workdir(keep, name) as d:
        tmp = Path(d)
        t0 = time.time()
        first = run_campaign(_cfg(opts, seed, cap, tmp, BUG_ORACLE[bug])).first_hit
        if first is not None:
            run_campaign(_cfg(opts, seed + 1000, extra, tmp, None))
        index = json.loads((tmp / "crashes" / "findings.json").read_text()) if first is not None else {}
        sigs = {s for e in index.values() for s in e.get("signatures", ())}
        return {
            "bug": name,
            "oracle": BUG_ORACLE[bug],
            "first": first,
            "causes": sorted(index),
            "signatures": len(sigs),
            "seconds": time.time() - t0,
        }


def mixed(bugs: list[Bug], design: str, seed: int, seconds: float, keep: str | None = None) -> None:
    opts = (("design", design), ("bugs", ",".join(b.value for b in bugs)))
    with _workdir(keep, "mix-" + "+".join(b.value for b in bugs)) as d:
        tmp = Path(d)
        run_campaign(_cfg(opts, seed, seconds, tmp, None))
        index = json.loads((tmp / "crashes" / "findings.json").read_text())
        print(f"\n{len(bugs)} bugs on ({', '.join(b.value for b in bugs)}), design {design}, {seconds:.0f} s:")
        per_bug: dict[str, int] = {b.value: 0 for b in bugs}
        mixed_n = 0
        for cause, entry in sorted(index.items()):
            r = load_reproducer(str(tmp / "crashes" / entry["file"]))
            rest = " ".join(f"{k}={v}" for k, v in r.target.options if k != "bugs")
            alone = {b.value: replay_against(r, f"daxfs {rest} bugs={b.value}") for b in bugs}
            under = [b for b, a in alone.items() if a.still and a.same_cause]
            other = [b for b, a in alone.items() if a.still and not a.same_cause]
            for b in under:
                per_bug[b] += 1
            mixed_n += len(under) != 1
            also = f"  (the finding, another cause, under: {', '.join(other)})" if other else ""
            print(f"  {cause:60} x{entry.get('count', 1):<5} under: {', '.join(under) or 'none alone'}{also}")
        missed = [b for b, n in per_bug.items() if n == 0]
        print(
            f"  groups {len(index)}, bugs {len(bugs)}; causes under more than one bug or none: {mixed_n}; "
            f"bugs with no group: {', '.join(missed) or 'none'}"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bugs", default=",".join(b.value for b in Bug))
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--cap", type=float, default=300.0, help="seconds to wait for the first finding")
    ap.add_argument("--extra", type=float, default=120.0, help="seconds to go on after the first finding")
    ap.add_argument("--jobs", type=int, default=1, help="bugs run at once (one process each)")
    ap.add_argument("--mix", action="append", default=[], help="bugs on at once, comma-separated (repeatable)")
    ap.add_argument("--mix-seconds", type=float, default=180.0)
    ap.add_argument("--mix-design", default="zero")
    ap.add_argument("--keep", metavar="DIR", help="keep each campaign's corpus and crashes under DIR (a new folder)")
    args = ap.parse_args()
    if args.keep is not None and Path(args.keep).exists():
        ap.error(f"--keep {args.keep}: exists; give a new folder")
    names = [b for b in args.bugs.split(",") if b] + ["+".join(m.split(",")) for m in args.mix]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        ap.error(f"--bugs/--mix name {', '.join(twice)} more than once; each campaign runs once")
    bad = sorted({b for n in names for b in n.split("+")} - {b.value for b in Bug})
    if bad:
        ap.error(f"no zoo bug named {', '.join(bad)} (see `pmfuzz bugs`)")
    todo = [(b, args.seed, args.cap, args.extra, args.keep) for b in args.bugs.split(",") if b]
    if todo:
        print(f"{'bug':30} {'oracle':15} {'first s':>8} {'causes':>6} {'sigs':>5}  causes")
        with multiprocessing.get_context("spawn").Pool(max(1, args.jobs)) as pool:
            for row in pool.imap(one_bug, todo):
                first = f"{row['first']:8.1f}" if row["first"] is not None else f"{'>' + str(int(args.cap)):>8}"
                n, shown = len(row["causes"]), "  ".join(row["causes"])
                print(f"{row['bug']:30} {row['oracle']:15} {first} {n:6d} {row['signatures']:5d}  {shown}", flush=True)
    for mix in args.mix:
        mixed([Bug(b) for b in mix.split(",")], args.mix_design, args.seed, args.mix_seconds, args.keep)


if __name__ == "__main__":
    main()
