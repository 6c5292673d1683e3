"""Modelled locks and the preemption hook.

Every lock point and iomap phase boundary calls `Sched.preempt(label)`. Run
sequentially it does nothing; the interleaving explorer (`pmfuzz.interleave`)
passes a scheduler that switches threads there. Locks record their holders so
the scheduler can see who waits on whom: a thread that finds a lock taken
calls `Sched.block`, which for the sequential scheduler is a model bug (one
thread can never wait on anybody) and for the explorer makes the thread
unrunnable until the lock is free.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

__all__ = ["Sched", "Lock", "LockMode"]


class LockMode(enum.StrEnum):
    SHARED = "shared"
    EXCL = "excl"


class Sched:
    """The sequential scheduler: one thread, never switches."""

    concurrent = False
    """True for a scheduler that interleaves threads (the model then keeps user stores atomic)."""

    def preempt(self, label: str) -> None:
        return None

    def current(self) -> str:
        return "t0"

    def block(self, lock: Lock, mode: LockMode) -> None:
        """Wait until `lock` may be free for `mode`; the caller re-checks."""
        raise AssertionError(f"sequential model: {lock.name} already held ({lock.writer or lock.readers})")


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
