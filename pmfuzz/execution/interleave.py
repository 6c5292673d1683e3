"""The interleaving explorer: run a parallel group's ops as threads, one at a time, switching at preempt points.

A target that supports parallel groups lets the engine install a scheduler
(`set_scheduler`); its code calls `preempt(label)` at lock points and phase
boundaries and `block(lock, mode)` when a lock it wants is taken. Each op of a
group runs on its own Python thread, but only the thread holding the baton
runs, so a run is a deterministic function of the scheduler's choices.

A *decision* is taken at the start of a group and at every preempt point,
block and thread exit: which runnable thread runs next. Choosing another
thread while the current one could go on is a preemption. `explore` walks
every decision sequence with at most `bound` preemptions (CHESS's
preemption bounding), depth first, each exactly once; every run that follows
the default policy (keep running the current thread, else the lowest runnable
one) after its forced prefix.

A schedule's printable id names, per group (by its top-level op index), the
thread chosen at each decision up to the last one that differs from the
default, run-length encoded: `3=1x2,0x5` is "in the group at op 3, thread 1
for two decisions, then thread 0 for five, then the default". `-` is the
default schedule of every group.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Protocol

from ..errors import ParseError, PmfuzzError, clip
from .workers import Baton, Worker, give_back, pin_to_this_cpu, take_worker, unpin

__all__ = [
    "Schedule",
    "Decision",
    "Chooser",
    "Deadlock",
    "GroupRun",
    "Scheduler",
    "explore",
    "preemptions",
]


class _LockLike(Protocol):
    name: str

    def free_for(self, mode: Any) -> bool: ...

    def holders(self) -> list[str]: ...


def _thread_name(i: int) -> str:
    return f"t{i}"


# -- schedule ids ---------------------------------------------------------------------


_GROUP = re.compile(r"^([0-9]{1,9})=((?:[0-9]{1,9}(?:x[0-9]{1,9})?)(?:,[0-9]{1,9}(?:x[0-9]{1,9})?)*)$")
MAX_DECISIONS = 100_000
"""Most decisions a schedule id may force per group: real schedules take tens; `3=1x300000000`
must not make pmfuzz build a list of 300 million choices."""


@dataclass(frozen=True, slots=True)
class Schedule:
    """Forced decisions per group: (top-level op index of the group, thread chosen at each decision)."""

    groups: tuple[tuple[int, tuple[int, ...]], ...] = ()

    def __str__(self) -> str:
        parts = []
        for g, choices in self.groups:
            if not choices:
                continue
            runs: list[list[int]] = []
            for c in choices:
                if runs and runs[-1][0] == c:
                    runs[-1][1] += 1
                else:
                    runs.append([c, 1])
            parts.append(f"{g}=" + ",".join(str(t) if n == 1 else f"{t}x{n}" for t, n in runs))
        return " ".join(parts) or "-"

    def for_group(self, g: int) -> tuple[int, ...]:
        for gg, choices in self.groups:
            if gg == g:
                return choices
        return ()

    @classmethod
    def parse(cls, text: str) -> Schedule:
        """`3=1x2,0 7=0,1` (or `-`); errors show the offending part."""
        text = text.strip()
        if text in ("", "-"):
            return cls()
        out: list[tuple[int, tuple[int, ...]]] = []
        for part in text.split():
            m = _GROUP.match(part)
            if not m:
                raise ParseError(f"schedule part {clip(part)} is not GROUP=T[xN],... (e.g. 3=1x2,0)")
            g = int(m.group(1))
            if any(gg == g for gg, _ in out):
                raise ParseError(f"schedule names group {g} twice ({clip(text)})")
            choices: list[int] = []
            for run in m.group(2).split(","):
                t, _, n = run.partition("x")
                if n and int(n) == 0:
                    raise ParseError(f"schedule run {run!r} repeats a thread zero times ({clip(part)})")
                if len(choices) + (int(n) if n else 1) > MAX_DECISIONS:
                    raise ParseError(f"schedule group {g} forces more than {MAX_DECISIONS} decisions ({clip(part)})")
                choices += [int(t)] * (int(n) if n else 1)
            out.append((g, tuple(choices)))
        return cls(tuple(sorted(out)))


@dataclass(frozen=True, slots=True)
class Decision:
    """One scheduling decision: who could run, who was running, who was chosen, and where."""

    group: int
    runnable: tuple[int, ...]
    current: int | None
    """The thread that reached this decision and could go on (None at a start, block or exit)."""
    chosen: int

    @property
    def default(self) -> int:
        return self.current if self.current is not None else self.runnable[0]

    @property
    def preemption(self) -> bool:
        return self.current is not None and self.chosen != self.current


def preemptions(ds: Sequence[Decision]) -> int:
    return sum(d.preemption for d in ds)


class Chooser:
    """Takes decisions: forced ones from a schedule (per group), the default policy after them."""

    def __init__(self, forced: Schedule | Sequence[int] = Schedule(), reached: dict[bytes, int] | None = None) -> None:
        self._reached = reached
        """The exploration's states at group ends -> fewest preemptions a run had used reaching
        them, among runs that followed the default policy from there (None: not exploring)."""
        self._global: list[int] | None = None
        self._per_group: Schedule | None = None
        if isinstance(forced, Schedule):
            self._per_group = forced
        else:
            self._global = list(forced)
        self.decisions: list[Decision] = []
        self._count: dict[int, int] = {}

    def choose(self, group: int, runnable: tuple[int, ...], current: int | None) -> int:
        k = self._count.get(group, 0)
        self._count[group] = k + 1
        pos = len(self.decisions)
        want: int | None = None
        if self._global is not None and pos < len(self._global):
            want = self._global[pos]
        elif self._per_group is not None:
            mine = self._per_group.for_group(group)
            if k < len(mine):
                want = mine[k]
        cur = current if current is not None and current in runnable else None
        if want is None:
            want = cur if cur is not None else runnable[0]
        elif want not in runnable:
            raise PmfuzzError(
                f"schedule does not fit the run: decision {k} of the group at op {group} "
                f"chooses t{want}, but only {', '.join(map(_thread_name, runnable))} can run there"
            )
        self.decisions.append(Decision(group, runnable, cur, want))
        return want

    def stop_here(self, state: Callable[[], bytes | None]) -> bool:
        """At the end of a group: whether an earlier run of the exploration reached this state with
        no more preemptions used, past its forced decisions. Every continuation from here was
        explored from that run (its default one, and the branches the explorer took off it), so
        this run's are duplicates: the caller stops it. `state` is asked only when that can help."""
        if self._reached is None or self._global is None or len(self.decisions) < len(self._global):
            return False
        key = state()
        if key is None:
            return False
        used = preemptions(self.decisions)
        best = self._reached.get(key)
        if best is not None and best <= used:
            return True
        self._reached[key] = used
        return False

    def schedule(self) -> Schedule:
        """The shortest schedule id that forces this run: per group, up to its last non-default choice."""
        per: dict[int, list[Decision]] = {}
        for d in self.decisions:
            per.setdefault(d.group, []).append(d)
        out = []
        for g, ds in per.items():
            last = max((i for i, d in enumerate(ds) if d.chosen != d.default), default=-1)
            if last >= 0:
                out.append((g, tuple(d.chosen for d in ds[: last + 1])))
        return Schedule(tuple(sorted(out)))


def explore(bound: int = 2, prune: bool = True) -> Iterator[Chooser]:
    """Every decision sequence with at most `bound` preemptions, each once, the default run first.

    The caller runs each yielded chooser to completion (or until `Chooser.stop_here` stops it)
    before asking for the next one; the explorer reads the decisions the run took to find the
    next branches. `prune`: a run that reaches a group's end in a state an earlier run reached
    there stops, and nothing after that point is branched off it (the earlier run's branches
    cover it): the distinct executions explored are the same, fewer runs.
    """
    stack: list[list[int]] = [[]]
    reached: dict[bytes, int] = {}
    while stack:
        prefix = stack.pop()
        ch = Chooser(prefix, reached if prune else None)
        yield ch
        ds = ch.decisions
        used = 0
        before: list[int] = []
        branches: list[list[int]] = []
        for k, d in enumerate(ds):
            if k >= len(prefix):
                for c in d.runnable:
                    if c == d.chosen:
                        continue
                    cost = used + (1 if d.current is not None and c != d.current else 0)
                    if cost <= bound:
                        branches.append([*before, c])
            used += d.preemption
            before.append(d.chosen)
        stack.extend(reversed(branches))


# -- the scheduler ----------------------------------------------------------------------


class _Abort(BaseException):
    """Unwinds a thread the scheduler gave up on (a deadlock): not an error of the target."""


@dataclass(eq=False)
class _Thread:
    index: int
    fn: Callable[[], Any]
    text: str
    sem: Baton = field(default_factory=Baton)
    ctx: Any = None
    blocked: tuple[Any, Any] | None = None
    label: str = "start"
    finished: bool = False
    result: Any = None
    error: BaseException | None = None


@dataclass(frozen=True, slots=True)
class Deadlock:
    """Every thread blocked: who waits for which lock, held by whom."""

    waits: tuple[tuple[str, str, str, str, tuple[str, ...]], ...]
    """(thread, its op, lock name, mode wanted, holders) per blocked thread."""
    cycle: tuple[str, ...]
    """Threads around one wait-for cycle, in order (the first repeated at the end)."""

    def __str__(self) -> str:
        parts = [
            f"{t} `{op}` waits for {lock} ({mode}) held by {', '.join(h) or 'nobody'}"
            for t, op, lock, mode, h in self.waits
        ]
        cyc = " -> ".join(self.cycle) if self.cycle else "no cycle among the group's threads"
        return "; ".join(parts) + f" [cycle: {cyc}]"


@dataclass(frozen=True)
class GroupRun:
    """What one group did under one schedule."""

    results: tuple[Any, ...]
    errors: tuple[BaseException | None, ...]
    finish_order: tuple[int, ...]
    steps: tuple[tuple[int, str], ...]
    """(thread, label it stopped at) per slice of running, in order."""
    deadlock: Deadlock | None = None


class Scheduler:
    """Runs a group's ops as threads, one at a time, switching only at preempt, block and exit.

    `context` saves and restores per-thread state the target keeps globally (the PMem's current
    op and site stack), so events stay attributed to the op that issued them.
    """

    concurrent = True

    def __init__(
        self,
        chooser: Chooser,
        context: tuple[Callable[[], Any], Callable[[Any], None], Callable[[], Any]] | None = None,
        on_step: Callable[[int], None] | None = None,
    ) -> None:
        self.chooser = chooser
        self.on_step = on_step
        """Called with the thread's index after each slice it ran, while every thread is stopped."""
        self._save: Callable[[], Any]
        self._restore: Callable[[Any], None]
        self._fresh: Callable[[], Any]
        self._save, self._restore, self._fresh = context or (lambda: None, lambda c: None, lambda: None)
        self._main = Baton()
        self._threads: list[_Thread] = []
        self._running: _Thread | None = None
        self._aborting = False
        self._group = 0
        self._current: int | None = None
        self._steps: list[tuple[int, str]] = []
        self._finish: list[int] = []
        self._handoff: tuple[BaseException | None, int | Deadlock | None] | None = None
        """Set by a thread that preempted itself, did its slice's bookkeeping and took the next
        decision for another thread (or failed to): what the main thread goes on with."""

    # -- the Sched protocol the target calls ---------------------------------------

    def current(self) -> str:
        return _thread_name(self._running.index) if self._running is not None else "t0"

    def preempt(self, label: str) -> None:
        """End the running thread's slice; when the next decision lets it go on, it does so without
        waking the main thread (two thread switches, about 30 us, at each of most preempt points)."""
        t = self._running
        if t is None:
            return
        t.label = label
        if self._aborting:
            raise _Abort
        try:
            self._slice_done(t)
            c = self._decide()
        except BaseException as e:
            self._handoff = (e, None)
        else:
            if c == t.index:
                self._restore(t.ctx)
                self._running = t
                return
            self._handoff = (None, c)
        self._main.release()
        t.sem.acquire()
        if self._aborting:
            raise _Abort

    def block(self, lock: _LockLike, mode: Any) -> None:
        t = self._running
        if t is None:
            raise AssertionError(f"{lock.name} held ({lock.holders()}) outside a parallel group")
        t.blocked = (lock, mode)
        t.label = f"{lock.name}.{getattr(mode, 'value', mode)} (blocked)"
        try:
            self._yield(t)
        finally:
            t.blocked = None

    def _yield(self, t: _Thread) -> None:
        if self._aborting:
            raise _Abort
        self._main.release()
        t.sem.acquire()
        if self._aborting:
            raise _Abort

    # -- driving a group --------------------------------------------------------------

    def _body(self, t: _Thread) -> None:
        """A thread's op, begun when the scheduler first chooses it: starting its worker is its first
        go (a worker woken at the group's start only to wait for its turn cost a switch each way)."""
        try:
            if not self._aborting:
                t.result = t.fn()
        except _Abort:
            pass
        except BaseException as e:  # the target's error: a finding, reported by the engine
            t.error = e
        finally:
            t.finished = True
            self._main.release()

    def _slice_done(self, t: _Thread) -> None:
        """Bookkeeping after a thread's slice ended (it preempted, blocked or exited), every thread stopped."""
        self._running = None
        t.ctx = self._save()
        self._steps.append((t.index, "exit" if t.finished else t.label))
        if self.on_step is not None:
            self.on_step(t.index)
        if t.finished:
            self._finish.append(t.index)
        self._current = t.index if not t.finished and t.blocked is None else None

    def _decide(self) -> int | Deadlock | None:
        """The next thread to run; a deadlock when every live thread is blocked; None when all finished."""
        alive = [t for t in self._threads if not t.finished]
        if not alive:
            return None
        runnable = tuple(t.index for t in alive if self._runnable(t))
        if not runnable:
            return self._deadlock(alive)
        return self.chooser.choose(self._group, runnable, self._current)

    def _runnable(self, t: _Thread) -> bool:
        if t.finished:
            return False
        if t.blocked is None:
            return True
        lock, mode = t.blocked
        return bool(lock.free_for(mode))

    def run_group(self, group: int, fns: Sequence[Callable[[], Any]], texts: Sequence[str]) -> GroupRun:
        """Run `fns` as threads t0, t1, ... until all finish or all block (all on the caller's CPU)."""
        cpus = pin_to_this_cpu()
        try:
            return self._run_group(group, fns, texts)
        finally:
            unpin(cpus)

    def _run_group(self, group: int, fns: Sequence[Callable[[], Any]], texts: Sequence[str]) -> GroupRun:
        main_ctx = self._save()
        self._threads = [
            _Thread(i, fn, txt, ctx=self._fresh()) for i, (fn, txt) in enumerate(zip(fns, texts, strict=True))
        ]
        self._group, self._current, self._steps, self._finish = group, None, [], []
        here = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
        workers: list[Worker | None] = [None] * len(self._threads)
        deadlock = None
        try:
            c = self._decide()
            while isinstance(c, int):
                t = self._threads[c]
                self._restore(t.ctx)
                self._running = t
                self._handoff = None
                if workers[c] is None:
                    w = take_worker()
                    workers[c] = w
                    w.start(partial(self._body, t), here)
                else:
                    t.sem.release()
                self._main.acquire()
                if self._handoff is not None:
                    err, c = self._handoff
                    if err is not None:
                        raise err
                    continue
                self._slice_done(t)
                c = self._decide()
            deadlock = c
        finally:
            self._abort_rest(workers)
            for worker, t in zip(workers, self._threads, strict=True):
                if worker is not None and t.finished:
                    give_back(worker)
            self._restore(main_ctx)
        return GroupRun(
            tuple(t.result for t in self._threads),
            tuple(t.error for t in self._threads),
            tuple(self._finish),
            tuple(self._steps),
            deadlock,
        )

    def _abort_rest(self, workers: Sequence[Worker | None]) -> None:
        """Unwind the threads that began and did not finish (a thread never chosen never began)."""
        if all(t.finished or w is None for t, w in zip(self._threads, workers, strict=True)):
            return
        self._aborting = True
        for t, w in zip(self._threads, workers, strict=True):
            if w is not None and not t.finished:
                self._restore(t.ctx)
                self._running = t
                t.sem.release()
                self._main.acquire()
                self._running = None
        self._aborting = False

    def _deadlock(self, alive: list[_Thread]) -> Deadlock:
        waits = []
        edges: dict[str, list[str]] = {}
        for t in alive:
            assert t.blocked is not None, "a deadlock holds only blocked threads"
            lock, mode = t.blocked
            holders = tuple(lock.holders())
            me = _thread_name(t.index)
            waits.append((me, t.text, lock.name, getattr(mode, "value", str(mode)), holders))
            edges[me] = [h for h in holders if h in {_thread_name(x.index) for x in alive}]
        return Deadlock(tuple(waits), _cycle(edges))


def _cycle(edges: dict[str, list[str]]) -> tuple[str, ...]:
    """One cycle of the wait-for graph, found by walking from each thread (a self-wait included)."""
    for start in sorted(edges):
        path = [start]
        seen = {start: 0}
        node = start
        while edges.get(node):
            node = edges[node][0]
            if node in seen:
                loop = path[seen[node] :]
                return (*loop, node)
            seen[node] = len(path)
            path.append(node)
    return ()
