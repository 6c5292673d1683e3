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

Header lines are `# key: value` comments after the version line and before
the first op. A file without the version line is a plain workload, replayed
with the defaults; a header key in it (or after the first op, or before the
version line) is an error, never a silently ignored comment. Every op must
fit in the device (`device:`, 8M by default, at most 256M). Keys:
target, domain, device, crash, schedule (of the parallel groups), eadr-points, expect (`clean` or oracle names,
comma-separated), signature, cause and note (informational).
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TypedDict

from oracles import OracleName

from ..errors import ParseError, PMemError, PmfuzzError, clip
from ..execution.interleave import Schedule
from ..lang.limits import check_device_size, parse_size, workload_overflow
from ..lang.workload import Workload, format_workload, parse
from ..pmem import Domain, EadrPoints, StateId
from ..signature import Cause, Signature
from ..target import TargetSpec, parse_target_spec

__all__ = ["Reproducer", "parse_reproducer", "format_reproducer", "VERSION_LINE", "CLEAN", "Expect"]

VERSION_LINE = "# pmfuzz reproducer v1"


class Expect(enum.StrEnum):
    """What a reproducer's `# expect:` line may name: `clean`, or the oracles that must fire (one per OracleName).

    The oracle members are spelled out so a type checker sees them; the check below keeps them in step.
    """

    CLEAN = "clean"
    FUNCTIONAL = OracleName.FUNCTIONAL.value
    MOUNT = OracleName.MOUNT.value
    STALE_EXPOSURE = OracleName.STALE_EXPOSURE.value
    COW_ATOMICITY = OracleName.COW_ATOMICITY.value
    DURABILITY = OracleName.DURABILITY.value
    ATOMIC_OPS = OracleName.ATOMIC_OPS.value
    TARGET_ERROR = OracleName.TARGET_ERROR.value
    MMAP_COHERENCY = OracleName.MMAP_COHERENCY.value
    LAYOUT = OracleName.LAYOUT.value
    DEADLOCK = OracleName.DEADLOCK.value


if OracleName.__members__.keys() - Expect.__members__.keys():
    raise ImportError("Expect lacks an OracleName member: add it to the class")
CLEAN = Expect.CLEAN
_KEYS = ("target", "domain", "device", "crash", "schedule", "eadr-points", "expect", "signature", "cause", "note")
_HEADER = re.compile(r"^#\s*([A-Za-z][\w-]*)\s*:\s*(.*?)\s*$")
_CRASH = re.compile(r"^[FCSDOE][0-9]*(:.+)?$")
MAX_HEADER_VALUE = 4096
"""Longest header value read: a crash state id or a note is far shorter; a longer one is damage."""


@dataclass(frozen=True)
class Reproducer:
    workload: Workload
    target: TargetSpec = field(default_factory=lambda: TargetSpec("daxfs"))
    domain: Domain = Domain.ADR
    device_size: int = 8 << 20
    crash: StateId | None = None
    schedule: str | None = None
    """The schedule id of the parallel groups (`3=1x3,0`); None: explore every schedule."""
    eadr_points: EadrPoints = EadrPoints.STORES
    expect: tuple[Expect, ...] | None = None
    """None: no expectation; (Expect.CLEAN,) or oracles."""
    signature: Signature | None = None
    cause: Cause | None = None
    """The root cause the finding was grouped under (informational, as the signature is)."""
    notes: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        # The text forms are accepted too (as callers and older code pass them) and kept typed.
        if isinstance(self.crash, str):
            object.__setattr__(self, "crash", StateId.parse(self.crash))
        if isinstance(self.signature, str):
            object.__setattr__(self, "signature", Signature.parse(self.signature))
        if isinstance(self.cause, str):
            object.__setattr__(self, "cause", Cause.parse(self.cause))
        if self.expect is not None:
            object.__setattr__(self, "expect", tuple(Expect(x) for x in self.expect))

    def with_crash(self, crash: StateId | str | None) -> Reproducer:
        return replace(self, crash=StateId.parse(crash) if isinstance(crash, str) else crash)


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
        lines.append(f"# expect: {', '.join(x.value for x in r.expect)}")
    if r.signature:
        lines.append(f"# signature: {r.signature}")
    if r.cause:
        lines.append(f"# cause: {r.cause}")
    lines += [f"# note: {n}" for n in r.notes]
    return "\n".join(lines) + "\n" + format_workload(r.workload)


def parse_reproducer(text: str, *, source: str | None = None) -> Reproducer:
    """Parse a reproducer (or a plain workload); errors name the line.

    Header keys are read only in a reproducer, after its version line and before its first op. A
    header key anywhere else is an error rather than a comment: a file that looks configured must
    not be replayed silently with the defaults. Sizes are bounded by the device once the whole file
    is read (the `device:` line may come after nothing, or the ops may come before it is known).
    """
    lines = text.splitlines()
    kw: _Header = {}
    seen: dict[str, int] = {}
    notes: list[str] = []
    version_at: int | None = None
    in_ops = False
    for i, raw in enumerate(lines, 1):
        line = raw.strip()
        if not line:
            continue
        if not line.startswith("#"):
            in_ops = True
            continue
        fail = lambda msg, i=i: ParseError(msg, line=i, source=source)
        if line == VERSION_LINE:
            if version_at is not None or in_ops:
                raise fail("the version line must come once, first, before every header line and op")
            version_at = i
            continue
        if re.match(r"^#\s*pmfuzz reproducer", line):
            raise fail(f"unsupported reproducer version {clip(line[1:].strip())} (this pmfuzz reads v1)")
        m = _HEADER.match(line)
        if not m:
            continue
        key, value = m.group(1).lower(), m.group(2)
        if version_at is None or in_ops:
            if key not in _KEYS:
                continue  # a comment such as `# seed: ...` in a plain workload
            if in_ops:
                raise fail(f"header line `{key}:` after the first op: header lines go before the ops")
            if any(ln.strip() == VERSION_LINE for ln in lines[i:]):
                raise fail(f"header line `{key}:` comes before the version line, and the version line must come first")
            raise fail(
                f"header line `{key}:` without the version line: a reproducer starts with `{VERSION_LINE}` "
                "(a plain workload has no header)"
            )
        if key not in _KEYS:
            raise fail(f"unknown header key {clip(key)} (keys: {', '.join(_KEYS)})")
        if len(value) > MAX_HEADER_VALUE:
            raise fail(f"the {key} header is {len(value)} characters long (at most {MAX_HEADER_VALUE})")
        if key != "note" and key in seen:
            raise fail(f"a second `{key}:` header (the first is on line {seen[key]})")
        seen.setdefault(key, i)
        _header(key, value, kw, notes, fail)
    workload = parse(text, source=source)
    device = kw.get("device_size", Reproducer.__dataclass_fields__["device_size"].default)
    assert isinstance(device, int)
    over = workload_overflow(workload.ops, device)
    if over is not None:
        index, message = over
        raise ParseError(message, line=_op_lines(lines)[index], source=source)
    return Reproducer(workload, notes=tuple(notes), **kw)


def _op_lines(lines: list[str]) -> list[int]:
    """The line number of every op, as `parse` counts them (one op a non-blank, non-comment line)."""
    return [i for i, raw in enumerate(lines, 1) if raw.split("#", 1)[0].strip()]


class _Header(TypedDict, total=False):
    """The header values read so far, by `Reproducer` field, so that they pass to it type-checked."""

    target: TargetSpec
    domain: Domain
    device_size: int
    crash: StateId
    schedule: str
    eadr_points: EadrPoints
    expect: tuple[Expect, ...]
    signature: Signature
    cause: Cause


def _header(key: str, value: str, kw: _Header, notes: list[str], fail: Callable[[str], ParseError]) -> None:
    """Read one header value into `kw` (or `notes`); `fail(msg)` makes the line's error."""
    if key == "target":
        try:
            kw["target"] = parse_target_spec(value)
        except PmfuzzError as e:
            raise fail(str(e)) from None
    elif key == "domain":
        try:
            kw["domain"] = Domain(value)
        except ValueError:
            raise fail(f"domain must be adr or eadr, got {clip(value)}") from None
    elif key == "device":
        try:
            kw["device_size"] = check_device_size(parse_size(value))
        except PmfuzzError as e:
            raise fail(str(e)) from None
    elif key == "crash":
        if not _CRASH.match(value):
            raise fail(f"crash must be a crash state id like F3:L0=1, got {clip(value)}")
        try:
            kw["crash"] = StateId.parse(value)
        except PMemError as e:
            raise fail(str(e)) from None
    elif key == "schedule":
        try:
            kw["schedule"] = str(Schedule.parse(value))
        except PmfuzzError as e:
            raise fail(str(e)) from None
    elif key == "eadr-points":
        try:
            kw["eadr_points"] = EadrPoints(value)
        except ValueError:
            raise fail(f"eadr-points must be stores or ops, got {clip(value)}") from None
    elif key == "expect":
        items = tuple(x.strip() for x in value.split(",") if x.strip())
        valid = {x.value for x in Expect}
        bad = [x for x in items if x not in valid]
        if not items or bad:
            raise fail(
                f"expect must be 'clean' or oracle names ({', '.join(sorted(valid - {CLEAN}))}), got {clip(value)}"
            )
        if CLEAN in items and len(items) > 1:
            raise fail("expect: 'clean' cannot be combined with oracle names")
        kw["expect"] = tuple(Expect(x) for x in items)
    elif key == "signature":
        try:
            kw["signature"] = Signature.parse(value)
        except PmfuzzError as e:
            raise fail(str(e)) from None
    elif key == "cause":
        try:
            kw["cause"] = Cause.parse(value)
        except PmfuzzError as e:
            raise fail(str(e)) from None
    else:
        notes.append(value)
