"""Facts the run reads off a workload's ops and the device's trace, for blame and for COW credit."""

from __future__ import annotations

from collections.abc import Sequence

from ..lang.falloc import FallocMode
from ..lang.workload import BLOCK_SIZE, Fallocate, Fault, Op, Pin, Store
from ..pmem import Event
from ..target import MountedFS, file_blocks
from .run import ScheduleStep

__all__ = ["unshares", "write_faults", "slices", "stored_into"]


def unshares(fallocs: list[Fallocate], name: str, off: int) -> bool:
    """Whether one of these fallocates unshares the block at `off` of file `name`."""
    return any(
        f.mode & FallocMode.UNSHARE_RANGE and f.file == name and f.off - f.off % BLOCK_SIZE <= off < f.off + f.len
        for f in fallocs
    )


def write_faults(group: Sequence[Op]) -> bool:
    """Whether an op of the group may write-fault. A write fault may then have done a write(2)'s
    copy-on-write first -- on the same file, or on another that shared the block, which breaks the
    sharing for both -- and the write(2) then wrote in place, so the group's COWs are not
    all-or-nothing writes that `cow-atomicity` can hold it to (the other oracles still judge it)."""
    return any(isinstance(op, (Store, Pin)) or (isinstance(op, Fault) and op.write) for op in group)


def slices(texts: list[str], steps: tuple[tuple[int, str], ...]) -> list[ScheduleStep]:
    out: list[ScheduleStep] = []
    for t, label in steps:
        if out and out[-1].thread == t:
            out[-1] = ScheduleStep(t, texts[t], (*out[-1].labels, label))
        else:
            out.append(ScheduleStep(t, texts[t], (label,)))
    return out


def stored_into(events: Sequence[Event], fs: MountedFS, name: str, lo: int, hi: int) -> list[int]:
    """The ops in [lo, hi) whose stores landed in a block file `name` now reads from, latest first:
    the evidence that an op changed that file, whatever it named (none when the target does not
    tell its blocks)."""
    blocks = file_blocks(fs, name, fs.size(name) or 0)
    devs = {d // BLOCK_SIZE for _o, d, _unwritten in blocks or () if d is not None}
    out: list[int] = []
    if not devs:
        return out
    for e in reversed(events):
        if e.kind.is_store and lo <= e.op < hi and e.op not in out:
            first, last = e.addr // BLOCK_SIZE, (e.addr + max(e.size, 1) - 1) // BLOCK_SIZE
            if any(b in devs for b in range(first, last + 1)):
                out.append(e.op)
    return out
