"""Child processes that never outlive pmfuzz.

A `kill -9` of a `--workers 2` campaign used to leave its manager and both
workers running, using CPU for nobody. On Linux the kernel delivers SIGKILL to
a child whose parent dies (`PR_SET_PDEATHSIG`); elsewhere, and to close the race
where the parent died before the call, a daemon thread watches the parent's pid.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import threading
import time

__all__ = ["die_with_parent"]

_PR_SET_PDEATHSIG = 1


def die_with_parent(parent: int) -> None:
    """Make this process end when process `parent` (the one that started it) ends."""
    if os.getppid() != parent:
        os._exit(1)  # the parent is already gone
    _pdeathsig()
    if os.getppid() != parent:
        os._exit(1)
    threading.Thread(target=_watch, args=(parent,), name="pmfuzz-parent-watch", daemon=True).start()


def _pdeathsig() -> None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass  # not Linux: the watching thread does it


def _watch(parent: int) -> None:
    while True:
        time.sleep(1.0)
        if os.getppid() != parent:
            os.kill(os.getpid(), signal.SIGKILL)
