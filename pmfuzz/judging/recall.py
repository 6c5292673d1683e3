"""Crash states judged clean, remembered so that the same state under the same expectation is not judged again.

A crash oracle sees only the recovered image and the expectation. The recovered image is the
target's recovery of the state's image (its digest), and the expectation a function of the crash
window and of the history up to the window's last boundary (`History.prefix_digests`). So a state
judged clean is clean wherever it recurs under the same target and options: in another schedule of
a workload, or in another workload whose ops before the crash are the same (a campaign's mutations
keep their parent's first ops, and with them its first crash points).
"""

from __future__ import annotations

import hashlib
from collections import deque

from ..target import Target
from ..verdict import Options

__all__ = ["Recall", "scope", "window_key"]

CAP = 1 << 18
"""Clean states a `Recall` keeps (about 20 MiB); past it the oldest are forgotten, so that a store a
campaign's process keeps for its life holds its memory flat."""


class Recall:
    """The keys (`window_key` ^ image digest) of crash states judged clean, oldest forgotten first."""

    __slots__ = ("_keys", "_order", "cap")

    def __init__(self, cap: int | None = None) -> None:
        self.cap = CAP if cap is None else cap
        self._keys: set[int] = set()
        self._order: deque[int] = deque()

    def __contains__(self, key: int) -> bool:
        return key in self._keys

    def __len__(self) -> int:
        return len(self._keys)

    def add(self, key: int) -> None:
        if key in self._keys:
            return
        if len(self._keys) >= self.cap:
            self._keys.discard(self._order.popleft())
        self._keys.add(key)
        self._order.append(key)


def scope(target: Target, opts: Options, oracles: list[str]) -> bytes:
    """What a verdict depends on besides the image and the expectation: the target (its class and
    the configuration a reproducer records), its guarantees, the device size (the image digest is a
    change from the formatted device), the persistence domain and the oracles run."""
    kind = type(target)
    said = (
        kind.__module__,
        kind.__qualname__,
        target.name,
        sorted(target.options().items()),
        sorted(g.value for g in target.guarantees),
        opts.device_size,
        str(opts.domain),
        sorted(oracles),
    )
    return hashlib.blake2b(repr(said).encode(), digest_size=16).digest()


def window_key(scope: bytes, prefix: bytes, completed: int, upper: int) -> int:
    """The part of a state's key its crash window decides: XORed with the image digest, it is the key."""
    h = hashlib.blake2b(scope + prefix + f"{completed},{upper}".encode(), digest_size=16)
    return int.from_bytes(h.digest(), "little")
