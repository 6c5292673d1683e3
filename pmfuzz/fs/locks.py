"""Modelled locks and the preemption hook.

Every lock point and iomap phase boundary calls `Sched.preempt(label)`. Run
sequentially it does nothing; an interleaving explorer replaces `Sched` to
switch threads there. Locks record their holders so a scheduler can see who
waits on whom; run sequentially, a lock that is already held is a model bug.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

__all__ = ["Sched", "Lock", "LockMode"]


class Sched:
    """The sequential scheduler: one thread, never switches."""

    def preempt(self, label: str) -> None:
        return None

    def current(self) -> str:
        return "t0"


class LockMode(enum.StrEnum):
    SHARED = "shared"
    EXCL = "excl"


@dataclass(eq=False)
class Lock:
    """A sleeping rw lock (i_rwsem, MMAPLOCK/invalidate_lock, ILOCK, an xarray entry lock)."""

    name: str
    readers: list[str] = field(default_factory=list)
    writer: str | None = None

    def _free_for(self, mode: LockMode) -> bool:
        if mode is LockMode.EXCL:
            return self.writer is None and not self.readers
        return self.writer is None

    @contextmanager
    def hold(self, sched: Sched, mode: LockMode = LockMode.EXCL) -> Iterator[None]:
        sched.preempt(f"{self.name}.{mode.value}")
        if not self._free_for(mode):
            raise AssertionError(f"sequential model: {self.name} already held ({self.writer or self.readers})")
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
            sched.preempt(f"{self.name}.unlock")
