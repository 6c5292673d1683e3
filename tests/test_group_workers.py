"""A group's threads are kept between groups, and a thread that goes on after a preempt point
without waking the main thread leaves the same steps as one that hands the baton back."""

from __future__ import annotations

import threading

from pmfuzz.errors import PmfuzzError
from pmfuzz.execution.interleave import Chooser, Scheduler, explore
from pmfuzz.fs.locks import Lock, LockMode


def _ops(sched: Scheduler, log: list[str], a: Lock, b: Lock) -> list:
    def op(tag: str, first: Lock, second: Lock) -> str:
        for k in range(3):
            sched.preempt(f"{tag}{k}")
            log.append(f"{tag}{k}")
        with first.hold(sched), second.hold(sched, LockMode.EXCL):
            log.append(f"{tag} holds both")
        return tag

    def lone() -> str:
        sched.preempt("z0")
        return "z"

    return [lambda: op("x", a, b), lambda: op("y", b, a), lone]


def _run(chooser: Chooser) -> tuple:
    seen: list[int] = []
    sched = Scheduler(chooser, on_step=seen.append)
    log: list[str] = []
    a, b = Lock("A"), Lock("B")
    run = sched.run_group(0, _ops(sched, log, a, b), ["x", "y", "z"])
    assert seen == [t for t, _ in run.steps], "on_step follows every slice, in order"
    return run, log


def test_every_schedule_steps_as_its_decisions_say_and_deadlocks_unwind() -> None:
    runs = []
    for chooser in explore(2):
        run, log = _run(chooser)
        assert (run.deadlock is None) == ({"x holds both", "y holds both"} <= set(log))
        # one decision before each slice (after the last slice there is none to take, or a deadlock)
        assert [d.chosen for d in chooser.decisions] == [t for t, _ in run.steps]
        runs.append(run)
    assert any(r.deadlock is not None for r in runs), "the ABBA order deadlocks in some schedule"
    assert any(r.deadlock is None and r.results == ("x", "y", "z") for r in runs)


def test_workers_are_reused_across_groups_and_after_a_deadlock() -> None:
    _run(Chooser())
    before = threading.active_count()
    for chooser in explore(2):
        _run(chooser)
    assert threading.active_count() <= before + 3


def test_a_thread_never_chosen_never_begins_and_a_failed_decision_unwinds_only_begun_ones() -> None:
    """The forced schedule names a thread that cannot run at the second decision: the first thread,
    stopped at its preempt point, is unwound; the second, never chosen, never began (unwinding it
    would wait for a thread that does not exist); the workers then serve the next group."""
    ran: list[str] = []
    sched = Scheduler(Chooser([0, 7]))

    def first() -> None:
        sched.preempt("a")
        ran.append("t0")

    def second() -> None:
        ran.append("t1")

    done = threading.Event()
    err: list[BaseException] = []

    def group() -> None:
        try:
            sched.run_group(0, [first, second], ["a", "b"])
        except PmfuzzError as e:
            err.append(e)
        done.set()

    threading.Thread(target=group, daemon=True).start()
    assert done.wait(30), "the failed decision left the scheduler waiting for a thread"
    assert err and "t7" in str(err[0])
    assert ran == []
    run, _log = _run(Chooser())
    assert run.results == ("x", "y", "z")
