"""Run one workload on a target, crash it at every crash point, recover every state, judge it.

    verdict = check(target, workload, Options(domain="adr"))

`check` is `judge(execute(...))`, once per schedule of the workload's parallel groups:
`execute` (execute.py) runs the target and the reference side by side into a `Run` (run.py),
the `functional` oracle judging every op crash-free; `judge` (judge.py) builds, mounts and
judges every crash point's states. The shared vocabulary (`Options`, `Finding`, `Verdict`)
is in verdict.py; every name stays importable from here.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..execution.execute import effective_options, execute, formatted
from ..execution.run import Run, ScheduleHead, ScheduleStep, crash_window
from ..execution.watchdog import deadline_session
from ..lang.workload import Op, Workload, groups
from ..signature import Cause, Signature
from ..verdict import CrashSite, Finding, Options, StateChoice, Stats, Verdict, filed, filing_key
from .judge import HUNG, judge
from .recall import Recall

__all__ = [
    "Options",
    "Finding",
    "CrashSite",
    "Verdict",
    "Stats",
    "check",
    "StateChoice",
    "formatted",
    "execute",
    "judge",
    "Run",
    "Signature",
    "ScheduleStep",
    "ScheduleHead",
    "crash_window",
    "default_options",
]


_DEFAULT = Options()


def check(
    target, workload: Workload | Sequence[Op], opts: Options = _DEFAULT, *, recall: Recall | None = None
) -> Verdict:
    """Execute a workload on a fresh device, then judge every crash state; return the verdict.

    A workload with parallel groups is run once per schedule the explorer enumerates (or
    under `opts.schedule` only); findings carry the schedule they ran under. `recall`: the clean
    crash states of earlier checks under the same target and options, to recall rather than judge
    again (and to add to); when None, only the schedules of this workload share one. Nothing is
    recalled under `Options(recall_clean=False)`.
    """
    top = workload.ops if isinstance(workload, Workload) else tuple(workload)
    grps = groups(top)
    if not opts.recall_clean:
        recall = None
    with deadline_session():
        if not grps:
            return _judged(execute(target, top, opts), recall=recall)
        if recall is None and opts.recall_clean and opts.schedule is None:
            recall = Recall()
        return _explore(target, top, grps, opts, recall)


def _judged(run: Run, skip_before: int = 0, recall: Recall | None = None) -> Verdict:
    """`judge`, then drop the run's crash points: a run judged here is not asked for them again."""
    try:
        return judge(run, skip_before=skip_before, recall=recall)
    finally:
        if run.device is not None:
            run.device.drop_timeline()


def _explore(
    target, top: tuple[Op, ...], grps: tuple[tuple[int, int, int], ...], opts: Options, recall: Recall | None
) -> Verdict:
    from ..execution.interleave import Chooser, Schedule, explore

    if opts.schedule is not None:
        return _judged(execute(target, top, opts, Chooser(Schedule.parse(opts.schedule))), recall=recall)
    findings: dict[tuple[Signature, Cause | None], Finding] = {}
    stats = Stats()
    notes: list[str] = []
    log: list[tuple[str, tuple[str, ...]]] = []
    feats: set[str] = set()
    seen: set[bytes] = set()
    first_group = min(start for _g, start, _n in grps)
    runs = distinct = stopped = 0
    orders: dict = {}  # serial orders of the groups, run once for every schedule
    for chooser in explore(opts.preemption_bound, opts.stop_explored):
        if opts.max_schedules is not None and runs >= opts.max_schedules:
            notes.append(f"stopped exploring after {runs} schedules (max_schedules)")
            break
        runs += 1
        run = execute(target, top, opts, chooser, digest=True, orders=orders)
        if run.explored_on:
            stopped += 1
            continue
        skip_before = 0
        if run.digest is not None:
            if run.digest in seen:
                continue
            # Crash points before the first group are the same in every schedule: judge them in the first only.
            skip_before = first_group if seen else 0
            seen.add(run.digest)
        v = _judged(run, skip_before, recall)
        distinct += 1
        hung = any(HUNG in n for n in v.notes)
        # What a schedule shows after it left the reference follows from that divergence, which
        # another schedule's finding of the same signature may stand for: merged, it would lose
        # the divergence it follows (`filed` reads each schedule's own).
        for f in filed(v.findings):
            key = filing_key(f)
            old = findings.get(key)
            if old is None or (
                f.crash is not None and old.crash is not None and f.crash.deviations < old.crash.deviations
            ):
                findings[key] = f
        stats.add(v.stats)
        notes += [n for n in v.notes if n not in notes]
        log += v.state_log
        feats |= v.features
        if hung:
            notes.append("stopped exploring: a schedule hung the target (every other would wait out the timeout)")
            break
    notes.insert(
        0,
        f"explored {runs} schedule(s) of {len(grps)} parallel group(s) with at most "
        f"{opts.preemption_bound} preemption(s); {distinct} gave distinct executions"
        + (f" ({stopped} stopped at a group's end an earlier schedule reached)" if stopped else ""),
    )
    return Verdict(tuple(findings.values()), stats, tuple(notes), tuple(log), frozenset(feats))


def default_options(**kw) -> Options:
    return Options(**kw)


effective_options  # noqa: B018  (re-exported for callers that run `execute` and `judge` themselves)
