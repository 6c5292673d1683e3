"""The store log that Valgrind's pmemcheck writes (`--log-stores=yes`) and PMDK's pmreorder reads.

The grammar follows pmreorder's reader (PMDK src/tools/pmreorder), so a log
pmreorder accepts means the same here:

* The file is split on `|`; fields inside a record are split on `;`.
* Only the records strictly between the last record that contains `START` and
  the last one that contains `STOP` (substring matches, START tested first)
  count. pmreorder silently processes nothing when STOP is missing; pmfuzz
  says so instead.
* The record type is the first field, case-insensitive: `STORE;addr;value;size[;frame...]`,
  `FLUSH;addr;size`, `FENCE`, `REGISTER_FILE;path;base;size;offset`; anything
  else must be a marker `NAME.BEGIN` / `NAME.END`, and markers must nest.
  Numbers are hexadecimal (`0x` optional); a store's value is written in
  little-endian order (x86, where pmemcheck runs) in `size` bytes.
* A registered file's bytes start at its map base (the offset field is read
  but, as in pmreorder, not used).

Where pmfuzz is more lenient than pmreorder (and says so in `Trace.notes`):
whitespace around records is ignored; stores and flushes outside every
registered file are dropped (pmreorder fails when it replays one); zero-size
stores and flushes are dropped.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass

from ..errors import ParseError, clip
from ..lang.limits import MAX_TRACE_DEVICE, size_text
from .model import MAX_MARKER_DEPTH, Region, Trace, TraceEvent, TraceEventKind, Where

__all__ = ["format_pmemcheck", "parse_pmemcheck"]

_PAGE = 4096
_LINE = 64


@dataclass(frozen=True, slots=True)
class _Registration:
    path: str
    base: int
    size: int
    where: Where


class _Positions:
    """Line and column of any offset in the text (the log is mostly one long line)."""

    def __init__(self, text: str) -> None:
        self._starts = [0, *(m.end() for m in re.finditer("\n", text))]

    def at(self, offset: int, record: int) -> Where:
        line = bisect.bisect_right(self._starts, offset)
        return Where(line, offset - self._starts[line - 1] + 1, record)


_HEX = re.compile(r"^[0-9a-fA-F]+$")
MAX_STORE = 4096
"""Largest store one record may write: a store instruction writes at most 64 bytes (AVX-512); a
larger size is damage, and pmfuzz would build that many bytes from the value."""


def _short(text: str) -> str:
    """A record's name as written, unless it is long enough to be damage (then clipped)."""
    return text if len(text) <= 40 else clip(text)


def _hex(fields: list[str], i: int, what: str, where: Where, source: str | None, *, digits: int = 16) -> int:
    """Field i of a record as a hex number (`0x` optional, at most `digits` significant digits).

    Errors point at the field's column and show it clipped: a damaged log can hold a field of megabytes.
    """
    field = fields[i].strip()
    column = where.column + sum(len(f) + 1 for f in fields[:i])
    body = field[2:] if field[:2] in ("0x", "0X") else field
    problem = None
    if not _HEX.match(body):
        problem = "is not a hexadecimal number"
    elif len(body.lstrip("0")) > digits:
        problem = f"has more than {digits} hex digits"
    if problem:
        raise ParseError(
            f"{what} {clip(field)} (field {i} of {_short(fields[0])}) {problem}",
            line=where.line,
            column=column,
            source=source,
        )
    return int(body, 16)


def _need(fields: list[str], n: int, form: str, where: Where, source: str | None) -> None:
    if len(fields) < n:
        raise ParseError(
            f"{_short(fields[0])} record {clip(';'.join(fields))} needs {n - 1} fields ({form}), got {len(fields) - 1}",
            line=where.line,
            column=where.column,
            source=source,
        )


def parse_pmemcheck(text: str, source: str | None = None) -> Trace:
    """Parse a pmemcheck store log into a trace on a device that holds every registered file.

    Files are laid out in registration order, each at the same offset within
    a page as its map base, so cache-line boundaries match the traced run.
    """
    pos = _Positions(text)
    records: list[tuple[str, int]] = []
    offset = 0
    for rec in text.split("|"):
        records.append((rec, offset))
        offset += len(rec) + 1
    start = stop = None
    for i, (rec, _) in enumerate(records):
        if "START" in rec:
            start = i
        elif "STOP" in rec:
            stop = i
    if start is None:
        raise ParseError(
            "no START record: this is not a pmemcheck store log (run pmemcheck with --log-stores=yes)", source=source
        )
    if stop is None:
        raise ParseError(
            "no STOP record: the log is truncated (pmemcheck writes STOP when the program exits; "
            "pmreorder would check nothing)",
            source=source,
        )
    if stop < start:
        where = pos.at(records[stop][1], stop)
        raise ParseError(
            "the last STOP comes before the last START: no records to check",
            line=where.line,
            column=where.column,
            source=source,
        )

    regs: list[_Registration] = []
    raw: list[tuple[TraceEventKind, int, int, bytes | None, str, Where, tuple[str, ...]]] = []
    open_markers: list[str] = []
    notes: list[str] = []
    zero = 0
    for index in range(start + 1, stop):
        rec, off = records[index]
        lead = len(rec) - len(rec.lstrip())
        where = pos.at(off + lead, index)
        body = rec.strip()
        if not body:
            raise ParseError(
                "empty record (two `|` in a row, or `|` before STOP with nothing between)",
                line=where.line,
                column=where.column,
                source=source,
            )
        fields = body.split(";")
        ident = fields[0]
        kind = ident.lower().capitalize()

        if kind == "Store":
            _need(fields, 4, "address;value;size", where, source)
            addr = _hex(fields, 1, "store address", where, source)
            size = _hex(fields, 3, "store size", where, source)
            if size > MAX_STORE:
                raise ParseError(
                    f"store size {clip(fields[3])} is {size} bytes: one store writes at most {MAX_STORE}",
                    line=where.line,
                    column=where.column,
                    source=source,
                )
            value = _hex(fields, 2, "store value", where, source, digits=2 * max(size, 8))
            if size == 0:
                zero += 1
                continue
            try:
                stored = value.to_bytes(size, "little")
            except OverflowError:
                raise ParseError(
                    f"store value {fields[2]!r} does not fit in its size of {size} bytes",
                    line=where.line,
                    column=where.column,
                    source=source,
                ) from None
            raw.append((TraceEventKind.STORE, addr, size, stored, "", where, tuple(fields[4:])))
        elif kind == "Flush":
            _need(fields, 3, "address;size", where, source)
            addr = _hex(fields, 1, "flush address", where, source)
            size = _hex(fields, 2, "flush size", where, source)
            if size == 0:
                zero += 1
                continue
            raw.append((TraceEventKind.CLWB, addr, size, None, "", where, ()))
        elif kind == "Fence":
            raw.append((TraceEventKind.SFENCE, 0, 0, None, "", where, ()))
        elif kind == "Register_file":
            _need(fields, 5, "path;base;size;offset", where, source)
            base = _hex(fields, 2, "mapping base", where, source)
            size = _hex(fields, 3, "mapping size", where, source)
            _hex(fields, 4, "mapping offset", where, source)
            if size == 0:
                raise ParseError(
                    f"REGISTER_FILE of {clip(fields[1])} has size 0",
                    line=where.line,
                    column=where.column,
                    source=source,
                )
            if size > MAX_TRACE_DEVICE:
                raise ParseError(
                    f"REGISTER_FILE of {clip(fields[1])} has size {size:#x}, beyond the limit of "
                    f"{size_text(MAX_TRACE_DEVICE)} pmfuzz replays",
                    line=where.line,
                    column=where.column,
                    source=source,
                )
            regs.append(_Registration(fields[1], base, size, where))
        elif ident.endswith(".BEGIN"):
            name = ident[: -len(".BEGIN")]
            if len(open_markers) >= MAX_MARKER_DEPTH:
                raise ParseError(
                    f"markers nest deeper than {MAX_MARKER_DEPTH}", line=where.line, column=where.column, source=source
                )
            open_markers.append(name)
            raw.append((TraceEventKind.BEGIN, 0, 0, None, name, where, ()))
        elif ident.endswith(".END"):
            name = ident[: -len(".END")]
            if not open_markers or open_markers[-1] != name:
                innermost = f"{open_markers[-1]}.BEGIN" if open_markers else "none"
                raise ParseError(
                    f"marker {_short(ident)} does not close the innermost open marker (open: {_short(innermost)}); "
                    "markers must nest",
                    line=where.line,
                    column=where.column,
                    source=source,
                )
            open_markers.pop()
            raw.append((TraceEventKind.END, 0, 0, None, name, where, ()))
        else:
            raise ParseError(
                f"unknown record {clip(ident)} (expected STORE, FLUSH, FENCE, REGISTER_FILE "
                "or a marker NAME.BEGIN / NAME.END)",
                line=where.line,
                column=where.column,
                source=source,
            )
    if zero:
        notes.append(f"{zero} zero-size store/flush record(s) ignored")
    regions = _layout(regs, source)
    events: list[TraceEvent] = []
    outside = 0
    for kind, addr, size, data, name, where, frames in raw:
        if kind.is_marker or kind.is_fence:
            events.append(TraceEvent(kind, name=name, where=where))
            continue
        hits = [r for r in regions if addr < r.map_base + r.size and r.map_base < addr + size]
        if not hits:
            outside += 1
            continue
        if kind.is_store:
            r = hits[0]
            if len(hits) > 1 or addr < r.map_base or addr + size > r.map_base + r.size:
                raise ParseError(
                    f"store {addr:#x}+{size} straddles the end of registered file {r.path}",
                    line=where.line,
                    column=where.column,
                    source=source,
                )
            events.append(TraceEvent(kind, r.offset + addr - r.map_base, size, data, where=where, frames=frames))
        else:
            for r in hits:
                lo, hi = max(addr, r.map_base), min(addr + size, r.map_base + r.size)
                events.append(TraceEvent(kind, r.offset + lo - r.map_base, hi - lo, where=where))
    if outside:
        notes.append(f"{outside} store/flush record(s) outside every registered file ignored")
    end = max((r.offset + r.size for r in regions), default=0)
    if end > MAX_TRACE_DEVICE:
        raise ParseError(
            f"the registered files need a device of {size_text(end)}, beyond the limit of "
            f"{size_text(MAX_TRACE_DEVICE)} pmfuzz replays",
            source=source,
        )
    device = max(_LINE, -(-end // _LINE) * _LINE)
    return Trace(device, tuple(regions), tuple(events), source or "", tuple(notes))


def _layout(regs: list[_Registration], source: str | None) -> list[Region]:
    if not regs:
        raise ParseError("no REGISTER_FILE record between START and STOP: no persistent file to check", source=source)
    kept: list[_Registration] = []
    for reg in regs:
        if any(k.base == reg.base and k.size == reg.size for k in kept):
            continue
        for k in kept:
            if reg.base < k.base + k.size and k.base < reg.base + reg.size:
                raise ParseError(
                    f"REGISTER_FILE of {reg.path} at {reg.base:#x}+{reg.size:#x} overlaps {k.path} "
                    f"at {k.base:#x}+{k.size:#x}",
                    line=reg.where.line,
                    column=reg.where.column,
                    source=source,
                )
            if k.path == reg.path:
                raise ParseError(
                    f"file {reg.path} is registered twice at different addresses (not supported)",
                    line=reg.where.line,
                    column=reg.where.column,
                    source=source,
                )
        kept.append(reg)
    regions = []
    cursor = 0
    for reg in kept:
        offset = -(-cursor // _PAGE) * _PAGE + reg.base % _PAGE
        regions.append(Region(reg.path, offset, reg.size, reg.base))
        cursor = offset + reg.size
    return regions


def format_pmemcheck(trace: Trace) -> str:
    """Write a trace as a pmemcheck store log (flushes become FLUSH, fences FENCE, ntstores STORE).

    Addresses are written back as virtual addresses through the trace's regions.
    """
    out = ["START"]
    for r in trace.regions:
        out.append(f"REGISTER_FILE;{r.path};{r.map_base:#x};{r.size:#x};0x0")

    def virt(addr: int) -> int:
        for r in trace.regions:
            if r.offset <= addr < r.offset + r.size:
                return addr - r.offset + r.map_base
        return addr

    for e in trace.events:
        if e.kind.is_store:
            assert e.data is not None
            value = int.from_bytes(e.data, "little")
            frames = "".join(f";{f}" for f in e.frames)
            out.append(f"STORE;{virt(e.addr):#x};{value:#x};{e.size:#x}{frames}")
        elif e.kind.is_flush:
            out.append(f"FLUSH;{virt(e.addr):#x};{e.size:#x}")
        elif e.kind.is_fence:
            out.append("FENCE")
        else:
            out.append(e.marker_record)
    out.append("STOP\n")
    return "|".join(out)
