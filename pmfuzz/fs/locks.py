"""Modelled locks and the preemption hook.

Every lock point and iomap phase boundary calls `Sched.preempt(label)`. Run
sequentially it does nothing; the interleaving explorer (`pmfuzz.execution.interleave`)
passes a scheduler that switches threads there. Locks record their holders so
the scheduler can see who waits on whom: a thread that finds a lock taken
calls `Sched.block`, which for the sequential scheduler is a model bug (one
thread can never wait on anybody) and for the explorer makes the thread
unrunnable until the lock is free.

`RangeLock` is the byte-range alternative to i_rwsem (daxfs `locks=range`):
it waits the same way, but refuses a request that conflicts with a range the
requesting thread holds itself (`RangeDeadlock`, which becomes EDEADLK), as a
range-lock implementation that tracks owners can, where a sleeping rwsem
would hang.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Protocol

from ..lang.workload import RANGE_END

__all__ = [
    "Sched",
    "Lock",
    "LockMode",
    "RangeLock",
    "RangeHold",
    "RangeWait",
    "RangeDeadlock",
    "RANGE_END",
    "Waitable",
]


class LockMode(enum.StrEnum):
    SHARED = "shared"
    EXCL = "excl"


class Waitable(Protocol):
    """What a thread can wait on (a lock, a range of a range lock, an inode's pinned pages), as the explorer sees it."""

    @property
    def name(self) -> str: ...

    def free_for(self, mode: LockMode) -> bool: ...

    def holders(self) -> list[str]: ...


class Sched:
    """The sequential scheduler: one thread, never switches."""

    concurrent = False
    """True for a scheduler that interleaves threads (the model then keeps user stores atomic)."""

    def preempt(self, label: str) -> None:
        return None

    def current(self) -> str:
        return "t0"

    def block(self, lock: Waitable, mode: LockMode) -> None:
        """Wait until `lock` may be free for `mode`; the caller re-checks."""
        raise AssertionError(f"sequential model: {lock.name} already held ({lock.holders()})")


@dataclass(eq=False)
class Lock:
    """A sleeping rw lock (i_rwsem, MMAPLOCK/invalidate_lock, ILOCK, an xarray entry lock)."""

    name: str
    readers: list[str] = field(default_factory=list)
    writer: str | None = None

    def free_for(self, mode: LockMode) -> bool:
        if mode is LockMode.EXCL:
            return self.writer is None and not self.readers
        return self.writer is None

    def holders(self) -> list[str]:
        return [self.writer] if self.writer is not None else list(self.readers)

    @property
    def held(self) -> bool:
        return self.writer is not None or bool(self.readers)

    @contextmanager
    def hold(self, sched: Sched, mode: LockMode = LockMode.EXCL, *, preempt: bool = True) -> Iterator[None]:
        """Take the lock for the block's duration.

        `preempt=False` is for locks held only across code with no preemption point inside (ILOCK
        around an extent lookup): they can never be contended, so they only record their holder.
        """
        if preempt:
            sched.preempt(f"{self.name}.{mode.value}")
        while not self.free_for(mode):
            sched.block(self, mode)
        me = sched.current()
        if mode is LockMode.EXCL:
            self.writer = me
        else:
            self.readers.append(me)
        try:
            yield
        finally:
            if mode is LockMode.EXCL:
                self.writer = None
            else:
                self.readers.remove(me)
            if preempt:
                sched.preempt(f"{self.name}.unlock")


class RangeDeadlock(Exception):
    """A thread asked for a range that overlaps one it holds itself in a conflicting mode.

    Waiting could never end (the holder is the waiter), so the range lock refuses instead and the
    caller turns the refusal into EDEADLK -- a fault on the source page of a write(2) into the same
    range is the case that matters.
    """

    def __init__(self, lock: RangeLock, start: int, end: int, mode: LockMode, held: RangeHold) -> None:
        super().__init__(f"{lock.name}{_span(start, end)} ({mode.value}) overlaps {held} held by the same thread")
        self.lock, self.start, self.end, self.mode, self.held = lock, start, end, mode, held


def _span(start: int, end: int) -> str:
    return f"[{start}:{'' if end >= RANGE_END else end}]"


@dataclass(frozen=True, slots=True)
class RangeHold:
    """One granted range [start, end) of a range lock, its mode and the thread holding it."""

    owner: str
    start: int
    end: int
    mode: LockMode

    def conflicts(self, start: int, end: int, mode: LockMode) -> bool:
        overlap = self.start < end and start < self.end
        return overlap and (mode is LockMode.EXCL or self.mode is LockMode.EXCL)

    def __str__(self) -> str:
        return f"{_span(self.start, self.end)} ({self.mode.value})"


@dataclass(eq=False)
class RangeLock:
    """A sleeping byte-range rw lock over one file (the range-lock replacement for i_rwsem).

    Overlapping ranges conflict unless both are shared; disjoint ranges never do. A waiter blocks
    through `Sched.block` on a `RangeWait`, which the explorer sees as a lock whose holders are the
    threads holding conflicting ranges, so cross-thread cycles show up as deadlocks. A request that
    conflicts with the requesting thread's own holding raises `RangeDeadlock` instead of waiting.
    """

    name: str
    holds: list[RangeHold] = field(default_factory=list)

    def conflicting(self, start: int, end: int, mode: LockMode, *, besides: str | None = None) -> list[RangeHold]:
        """Holds that overlap [start, end) in a conflicting mode (those of thread `besides` left out)."""
        return [h for h in self.holds if h.owner != besides and h.conflicts(start, end, mode)]

    @contextmanager
    def hold(
        self, sched: Sched, start: int, end: int, mode: LockMode = LockMode.EXCL, *, preempt: bool = True
    ) -> Iterator[RangeHold]:
        """Take [start, end) for the block's duration; raises `RangeDeadlock` on a self-conflict."""
        if end <= start:
            raise ValueError(f"{self.name}: empty range {_span(start, end)}")
        if preempt:
            sched.preempt(f"{self.name}{_span(start, end)}.{mode.value}")
        me = sched.current()
        wait = RangeWait(self, start, end, me, mode)
        while True:
            mine = [h for h in self.holds if h.owner == me and h.conflicts(start, end, mode)]
            if mine:
                raise RangeDeadlock(self, start, end, mode, mine[0])
            if wait.free_for(mode):
                break
            sched.block(wait, mode)
        got = RangeHold(me, start, end, mode)
        self.holds.append(got)
        try:
            yield got
        finally:
            self.holds.remove(got)
            if preempt:
                sched.preempt(f"{self.name}{_span(start, end)}.unlock")


@dataclass(frozen=True, slots=True)
class RangeWait:
    """What a thread waiting for [start, end) of a range lock waits on, seen as a lock by the explorer."""

    lock: RangeLock
    start: int
    end: int
    owner: str
    mode: LockMode

    @property
    def name(self) -> str:
        return f"{self.lock.name}{_span(self.start, self.end)}"

    def free_for(self, mode: LockMode) -> bool:
        return not self.lock.conflicting(self.start, self.end, mode, besides=self.owner)

    def holders(self) -> list[str]:
        blocking = self.lock.conflicting(self.start, self.end, self.mode, besides=self.owner)
        return list(dict.fromkeys(h.owner for h in blocking))
