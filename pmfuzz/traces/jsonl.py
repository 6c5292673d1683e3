"""pmfuzz's native trace format: JSON lines, one event per line.

```
{"event": "device", "size": 4096}                 optional, before any other event
{"event": "store", "addr": 64, "data": "2a00000000000000"}
{"event": "ntstore", "addr": "0x80", "data": "ff"}
{"event": "clwb", "addr": 64, "size": 64}         also clflushopt, clflush
{"event": "sfence"}                               also mfence
{"event": "marker", "name": "commit.BEGIN"}       NAME.BEGIN / NAME.END, nested
```

Addresses are device offsets (an integer or a hex string); `data` is hex.
Blank lines and lines starting with `#` are ignored. Without a `device` line
the device is the smallest multiple of 64 bytes that holds every event.
Unlike pmemcheck's log it keeps what the CPU issued: non-temporal stores and
the kind of flush, which Px86 treats differently.
"""

from __future__ import annotations

import json
import re
from typing import Any

from ..errors import ParseError, clip
from ..lang.limits import MAX_TRACE_DEVICE, size_text
from .model import MAX_MARKER_DEPTH, Region, Trace, TraceEvent, TraceEventKind, Where

__all__ = ["format_jsonl", "parse_jsonl"]

_LINE = 64
_MAX_NUMBER = 1 << 64
_KEYS: dict[str, tuple[str, ...]] = {
    "store": ("addr", "data"),
    "ntstore": ("addr", "data"),
    "clwb": ("addr", "size"),
    "clflushopt": ("addr", "size"),
    "clflush": ("addr", "size"),
    "sfence": (),
    "mfence": (),
    "marker": ("name",),
    "device": ("size",),
}


def parse_jsonl(text: str, source: str | None = None) -> Trace:
    """Parse a native JSON-lines trace."""
    events: list[TraceEvent] = []
    open_markers: list[str] = []
    device: int | None = None
    device_at: Where | None = None
    for lineno, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        col0 = len(line) - len(line.lstrip()) + 1
        where = Where(lineno, col0, lineno)

        def fail(msg: str, key: str | None = None, *, _line: str = line, _where: Where = where) -> ParseError:
            col = _where.column
            if key is not None:
                found = _line.find(f'"{key}"')
                col = found + 1 if found >= 0 else col
            return ParseError(msg, line=_where.line, column=col, source=source)

        try:
            obj = json.loads(stripped)
        except json.JSONDecodeError as e:
            raise ParseError(f"not JSON: {e.msg}", line=lineno, column=col0 + e.colno - 1, source=source) from None
        except RecursionError:
            raise ParseError("JSON nested too deeply", line=lineno, column=col0, source=source) from None
        except ValueError as e:  # an integer of more digits than Python converts
            raise ParseError(f"unreadable JSON: {clip(str(e))}", line=lineno, column=col0, source=source) from None
        if not isinstance(obj, dict):
            raise fail(f"expected a JSON object per line, got {type(obj).__name__}")
        ev = obj.get("event")
        if not isinstance(ev, str) or ev not in _KEYS:
            raise fail(f"unknown event {clip(ev)} (expected one of: {', '.join(_KEYS)})", "event")
        want = _KEYS[ev]
        for key in obj:
            if key != "event" and key not in want:
                takes = ", ".join(want) or "nothing"
                raise fail(f"unexpected key {clip(key)} in a {ev} event (it takes: {takes})", key)
        for key in want:
            if key not in obj:
                raise fail(f"{ev} event needs {key!r}")
        if ev == "device":
            if events or device is not None:
                raise fail("the device line must come first, and only once", "event")
            device = _int(obj["size"], "size", fail)
            device_at = where
            if device <= 0 or device % _LINE:
                raise fail(f"device size must be a positive multiple of {_LINE}, got {device}", "size")
            if device > MAX_TRACE_DEVICE:
                raise fail(f"device size {device} is beyond the limit of {size_text(MAX_TRACE_DEVICE)}", "size")
            continue
        kind = TraceEventKind.BEGIN if ev == "marker" else TraceEventKind(ev)
        if ev == "marker":
            name = obj["name"]
            if not isinstance(name, str):
                raise fail(f"marker name must be a string, got {clip(name)}", "name")
            if name.endswith(".BEGIN"):
                if len(open_markers) >= MAX_MARKER_DEPTH:
                    raise fail(f"markers nest deeper than {MAX_MARKER_DEPTH}", "name")
                open_markers.append(name[: -len(".BEGIN")])
                events.append(TraceEvent(TraceEventKind.BEGIN, name=open_markers[-1], where=where))
            elif name.endswith(".END"):
                base = name[: -len(".END")]
                if not open_markers or open_markers[-1] != base:
                    innermost = f"{open_markers[-1]}.BEGIN" if open_markers else "none"
                    raise fail(f"marker {name} does not close the innermost open marker (open: {innermost})", "name")
                open_markers.pop()
                events.append(TraceEvent(TraceEventKind.END, name=base, where=where))
            else:
                raise fail(f"marker {clip(name)} must end in .BEGIN or .END", "name")
        elif kind.is_fence:
            events.append(TraceEvent(kind, where=where))
        elif kind.is_store:
            addr = _int(obj["addr"], "addr", fail)
            data = obj["data"]
            if not isinstance(data, str):
                raise fail(f"data must be a hex string, got {clip(data)}", "data")
            try:
                raw = bytes.fromhex(data)
            except ValueError:
                raise fail(f"data {clip(data)} is not hex bytes", "data") from None
            if not raw:
                raise fail("data is empty: a store writes at least one byte", "data")
            events.append(TraceEvent(kind, addr, len(raw), raw, where=where))
        else:
            addr = _int(obj["addr"], "addr", fail)
            size = _int(obj["size"], "size", fail)
            if size <= 0:
                raise fail(f"flush size must be positive, got {size}", "size")
            events.append(TraceEvent(kind, addr, size, where=where))
    end = max((e.addr + e.size for e in events if not e.kind.is_fence and not e.kind.is_marker), default=0)
    if device is None and end > MAX_TRACE_DEVICE:
        bad = next(e for e in events if e.addr + e.size > MAX_TRACE_DEVICE)
        w = bad.where
        assert w is not None
        raise ParseError(
            f"{bad.describe()} reaches past the largest device pmfuzz replays ({size_text(MAX_TRACE_DEVICE)})",
            line=w.line,
            column=w.column,
            source=source,
        )
    if device is None:
        device = max(_LINE, -(-end // _LINE) * _LINE)
    elif end > device:
        bad = next(e for e in events if e.addr + e.size > device)
        w = bad.where or device_at
        assert w is not None
        raise ParseError(
            f"{bad.describe()} reaches past the device of {device} bytes", line=w.line, column=w.column, source=source
        )
    return Trace(device, (Region("", 0, device),), tuple(events), source or "")


_NUMBER = re.compile(r"^(0[xX][0-9a-fA-F]{1,16}|[0-9]{1,20})$")


def _int(value: Any, key: str, fail: Any) -> int:
    """An address or size: a JSON integer or a decimal/0x-hex string, at most 2**64."""
    if isinstance(value, bool):
        raise fail(f"{key} must be an integer or a hex string, got {clip(value)}", key)
    if isinstance(value, int):
        if value < 0:
            raise fail(f"{key} must not be negative, got {clip(value)}", key)
        if value > _MAX_NUMBER:
            raise fail(f"{key} {clip(value)} is beyond 2**64", key)
        return value
    if isinstance(value, str):
        if not _NUMBER.match(value):
            raise fail(f"{key} {clip(value)} is not a number (decimal, or hex with 0x)", key)
        out = int(value, 16) if value[:2].lower() == "0x" else int(value, 10)
        if out > _MAX_NUMBER:
            raise fail(f"{key} {clip(value)} is beyond 2**64", key)
        return out
    raise fail(f"{key} must be an integer or a hex string, got {clip(value)}", key)


def format_jsonl(trace: Trace) -> str:
    """Write a trace in the native format (regions other than the device are not kept)."""
    out = [json.dumps({"event": "device", "size": trace.device_size})]
    for e in trace.events:
        if e.kind.is_store:
            assert e.data is not None
            out.append(json.dumps({"event": e.kind.value, "addr": e.addr, "data": e.data.hex()}))
        elif e.kind.is_flush:
            out.append(json.dumps({"event": e.kind.value, "addr": e.addr, "size": e.size}))
        elif e.kind.is_fence:
            out.append(json.dumps({"event": e.kind.value}))
        else:
            out.append(json.dumps({"event": "marker", "name": e.marker_record}))
    return "\n".join(out) + "\n"
