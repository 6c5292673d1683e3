"""Shrink a finding: fewer ops, simpler arguments, then the fewest deviating lines, same signature.

Delta debugging in the order that pays off first: cut the ops after the one
the finding happened in; shrink parallel groups (drop a group, keep one side,
run it serially: a race finding that survives serializing is no race, and
every candidate with a group costs a schedule search); drop every op outside
the dependency closure of the files it touched; drop single ops from the end,
then single ops out of parallel groups; move arguments toward small,
block-aligned values; and last, keep in flight only the lines the violation
needs. Every candidate is judged by the engine (focused on crash points that
could give the signature), memoized by its text. A budget bounds the work;
the result says whether it stopped early.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, fields, replace

from ..judging.engine import Finding, Options, check
from ..judging.recall import Recall
from ..lang.workload import (
    BLOCK_SIZE,
    Fallocate,
    FallocMode,
    Fault,
    Mmap,
    Op,
    Parallel,
    Persist,
    Reflink,
    Store,
    Workload,
    flatten,
    format_workload,
)
from ..pmem import StateId
from ..signature import Cause
from ..target import Target
from ..verdict import filed

__all__ = ["Minimized", "MinimizeBudget", "NotReproduced", "minimize"]


@dataclass(frozen=True)
class MinimizeBudget:
    checks: int = 400
    seconds: float = 60.0
    stop: Callable[[], bool] | None = None
    """Checked before every run: a campaign that must stop ends minimization with the best so far."""


@dataclass(frozen=True)
class Minimized:
    workload: Workload
    finding: Finding
    crash: StateId | None
    checks: int
    seconds: float
    complete: bool
    """False if the budget ran out before a fixpoint."""
    before_ops: int
    before_deviations: int | None
    stopped_in: str = ""
    """The step the budget ran out in (empty when complete), for the reproducer's note."""


class NotReproduced(Exception):
    """The finding to minimize did not come back when its workload ran again (a nondeterministic target)."""


class _Out(Exception):
    """The budget is spent."""


def minimize(
    target: Target | Callable[[], Target],
    workload: Workload,
    signature: tuple[str, str, str],
    opts: Options | None = None,
    budget: MinimizeBudget | None = None,
    cause: Cause | None = None,
) -> Minimized:
    """Smallest workload (and crash state) the search found that still gives `signature` -- and,
    given `cause`, with that root cause (its own or a linked one), so that the reproducer's
    `# cause:` line is what replaying it shows."""
    opts = opts or Options()
    budget = budget or MinimizeBudget()
    make = target if callable(target) and not hasattr(target, "mount") else (lambda: target)
    t0 = time.monotonic()
    memo: dict[str, Finding | None] = {}
    recall = Recall()
    """Clean crash states of the candidates judged so far: shrunk workloads keep most of their ops."""
    calls = 0

    def wanted(f: Finding) -> bool:
        return f.signature == signature and (cause is None or f.root_cause == cause or cause in f.also)

    # Candidates must give the finding as a campaign files it (`filed`) when the original does;
    # an older reproducer's crash after the run left the reference shrinks toward any workload.
    strict = True

    def judge(w: Workload, crash: StateId | None = None, *, first: bool = False) -> Finding | None:
        nonlocal calls, strict
        key = format_workload(w) + f"@{crash}"
        if key in memo:
            return memo[key]
        spent = calls >= budget.checks or time.monotonic() - t0 > budget.seconds or (budget.stop and budget.stop())
        if spent and not first:
            raise _Out
        calls += 1
        try:
            v = check(
                make(), w, replace(opts, focus=signature, crash=crash, features=False, log_states=False), recall=recall
            )
        except Exception as e:  # a shrunk workload the target rejects outright (e.g. an unsupported op)
            from ..errors import PmfuzzError

            if isinstance(e, PmfuzzError):
                memo[key] = None
                return None
            raise
        hit = next((f for f in filed(v.findings) if wanted(f)), None)
        if hit is None and (first or not strict):
            hit = next((f for f in v.findings if wanted(f)), None)
            strict = strict and not (first and hit is not None)
        memo[key] = hit
        return hit

    first = judge(workload, first=True)
    if first is None:
        with_cause = f" with cause {cause}" if cause is not None else ""
        raise NotReproduced(f"the workload does not give signature {':'.join(signature)}{with_cause} when re-run")
    best, best_f = workload, first
    before_dev = first.crash.deviations if first.crash else None
    complete = True
    step = ["shrinking the ops"]
    progress = [(best, best_f)]
    try:
        best, best_f = _shrink_ops(best, best_f, judge, step, progress)
        step[0] = "shrinking the crash state"
        crash, best_f = _shrink_state(best, best_f, judge)
    except _Out:
        complete = False
        best, best_f = progress[-1]
        crash = best_f.crash.state if best_f.crash else None
    return Minimized(
        best, best_f, crash, calls, time.monotonic() - t0, complete, len(workload), before_dev,
        "" if complete else step[0],
    )  # fmt: skip


def _shrink_ops(
    w: Workload, f: Finding, judge, step: list[str], progress: list[tuple[Workload, Finding]]
) -> tuple[Workload, Finding]:
    """Shrink the ops to a fixpoint; `step` names the step under way and `progress` holds the best so far."""

    def attempt(ops: list[Op]) -> bool:
        nonlocal w, f
        if not ops or (len(ops) >= len(w.ops) and tuple(ops) == w.ops):
            return False
        cand = Workload(tuple(ops))
        hit = judge(cand)
        if hit is not None:
            w, f = cand, hit
            progress.append((w, f))
            return True
        return False

    changed = True
    while changed:
        changed = False
        step[0] = "cutting the ops after the crash"
        at = _top(w, f.op)
        if 0 <= at < len(w.ops) - 1:
            changed |= attempt(list(w.ops[: at + 1]))
        step[0] = "shrinking parallel groups"
        i = 0
        while i < len(w.ops):
            op = w.ops[i]
            if isinstance(op, Parallel):
                for cand in _group_shrinks(op):
                    if attempt([*w.ops[:i], *cand, *w.ops[i + 1 :]]):
                        changed = True
                        break
            i += 1
        step[0] = "dropping ops outside the finding's files"
        keep = _closure(w, _top(w, f.op))
        if len(keep) < len(w.ops):
            changed |= attempt([op for i, op in enumerate(w.ops) if i in keep])
        step[0] = "dropping single ops"
        i = len(w.ops) - 1
        while i >= 0:
            if len(w.ops) > 1 and attempt([op for j, op in enumerate(w.ops) if j != i]):
                changed = True
            i -= 1
        for i in range(len(w.ops)):
            for smaller in _ungrouped(w.ops[i]):
                if attempt([*w.ops[:i], *smaller, *w.ops[i + 1 :]]):
                    changed = True
                    break
        step[0] = "simplifying arguments"
        for i in range(len(w.ops)):
            for simpler in _simpler(w.ops[i]):
                if attempt([simpler if j == i else op for j, op in enumerate(w.ops)]):
                    changed = True
                    break
    return w, f


def _top(w: Workload, flat: int) -> int:
    """The top-level op that holds flat op index `flat` (findings count ops with groups inlined)."""
    if flat < 0:
        return flat
    seen = 0
    for top, op in enumerate(w.ops):
        seen += len(op.ops) if isinstance(op, Parallel) else 1
        if flat < seen:
            return top
    return len(w.ops)


def _group_shrinks(op: Parallel) -> list[list[Op]]:
    """A group's cheapest replacements first: nothing, one side alone, its ops serially (in order, then reversed)."""
    out: list[list[Op]] = [[]]
    out += [[side] for side in op.ops]
    out += [list(op.ops), list(reversed(op.ops))]
    return out


def _ungrouped(op: Op) -> list[list[Op]]:
    """A parallel group with one op fewer (a group of two becomes its other op alone)."""
    if not isinstance(op, Parallel):
        return []
    out: list[list[Op]] = []
    for j in range(len(op.ops)):
        rest = op.ops[:j] + op.ops[j + 1 :]
        out.append([Parallel(rest)] if len(rest) > 1 else list(rest))
    return out


def _maps(op: Op) -> set[str]:
    inner = op.ops if isinstance(op, Parallel) else (op,)
    return {m for o in inner if (m := getattr(o, "map", None)) is not None}


def _closure(w: Workload, at: int) -> set[int]:
    """Ops that touch the files (and mappings) the op at `at` depends on, transitively."""
    if not 0 <= at < len(w.ops):
        return set(range(len(w.ops)))
    files: set[str] = set(w.ops[at].files)
    maps: set[str] = _maps(w.ops[at])
    for op in w.ops:
        if isinstance(op, Mmap) and op.map in maps:
            files.add(op.file)
    grew = True
    while grew:
        grew = False
        for op in flatten(w.ops):
            if isinstance(op, Reflink) and ({op.src, op.dst} & files) and not {op.src, op.dst} <= files:
                files |= {op.src, op.dst}
                grew = True
            if isinstance(op, Mmap) and op.file in files and op.map not in maps:
                maps.add(op.map)
                grew = True
    keep = set()
    for i, op in enumerate(w.ops):
        ms = _maps(op)
        if set(op.files) & files or ms & maps or (not op.files and not ms):
            keep.add(i)
    return keep


def _simpler(op: Op) -> list[Op]:
    """Candidate replacements with smaller or more aligned arguments, most drastic first."""
    if isinstance(op, Parallel):
        return [
            Parallel((*op.ops[:j], simpler, *op.ops[j + 1 :]))
            for j, inner in enumerate(op.ops)
            for simpler in _simpler(inner)
        ]
    out: list[Op] = []
    for fld in fields(op):
        v = getattr(op, fld.name)
        if fld.name not in ("off", "len", "size", "soff", "doff", "pgoff") or not isinstance(v, int):
            continue
        lo = 1 if fld.name == "len" else 0
        cands = [lo, 8, 64, BLOCK_SIZE, (v // BLOCK_SIZE) * BLOCK_SIZE, v // 2, -(-v // 8) * 8 if v % 8 else v]
        for c in dict.fromkeys(cands):
            if lo <= c < v:
                out.append(replace(op, **{fld.name: c}))
    if isinstance(op, Fault) and op.pmd:
        out.append(replace(op, pmd=False))
    if isinstance(op, Mmap) and op.sync:
        out.append(replace(op, sync=False))
    if isinstance(op, Fallocate):
        out += [replace(op, mode=op.mode & ~flag) for flag in FallocMode if flag and op.mode & flag]
    if isinstance(op, (Store, Persist)) and op.len > 8:
        out.append(replace(op, len=8))
    return out


def _shrink_state(w: Workload, f: Finding, judge) -> tuple[StateId | None, Finding]:
    """Keep every in-flight group that the violation does not need fully persisted."""
    if f.crash is None:
        return None, f
    sid = f.crash.state
    changed = True
    while changed and sid.deviations:
        changed = False
        for name, _ in sid.deviations:
            trial = sid.without(name)
            hit = judge(w, trial)
            if hit is not None:
                sid, f = trial, hit
                changed = True
    return sid, f
