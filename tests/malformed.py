"""Malformed inputs for pmfuzz's parsers and commands: mutated corpus files and damaged text forms.

Reproducers, corpora and traces travel between people and machines, so pmfuzz
must meet a damaged or hostile file with one short error line and exit 2 --
never a traceback, a hang, an abort, exhausted memory, or a finding made of
its own errors. This module makes such files (each a few mutations of a real
corpus file or trace) and runs `replay`, `minimize`, `regress` and `trace
check` on them in this process, judging every outcome.

It runs as a child process, so that a memory cap (RLIMIT_AS) and a hang
guard (faulthandler, which kills the process and prints every stack) apply to
pmfuzz and not to the test runner:

    python -m tests.malformed --examples 40          # hypothesis drives the mutations; first failure shrinks
    python -m tests.malformed --variants 10000 --seed 1   # a plain seeded loop that counts every outcome

`tests/test_malformed_inputs.py` runs the first in CI; `benchmarks/malformed_inputs.py` the second.
"""

from __future__ import annotations

import argparse
import contextlib
import enum
import faulthandler
import io
import json
import os
import random
import re
import resource
import shutil
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MEMORY_CAP = 3 << 30
"""Address space of the child: well above what one valid replay of the corpus needs (about 0.6 GiB
with a 256 MiB device), far below what the unbounded sizes of issue #15 asked for (5.5 to 293 GB)."""
HANG_SECONDS = 300
"""One command running longer than this is a hang: the process is killed with every stack printed.
A guard against running forever, not a speed requirement (valid variants take a second or less)."""


class Command(enum.StrEnum):
    REPLAY = "replay"
    MINIMIZE = "minimize"
    REGRESS = "regress"
    TRACE_CHECK = "trace check"


class Kind(enum.StrEnum):
    REPRODUCER = "reproducer"
    PMEMCHECK = "pmemcheck"
    JSONL = "jsonl"


@dataclass(frozen=True)
class Case:
    """One variant: what it was made from, how, and the bytes of the file (or a FIFO in its place)."""

    command: Command
    kind: Kind
    origin: str
    mutations: tuple[str, ...]
    data: bytes
    fifo: bool = False


@dataclass(frozen=True)
class Outcome:
    case: Case
    code: int
    stdout: str
    stderr: str
    seconds: float
    problem: str | None = None
    accepted: bool = field(default=False)
    """The file parsed (exit 0 or 1): a valid variant, replayed like any other."""


# -- sources -------------------------------------------------------------------------------------


def reproducer_sources() -> list[tuple[str, str]]:
    files = sorted((ROOT / "corpora" / "regression").glob("*.pmfuzz")) + sorted(
        (ROOT / "tests" / "golden").glob("*.pmfuzz")
    )
    seeds = sorted((ROOT / "corpora" / "seeds").glob("*.pmfuzz"))[::25]
    return [(str(p.relative_to(ROOT)), p.read_text()) for p in files + seeds]


def trace_sources() -> list[tuple[str, Kind, str]]:
    from pmfuzz.traces import format_jsonl, parse_pmemcheck

    out = []
    for p in sorted((ROOT / "tests" / "data" / "traces").glob("*.log")):
        text = p.read_text()
        out.append((str(p.relative_to(ROOT)), Kind.PMEMCHECK, text))
        out.append((str(p.relative_to(ROOT)) + " as jsonl", Kind.JSONL, format_jsonl(parse_pmemcheck(text))))
    return out


# -- mutations -----------------------------------------------------------------------------------

NUMBERS = (
    "0", "00", "010", "08", "-1", "1e3", "0x", "0x10", "0xFFFFFFFFFFFFFFFFFFFF", "9" * 5000, "18446744073709551616",
    "4096", "8388608", "8388609", "1073741823", "4G", "3M", "١٢", "1_000", "+4", "٣K", "1.5", "99999999999",
)  # fmt: skip
HEADERS = {
    "device": ("0", "1", "12345", "64K", "4G", "8M", "1M", "64M", "99999999999999999999", "-8M", "", "08M", "8 M"),
    "schedule": ("3=1x300000000", "3=1x99999999999", "x", "0=5", "3=1,0x4,1", "3=" + "1," * 5000 + "0", "-"),
    "crash": ("F99999999999", "F3:L0=1", "F3:L99999999999=1", "E:Lx=1", "Z", "F3:", "E", "F0:L0=x" + "f" * 300),
    "target": (
        "os:system command=touch_pwned",
        "sys:exit",
        "nosuch",
        "daxfs design=nope",
        "daxfs bugs=zero-after-commit",
        "daxfs locks=range",
        "daxfs design",
        "daxfs " + "k=v " * 2000,
        "builtins:open file=x mode=w",
        "",
    ),
    "domain": ("adr", "eadr", "pmem", ""),
    "eadr-points": ("ops", "stores", "all"),
    "expect": ("clean", "stale-exposure", "clean, mount", "nonsense", ""),
    "signature": ("x" * 10000, "a:b:c"),
    "note": ("", "n" * 5000),
    "bogus-key": ("1",),
}
OPS = (
    "write f0 0 1073741823", "write f0 010 8", "truncate f0 99999999999", "store m0 0 1G", "dma m0 0 8388609",
    "parallel { write f0 0 1 ; parallel { read f0 0 1 ; sync } }", "parallel { sync ; sync ; sync ; sync }",
    "parallel { sync }", "parallel {", "fault m0 99999999 write pmd", "reflink f0 f1 0 0", "mmap m9 f0 0 4096",
    "write f0 0 4096 from m0 99999999999", "madvise m0 willneed", "pin m0 0", "unpin m0 0", "create f8", "frobnicate",
    "write f0 0", "create f0 extra", "write f0 0 4096 from", "fallocate f0 0 0", "sync sync",
)  # fmt: skip
CHARS = "0123456789 \t#:=,;{}xfm-\x00\x7f\u2028\u00a0٣\ufeffé\\\"'|"


def mutate_reproducer(rng: random.Random, text: str) -> tuple[str, str]:
    lines = text.splitlines()
    which = rng.randrange(12)
    if which == 0 and lines:
        i = rng.randrange(len(lines))
        toks = list(re.finditer(r"0x[0-9a-fA-F]+|\d+[KMG]?", lines[i]))
        if toks:
            m = rng.choice(toks)
            v = rng.choice(NUMBERS)
            lines[i] = lines[i][: m.start()] + v + lines[i][m.end() :]
            return "\n".join(lines) + "\n", f"number {m.group()}->{v[:20]} on line {i + 1}"
    if which <= 2:
        key = rng.choice(sorted(HEADERS))
        value = rng.choice(HEADERS[key])
        hdr = [i for i, ln in enumerate(lines) if ln.lower().startswith(f"# {key}:")]
        new = f"# {key}: {value}"
        if hdr:
            lines[hdr[0]] = new
        else:
            at = 1 if lines and lines[0].startswith("# pmfuzz reproducer") else 0
            lines.insert(at, new)
        return "\n".join(lines) + "\n", f"header {key}: {value[:30]}"
    if which == 3:
        lines = [ln for ln in lines if not ln.startswith("# pmfuzz reproducer")]
        return "\n".join(lines) + "\n", "no version line"
    if which == 4 and len(lines) > 2:
        hdr = [i for i, ln in enumerate(lines[1:], 1) if ln.startswith("# ") and ":" in ln]
        if hdr:
            i = rng.choice(hdr)
            moved = lines.pop(i)
            lines.insert(rng.choice((0, len(lines))), moved)
            return "\n".join(lines) + "\n", f"header line {i + 1} moved"
    if which == 5:
        op = rng.choice(OPS)
        lines.insert(rng.randrange(len(lines) + 1), op)
        return "\n".join(lines) + "\n", f"op {op[:30]}"
    if which == 6 and lines:
        i = rng.randrange(len(lines))
        op = rng.choice(("delete", "duplicate", "swap"))
        if op == "delete":
            del lines[i]
        elif op == "duplicate":
            lines.insert(i, lines[i])
        else:
            j = rng.randrange(len(lines))
            lines[i], lines[j] = lines[j], lines[i]
        return "\n".join(lines) + "\n", f"{op} line {i + 1}"
    if which == 7:
        return _flip(rng, text)
    if which == 8:
        return text[: rng.randrange(len(text) + 1)], "truncated"
    if which == 9:
        big = rng.choice(("x" * 200_000, "write f0 0 " + "9" * 100_000, "create f0\n" * 4100, "#" * 300_000))
        return text + big + "\n", f"big: {big[:15]!r}... ({len(big)} chars)"
    if which == 10:
        return text.replace("\n", rng.choice(("\r\n", "\r", "\u2028", "\x0b"))), "line separators"
    return text + rng.choice(OPS) + "\n", "op at the end"


def _flip(rng: random.Random, text: str) -> tuple[str, str]:
    if not text:
        return rng.choice(CHARS), "one char"
    i = rng.randrange(len(text))
    c = rng.choice(CHARS)
    return text[:i] + c + text[i + 1 :], f"char {i} -> {c!r}"


PM_FIELDS = ("", "zz", "-1", "0x", "0x" + "f" * 20, "0x4400000000", "0xffffffffffffffff", "0x1", "0x1000", "1" * 5000)


def mutate_pmemcheck(rng: random.Random, text: str) -> tuple[str, str]:
    recs = text.split("|")
    which = rng.randrange(7)
    if which <= 2:
        i = rng.randrange(len(recs))
        fields = recs[i].split(";")
        if len(fields) > 1:
            j = rng.randrange(1, len(fields))
            fields[j] = rng.choice(PM_FIELDS)
            recs[i] = ";".join(fields)
            return "|".join(recs), f"record {i} field {j} -> {fields[j][:20]}"
    if which == 3:
        hexes = list(re.finditer(r"[0-9a-f]", text))
        if hexes:
            m = rng.choice(hexes)
            c = rng.choice("0123456789abcdef")
            return text[: m.start()] + c + text[m.end() :], f"hex digit at {m.start()} -> {c}"
    if which == 4:
        rec = rng.choice(("STOP", "START", "FENCE", "A.BEGIN", "A.END", "FLUSH;0x0", "STORE;1;2", "NOPE", "", "X.END"))
        recs.insert(rng.randrange(len(recs) + 1), rec)
        return "|".join(recs), f"record {rec!r} inserted"
    if which == 5:
        i = rng.randrange(len(recs))
        del recs[i]
        return "|".join(recs), f"record {i} deleted"
    return _flip(rng, text)


JSON_VALUES = (
    "-1",
    "1e400",
    "1.5",
    "true",
    "null",
    '"0x"',
    '"zz"',
    '"0x' + "f" * 20 + '"',
    "1" + "0" * 5000,
    '"' + "a" * 5000 + '"',
    "[" * 100_000 + "]" * 100_000,
    "{}",
    '"0x4400000000"',
    "18446744073709551616",
    "4294967296",
    '"١٢"',
)


def mutate_jsonl(rng: random.Random, text: str) -> tuple[str, str]:
    lines = text.splitlines()
    which = rng.randrange(6)
    if which <= 2 and lines:
        i = rng.randrange(len(lines))
        keys = list(re.finditer(r'"(addr|size|data|name|event)": ("[^"]*"|[^,}]+)', lines[i]))
        if keys:
            m = rng.choice(keys)
            v = rng.choice(JSON_VALUES)
            lines[i] = lines[i][: m.start(2)] + v + lines[i][m.end(2) :]
            return "\n".join(lines) + "\n", f"line {i + 1} {m.group(1)} -> {v[:20]}"
    if which == 3:
        deep = rng.choice(("[" * 100_000, "{" + '"a":{' * 50_000, '{"event": ' + "[" * 3000 + "]" * 3000 + "}"))
        lines.insert(rng.randrange(len(lines) + 1), deep)
        return "\n".join(lines) + "\n", "deeply nested JSON"
    if which == 4 and lines:
        i = rng.randrange(len(lines))
        del lines[i]
        return "\n".join(lines) + "\n", f"line {i + 1} deleted"
    return _flip(rng, text)


def make_case(rng: random.Random, repro: list[tuple[str, str]], traces: list[tuple[str, Kind, str]]) -> Case:
    """A variant: 1 to 3 mutations of one source, for one command (a FIFO in its place now and then)."""
    if rng.random() < 0.25:
        origin, kind, text = rng.choice(traces)
        command = Command.TRACE_CHECK
        mut = mutate_pmemcheck if kind is Kind.PMEMCHECK else mutate_jsonl
    else:
        origin, text = rng.choice(repro)
        kind = Kind.REPRODUCER
        command = rng.choice((Command.REPLAY, Command.REPLAY, Command.MINIMIZE, Command.REGRESS))
        mut = mutate_reproducer
    done = []
    for _ in range(rng.choice((1, 1, 2, 3))):
        text, what = mut(rng, text)
        done.append(what)
    data = text.encode("utf-8", errors="surrogatepass")
    if rng.random() < 0.03:
        data = data[:10] + b"\xff\xfe\xc3" + data[10:]
        done.append("invalid UTF-8")
    return Case(command, kind, origin, tuple(done), data, fifo=rng.random() < 0.01)


# -- running -------------------------------------------------------------------------------------


def consistent(image: memoryview) -> bool:
    """The trace checker of these runs: every image is fine (the parsers and the replay are under test)."""
    return True


def run_case(case: Case, work: Path) -> Outcome:
    """Run the command on the case's file in this process and judge the outcome."""
    from pmfuzz.cli import main

    for p in work.iterdir():
        shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
    suffix = {Kind.REPRODUCER: ".pmfuzz", Kind.PMEMCHECK: ".log", Kind.JSONL: ".jsonl"}[case.kind]
    if case.command is Command.REGRESS:
        (work / "dir").mkdir()
        path = work / "dir" / f"case{suffix}"
    else:
        path = work / f"case{suffix}"
    if case.fifo:
        os.mkfifo(path)
    else:
        path.write_bytes(case.data)
    argv = {
        Command.REPLAY: ["replay", str(path)],
        Command.MINIMIZE: ["minimize", str(path), "--checks", "4", "--seconds", "5", "-o", str(work / "min.pmfuzz")],
        Command.REGRESS: ["regress", str(work / "dir")],
        Command.TRACE_CHECK: [
            "trace",
            "check",
            str(path),
            "--checker",
            "tests.malformed:consistent",
            "--max-states",
            "64",
        ],
    }[case.command]
    out, err = io.StringIO(), io.StringIO()
    t0 = time.monotonic()
    code = 0
    escaped = None
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main(argv)
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 2)
        except BaseException as e:  # anything else escaping main() would be a traceback
            import traceback

            escaped = "".join(traceback.format_exception(e))
            code = -1
    seconds = time.monotonic() - t0
    o, e = out.getvalue(), err.getvalue()
    return Outcome(case, code, o, e, seconds, _problem(case, code, o, e, escaped), accepted=code in (0, 1))


def _problem(case: Case, code: int, out: str, err: str, escaped: str | None) -> str | None:
    if escaped is not None:
        return "exception escaped main(): " + escaped.strip().splitlines()[-1]
    if "Traceback (most recent call last)" in err or any(ln.startswith("Traceback") for ln in out.splitlines()):
        return "a traceback was printed"  # (a mount finding's report quotes the target's own, indented: allowed)
    allowed = {0, 2} if case.command is Command.TRACE_CHECK else {0, 1, 2}
    if code not in allowed:
        return f"exit status {code}"
    if "BUG in pmfuzz" in out:
        return "regress met a bug of pmfuzz"
    if case.command is Command.REGRESS and code == 2 and not err:
        errors = [ln for ln in out.splitlines() if ln.startswith("ERROR ")]
        if not errors or any(len(ln) > 600 for ln in errors) or "in error, of" not in out:
            return f"regress exit 2 without a short ERROR line and its summary: {out[-300:]!r}"
    elif code == 2:
        lines = err.splitlines()
        if len(lines) != 1 or not lines[0].startswith("pmfuzz: error: ") or len(lines[0]) > 500:
            return f"exit 2 without exactly one short `pmfuzz: error:` line: {err[:300]!r}"
    if re.search(r"\[target-error\]|verdict: .*target-error|got [^)]*target-error", out):
        return "a target-error finding (pmfuzz's own model raised, or pmfuzz's error became a finding)"
    return None


# -- entry points --------------------------------------------------------------------------------


def _cap_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP, MEMORY_CAP))


def _report(o: Outcome) -> str:
    c = o.case
    return json.dumps(
        {
            "problem": o.problem,
            "command": c.command.value,
            "origin": c.origin,
            "mutations": c.mutations,
            "fifo": c.fifo,
            "code": o.code,
            "stderr": o.stderr[-2000:],
            "stdout": o.stdout[-2000:],
            "file_head": c.data[:500].decode("utf-8", errors="replace"),
        },
        indent=1,
    )


def run_hypothesis(examples: int, work: Path, state: Path) -> int:
    """Hypothesis chooses the mutations (through a seeded Random it controls); the first failure is shrunk."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    repro, traces = reproducer_sources(), trace_sources()
    seen: Counter[str] = Counter()

    @settings(
        max_examples=examples,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(st.randoms(use_true_random=False))
    def prop(rng: random.Random) -> None:
        case = make_case(rng, repro, traces)
        state.write_text(json.dumps({"origin": case.origin, "mutations": case.mutations, "command": case.command}))
        faulthandler.dump_traceback_later(HANG_SECONDS, exit=True)
        try:
            o = run_case(case, work)
        finally:
            faulthandler.cancel_dump_traceback_later()
        seen[f"{case.command.value} {'accepted' if o.accepted else 'rejected'}"] += 1
        assert o.problem is None, _report(o)

    try:
        prop()
    except AssertionError as e:
        print(str(e), file=sys.stderr)
        return 1
    print(json.dumps({"examples": sum(seen.values()), "outcomes": dict(sorted(seen.items()))}))
    return 0


def run_plain(variants: int, seed: int, work: Path, state: Path) -> int:
    """A seeded loop over `variants` cases that counts every outcome (for the benchmark)."""
    repro, traces = reproducer_sources(), trace_sources()
    seen: Counter[str] = Counter()
    problems: list[str] = []
    slowest: list[tuple[float, str]] = []
    t0 = time.monotonic()
    for i in range(variants):
        rng = random.Random(f"{seed}/{i}")
        case = make_case(rng, repro, traces)
        state.write_text(
            json.dumps({"i": i, "origin": case.origin, "mutations": case.mutations, "command": case.command})
        )
        faulthandler.dump_traceback_later(HANG_SECONDS, exit=True)
        o = run_case(case, work)
        faulthandler.cancel_dump_traceback_later()
        seen[f"{case.command.value} {'accepted' if o.accepted else 'rejected'}"] += 1
        slowest = sorted([*slowest, (o.seconds, f"{case.command.value} {case.origin} {list(case.mutations)}")])[-5:]
        if o.problem is not None:
            problems.append(_report(o))
    print(
        json.dumps(
            {
                "variants": variants,
                "seed": seed,
                "seconds": round(time.monotonic() - t0, 1),
                "outcomes": dict(sorted(seen.items())),
                "problems": len(problems),
                "max_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
                "slowest": [[round(s, 2), what] for s, what in slowest],
            },
            indent=1,
        )
    )
    for p in problems[:20]:
        print(p, file=sys.stderr)
    return 1 if problems else 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--examples", type=int, help="hypothesis examples (stops at the first failure)")
    ap.add_argument("--variants", type=int, help="a plain seeded loop over this many variants, counting outcomes")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--state", type=Path, help="where the case being run is written (read it after a hang or abort)")
    args = ap.parse_args(argv)
    _cap_memory()
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    sys.path.insert(0, str(ROOT))  # the trace checker is `tests.malformed:consistent`
    with tempfile.TemporaryDirectory(prefix="pmfuzz-malformed-") as tmp:
        work = Path(tmp) / "work"
        work.mkdir()
        state = args.state or Path(tmp) / "current-case.json"
        os.chdir(tmp)  # minimize's default output and any stray file land here
        if args.variants:
            return run_plain(args.variants, args.seed, work, state)
        return run_hypothesis(args.examples or 40, work, state)


if __name__ == "__main__":
    sys.exit(main())
