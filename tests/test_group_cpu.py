"""A parallel group's threads run on one CPU, and the caller gets its CPUs back after the group."""

from __future__ import annotations

import os

import pytest

from pmfuzz.execution.interleave import Chooser, Scheduler, explore

pytestmark = pytest.mark.skipif(
    not hasattr(os, "sched_setaffinity") or len(os.sched_getaffinity(0)) < 2,
    reason="needs CPU affinity and two CPUs",
)


def _group(sched: Scheduler, seen: list[set[int]]) -> list[object]:
    def op(tag: str) -> str:
        seen.append(os.sched_getaffinity(0))
        sched.preempt(f"{tag} half-way")
        seen.append(os.sched_getaffinity(0))
        return tag

    return list(sched.run_group(0, [lambda: op("a"), lambda: op("b")], ["a", "b"]).results)


def test_the_group_threads_share_one_cpu_and_every_schedule_gives_the_same_results() -> None:
    before = os.sched_getaffinity(0)
    results = []
    for chooser in explore(1):
        seen: list[set[int]] = []
        results.append(_group(Scheduler(chooser), seen))
        assert len(seen) == 4 and all(len(s) == 1 for s in seen) and len({frozenset(s) for s in seen}) == 1
        assert os.sched_getaffinity(0) == before
    assert len(results) > 1 and all(r == ["a", "b"] for r in results)


def test_the_cpus_come_back_when_a_thread_of_the_group_raises() -> None:
    before = os.sched_getaffinity(0)

    def boom() -> None:
        raise RuntimeError("the target's own error")

    run = Scheduler(Chooser()).run_group(0, [boom, lambda: 1], ["boom", "one"])
    assert isinstance(run.errors[0], RuntimeError) and run.results[1] == 1
    assert os.sched_getaffinity(0) == before


def test_a_caller_already_on_one_cpu_is_left_there() -> None:
    before = os.sched_getaffinity(0)
    one = {min(before)}
    os.sched_setaffinity(0, one)
    try:
        seen: list[set[int]] = []
        _group(Scheduler(Chooser()), seen)
        assert all(s == one for s in seen) and os.sched_getaffinity(0) == one
    finally:
        os.sched_setaffinity(0, before)
