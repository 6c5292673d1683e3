"""Reproducer files: a workload plus the exact configuration and crash state it ran with.

    # pmfuzz reproducer v1
    # target: daxfs design=unwritten bugs=convert-before-persist cil=eager
    # domain: adr
    # device: 8M
    # crash: F14:L3=1,L7=0
    # schedule: 3=1x3,0
    # expect: stale-exposure
    create f0
    ...

Header lines are `# key: value` comments before the first op. A file without
the version line is a plain workload, replayed with the defaults. Keys:
target, domain, device, crash, schedule (of the parallel groups), eadr-points, expect (`clean` or oracle names,
comma-separated), signature and note (informational).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

from oracles import OracleName

from .errors import ParseError, PmfuzzError
from .interleave import Schedule
from .pmem import Domain, EadrPoints
from .target import TargetSpec, parse_target_spec
from .workload import Workload, format_workload, parse

__all__ = ["Reproducer", "parse_reproducer", "format_reproducer", "VERSION_LINE", "CLEAN"]

VERSION_LINE = "# pmfuzz reproducer v1"
CLEAN = "clean"
_KEYS = ("target", "domain", "device", "crash", "schedule", "eadr-points", "expect", "signature", "note")
_HEADER = re.compile(r"^#\s*([A-Za-z][\w-]*)\s*:\s*(.*?)\s*$")
_SIZE = re.compile(r"^(\d+)([KMG]?)$")


@dataclass(frozen=True)
class Reproducer:
    workload: Workload
    target: TargetSpec = field(default_factory=lambda: TargetSpec("daxfs"))
    domain: Domain = Domain.ADR
    device_size: int = 8 << 20
    crash: str | None = None
    schedule: str | None = None
    """The schedule id of the parallel groups (`3=1x3,0`); None: explore every schedule."""
    eadr_points: EadrPoints = EadrPoints.STORES
    expect: tuple[str, ...] | None = None
    """None: no expectation; ("clean",) or oracle names."""
    signature: str | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)

    def with_crash(self, crash: str | None) -> Reproducer:
        return replace(self, crash=crash)


def _size_text(n: int) -> str:
    for suffix, k in (("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)):
        if n % k == 0:
            return f"{n // k}{suffix}"
    return str(n)


def format_reproducer(r: Reproducer) -> str:
    lines = [
        VERSION_LINE,
        f"# target: {r.target}",
        f"# domain: {r.domain.value}",
        f"# device: {_size_text(r.device_size)}",
    ]
    if r.domain is Domain.EADR:
        lines.append(f"# eadr-points: {r.eadr_points.value}")
    if r.crash is not None:
        lines.append(f"# crash: {r.crash}")
    if r.schedule is not None:
        lines.append(f"# schedule: {r.schedule}")
    if r.expect is not None:
        lines.append(f"# expect: {', '.join(r.expect)}")
    if r.signature:
        lines.append(f"# signature: {r.signature}")
    lines += [f"# note: {n}" for n in r.notes]
    return "\n".join(lines) + "\n" + format_workload(r.workload)


def parse_reproducer(text: str, *, source: str | None = None) -> Reproducer:
    """Parse a reproducer (or a plain workload); errors name the line."""
    lines = text.splitlines()
    kw: dict[str, object] = {}
    notes: list[str] = []
    versioned = False
    for i, raw in enumerate(lines, 1):
        line = raw.strip()
        if not line:
            continue
        if not line.startswith("#"):
            break
        if line == VERSION_LINE:
            versioned = True
            continue
        if re.match(r"^#\s*pmfuzz reproducer", line):
            raise ParseError(
                f"unsupported reproducer version {line[1:].strip()!r} (this pmfuzz reads v1)", line=i, source=source
            )
        m = _HEADER.match(line)
        if not m or not versioned:
            continue
        key, value = m.group(1).lower(), m.group(2)
        if key not in _KEYS:
            raise ParseError(f"unknown header key {key!r} (keys: {', '.join(_KEYS)})", line=i, source=source)
        fail = lambda msg, i=i: ParseError(msg, line=i, source=source)
        if key == "target":
            try:
                kw["target"] = parse_target_spec(value)
            except Exception as e:
                raise fail(str(e)) from None
        elif key == "domain":
            try:
                kw["domain"] = Domain(value)
            except ValueError:
                raise fail(f"domain must be adr or eadr, got {value!r}") from None
        elif key == "device":
            sm = _SIZE.match(value)
            if not sm:
                raise fail(f"device size must be a number with an optional K/M/G suffix, got {value!r}")
            kw["device_size"] = int(sm.group(1)) * {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}[sm.group(2)]
        elif key == "crash":
            if not re.match(r"^[FCSDOE]\d*(:.+)?$", value):
                raise fail(f"crash must be a crash state id like F3:L0=1, got {value!r}")
            kw["crash"] = value
        elif key == "schedule":
            try:
                kw["schedule"] = str(Schedule.parse(value))
            except PmfuzzError as e:
                raise fail(str(e)) from None
        elif key == "eadr-points":
            try:
                kw["eadr_points"] = EadrPoints(value)
            except ValueError:
                raise fail(f"eadr-points must be stores or ops, got {value!r}") from None
        elif key == "expect":
            items = tuple(x.strip() for x in value.split(",") if x.strip())
            valid = {CLEAN, *(o.value for o in OracleName)}
            bad = [x for x in items if x not in valid]
            if not items or bad:
                raise fail(
                    f"expect must be 'clean' or oracle names ({', '.join(sorted(valid - {CLEAN}))}), got {value!r}"
                )
            if CLEAN in items and len(items) > 1:
                raise fail("expect: 'clean' cannot be combined with oracle names")
            kw["expect"] = items
        elif key == "signature":
            kw["signature"] = value
        else:
            notes.append(value)
    workload = parse(text, source=source)
    return Reproducer(workload, notes=tuple(notes), **kw)  # type: ignore[arg-type]
