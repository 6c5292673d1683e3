"""Work the campaign's driver hands to a forked child, so that its memory goes with the child.

Minimizing a finding re-runs its workload hundreds of times, and drawing it imports matplotlib and
re-runs it once more. Done in the driver, one minimization of a workload with two 4 MiB mappings
left the driver at 650 MiB resident for the rest of a campaign, and every judging process forked
from it after carried those pages. A child returns its value through a pipe (pickled: plain data
only) and takes its memory with it when it exits.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import time
import traceback
from collections.abc import Callable
from typing import Any, TypeVar

from .procs import die_with_parent

__all__ = ["ChildDied", "ChildFailed", "run_isolated"]

T = TypeVar("T")


class ChildFailed(Exception):
    """The work raised in the child: the child's exception, as text, with its traceback."""

    def __init__(self, message: str, tb: str) -> None:
        super().__init__(message)
        self.tb = tb


class ChildDied(Exception):
    """The child ended without an answer (killed, out of memory, past its time)."""


def run_isolated(
    fn: Callable[..., T], *args: Any, stop: Callable[[], bool] | None = None, seconds: float | None = None
) -> T | None:
    """`fn(*args)` in a forked child, its result here; None if `stop()` turned true first (the child
    is ended). Without fork (not POSIX) it runs here."""
    if "fork" not in mp.get_all_start_methods():
        return fn(*args)
    ctx = mp.get_context("fork")
    rx, tx = ctx.Pipe(duplex=False)
    child = ctx.Process(target=_child, args=(tx, fn, args, os.getpid()), name="pmfuzz-isolated", daemon=True)
    child.start()
    tx.close()
    until = None if seconds is None else time.monotonic() + seconds
    try:
        while not rx.poll(0.2):
            if stop is not None and stop():
                return None
            if until is not None and time.monotonic() > until:
                raise ChildDied(f"it took over {seconds:g} s")
            if not child.is_alive() and not rx.poll(0):
                raise ChildDied(_ended(child.exitcode))
        try:
            kind, value, tb = rx.recv()
        except EOFError:
            child.join()
            raise ChildDied(_ended(child.exitcode)) from None
        if kind == "error":
            raise ChildFailed(value, tb)
        return value
    finally:
        rx.close()
        if child.is_alive():
            child.terminate()
        child.join()


def _ended(code: int | None) -> str:
    if code is not None and code < 0:
        return f"its process was killed by {signal.Signals(-code).name}"
    return f"its process ended with status {code} and no answer"


def _child(tx: Any, fn: Callable[..., Any], args: tuple[Any, ...], parent: int) -> None:
    die_with_parent(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the driver's to handle
    try:
        out: tuple[str, Any, str] = ("ok", fn(*args), "")
    except BaseException as e:  # sent back: the driver decides
        out = ("error", f"{type(e).__name__}: {e}", traceback.format_exc())
    tx.send(out)
    tx.close()
