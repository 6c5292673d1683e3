"""Seconds a thread has spent runnable but not running (Linux's `/proc/self/task/<tid>/schedstat`).

Deadlines give that time back (`watchdog`), and so does the heartbeat that tells a stopped process
(`frozen`): neither a loaded machine nor a stopped process is the target hanging.
"""

from __future__ import annotations

import os
import threading

__all__ = ["waited"]

_main_native = threading.main_thread().native_id
_main_fd: tuple[int, int] | None = None
"""The main thread's native id and its open schedstat file, re-read with pread. Only the main
thread's is kept open: a campaign starts a thread per op of every parallel group it runs, and one
open file per thread ran to 16,000 in an hour."""


def waited(native_id: int) -> float | None:
    """Seconds the thread has so far spent runnable but not running (None where the kernel does not say)."""
    global _main_fd
    path = f"/proc/self/task/{native_id}/schedstat"
    try:
        if _main_fd is not None and _main_fd[0] == native_id:
            raw = os.pread(_main_fd[1], 128, 0)
        elif native_id == _main_native and _main_fd is None:
            _main_fd = (native_id, os.open(path, os.O_RDONLY | os.O_CLOEXEC))
            raw = os.pread(_main_fd[1], 128, 0)
        else:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                raw = os.pread(fd, 128, 0)
            finally:
                os.close(fd)
        return int(raw.split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return None


def _after_fork() -> None:
    """The parent's main thread's file is not this process's main thread's."""
    global _main_fd, _main_native
    if _main_fd is not None:
        os.close(_main_fd[1])
        _main_fd = None
    _main_native = threading.get_native_id()


os.register_at_fork(after_in_child=_after_fork)
