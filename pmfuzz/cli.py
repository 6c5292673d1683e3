"""The `pmfuzz` command line."""

from __future__ import annotations

import sys
import textwrap

import click

from . import __version__
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
    from .fs.config import Design

    for d in Design:
        click.echo(d.value)
        click.echo(textwrap.fill(_enum_doc(d), width=100, initial_indent="    ", subsequent_indent="    "))


def _enum_doc(member: object) -> str:
    """The docstring written under an enum member in its class body."""
    import ast
    import inspect

    cls = type(member)
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    body = tree.body[0].body  # type: ignore[attr-defined]
    for i, node in enumerate(body[:-1]):
        if (
            isinstance(node, ast.Assign)
            and any(getattr(t, "id", None) == member.name for t in node.targets)
            and isinstance(body[i + 1], ast.Expr)
            and isinstance(body[i + 1].value, ast.Constant)
        ):
            return " ".join(str(body[i + 1].value.value).split())
    return ""


def _load(path: str):
    import pathlib

    from .repro import parse_reproducer

    try:
        text = pathlib.Path(path).read_text(encoding="utf-8")
    except OSError as e:
        raise PmfuzzError(f"cannot read {path}: {e.strerror}") from None
    except UnicodeDecodeError:
        raise PmfuzzError(f"{path} is not a text file") from None
    return parse_reproducer(text, source=path)


def run_reproducer(r, *, all_points: bool = False):
    """Re-run a reproducer exactly: its target, domain, device and crash state."""
    from .engine import Options, check
    from .target import make_target

    target = make_target(r.target)
    opts = Options(
        domain=r.domain, device_size=r.device_size, crash=None if all_points else r.crash, eadr_points=r.eadr_points
    )
    return check(target, r.workload, opts)


@cli.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--all-points", is_flag=True, help="Check every crash point, not only the one the file names.")
def replay(file: str, all_points: bool) -> None:
    """Re-run a reproducer and print the report (exit 1: violation reproduces, 0: clean, 2: bad input)."""
    from .report import format_report

    r = _load(file)
    v = run_reproducer(r, all_points=all_points)
    click.echo(format_report(v, r), nl=False)
    sys.exit(0 if v.clean else 1)


def expectation_met(r, v) -> bool:
    from .repro import CLEAN

    if r.expect == (CLEAN,):
        return v.clean
    return set(r.expect) <= v.oracles()


@cli.command()
@click.argument("directory", type=click.Path(file_okay=False, exists=True))
def regress(directory: str) -> None:
    """Replay every reproducer in DIRECTORY and check its `expect:` line (exit 1 on any mismatch)."""
    import pathlib

    files = sorted(pathlib.Path(directory).glob("*.pmfuzz"))
    if not files:
        raise PmfuzzError(f"no reproducers (*.pmfuzz) in {directory}")
    failed = bad = 0
    for path in files:
        try:
            r = _load(str(path))
            if r.expect is None:
                raise PmfuzzError(f"{path}: no `# expect:` line")
        except PmfuzzError as e:
            bad += 1
            click.echo(f"ERROR {path.name}: {e}")
            continue
        v = run_reproducer(r)
        got = "clean" if v.clean else ",".join(sorted(v.oracles()))
        want = ",".join(r.expect)
        if expectation_met(r, v):
            click.echo(f"ok    {path.name}  (expect {want}; got {got})")
        else:
            failed += 1
            click.echo(f"FAIL  {path.name}  (expect {want}; got {got})")
    click.echo(f"{len(files) - failed - bad} passed, {failed} failed, {bad} unreadable, of {len(files)}")
    sys.exit(2 if bad else 1 if failed else 0)


def main(argv: list[str] | None = None) -> None:
    """Entry point: pmfuzz's own user errors become one line and exit status 2."""
    try:
        cli.main(args=argv, prog_name="pmfuzz", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("pmfuzz: interrupted", err=True)
        sys.exit(130)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except PmfuzzError as e:
        click.echo(f"pmfuzz: error: {e}", err=True)
        sys.exit(2)
