"""What an op returns: a value, an errno or a signal.

Part of the op language, not of a target: the reference, the built-in model and every target
answer in these words, and the functional oracle compares them exactly.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = ["Errno", "Signal", "Result", "OK", "err", "sig"]


class Errno(enum.StrEnum):
    ENOENT = "ENOENT"
    EEXIST = "EEXIST"
    EINVAL = "EINVAL"
    ENOSPC = "ENOSPC"
    EIO = "EIO"
    EBUSY = "EBUSY"
    EDEADLK = "EDEADLK"
    EFAULT = "EFAULT"


class Signal(enum.StrEnum):
    SIGBUS = "SIGBUS"
    SIGSEGV = "SIGSEGV"


@dataclass(frozen=True, slots=True)
class Result:
    """What one op returned: a value (int, or bytes for read), an errno, or a signal."""

    value: int | bytes = 0
    errno: Errno | None = None
    signal: Signal | None = None

    @property
    def ok(self) -> bool:
        return self.errno is None and self.signal is None

    def __str__(self) -> str:
        if self.errno is not None:
            return self.errno.value
        if self.signal is not None:
            return self.signal.value
        if isinstance(self.value, bytes):
            return f"{len(self.value)} bytes"
        return str(self.value)


OK = Result()


def err(e: Errno) -> Result:
    return Result(errno=e)


def sig(s: Signal) -> Result:
    return Result(signal=s)
