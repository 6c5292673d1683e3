"""Build large long-lived structures without the cyclic collector looking on.

Why: a crash point with a 2 MiB zeroing in flight builds 32,768 groups, each a handful of
tracked objects that all stay alive. Every few hundred of them the collector ran, and every
few of those runs were full collections over everything alive: a third of judging such a
workload went to collections that could free nothing. Pausing it while such a structure is
built frees nothing later either (the structures hold no garbage); it runs again afterwards.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["collector_paused"]


@contextmanager
def collector_paused() -> Iterator[None]:
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()
