"""One execution of a workload, as a record: what the judge needs and nothing of how it was run.

`execute` makes a `Run` (the built-in model runs the ops here; a kernel target runs them in its
guest and replays the trace onto the same `PMem`); `judge` and the pictures in `sight` read it,
so the crash-window rule below is the one rule both apply.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from ..lang.workload import Op
from ..pmem import CrashPoint, CrashState, PMem, PointKind, StateId
from ..reference import Expectation, History
from ..target import Guarantee, Target
from ..verdict import Finding, Options
from .reach import BlockMapLog

__all__ = ["Run", "ScheduleStep", "ScheduleHead", "crash_window"]


def crash_window(point: CrashPoint, nops: int, spans: Mapping[int, tuple[int, int]] | None = None) -> tuple[int, int]:
    """(ops finished, last boundary reachable) for a crash at this point.

    Inside a parallel group (`spans` maps each of its op indices to the group's [start, end)),
    any of the group's ops may be under way or done: the window covers the whole group.
    """
    if point.kind is PointKind.END:
        return nops, nops
    k = point.op
    if k < 0:
        return 0, 0
    span = spans.get(k) if spans else None
    if span is not None:
        return span[0], min(span[1], nops)
    if point.kind is PointKind.OP:
        return k, k
    return k, min(k + 1, nops)


@dataclass(frozen=True)
class ScheduleStep:
    """One slice of a schedule in a report: a thread, its op, and the points it passed, in order."""

    thread: int
    op_text: str
    labels: tuple[str, ...]

    def __str__(self) -> str:
        return f"  t{self.thread} `{self.op_text}`: " + " > ".join(self.labels)


@dataclass(frozen=True)
class ScheduleHead:
    """The first evidence line of a finding made under a schedule: how to replay it."""

    sid: str

    def __str__(self) -> str:
        return f"schedule: {self.sid} (replay with `# schedule: {self.sid}`)"


@dataclass(frozen=True)
class Run:
    """A workload executed once (one schedule of its parallel groups), with its crash-free findings."""

    target: Target
    ops: tuple[Op, ...]
    """The flat ops (parallel groups spread out, as `spans` indexes them)."""
    options: Options
    """The options it ran with (a target's minimum op timeout applied)."""
    device: PMem | None
    """The device with the run's trace; None when formatting or the first mount failed (nothing ran)."""
    history: History | None
    """The reference's files at every op boundary."""
    executed: int
    """Ops that finished; crash points at later ops are not judged."""
    returned: int
    """Ops that returned to the caller (an op that raised did not)."""
    spans: Mapping[int, tuple[int, int]]
    """Each op of a parallel group -> the group's [start, end)."""
    groups: tuple[tuple[int, int, int], ...]
    """(group id, start, length) of each parallel group."""
    findings: tuple[Finding, ...]
    """What the ops did wrong while they ran (functional, target errors, deadlocks), one per signature."""
    notes: tuple[str, ...]
    results: tuple[str, ...]
    """`kind:result` per op, recorded with `Options.features`."""
    crashes_sound: bool
    """False when a parallel group did not finish: its crash states have no reference to judge them by."""
    t_exec: float
    schedule: str | None = None
    """The schedule id it ran under (None: no parallel groups)."""
    steps: tuple[ScheduleStep, ...] = ()
    digest: bytes | None = None
    """What decides every verdict of the run, when asked for (two schedules with one digest judge alike)."""
    reached: BlockMapLog = field(default_factory=BlockMapLog)
    """How each op changed the files' block maps (empty when the target does not list its extents)."""
    explored_on: bool = False
    """It stopped at the end of a parallel group, in a state an earlier schedule of the same
    exploration reached with no fewer preemptions left: all it would do from there was explored
    from there (see `quiescent.py`), so it is not judged."""

    @property
    def ran(self) -> bool:
        return self.device is not None

    def window(self, point: CrashPoint) -> tuple[int, int]:
        return crash_window(point, self.executed, self.spans)

    def expect(self, point: CrashPoint, window: tuple[int, int] | None = None) -> Expectation:
        """What the reference allows for a crash at this point, by the target's guarantees."""
        assert self.history is not None
        completed, upper = window or self.window(point)
        g = self.target.guarantees
        return self.history.expect(
            completed, upper, durable=Guarantee.FSYNC_DURABLE in g, synchronous=Guarantee.ATOMIC_OPS in g
        )

    def crash_points(self) -> tuple[CrashPoint, ...]:
        assert self.device is not None
        return self.device.crash_points(self.options.eadr_points)

    def crash_state(self, state_id: str | StateId) -> CrashState:
        assert self.device is not None
        return self.device.crash_state(state_id, self.options.eadr_points)

    def incarnations(self, op: int) -> dict[str, int]:
        """Each name's file incarnation (inode) in the reference just after op `op` (or the last that returned)."""
        assert self.history is not None
        b = min(max(op, 0) + 1, self.returned)
        return {n: v.ino for n, v in self.history.boundaries[b].items()}
