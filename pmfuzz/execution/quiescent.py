"""The state of an execution between parallel groups, as one key: where a schedule may stop early.

At the end of a parallel group no thread is in flight, so all the execution does from there is
a function of its state: the device (a function of its trace), the target's memory (its
`state_fingerprint`), the reference and its history, and what the run recorded so far. Two
schedules that reach one key with the same preemption budget left run every continuation
alike, so the explorer stops the later one there (`interleave.Chooser.stop_here`).
"""

from __future__ import annotations

import hashlib

from ..fingerprint import fingerprint
from ..pmem import PMem
from ..reference import History
from ..target import MountedFS, state_fingerprint_hook
from ..verdict import Findings

__all__ = ["TraceDigest", "state_key"]


class TraceDigest:
    """A running digest of a device's trace, fed each event once as the run goes."""

    def __init__(self) -> None:
        self._h = hashlib.blake2b(digest_size=16)
        self._n = 0

    def of(self, pm: PMem) -> hashlib.blake2b:
        """The digest of the whole trace so far (a copy: feeding it more leaves this one be)."""
        h = self._h
        for e in pm.trace_since(self._n):
            h.update(repr((e.kind, e.addr, e.size, e.op, e.site)).encode())
            if e.data is not None:
                h.update(bytes(e.data))
        self._n = pm.events_recorded
        return h.copy()


def state_key(
    at: int, trace: TraceDigest, pm: PMem, fs: MountedFS, hist: History, found: Findings, record: tuple
) -> bytes | None:
    """The execution's state before op `at`, between groups: the trace, the target's memory, the
    reference with its history (their caches left out) and `record` (what the run noted so far);
    None when the target cannot digest its memory."""
    hook = state_fingerprint_hook(fs)
    if hook is None:
        return None
    try:
        mine = hook()
    except Exception:  # an optimisation failed, not the target's work: the schedule just runs on
        return None
    if mine is None:
        return None
    ours = fingerprint((hist, list(found.values()), record), left_out=hist.caches())
    if ours is None:
        return None
    h = trace.of(pm)
    h.update(at.to_bytes(8, "little") + mine + ours)
    return h.digest()
