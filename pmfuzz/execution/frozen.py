"""Time the whole process could not run: stopped (SIGSTOP, a debugger, a frozen cgroup) or its
virtual machine paused.

A deadline counts the block's own time (`watchdog`). A campaign stopped with SIGSTOP for 40 s and
continued filed `target-error: ... read_mapping did not return within 10 s` on the correct design:
the stopped time counted as the target's, for a stopped thread is neither running nor waiting for
a CPU. A heartbeat thread wakes every `_PERIOD`; when it wakes much later than asked and did not
spend the difference waiting for a CPU, nothing of the process ran in between (a target that
sleeps or loops leaves the heartbeat running), and deadlines give that span back. A heartbeat
not seen for a while (just continued, before it could note the gap) counts as frozen until it is.
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque

from .schedstat import waited

__all__ = ["frozen_between", "start_heartbeat"]

_PERIOD = 0.1
_GAP = 0.5
"""A wake-up this much later than asked, beyond any wait for a CPU, is a freeze."""

_spans: deque[tuple[float, float]] = deque(maxlen=256)
"""(from, to) on the monotonic clock: the spans the process was frozen, latest last."""
_beat = 0.0
"""When the heartbeat last woke (0.0: not started)."""
_lock = threading.Lock()


def start_heartbeat() -> None:
    """Start this process's heartbeat if it is not running (cheap when it is)."""
    global _beat
    if _beat:
        return
    with _lock:
        if _beat:
            return
        _beat = time.monotonic()
        threading.Thread(target=_run, name="pmfuzz-heartbeat", daemon=True).start()


def frozen_between(start: float, now: float) -> float:
    """Seconds of [start, now] the process was frozen, as far as the heartbeat knows."""
    total = 0.0
    for a, b in list(_spans):
        if b > start:
            total += max(0.0, min(b, now) - max(a, start))
    beat = _beat
    if beat and now - beat > _PERIOD + _GAP:
        total += now - max(beat, start)  # not seen since: frozen until it says otherwise
    return total


def _run() -> None:
    global _beat
    native = threading.get_native_id()
    last, w_last = time.monotonic(), waited(native)
    while True:
        time.sleep(_PERIOD)
        now, w = time.monotonic(), waited(native)
        late = now - last - _PERIOD
        if late > _GAP:
            lost = late - (w - w_last if w is not None and w_last is not None else 0.0)
            if lost > _GAP:
                _spans.append((now - lost, now))
        last, w_last = now, w
        _beat = now


def _after_fork() -> None:
    """A forked child has no heartbeat thread, nor the parent's freezes."""
    global _beat, _lock
    _beat = 0.0
    _lock = threading.Lock()
    _spans.clear()


os.register_at_fork(after_in_child=_after_fork)
