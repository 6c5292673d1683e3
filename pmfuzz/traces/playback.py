"""Replay a trace onto a PMem device, so its crash states follow pmfuzz's own Px86 model.

There is no second persistency model here: stores, flushes and fences are
issued on `PMem` exactly as a target would issue them, and markers become
site labels, so `CrashState.outcomes()` names the marker sections that wrote
each in-flight line.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass

from ..errors import PmfuzzError
from ..pmem import Domain, PMem
from .model import Trace, TraceEventKind

__all__ = ["MarkerLog", "Replay", "initial_content", "replay"]


class MarkerLog(Sequence[str]):
    """`log[i]`: the marker records seen before trace record i, `|`-joined (pmreorder's PMREORDER_MARKERS).

    Joined on demand: a joined string kept per record grew with the markers before it, quadratic
    in a trace's markers in time and memory.
    """

    def __init__(self, events: Sequence) -> None:
        records: list[str] = []
        counts: list[int] = []
        for e in events:
            counts.append(len(records))
            if e.kind.is_marker:
                records.append(e.marker_record)
        self._records = tuple(records)
        self._counts = tuple(counts)

    def __len__(self) -> int:
        return len(self._counts)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[k] for k in range(*i.indices(len(self)))]
        return "|".join(self._records[: self._counts[i]])


@dataclass(frozen=True, eq=False)
class Replay:
    """A trace issued on a device, with the way back from device events to trace records.

    `origin[seq]` is the index in `trace.events` of PMem event `seq`;
    `store_ordinal[i]` numbers the stores of the trace (-1 for other records);
    `markers[i]` is the stack of marker sections open at trace record i;
    `marker_log[i]` the marker records seen before record i, `|`-joined, as
    pmreorder passes them to checkers in PMREORDER_MARKERS.
    """

    trace: Trace
    pmem: PMem
    origin: tuple[int, ...]
    store_ordinal: tuple[int, ...]
    markers: tuple[tuple[str, ...], ...]
    marker_log: MarkerLog


def initial_content(trace: Trace, bases: Mapping[str, bytes] | None = None) -> bytes:
    """The device before the trace: zeros, with each region's base image (the pool before the run) laid in."""
    buf = bytearray(trace.device_size)
    for path, data in (bases or {}).items():
        region = next((r for r in trace.regions if r.path == path), None)
        if region is None:
            known = ", ".join(repr(r.path) for r in trace.regions)
            raise PmfuzzError(f"base image given for {path!r}, which the trace does not register (it has: {known})")
        if len(data) != region.size:
            raise PmfuzzError(
                f"base image for {path or 'the device'} is {len(data)} bytes but the trace maps {region.size} bytes"
            )
        buf[region.offset : region.offset + region.size] = data
    return bytes(buf)


def replay(trace: Trace, domain: Domain | str = Domain.ADR, bases: Mapping[str, bytes] | None = None) -> Replay:
    """Issue every record of the trace on a fresh device (flush records as their own instruction)."""
    pm = PMem(trace.device_size, domain)
    initial = initial_content(trace, bases)
    if any(initial):
        pm.initialize(0, initial)
    origin: list[int] = []
    ordinals: list[int] = []
    markers: list[tuple[str, ...]] = []
    stack: list[str] = []
    sites: list[AbstractContextManager[None]] = []
    n_stores = 0
    for i, e in enumerate(trace.events):
        markers.append(tuple(stack))
        ordinals.append(n_stores if e.kind.is_store else -1)
        before = pm.events_recorded
        k = e.kind
        if k is TraceEventKind.BEGIN:
            stack.append(e.name)
            cm = pm.site("/".join(stack))
            cm.__enter__()
            sites.append(cm)
        elif k is TraceEventKind.END:
            stack.pop()
            sites.pop().__exit__(None, None, None)
        elif k is TraceEventKind.STORE:
            assert e.data is not None
            pm.store(e.addr, e.data)
        elif k is TraceEventKind.NTSTORE:
            assert e.data is not None
            pm.ntstore(e.addr, e.data)
        elif k is TraceEventKind.CLWB:
            pm.clwb(e.addr, e.size)
        elif k is TraceEventKind.CLFLUSHOPT:
            pm.clflushopt(e.addr, e.size)
        elif k is TraceEventKind.CLFLUSH:
            pm.clflush(e.addr, e.size)
        elif k is TraceEventKind.SFENCE:
            pm.sfence()
        else:
            pm.mfence()
        if e.kind.is_store:
            n_stores += 1
        origin.extend([i] * (pm.events_recorded - before))
    while sites:
        sites.pop().__exit__(None, None, None)
    return Replay(trace, pm, tuple(origin), tuple(ordinals), tuple(markers), MarkerLog(trace.events))
