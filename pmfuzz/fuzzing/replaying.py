"""Reading and re-running reproducers: what `replay`, `minimize` and `regress` share.

A reproducer file is data from elsewhere (a bug report, a pull request). It is
read as a bounded regular file, its target must be registered (or admitted by
the command line's `--target module:Class`), and the device it names is
checked against the target before anything runs. `replay_outcome` never lets
one file end a `regress` run: its errors come back as part of its outcome.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from ..errors import PmfuzzError, clip
from ..judging.repro import CLEAN, Reproducer, parse_reproducer
from ..lang.limits import MAX_REPRODUCER_BYTES, read_input
from ..target import admit, make_target, parse_target_spec
from ..verdict import DEFAULT_OP_TIMEOUT

if TYPE_CHECKING:
    from ..judging.engine import Verdict

__all__ = ["Outcome", "expectation_met", "load_reproducer", "replay_against", "replay_outcome", "run_reproducer"]


def load_reproducer(path: str) -> Reproducer:
    """Parse a reproducer file; a FIFO, a device, a directory or an oversized file is one clear error."""
    return parse_reproducer(read_input(path, MAX_REPRODUCER_BYTES, "reproducer"), source=path)


def run_reproducer(r: Reproducer, *, all_points: bool = False, **options) -> Verdict:
    """Re-run a reproducer exactly: its target, domain, device, schedule and crash state.

    `options` are further `engine.Options` fields (such as `op_timeout`), not recorded in reproducers.
    """
    from ..judging.engine import Options, check
    from .preflight import preflight

    target = make_target(r.target)
    preflight(target, r.device_size, options.get("op_timeout", DEFAULT_OP_TIMEOUT))
    opts = Options(
        domain=r.domain,
        device_size=r.device_size,
        crash=None if all_points else r.crash,
        eadr_points=r.eadr_points,
        schedule=r.schedule,
        **options,
    )
    return check(target, r.workload, opts)


def expectation_met(r: Reproducer, v: Verdict) -> bool:
    if r.expect == (CLEAN,):
        return v.clean
    return set(r.expect or ()) <= v.oracles()


@dataclass(frozen=True, slots=True)
class Outcome:
    """What `regress` says of one reproducer: the oracles it gives now, whether it met `expect:`, or why not run."""

    got: str
    met: bool
    error: str | None = None
    """Why the file could not be replayed (its target cannot be built, its device is refused...)."""
    bug: bool = False
    """The error is an exception of pmfuzz itself, not of the file: a bug to report."""


def replay_outcome(
    r: Reproducer, op_timeout: float | None = DEFAULT_OP_TIMEOUT, imports: Sequence[str] = ()
) -> Outcome:
    """Replay one reproducer for `regress`; whatever it does, the answer is an `Outcome`, never an exception.

    `imports` are the `--target module:Class` names the command line admitted (a cluster worker is
    another process: it admits them again).
    """
    try:
        for name in imports:
            admit(name)
        v = run_reproducer(r, op_timeout=op_timeout)
    except PmfuzzError as e:
        return Outcome("", False, str(e))
    except (Exception, SystemExit) as e:  # a bug of pmfuzz, or a target that exits: keep going, say which
        return Outcome("", False, f"{type(e).__name__}: {clip(str(e), 200)}", bug=not isinstance(e, SystemExit))
    return Outcome("clean" if v.clean else ",".join(sorted(v.oracles())), expectation_met(r, v))


@dataclass(frozen=True)
class Against:
    """A finding replayed on another target configuration: is it still there?"""

    reproducer: Reproducer
    """The reproducer as run: the other target, every crash point, every schedule."""
    verdict: Verdict
    wanted: frozenset[str]
    """The oracles whose finding means "still there" (empty: any finding)."""
    still: bool
    same_cause: bool

    def summary(self) -> str:
        where = f"against `{self.reproducer.target}`"
        what = ", ".join(sorted(self.wanted)) or "finding"
        if not self.still:
            return f"{where}: gone (no {what} in {self.verdict.stats.distinct} crash states)"
        cause = " (same root cause)" if self.same_cause else " (another root cause)"
        return f"{where}: still there: {what}{cause}"


def replay_against(r: Reproducer, target: str, **options) -> Against:
    """Replay a reproducer on another target configuration (such as the design without the bug).

    Its crash state and schedule name states of its own trace, so here every crash point and every
    schedule are judged; the finding is still there if the oracles it expects fire.
    """
    other = replace(r, target=parse_target_spec(target), crash=None, schedule=None)
    v = run_reproducer(other, **options)
    wanted = {str(x) for x in (r.expect or ()) if x != CLEAN}
    named = r.cause or r.signature
    if not wanted and named is not None:
        wanted = {str(named.oracle)}
    got = v.findings if not wanted else [f for f in v.findings if str(f.oracle) in wanted]
    same = r.cause is not None and any(f.root_cause == r.cause for f in got)
    return Against(other, v, frozenset(wanted), bool(got), same)
