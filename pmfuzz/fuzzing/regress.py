"""`pmfuzz regress DIR`: replay every reproducer against its `expect:` line, and always end with the summary.

Why it never stops early: CI runs it over a corpus that pull requests add to.
One file that cannot be read, whose target cannot be built, whose device the
target refuses, or that trips a bug of pmfuzz is reported on its own line; the
rest are still replayed, and the summary line says how many of each there were.
"""

from __future__ import annotations

import contextlib
import pathlib
from collections.abc import Sequence

import click

from ..errors import PmfuzzError, one_line

__all__ = ["regress_directory"]


def regress_directory(directory: str, scheduler: str | None, op_timeout: float | None, imports: Sequence[str]) -> int:
    """Replay DIR's `*.pmfuzz` files in name order; return the exit status (0 all met, 1 a mismatch, 2 an error)."""
    from .distributed import open_scheduler, parse_scheduler, replay_outcomes
    from .replaying import load_reproducer

    files = sorted(pathlib.Path(directory).glob("*.pmfuzz"))
    if not files:
        raise PmfuzzError(f"no reproducers (*.pmfuzz) in {directory}")
    loaded: list = []
    for path in files:
        try:
            r = load_reproducer(str(path))
            if r.expect is None:
                raise PmfuzzError(f"{path}: no `# expect:` line")
            loaded.append(r)
        except PmfuzzError as e:
            loaded.append(e)
    good = [r for r in loaded if not isinstance(r, PmfuzzError)]
    failed = bad = bugs = 0
    with open_scheduler(parse_scheduler(scheduler)) if scheduler else contextlib.nullcontext() as runner:
        outcomes = replay_outcomes(runner, good, op_timeout, imports=imports)
        for path, r in zip(files, loaded, strict=True):
            if isinstance(r, PmfuzzError):
                bad += 1
                click.echo(f"ERROR {path.name}: {one_line(str(r))}")
                continue
            out = next(outcomes)
            want = ",".join(r.expect)
            if out.error is not None:
                bad += 1
                bugs += out.bug
                what = "BUG in pmfuzz" if out.bug else "ERROR"
                click.echo(f"{what} {path.name}: {one_line(out.error)}")
            elif out.met:
                click.echo(f"ok    {path.name}  (expect {want}; got {out.got})")
            else:
                failed += 1
                click.echo(f"FAIL  {path.name}  (expect {want}; got {out.got})")
    tail = f" ({bugs} of them bugs of pmfuzz)" if bugs else ""
    click.echo(f"{len(files) - failed - bad} passed, {failed} failed, {bad} in error{tail}, of {len(files)}")
    return 2 if bad else 1 if failed else 0
