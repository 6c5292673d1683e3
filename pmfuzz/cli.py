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
