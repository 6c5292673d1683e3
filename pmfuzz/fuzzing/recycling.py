"""Judging processes that are replaced by fresh ones after a fixed number of batches.

A long campaign's resident memory crept up while the data it held stayed flat
(2.1 hours: heap in use 28-30 MiB throughout, resident floor 176 -> 228 MiB):
pymalloc returns an arena only when it is empty, and a few objects made during
one large workload's peak pin arenas for the rest of the process's life. No
trim can give those back, but a process that is replaced can. Batches are pure
functions of their arguments (`run_batch`), so which process runs one changes
nothing in the findings; the replacement is forked from the campaign's process,
whose memory holds no workload's leftovers.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import threading
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import CancelledError, Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from functools import partial
from typing import Any

from .memory import freeze_startup_objects, keep_freed_memory_until_trimmed
from .procs import die_with_parent

__all__ = ["RecyclingPool", "recycling_pool"]

_Job = tuple[Future, Callable[..., Any], tuple[Any, ...]]


class RecyclingPool:
    """`workers` forked processes as a `BatchRunner`; a batch submitted once they were given
    `per_process` batches each goes to a fresh set (never, with `per_process` None).

    The fresh set is forked at once, from the submitting thread (forking from a pool's own thread
    could copy a lock another thread holds), but is given work only when the retired set has
    finished every batch it holds, so no more than `workers` processes judge at a time. Batches
    submitted meanwhile wait, in order, behind futures of their own, and all go to that set: a
    set may run past its quota by the batches a campaign keeps in flight (`window`).
    """

    def __init__(self, workers: int, per_process: int | None) -> None:
        if workers < 1 or (per_process is not None and per_process < 1):
            raise ValueError(f"workers {workers} and per_process {per_process} must be positive")
        self._workers = workers
        self._quota = None if per_process is None else workers * per_process
        self._ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
        self._lock = threading.RLock()
        self._pool: ProcessPoolExecutor | None = None
        self._retired: list[tuple[ProcessPoolExecutor, list[Any]]] = []
        """Sets given no more work, with their processes (listed before the set's own shutdown,
        which forgets them): `shutdown` must still end one that is running a batch."""
        self._given = 0
        self._running = 0
        """Batches the current set holds."""
        self._draining = 0
        """Batches the retired sets still hold: the current set waits for them."""
        self._held: deque[_Job] = deque()
        self._closed = False
        self._broken = False
        """A process of the current set died (killed, out of memory): the next batch goes to a fresh set."""
        self.generations = 0
        """Sets of processes started so far."""

    def submit(self, fn: Callable[..., Any], /, *args: Any) -> Future:
        out: Future = Future()
        with self._lock:
            if self._closed:
                raise RuntimeError("the pool is shut down")
            if self._pool is None or self._broken or (self._quota is not None and self._given >= self._quota):
                self._renew()
            self._held.append((out, fn, args))
            self._pump()
        return out

    def shutdown(self) -> None:
        """End every process at once: a batch still running has nothing left to give."""
        with self._lock:
            self._closed = True
            pools = [*self._retired, *([(self._pool, _processes(self._pool))] if self._pool is not None else [])]
            self._pool, self._retired = None, []
            held = list(self._held)
            self._held.clear()
        for fut, _, _ in held:
            fut.cancel()
        for pool, procs in pools:
            for p in procs:
                p.terminate()
            pool.shutdown(wait=True, cancel_futures=True)

    def _renew(self) -> None:
        if self._pool is not None:
            procs = _processes(self._pool)
            self._pool.shutdown(wait=False)
            self._retired.append((self._pool, procs))
            self._draining += self._running
        self._retired = [(p, procs) for p, procs in self._retired if any(q.is_alive() for q in procs)]
        pool = ProcessPoolExecutor(
            self._workers, mp_context=self._ctx, initializer=_pool_worker, initargs=(os.getpid(),)
        )
        pool.submit(os.getpid)  # forks the set now, from this thread, not later from a pool's thread
        self._pool, self._given, self._running, self._broken = pool, 0, 0, False
        self.generations += 1

    def _pump(self) -> None:
        """Give the held batches to the current set once the retired ones are done (not to a broken
        set: they wait for the next submission, which starts a fresh one from the submitting thread)."""
        while self._held and self._draining == 0 and self._pool is not None and not self._broken:
            out, fn, args = self._held.popleft()
            if not out.set_running_or_notify_cancel():
                continue
            try:
                inner = self._pool.submit(fn, *args)
            except (BrokenProcessPool, RuntimeError) as e:  # a process died since: the driver runs it again
                self._broken = True
                out.set_exception(e if isinstance(e, BrokenProcessPool) else BrokenProcessPool(str(e)))
                continue
            self._given += 1
            self._running += 1
            inner.add_done_callback(partial(self._finished, out=out, gen=self.generations))

    def _finished(self, done: Future, out: Future, gen: int) -> None:
        with self._lock:
            if gen == self.generations:
                self._running -= 1
                self._broken = self._broken or (
                    not done.cancelled() and isinstance(done.exception(), BrokenProcessPool)
                )
            else:
                self._draining -= 1
            if not self._closed:
                self._pump()
        if done.cancelled():
            out.set_exception(CancelledError())
        elif done.exception() is not None:
            out.set_exception(done.exception())
        else:
            out.set_result(done.result())


def _processes(pool: ProcessPoolExecutor) -> list[Any]:
    return list((getattr(pool, "_processes", None) or {}).values())


@contextmanager
def recycling_pool(workers: int, per_process: int | None) -> Iterator[RecyclingPool]:
    """A `RecyclingPool` whose processes die with this process (even on kill -9), leave Ctrl-C to
    it, and are ended at once when the campaign stops."""
    pool = RecyclingPool(workers, per_process)
    try:
        yield pool
    finally:
        pool.shutdown()


def _pool_worker(parent: int) -> None:
    die_with_parent(parent)
    keep_freed_memory_until_trimmed()
    freeze_startup_objects()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
