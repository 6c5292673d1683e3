"""A mounted target seen through deadlines and type checks: pmfuzz never trusts what it returns.

Every protocol call of `GuardedFS` runs under a deadline (`watchdog.deadline`, raising
`TargetHang`), or under the one that encloses it, and a result of the wrong type or length
raises `TargetNonsense` naming the target and the call. `hang_stack` says where a hung target was.
"""

from __future__ import annotations

import numbers
import traceback
from pathlib import Path
from typing import Any

from ..target import Errno, MountedFS, Result, Signal, Target
from .watchdog import TargetHang, TargetNonsense, covering_deadline, deadline

__all__ = ["GuardedFS", "guarded_mount", "hang_stack"]


_VIEW = ("execute", "files", "size", "read", "read_mapping", "fsck")


def _short(x: object) -> str:
    s = repr(x)
    return s if len(s) <= 60 else s[:57] + "..."


def _is_result(r: object) -> bool:
    return (
        isinstance(r, Result)
        and isinstance(r.value, (numbers.Integral, bytes))
        and not isinstance(r.value, bool)
        and (r.errno is None or isinstance(r.errno, Errno))
        and (r.signal is None or isinstance(r.signal, Signal))
    )


class GuardedFS:
    """A mounted target seen through deadlines and type checks, so that pmfuzz never trusts what it returns.

    Every protocol call runs under `deadline(limit, ...)` (raising `TargetHang`) and a result
    of the wrong type or length raises `TargetNonsense` naming the target and the call.
    Other attributes (optional hooks such as `set_scheduler`) pass through unchanged.
    """

    __slots__ = ("_fs", "_limit", "_target")

    def __init__(self, fs: MountedFS, target: str, limit: float | None) -> None:
        missing = [m for m in _VIEW if not callable(getattr(fs, m, None))]
        if missing:
            raise TargetNonsense(
                f"target {target}: mount returned {_short(fs)}, which has no {', '.join(m + '()' for m in missing)}"
            )
        self._fs = fs
        self._target = target
        self._limit = limit

    def __getattr__(self, name: str) -> Any:
        return getattr(object.__getattribute__(self, "_fs"), name)

    def _call(self, name: str, what: str, *args: Any, own: bool = False) -> Any:
        """Call the target; a view call inside an enclosing deadline (an oracle's) runs under that one."""
        fn = getattr(self._fs, name)
        try:
            if self._limit is None:
                return fn(*args)
            cover = None if own else covering_deadline()
            if cover is not None:
                if cover.named_by_calls:
                    cover.what = what
                return fn(*args)
            with deadline(self._limit, what, target=self._target):
                return fn(*args)
        except TypeError as e:
            tb = e.__traceback__
            while tb is not None and tb.tb_next is not None:
                tb = tb.tb_next
            if tb is not None and tb.tb_frame.f_code is GuardedFS._call.__code__:
                raise TargetNonsense(
                    f"target {self._target}: {name}() cannot be called as the protocol does: {e}"
                ) from None
            raise

    def _bad(self, what: str, got: object, want: str) -> TargetNonsense:
        return TargetNonsense(f"target {self._target}: {what} returned {_short(got)}, not {want}")

    def execute(self, index: int, op: Any, payload: bytes | None) -> Result:
        what = f"op {index} `{op}`"
        r = self._call("execute", what, index, op, payload, own=True)
        if not _is_result(r):
            raise self._bad(what, r, "a pmfuzz.target.Result")
        return r

    def files(self) -> list[str]:
        out = self._call("files", "files()")
        if not isinstance(out, list) or not all(isinstance(n, str) for n in out):
            raise self._bad("files()", out, "a list of str")
        return out

    def size(self, name: str) -> int | None:
        out = self._call("size", "size()", name)
        if out is not None and (not isinstance(out, numbers.Integral) or isinstance(out, bool) or out < 0):
            raise self._bad(f"size({name!r})", out, "an int >= 0 or None")
        return None if out is None else int(out)

    def read(self, name: str, off: int, n: int) -> bytes:
        out = self._call("read", "read()", name, off, n)
        if not isinstance(out, (bytes, bytearray)) or len(out) > n:
            raise self._bad(f"read({name!r}, {off}, {n})", out, f"bytes of length <= {n}")
        return bytes(out)

    def read_mapping(self, name: str, off: int, n: int) -> Result:
        r = self._call("read_mapping", "read_mapping()", name, off, n)
        if not _is_result(r):
            raise self._bad(f"read_mapping({name!r}, {off}, {n})", r, "a pmfuzz.target.Result")
        return r

    def fsck(self) -> list[str]:
        out = self._call("fsck", "fsck()")
        if not isinstance(out, list) or not all(isinstance(p, str) for p in out):
            raise self._bad("fsck()", out, "a list of str")
        return out


def guarded_mount(target: Target, pm: Any, limit: float | None, what: str) -> GuardedFS:
    """`target.mount(pm)` under a deadline, its result wrapped in `GuardedFS`."""
    with deadline(limit, what, target=target.name):
        fs = target.mount(pm)
    return GuardedFS(fs, target.name, limit)


_HERE = Path(__file__).resolve().parent.parent
_DRIVERS = frozenset(
    str(_HERE / stage / f"{name}.py")
    for stage, names in (
        ("execution", ("watchdog", "guarded", "execute", "interleave")),
        ("judging", ("engine", "judge")),
    )
    for name in names
)


def hang_stack(e: TargetHang) -> str:
    """Where the target was when its deadline stopped it: its frames only, innermost last.

    Not a traceback of pmfuzz: the frames of the engine and of this module are left out.
    """
    frames = [f for f in traceback.extract_tb(e.__traceback__) if str(Path(f.filename).resolve()) not in _DRIVERS]
    return "".join(traceback.format_list(frames)) + f"stopped there after {e.limit:g} s\n"
