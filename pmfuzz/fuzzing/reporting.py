"""A campaign's findings from first sighting to minimized reproducer, and the resumption of interrupted ones.

A new finding is emitted twice: at once as found (a reproducer noted `not
minimized yet`), then minimized. A kill, a signal or a full disk between the
two leaves the first; `resume_unminimized` finds such files when the campaign
starts again and minimizes them, so no finding stays unminimized across
restarts.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..errors import PmfuzzError
from ..judging.engine import Finding, Options, check
from ..judging.report import format_report
from ..judging.repro import Expect, Reproducer, format_reproducer, parse_reproducer
from ..lang.limits import MAX_REPRODUCER_BYTES, read_input
from ..lang.workload import Workload
from ..target import TargetSpec, make_target
from ..verdict import found_again
from .campaign_config import CampaignConfig
from .isolated import ChildDied, ChildFailed, run_isolated
from .minimize import MinimizeBudget, NotReproduced, minimize

__all__ = ["NOT_MINIMIZED", "campaign_options", "report_finding", "resume_unminimized", "unminimized"]

NOT_MINIMIZED = "not minimized yet"
"""The note of a finding written as found, before minimizing: what a resumed campaign looks for."""

Emit = Callable[[str, Any], None]

MAX_INFLIGHT = 250_000
"""A campaign's `Options.max_inflight`: what typical workloads (a few hundred points over tens of
lines, a 2 MiB zeroing at a handful of points) stay under, so only outsized traces are sampled."""


def campaign_options(cfg: CampaignConfig) -> Options:
    return Options(
        domain=cfg.domain,
        device_size=cfg.device_size,
        max_states=cfg.max_states,
        exhaustive_upto=cfg.max_states,
        max_inflight=MAX_INFLIGHT,
        eadr_points=cfg.eadr_points,
        features=True,
        op_timeout=cfg.op_timeout,
        preemption_bound=cfg.preemption_bound,
    )


def report_finding(
    cfg: CampaignConfig,
    f: Finding,
    w: Workload,
    variant: dict[str, str],
    opts: Options,
    emit: Emit,
    stop: Callable[[], bool],
) -> None:
    """Emit a new finding at once as found, then minimized: a kill during minimizing still leaves a reproducer."""
    key = str(f.root_cause)
    target = make_target(cfg.target, **variant)
    spec = TargetSpec(cfg.target.name, tuple(target.options().items()))
    raw = Reproducer(
        w,
        target=spec,
        domain=cfg.domain,
        device_size=cfg.device_size,
        crash=f.crash.state if f.crash else None,
        schedule=f.schedule,
        eadr_points=cfg.eadr_points,
        expect=(Expect(f.oracle.value),),
        signature=f.signature,
        cause=f.root_cause,
        notes=(NOT_MINIMIZED,),
    )
    emit("finding", (key, format_reproducer(raw), f"{f.oracle.value}: {f.message}\n", False))
    _minimize(cfg, raw, f, lambda: make_target(cfg.target, **variant), opts, emit, stop)


def _minimize(
    cfg: CampaignConfig,
    raw: Reproducer,
    f: Finding,
    make: Callable[[], Any],
    opts: Options,
    emit: Emit,
    stop: Callable[[], bool],
) -> None:
    """Minimize `raw` keeping `f`'s signature, and emit the result as the finding's final reproducer.

    The minimizing runs in a child process (`isolated`): what it allocates goes with it, not into
    the driver. Stopped or killed first, the file stays as found, for a resumed campaign to minimize.
    """
    try:
        emitted = run_isolated(_minimized, cfg, raw, f, make, opts, stop, stop=stop)
    except ChildDied as e:
        emit("warning", f"{f.signature_text}: minimizing it stopped: {e}; kept as found")
        return
    except ChildFailed as e:
        raise RuntimeError(f"minimizing {f.signature_text} failed (a bug in pmfuzz): {e}\n{e.tb}") from None
    for kind, value in emitted or ():
        emit(kind, value)


def _minimized(
    cfg: CampaignConfig,
    raw: Reproducer,
    f: Finding,
    make: Callable[[], Any],
    opts: Options,
    stop: Callable[[], bool],
) -> list[tuple[str, Any]]:
    """What `_minimize` emits, in order. It is emitted under the key it was found under: its cause
    (a reproducer of an older version, its signature)."""
    out: list[tuple[str, Any]] = []
    key = str(raw.cause or raw.signature or f.root_cause)
    sig = f.signature_text
    budget = MinimizeBudget(cfg.minimize_checks, cfg.minimize_seconds, stop)
    try:
        m = minimize(make, raw.workload, f.signature, opts, budget, cause=raw.cause)
    except NotReproduced as e:
        out.append(("warning", f"{sig}: {e}; kept unminimized"))
        r = replace(raw, notes=(f"not minimized: {e}",))
        v = check(make(), raw.workload, replace(opts, crash=raw.crash, schedule=raw.schedule))
        out.append(("finding", (key, format_reproducer(r), format_report(v, r), True)))
        return out
    if stop() and not m.complete:
        return out  # interrupted: leave the file as found, so that a resumed campaign minimizes it
    note = f"minimized from {m.before_ops} to {len(m.workload)} ops in {m.checks} checks" + (
        "" if m.complete else f" (budget spent: stopped early, {m.stopped_in})"
    )
    r = replace(raw, workload=m.workload, crash=m.crash, schedule=m.finding.schedule, notes=(note,))
    v = check(make(), m.workload, replace(opts, crash=m.crash, schedule=m.finding.schedule, features=False))
    out.append(("finding", (key, format_reproducer(r), format_report(v, r), True)))
    return out


def unminimized(crashes: Path, target_name: str) -> list[Reproducer]:
    """The findings of this campaign's target that were written as found and never minimized.

    Only files of the campaign's own target are taken: the crashes directory is the campaign's,
    but a file dropped there by someone else must not choose what pmfuzz builds.
    """
    out = []
    for path in sorted(crashes.glob("*.pmfuzz")):
        try:
            r = parse_reproducer(read_input(str(path), MAX_REPRODUCER_BYTES, "reproducer"), source=str(path))
        except PmfuzzError:
            continue
        if NOT_MINIMIZED in r.notes and r.signature and r.target.name == target_name:
            out.append(r)
    return out


def resume_unminimized(cfg: CampaignConfig, opts: Options, emit: Emit, stop: Callable[[], bool]) -> int:
    """Minimize every finding a previous run of this campaign left unminimized; return how many were taken up."""
    todo = unminimized(cfg.crashes, cfg.target.name)
    for raw in todo:
        if stop():
            break
        here = replace(opts, domain=raw.domain, device_size=raw.device_size, eadr_points=raw.eadr_points)
        make = lambda raw=raw: make_target(raw.target)
        try:
            v = check(make(), raw.workload, replace(here, crash=raw.crash, schedule=raw.schedule, features=False))
        except PmfuzzError as e:
            emit("warning", f"{raw.signature}: cannot minimize it on resume: {e}")
            continue
        f = found_again(v.findings, raw.signature, raw.cause)
        if f is None:
            emit("warning", f"{raw.signature}: does not reproduce on resume; kept unminimized")
            r = replace(raw, notes=("not minimized: it did not reproduce when the campaign resumed",))
            emit("finding", (str(raw.cause or raw.signature), format_reproducer(r), format_report(v, r), True))
            continue
        emit("warning", f"{raw.signature}: minimizing it now (a previous run was stopped first)")
        _minimize(cfg, raw, f, make, here, emit, stop)
    return len(todo)
