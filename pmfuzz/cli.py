"""The `pmfuzz` command line."""

from __future__ import annotations

import enum
import itertools
import sys
import textwrap

import click

from . import __version__
from .cliparams import DeviceSize, Duration, Seconds, run_main
from .errors import PmfuzzError

__all__ = ["cli", "main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="pmfuzz")
def cli() -> None:
    """pmfuzz: a crash-consistency fuzzer for persistent-memory (DAX) file systems."""


@cli.command()
def bugs() -> None:
    """List the bug zoo: each bug, the oracle that must catch it, and the failure it models."""
    from .fs.config import BUG_ORACLE, Bug

    for b in Bug:
        click.echo(f"{b.value}  (caught by: {BUG_ORACLE[b]})")
        click.echo(textwrap.fill(_enum_doc(b), width=100, initial_indent="    ", subsequent_indent="    "))


@cli.command()
def designs() -> None:
    """List the daxfs designs with what each does on a write into a hole and into a shared block."""
    from .fs.config import Design, LockScheme

    for d in Design:
        click.echo(d.value)
        click.echo(textwrap.fill(_enum_doc(d), width=100, initial_indent="    ", subsequent_indent="    "))
    click.echo("\nlock schemes (daxfs locks=...):")
    for ls in LockScheme:
        click.echo(ls.value)
        click.echo(textwrap.fill(_enum_doc(ls), width=100, initial_indent="    ", subsequent_indent="    "))


def _enum_doc(member: enum.Enum) -> str:
    """The docstring written under an enum member in its class body."""
    import ast
    import inspect

    cls = type(member)
    node = ast.parse(textwrap.dedent(inspect.getsource(cls))).body[0]
    if not isinstance(node, ast.ClassDef):
        return ""
    for stmt, nxt in itertools.pairwise(node.body):
        if (
            isinstance(stmt, ast.Assign)
            and any(getattr(t, "id", None) == member.name for t in stmt.targets)
            and isinstance(nxt, ast.Expr)
            and isinstance(nxt.value, ast.Constant)
        ):
            return " ".join(str(nxt.value.value).split())
    return ""


def _count_option(flag: str, default: int, help: str, least: int = 1, most: int = 10_000):
    """A count flag; bounded above too, so that `--batch 10**20` is an error, not a batch that never fills."""
    return click.option(flag, type=click.IntRange(least, most), default=default, show_default=True, help=help)


def _op_timeout_option(f):
    from .verdict import DEFAULT_OP_TIMEOUT

    return click.option(
        "--op-timeout",
        type=Seconds(),
        default=str(DEFAULT_OP_TIMEOUT),
        show_default=True,
        help="Seconds a call into the target may take before it is reported as a hang (0: no limit).",
    )(f)


def _load(path: str):
    from .fuzzing.replaying import load_reproducer

    return load_reproducer(path)


def _admit_option(f):
    return click.option(
        "--target",
        "import_target",
        metavar="MODULE:CLASS",
        help="Let the reproducer name this module:Class target: pmfuzz imports it (a file alone never imports code).",
    )(f)


def _admit(name: str | None) -> None:
    from .target import admit

    if name:
        admit(name)


@cli.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--all-points", is_flag=True, help="Check every crash point, not only the one the file names.")
@click.option("--picture", type=click.Path(dir_okay=False), help="Also draw the finding to this PNG (matplotlib).")
@click.option(
    "--against",
    metavar="TARGET",
    help='Replay on another target configuration instead (e.g. "daxfs design=zero", the design without the bug): '
    "exit 1 if the finding is still there, 0 if it is gone.",
)
@_op_timeout_option
@_admit_option
def replay(
    file: str,
    all_points: bool,
    picture: str | None,
    against: str | None,
    op_timeout: float | None,
    import_target: str | None,
) -> None:
    """Re-run a reproducer and print the report (exit 1: violation reproduces, 0: clean, 2: bad input)."""
    from .fuzzing.replaying import replay_against, run_reproducer
    from .judging.report import format_report

    if picture:
        from .sight.cli import require_matplotlib

        require_matplotlib()
    _admit(import_target)
    r = _load(file)
    if against is not None:
        a = replay_against(r, against, op_timeout=op_timeout)
        click.echo(format_report(a.verdict, a.reproducer), nl=False)
        click.echo(a.summary())
        sys.exit(1 if a.still else 0)
    v = run_reproducer(r, all_points=all_points, op_timeout=op_timeout)
    click.echo(format_report(v, r), nl=False)
    if picture and not v.clean:
        from .sight.cli import write_picture

        click.echo(f"picture: {write_picture(r, v, picture)}")
    sys.exit(0 if v.clean else 1)


@cli.command()
@click.argument("crashes", type=click.Path(file_okay=False, exists=True))
@click.option("--json", "as_json", is_flag=True, help="Print the groups as JSON (for CI).")
@click.option("--no-replay", is_flag=True, help="Do not replay reproducers that name no cause (older versions).")
@_op_timeout_option
def triage(crashes: str, as_json: bool, no_replay: bool, op_timeout: float | None) -> None:
    """One line per root cause of the findings in CRASHES: count, first and last seen, shortest reproducer."""
    from pathlib import Path

    from .fuzzing.triage import format_triage, triage_json
    from .fuzzing.triage import triage as triage_dir

    groups, notes = triage_dir(Path(crashes), replay=not no_replay, op_timeout=op_timeout)
    click.echo(triage_json(groups, notes) if as_json else format_triage(groups, notes, Path(crashes)), nl=False)


@cli.command()
@click.argument("directory", type=click.Path(file_okay=False, exists=True))
@click.option(
    "--scheduler",
    metavar="ADDRESS|local:N",
    help="Replay on a Dask cluster (tcp://HOST:8786), or on N local worker processes (local:N).",
)
@_op_timeout_option
@click.option(
    "--target",
    "imports",
    multiple=True,
    metavar="MODULE:CLASS",
    help="Let reproducers name this module:Class target: pmfuzz imports it (repeatable).",
)
def regress(directory: str, scheduler: str | None, op_timeout: float | None, imports: tuple[str, ...]) -> None:
    """Replay every reproducer in DIRECTORY and check its `expect:` line (exit 1 on any mismatch, 2 on any error)."""
    from .fuzzing.regress import regress_directory

    for name in imports:
        _admit(name)
    sys.exit(regress_directory(directory, scheduler, op_timeout, imports))


def _target_device_size(spec) -> int:
    """The device size a target asks for (`device_size`, e.g. XFS's 16 MiB minimum), else 8 MiB."""
    from .target import device_size, make_target

    return device_size(make_target(spec))


@cli.command()
@click.option("--hours", type=Duration(), help="Run for this long.")
@click.option("--minutes", type=Duration())
@click.option("--seconds", type=Duration())
@click.option("--max-execs", type=click.IntRange(min=1), help="Stop after this many workloads (deterministic).")
@click.option(
    "--target",
    "target_spec",
    default="daxfs",
    show_default=True,
    help='A target name or module:Class, optionally with options: "daxfs design=zero".',
)
@click.option("--design", help="daxfs design (zero, unwritten, cow-remap).")
@click.option("--bugs", help="daxfs zoo bugs to switch on, comma-separated (see `pmfuzz bugs`).")
@click.option("--cil", type=click.Choice(["lazy", "eager"]), help="daxfs log pushes (default: both, alternating).")
@click.option("--domain", type=click.Choice(["adr", "eadr"]), default="adr", show_default=True)
@click.option(
    "--device",
    "device",
    type=DeviceSize(),
    default=None,
    help="Device size, at most 256M [default: the target's, else 8M].",
)
@click.option(
    "--strategy",
    type=click.IntRange(min=1),
    default=256,
    show_default=True,
    help="Crash states judged per crash point (exhaustive up to this many, else bounded).",
)
@click.option(
    "--eadr-points",
    type=click.Choice(["ops", "stores"]),
    default="ops",
    show_default=True,
    help="eADR crash points: op boundaries and fences, or every store.",
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--workers", type=click.IntRange(1, 256), default=1, show_default=True, help="Worker processes.")
@click.option(
    "--corpus",
    type=click.Path(file_okay=False),
    default=None,
    help="Workloads to start from [default: corpora/seeds when it exists]; new ones go to CRASHES/corpus.",
)
@click.option("--no-corpus", is_flag=True, help="Start from an empty corpus.")
@click.option("--crashes", type=click.Path(file_okay=False), default="crashes", show_default=True)
@click.option("--engine", type=click.Choice(["native", "atheris"]), default="native", show_default=True)
@click.option(
    "--max-ops", type=click.IntRange(min=1, max=200), default=10, show_default=True, help="Longest generated workload."
)
@click.option("--quiet", is_flag=True, help="No progress lines.")
@click.option(
    "--scheduler",
    metavar="ADDRESS|local:N",
    help="Run the workloads on a Dask cluster (tcp://HOST:8786), or on N local worker processes (local:N).",
)
@_count_option("--batch", 8, "Workloads shipped as one unit of work (part of what the seed decides).")
@_count_option(
    "--window", 8, "Batches in flight; give at least the cluster's worker count (part of what the seed decides)."
)
@_count_option(
    "--recycle-after",
    64,
    "Batches a judging process runs before a fresh one replaces it, so memory stays flat (0: never).",
    least=0,
    most=1_000_000,
)
@_count_option("--preemptions", 1, "Preemptions per schedule of a parallel group (replay and regress use 2).", least=0)
@_op_timeout_option
def run(
    hours,
    minutes,
    seconds,
    max_execs,
    target_spec,
    design,
    bugs,
    cil,
    domain,
    device,
    strategy,
    eadr_points,
    seed,
    workers,
    corpus,
    no_corpus,
    crashes,
    engine,
    max_ops,
    quiet,
    scheduler,
    batch,
    window,
    recycle_after,
    preemptions,
    op_timeout,
) -> None:
    """Fuzz a target: minimized, deduplicated reproducers land in the crashes directory."""
    import pathlib

    from .fuzzing.campaign import CampaignConfig, run_campaign, summary_text
    from .pmem import Domain, EadrPoints
    from .target import parse_target_spec

    spec = parse_target_spec(target_spec)
    _admit(spec.name)
    extra = {k: v for k, v in (("design", design), ("bugs", bugs), ("cil", cil)) if v is not None}
    if extra:
        spec = type(spec)(spec.name, tuple({**dict(spec.options), **extra}.items()))
    duration = sum(x * k for x, k in ((hours, 3600), (minutes, 60), (seconds, 1)) if x is not None)
    if not duration and max_execs is None:
        raise click.UsageError("give a budget: --hours, --minutes, --seconds or --max-execs")
    if corpus is None:
        corpus = "corpora/seeds" if pathlib.Path("corpora/seeds").is_dir() else None
    elif not no_corpus and not pathlib.Path(corpus).is_dir():
        raise PmfuzzError(f"corpus directory {corpus} does not exist (use --no-corpus to start empty)")
    cfg = CampaignConfig(
        target=spec,
        domain=Domain(domain),
        device_size=device if device else _target_device_size(spec),
        eadr_points=EadrPoints(eadr_points),
        seed=seed,
        seconds=duration or None,
        max_execs=max_execs,
        workers=workers,
        corpus=None if no_corpus or corpus is None else pathlib.Path(corpus),
        crashes=pathlib.Path(crashes),
        max_states=strategy,
        max_ops=max_ops,
        quiet=quiet,
        batch=batch,
        window=window,
        recycle_after=recycle_after,
        preemption_bound=preemptions,
        op_timeout=op_timeout,
    )
    if scheduler is not None:
        from .fuzzing.distributed import open_scheduler, parse_scheduler

        if engine == "atheris":
            raise PmfuzzError("--engine atheris drives one process: --scheduler runs the native engine only")
        if workers > 1:
            raise PmfuzzError(f"--workers {workers} asks for local processes; with --scheduler the cluster works")
        with open_scheduler(parse_scheduler(scheduler)) as runner:
            summary = run_campaign(cfg, runner=runner)
    elif engine == "atheris":
        from .fuzzing.atheris_engine import run_atheris

        summary = run_atheris(cfg)
    else:
        summary = run_campaign(cfg)
    click.echo(summary_text(summary, pathlib.Path(crashes)))
    if summary.error:
        raise PmfuzzError(f"{summary.error}; the campaign stopped, everything written before is kept")


@cli.command("minimize")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Where to write (default: FILE with .min).")
@click.option("--checks", type=click.IntRange(min=1), default=500, show_default=True, help="Budget of runs.")
@click.option("--seconds", type=Duration(), default=300, show_default=True, help="Budget of time.")
@_op_timeout_option
@_admit_option
def minimize_cmd(
    file: str, output: str | None, checks: int, seconds: float, op_timeout: float | None, import_target: str | None
) -> None:
    """Shrink a reproducer's ops, arguments and crash state while its finding (signature) holds."""
    import pathlib
    from dataclasses import replace

    from .fuzzing.minimize import MinimizeBudget, NotReproduced, minimize
    from .fuzzing.preflight import preflight
    from .judging.engine import Options, check
    from .judging.report import format_report
    from .judging.repro import format_reproducer
    from .target import make_target
    from .verdict import found_again

    _admit(import_target)
    r = _load(file)
    target = make_target(r.target)
    preflight(target, r.device_size, op_timeout)
    opts = Options(domain=r.domain, device_size=r.device_size, eadr_points=r.eadr_points, op_timeout=op_timeout)
    v = check(target, r.workload, replace(opts, schedule=r.schedule))
    if v.clean:
        raise PmfuzzError(f"{file} gives no finding: nothing to minimize")
    wanted = found_again(v.findings, r.signature, r.cause) or next(
        (f for f in v.findings if r.expect and f.oracle.value in r.expect), v.findings[0]
    )
    try:
        m = minimize(
            lambda: make_target(r.target),
            r.workload,
            wanted.signature,
            opts,
            MinimizeBudget(checks, seconds),
            cause=wanted.root_cause if wanted.crash is not None else None,
        )
    except NotReproduced as e:
        raise PmfuzzError(f"{file}: {e}") from None
    note = f"minimized from {m.before_ops} to {len(m.workload)} ops in {m.checks} checks" + (
        "" if m.complete else f" (budget spent: stopped early, {m.stopped_in})"
    )
    out = replace(
        r,
        workload=m.workload,
        crash=m.crash,
        schedule=m.finding.schedule,
        signature=wanted.signature,
        expect=r.expect or (wanted.oracle.value,),
        notes=(note,),
    )
    dest = pathlib.Path(output) if output else pathlib.Path(file).with_suffix(".min.pmfuzz")
    from .fuzzing.corpus import atomic_write

    try:
        atomic_write(dest, format_reproducer(out))
    except OSError as e:
        raise PmfuzzError(f"cannot write {dest}: {e.strerror or e}") from None
    dev = (
        ""
        if m.before_deviations is None
        else f", crash state {m.before_deviations} -> "
        + str(m.finding.crash.deviations if m.finding.crash else 0)
        + " deviating lines"
    )
    click.echo(
        f"{wanted.signature_text}: {m.before_ops} -> {len(m.workload)} ops{dev}; "
        f"{m.checks} checks in {m.seconds:.1f} s"
        + ("" if m.complete else f" (budget spent: stopped early, {m.stopped_in})")
    )
    click.echo(f"written {dest}")
    v2 = check(make_target(out.target), out.workload, replace(opts, crash=out.crash, schedule=out.schedule))
    click.echo(format_report(v2, out), nl=False)


def main(argv: list[str] | None = None) -> None:
    """Entry point: pmfuzz's own user errors (and machine faults) become one line and exit status 2."""
    run_main(cli, argv)


from .traces.cli import trace as _trace  # noqa: E402

cli.add_command(_trace)

from .sight.cli import plot as _plot  # noqa: E402

cli.add_command(_plot)


@cli.command("kernel-setup")
def kernel_setup() -> None:
    """Fetch and build what the ext4-dax target needs, from Debian's registry only.

    Installs qemu-system-x86, e2fsprogs, gcc, make and libc6-dev (apt-get, as root), downloads the
    pinned kernel with its modules and headers and busybox-static into the cache
    ($PMFUZZ_KERNEL_CACHE, default ~/.cache/pmfuzz/kernel), and builds the recorder module, the
    agent and the initramfs. Safe to run again: it fetches only what is missing.
    """
    from .kernel.setup import setup

    setup(say=click.echo)


if __name__ == "__main__":
    main()
