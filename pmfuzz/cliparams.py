"""Flag types of the command line, and the wrapper that turns every user error into one line.

Why one line: pmfuzz runs in CI and in scripts, where the first line of stderr
is what a person reads. click's own reporting prints a four-line usage block;
a `PmfuzzError` or a machine fault (a full disk) must never end in a traceback.
"""

from __future__ import annotations

import math
import sys
from typing import NoReturn

import click

from .errors import PmfuzzError, clip, one_line, shown_path
from .lang.limits import check_device_size, parse_size

__all__ = ["DeviceSize", "Duration", "Seconds", "run_main"]


def _number(value: object) -> float:
    """The value as a float, nan when it is none (nan fails every bound the types check)."""
    try:
        return float(value) if isinstance(value, int | float | str) else float("nan")
    except ValueError:
        return float("nan")


class Seconds(click.ParamType):
    """`--op-timeout`: seconds >= 0, where 0 means no limit (None)."""

    name = "seconds"

    def convert(self, value, param, ctx):
        if value is None or isinstance(value, float):
            return value
        x = _number(value)
        if not 0 <= x < float("inf"):
            self.fail(f"{clip(value)} is not a number of seconds >= 0 (0: no limit)", param, ctx)
        return x or None


class Duration(click.ParamType):
    """A campaign budget (`--hours`, `--minutes`, `--seconds`): a finite number above zero.

    Why: `--hours -1` used to end at once with exit 0 having done nothing, and `--seconds nan`
    never reached its deadline (every comparison with nan is false).
    """

    name = "number"

    def convert(self, value, param, ctx):
        if value is None or isinstance(value, float):
            return value
        x = _number(value)
        if not (math.isfinite(x) and x > 0):
            self.fail(f"{clip(value)} is not a finite number above 0", param, ctx)
        return x


class DeviceSize(click.ParamType):
    """`--device`: whole 4 KiB pages, at most the limit pmfuzz can hold (`8M`, `64K`, `1048576`)."""

    name = "size"

    def convert(self, value, param, ctx):
        if isinstance(value, int):
            return value
        try:
            return check_device_size(parse_size(str(value)))
        except PmfuzzError as e:
            self.fail(str(e), param, ctx)


def run_main(cli: click.Command, argv: list[str] | None, prog_name: str = "pmfuzz") -> None:
    """Run the click group; every user error and machine fault is one `pmfuzz: error:` line and exit 2."""
    try:
        cli.main(args=argv, prog_name=prog_name, standalone_mode=False)
    except click.exceptions.Abort:
        click.echo(f"{prog_name}: interrupted", err=True)
        sys.exit(130)
    except click.exceptions.NoArgsIsHelpError as e:
        e.show()
        sys.exit(e.exit_code)
    except click.ClickException as e:
        _error(prog_name, e.format_message().rstrip(".") + _help_hint(e), e.exit_code)
    except PmfuzzError as e:
        _error(prog_name, str(e), 2)
    except OSError as e:  # a machine fault (disk full, read-only, gone): the environment's, not a bug
        where = f" ({shown_path(e.filename)})" if e.filename else ""
        _error(prog_name, f"{e.strerror or e}{where}", 2)


def _help_hint(e: click.ClickException) -> str:
    ctx = getattr(e, "ctx", None)
    if isinstance(e, click.UsageError) and ctx is not None:
        return f" (see '{ctx.command_path} --help')"
    return ""


def _error(prog_name: str, message: str, code: int) -> NoReturn:
    click.echo(f"{prog_name}: error: {one_line(message)}", err=True)
    sys.exit(code)
