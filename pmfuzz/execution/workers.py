"""The threads a parallel group's ops run on: kept between groups, and on the scheduler's CPU.

A race workload runs its group once per schedule (tens of times), each op on its own thread.
Starting a thread cost about 65 us here, more than most slices of the ops it ran; a worker
that finished its op waits for the next one instead. Each job runs pinned to the CPU of the
thread that gave it (see `pin_to_this_cpu`).
"""

from __future__ import annotations

import _thread
import contextlib
import ctypes
import os
import threading
from collections.abc import Callable

__all__ = ["Baton", "Worker", "pin_to_this_cpu", "take_worker", "unpin"]


class Baton:
    """A binary semaphore on one raw lock, given by `release` and taken by `acquire`, for a handoff
    where every release is matched by one acquire: half the cost of `threading.Semaphore` (no
    condition variable, no waiter lock per wait), and a race workload hands off a dozen times a run."""

    __slots__ = ("_lock",)

    def __init__(self) -> None:
        self._lock = _thread.allocate_lock()
        self._lock.acquire()

    def release(self) -> None:
        self._lock.release()

    def acquire(self) -> None:
        self._lock.acquire()


def _libc_sched_getcpu() -> Callable[[], int] | None:
    try:
        fn = ctypes.CDLL(None).sched_getcpu
    except (OSError, AttributeError):
        return None
    fn.restype = ctypes.c_int
    fn.argtypes = []
    return fn


_SCHED_GETCPU = _libc_sched_getcpu() if hasattr(os, "sched_setaffinity") else None


def pin_to_this_cpu() -> set[int] | None:
    """Pin the calling thread to the CPU it runs on, and return the CPUs it had (None: left as it was).

    A group's threads pass one baton, one running at a time: on one CPU a handoff wakes a thread
    there; spread over CPUs each costs a wake-up on another CPU (about 50 us on a VM, where a race
    workload then spent a quarter of its time with no thread running)."""
    if _SCHED_GETCPU is None:
        return None
    try:
        cpus = os.sched_getaffinity(0)
        cpu = _SCHED_GETCPU()
        if len(cpus) <= 1 or cpu not in cpus:
            return None
        os.sched_setaffinity(0, {cpu})
    except OSError:
        return None
    return cpus


def unpin(cpus: set[int] | None) -> None:
    if cpus is not None:
        with contextlib.suppress(OSError):
            os.sched_setaffinity(0, cpus)


class Worker:
    """A daemon thread that runs one job at a time, given by `start`."""

    __slots__ = ("_go", "_job", "_pinned", "thread")

    def __init__(self) -> None:
        self._go = Baton()
        self._job: tuple[Callable[[], None], set[int] | None] | None = None
        self._pinned: set[int] | None = None
        """The CPUs this thread was last pinned to (no system call when the next job wants the same)."""
        self.thread = threading.Thread(target=self._serve, name="pmfuzz-group-worker", daemon=True)
        self.thread.start()

    def start(self, job: Callable[[], None], cpus: set[int] | None) -> None:
        """Run `job` on this thread, pinned to `cpus` (None: where it may already run)."""
        self._job = (job, cpus)
        self._go.release()

    def _serve(self) -> None:
        while True:
            try:
                self._go.acquire()
                job, cpus = self._job or (None, None)
                self._job = None
                if cpus is not None and cpus != self._pinned:
                    with contextlib.suppress(OSError):
                        os.sched_setaffinity(0, cpus)
                        self._pinned = cpus
                if job is not None:
                    job()
            except BaseException:  # a late async exception aimed at an op that already ended
                continue


_IDLE: list[Worker] = []
_IDLE_LOCK = threading.Lock()


def take_worker() -> Worker:
    """An idle worker, or a new one."""
    with _IDLE_LOCK:
        if _IDLE:
            return _IDLE.pop()
    return Worker()


def give_back(worker: Worker) -> None:
    """Return a worker whose job has ended (its op finished or was unwound)."""
    with _IDLE_LOCK:
        _IDLE.append(worker)


def _after_fork() -> None:
    """A forked child has none of the parent's threads: it starts with no idle workers."""
    global _IDLE_LOCK
    _IDLE.clear()
    _IDLE_LOCK = threading.Lock()


os.register_at_fork(after_in_child=_after_fork)
