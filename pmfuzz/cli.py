"""The `pmfuzz` command line."""

from __future__ import annotations

import sys

import click

from . import __version__
from .errors import PmfuzzError

__all__ = ["cli", "main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="pmfuzz")
def cli() -> None:
    """pmfuzz: a crash-consistency fuzzer for persistent-memory (DAX) file systems."""


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
