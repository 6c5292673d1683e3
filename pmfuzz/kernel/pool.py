"""This process's booted guests, shared by every kernel target object, and their kernel symbols.

Booting a guest under TCG takes seconds, so a worker keeps its guest for all
its workloads and all their crash images: workloads are recorded on the
guest's first pmem region (/dev/pmem0) and crash images are recovered by a
mount on its second (/dev/pmem1), which the recorder does not see. A guest
that died (a panic, a hang, a lost console) is dropped here and the next use
boots a new one.
"""

from __future__ import annotations

from ..errors import PmfuzzError
from .guest import Guest
from .paths import missing
from .trace import Symbols

__all__ = ["boot", "current", "symbols", "forget", "close"]

_POOL: dict[str, tuple[Guest, Symbols | None]] = {}
"""The guest per accelerator, and its kernel's symbols once asked for."""


def current(accel: str) -> Guest | None:
    """The booted guest for `accel`, if any (alive or not)."""
    hit = _POOL.get(accel)
    return None if hit is None else hit[0]


def boot(accel: str, tools: tuple[str, ...] = ()) -> Guest:
    """The guest for `accel`, booted if there is none or it died."""
    hit = _POOL.get(accel)
    if hit is not None and hit[0].alive:
        return hit[0]
    why = missing(tools=tools)
    if why:
        raise PmfuzzError(f"the kernel target cannot run: {why}")
    g = Guest(accel=accel)
    _POOL[accel] = (g, None)
    return g


def symbols(accel: str, g: Guest) -> Symbols:
    """The guest's text symbols (from its /proc/kallsyms), asked for once per guest."""
    hit = _POOL.get(accel)
    if hit is not None and hit[0] is g and hit[1] is not None:
        return hit[1]
    r = g.command("syms")
    syms = Symbols(g.mailbox(int(r.value)).decode(errors="replace"))
    _POOL[accel] = (g, syms)
    return syms


def forget(accel: str, g: Guest) -> None:
    """Drop `g` if it is the pool's and no longer alive (the next use boots another)."""
    hit = _POOL.get(accel)
    if hit is not None and hit[0] is g and not g.alive:
        del _POOL[accel]


def close(accel: str) -> None:
    """Stop the guest for `accel` (the next use boots a new one)."""
    hit = _POOL.pop(accel, None)
    if hit is not None:
        hit[0].close()
