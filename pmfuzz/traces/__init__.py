"""Store traces from outside pmfuzz: parse them, replay them on PMem, check every crash image.

```python
from pmfuzz.traces import check_trace, format_report, make_checker, parse_pmemcheck

trace = parse_pmemcheck(open("store_log.log").read(), source="store_log.log")
report = check_trace(trace, make_checker("mychecks:pool_ok"))
print(format_report(report))
```

Names are imported on first use, so that `pmfuzz --help` (which registers the
`trace` command) does not pay for numpy and the PMem model.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .check import CheckOptions, Fate, Finding, Semantics, StoreFate, TraceReport, check_trace, format_report
    from .checkers import (
        CheckerKind,
        CheckResult,
        ImageRef,
        LibraryChecker,
        ProgramChecker,
        PythonChecker,
        Verdict,
        make_checker,
    )
    from .jsonl import format_jsonl, parse_jsonl
    from .model import Region, Trace, TraceEvent, TraceEventKind, Where
    from .playback import Replay, replay
    from .pmemcheck import format_pmemcheck, parse_pmemcheck
    from .reorder import ReorderEngine, reorder_points
    from .sink import ImageSink

_WHERE = {
    "CheckOptions": "check",
    "Fate": "check",
    "Finding": "check",
    "Semantics": "check",
    "StoreFate": "check",
    "TraceReport": "check",
    "check_trace": "check",
    "format_report": "check",
    "CheckerKind": "checkers",
    "CheckResult": "checkers",
    "ImageRef": "checkers",
    "LibraryChecker": "checkers",
    "ProgramChecker": "checkers",
    "PythonChecker": "checkers",
    "Verdict": "checkers",
    "make_checker": "checkers",
    "format_jsonl": "jsonl",
    "parse_jsonl": "jsonl",
    "Region": "model",
    "Trace": "model",
    "TraceEvent": "model",
    "TraceEventKind": "model",
    "Where": "model",
    "format_pmemcheck": "pmemcheck",
    "parse_pmemcheck": "pmemcheck",
    "ReorderEngine": "reorder",
    "reorder_points": "reorder",
    "Replay": "playback",
    "replay": "playback",
    "ImageSink": "sink",
}

__all__ = [
    "CheckOptions",
    "CheckResult",
    "CheckerKind",
    "Fate",
    "Finding",
    "ImageRef",
    "ImageSink",
    "LibraryChecker",
    "ProgramChecker",
    "PythonChecker",
    "Region",
    "ReorderEngine",
    "Replay",
    "Semantics",
    "StoreFate",
    "Trace",
    "TraceEvent",
    "TraceEventKind",
    "TraceReport",
    "Verdict",
    "Where",
    "check_trace",
    "format_jsonl",
    "format_pmemcheck",
    "format_report",
    "make_checker",
    "parse_jsonl",
    "parse_pmemcheck",
    "reorder_points",
    "replay",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value
