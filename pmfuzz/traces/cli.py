"""`pmfuzz trace ...`: check store traces recorded outside pmfuzz (pmemcheck logs, native JSON lines)."""

from __future__ import annotations

import enum
import sys
from typing import TYPE_CHECKING

import click

from ..errors import PmfuzzError
from ..lang.limits import MAX_TRACE_BYTES, MAX_TRACE_DEVICE, read_input, read_input_bytes

if TYPE_CHECKING:
    from .model import Trace

__all__ = ["TraceFormat", "load_trace", "trace"]


class TraceFormat(enum.StrEnum):
    AUTO = "auto"
    PMEMCHECK = "pmemcheck"
    JSONL = "jsonl"


def load_trace(path: str, fmt: TraceFormat | str = TraceFormat.AUTO) -> Trace:
    """Read and parse a trace file; the format is guessed from its content when `fmt` is auto."""
    from .jsonl import parse_jsonl
    from .pmemcheck import parse_pmemcheck

    fmt = TraceFormat(fmt)

    text = read_input(path, MAX_TRACE_BYTES, "trace", errors="surrogateescape")
    if fmt is TraceFormat.AUTO:
        head = text.lstrip()[:1]
        if head in ("{", "#") or path.endswith((".jsonl", ".json")):
            fmt = TraceFormat.JSONL
        elif "START" in text:
            fmt = TraceFormat.PMEMCHECK
        else:
            raise PmfuzzError(
                f"{path}: cannot tell the format (no START record, not JSON lines); give --format pmemcheck or jsonl"
            )
    return parse_jsonl(text, source=path) if fmt is TraceFormat.JSONL else parse_pmemcheck(text, source=path)


@click.group("trace")
def trace() -> None:
    """Crash-check store traces of real programs: pmemcheck logs (as pmreorder reads them) or native JSON lines."""


@trace.command("check")
@click.argument("log", type=click.Path(dir_okay=False))
@click.option(
    "--checker",
    "spec",
    required=True,
    help="A program (image file appended as its last argument, exit 0 = consistent), "
    "a Python function module:function or file.py:function (image: memoryview -> True | False | reason), "
    "or lib.so:function (int f(const char *path), 0 = consistent).",
)
@click.option("--format", "fmt", type=click.Choice([f.value for f in TraceFormat]), default="auto", show_default=True)
@click.option("--domain", type=click.Choice(["adr", "eadr"]), default="adr", show_default=True)
@click.option("--semantics", type=click.Choice(["px86", "pmreorder"]), default="px86", show_default=True)
@click.option(
    "--engine",
    type=click.Choice(["ReorderFull", "ReorderAccumulative", "ReorderReverseAccumulative", "NoReorderDoCheck"]),
    default="ReorderFull",
    show_default=True,
    help="pmreorder engine (only with --semantics pmreorder).",
)
@click.option(
    "--strategy", type=click.Choice(["exhaustive", "bounded", "sample"]), default="exhaustive", show_default=True
)
@click.option("--max-states", type=click.IntRange(min=1), help="At most this many states per crash point.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the sample strategy.")
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True, max=1e6),
    default=10.0,
    show_default=True,
    help="Seconds a checker may take on one image.",
)
@click.option(
    "--eadr-points",
    type=click.Choice(["stores", "ops"]),
    default="stores",
    show_default=True,
    help="eADR crash points: every store, or only fences and the end.",
)
@click.option(
    "--base",
    "bases",
    multiple=True,
    help="The file's content before the traced run (default: zeros). FILE, or REGISTERED_PATH=FILE "
    "when the log registers several files.",
)
@click.option("--no-minimize", is_flag=True, help="Do not minimize failing states.")
@click.option(
    "--detail",
    type=click.IntRange(min=0),
    default=20,
    show_default=True,
    help="Failing states shown in full; the rest get one line each.",
)
def check_cmd(
    log: str,
    spec: str,
    fmt: str,
    domain: str,
    semantics: str,
    engine: str,
    strategy: str,
    max_states: int | None,
    seed: int,
    timeout: float,
    eadr_points: str,
    bases: tuple[str, ...],
    no_minimize: bool,
    detail: int,
) -> None:
    """Check every crash image of LOG (exit 1: an image failed its check; 0: all consistent; 2: bad input)."""
    from ..pmem import Domain, EadrPoints, Strategy
    from .check import CheckOptions, Semantics, check_trace, format_report
    from .checkers import make_checker
    from .playback import initial_content
    from .reorder import ReorderEngine

    tr = load_trace(log, fmt)
    base_map = _bases(bases, tr)
    initial_content(tr, base_map)
    if semantics == "pmreorder" and domain == "eadr":
        raise click.UsageError("--domain eadr applies to --semantics px86 only (pmreorder has no eADR mode)")
    opts = CheckOptions(
        domain=Domain(domain),
        semantics=Semantics(semantics),
        strategy=Strategy(strategy),
        max_states=max_states,
        seed=seed,
        engine=ReorderEngine(engine),
        eadr_points=EadrPoints(eadr_points),
        minimize=not no_minimize,
    )
    checker = make_checker(spec, timeout)
    try:
        report = check_trace(tr, checker, opts, base_map)
    finally:
        checker.close()
    click.echo(format_report(report, detail), nl=False)
    sys.exit(0 if report.clean else 1)


def _bases(items: tuple[str, ...], tr: Trace) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    for item in items:
        if "=" in item:
            name, _, file = item.partition("=")
        elif len(tr.regions) == 1:
            name, file = tr.regions[0].path, item
        else:
            paths = ", ".join(r.path for r in tr.regions)
            raise PmfuzzError(f"--base {item}: the trace registers several files ({paths}); use PATH=FILE")
        out[name] = read_input_bytes(file, MAX_TRACE_DEVICE, "base image")
    return out
