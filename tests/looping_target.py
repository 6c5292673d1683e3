"""A pmlog target that misbehaves on request: it loops, sleeps or returns nonsense where its options say.

Loaded by module:Class (`tests.looping_target:LoopingTarget hang=write`) in the CLI tests, so it
lives in a module of its own. Options (all strings, as a reproducer's target line gives them):

- `hang=KIND`: executing an op of that kind never returns (`how=spin`, `sleep` or `stores`:
  a busy loop, a long sleep, or a loop storing and persisting to the device);
- `recovery=hang`: mounting a device that holds a committed record never returns (every crash
  image after the first append; the freshly formatted device still mounts);
- `mkfs=hang`: formatting never returns;
- `returns=KIND:none|int|str`: executing an op of that kind returns that instead of a Result;
- `view=files|size|read|short`: that view call returns nonsense (`short`: read returns too many bytes);
  `view=hang`: `files()` never returns (`hang-f1`: once file f1 exists); `view=raise`: `files()` raises.
"""

from __future__ import annotations

import time

from examples.pmlog import MountedLog, PmLog
from pmfuzz.lang.workload import Op
from pmfuzz.pmem import PMem
from pmfuzz.target import Result

__all__ = ["LoopingTarget"]


def _forever(how: str, pm: PMem | None = None) -> None:
    if how == "sleep":
        time.sleep(3600)
    while True:
        if how == "stores" and pm is not None:
            pm.store(8192, b"\1" * 64)
            pm.persist(8192, 64)


class MountedLooping(MountedLog):
    def __init__(self, pm: PMem, t: LoopingTarget) -> None:
        self.t = t
        super().__init__(pm, "")

    def execute(self, index: int, op: Op, payload: bytes | None) -> Result:
        t = self.t
        if op.kind.value == t.hang:
            with self.pm.op(index):
                _forever(t.how, self.pm)
        kind, _, what = t.returns.partition(":")
        if op.kind.value == kind:
            super().execute(index, op, payload)
            return {"none": None, "int": 7, "str": "ok"}[what]  # type: ignore[return-value]
        return super().execute(index, op, payload)

    def set_scheduler(self, sched: object) -> None:
        """Parallel groups run (their ops never yield: each runs whole on its thread)."""

    def files(self) -> list[str]:
        if self.t.view == "hang" or (self.t.view == "hang-f1" and "f1" in self.files_):
            _forever(self.t.how)
        if self.t.view == "raise":
            raise RuntimeError("broken index")
        out = super().files()
        return [1, *out] if self.t.view == "files" else out  # type: ignore[list-item]

    def size(self, name: str) -> int | None:
        return "big" if self.t.view == "size" else super().size(name)  # type: ignore[return-value]

    def read(self, name: str, off: int, n: int) -> bytes:
        if self.t.view == "read":
            return "text"  # type: ignore[return-value]
        if self.t.view == "short":
            return super().read(name, off, n) + b"\0" * (n + 1)
        return super().read(name, off, n)


class LoopingTarget(PmLog):
    """pmlog with switches that make it hang or return nonsense (see the module docstring)."""

    name = "looping"

    def __init__(
        self, hang: str = "", how: str = "spin", recovery: str = "", mkfs: str = "", returns: str = "", view: str = ""
    ) -> None:
        super().__init__()
        self.hang, self.how, self.recovery, self.mkfs, self.returns, self.view = (
            hang,
            how,
            recovery,
            mkfs,
            returns,
            view,
        )

    def format(self, pm: PMem) -> None:
        if self.mkfs == "hang":
            _forever(self.how)
        super().format(pm)

    def mount(self, pm: PMem) -> MountedLooping:
        fs = MountedLooping(pm, self)
        if self.recovery == "hang" and fs.tail > 4096:
            _forever(self.how)
        return fs

    def options(self) -> dict[str, str]:
        opts = {
            "hang": self.hang,
            "how": self.how if self.how != "spin" else "",
            "recovery": self.recovery,
            "mkfs": self.mkfs,
            "returns": self.returns,
            "view": self.view,
        }
        return {k: v for k, v in opts.items() if v}
