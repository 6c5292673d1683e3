"""The target protocol: what pmfuzz needs from a file system (or any PMem program) under test.

A target formats a fresh `PMem` device, mounts a device (running its
recovery), executes ops one at a time and offers a read-only view of its files
plus an fsck. It declares the guarantees it makes; the engine runs exactly the
oracles those guarantees select. See `docs/targets.md` for a tutorial.

Errors of the target are findings: an exception raised by `mount` or
`execute` is reported by the `mount` oracle (or as a target error), never
swallowed and never confused with pmfuzz's own errors.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from .errors import PmfuzzError, clip
from .falloc import FALLOC_MODES, FallocMode
from .pmem import PMem
from .workload import Fallocate, Op, OpKind

__all__ = [
    "Errno",
    "Signal",
    "Result",
    "Guarantee",
    "Target",
    "MountedFS",
    "TargetSpec",
    "admit",
    "admitted",
    "register",
    "targets",
    "make_target",
    "parse_target_spec",
    "metadata_ranges",
    "supported_ops",
    "supported_falloc_modes",
    "check_supported",
]


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


class Guarantee(enum.StrEnum):
    """What a target promises; each selects the oracles that check it."""

    POSIX = "posix"
    """Crash-free, every op behaves as the POSIX reference model (oracle `functional`)."""
    MOUNTABLE = "mountable"
    """Every crash image mounts and passes fsck (oracle `mount`)."""
    NO_STALE_DATA = "no-stale-data"
    """A file never shows data it did not hold: no stale media, no other file's data (`stale-exposure`)."""
    COW_ATOMIC = "cow-atomic"
    """A write to shared blocks leaves each block old or new, and never changes the source (`cow-atomicity`)."""
    FSYNC_DURABLE = "fsync-durable"
    """fsync, sync and persist on MAP_SYNC mappings make data and metadata durable (`durability`)."""
    ATOMIC_OPS = "atomic-ops"
    """Every op is atomic and synchronous: a crash shows the state before or after it (`atomic-ops`)."""


@runtime_checkable
class MountedFS(Protocol):
    """A mounted target: executes ops, and offers the read-only view oracles use."""

    def execute(self, index: int, op: Op, payload: bytes | None) -> Result:
        """Run op number `index`; `payload` is the bytes a write or store puts (self-describing data)."""
        ...

    def files(self) -> list[str]:
        """Names of the files that exist, sorted."""
        ...

    def size(self, name: str) -> int | None:
        """Size of a file, or None if it does not exist."""
        ...

    def read(self, name: str, off: int, n: int) -> bytes:
        """read(2): at most n bytes from off, short at EOF."""
        ...

    def read_mapping(self, name: str, off: int, n: int) -> Result:
        """What loads through live mapping `name` would see, page by page, without changing anything."""
        ...

    def fsck(self) -> list[str]:
        """Structural problems found on the device, one line each; empty if consistent."""
        ...


@runtime_checkable
class Target(Protocol):
    """A file system (or PMem program) under test, with its configuration fixed."""

    name: str
    guarantees: frozenset[Guarantee]

    def format(self, pm: PMem) -> None:
        """Make a fresh device ready to mount (mkfs)."""
        ...

    def mount(self, pm: PMem) -> MountedFS:
        """Mount a device, running recovery; raise if it cannot be mounted."""
        ...

    def options(self) -> dict[str, str]:
        """The configuration, as `key=value` pairs a reproducer header records."""
        ...


def supported_ops(target: Target) -> frozenset[OpKind]:
    """The op kinds a target handles: its `ops` attribute, or every op of the language."""
    ops = getattr(target, "ops", None)
    return frozenset(OpKind) if ops is None else frozenset(ops)


def supported_falloc_modes(target: Target) -> tuple[FallocMode, ...]:
    """The fallocate modes a target runs: its `falloc_modes` attribute, or every mode the language has
    (ext4 has no FALLOC_FL_UNSHARE_RANGE, for one)."""
    modes = getattr(target, "falloc_modes", None)
    return FALLOC_MODES if modes is None else tuple(modes)


def check_supported(target: Target, ops: Sequence[Op]) -> None:
    """One clear error if a workload uses an op (or a fallocate mode) the target does not declare."""
    ok = supported_ops(target)
    modes = supported_falloc_modes(target)
    for i, op in enumerate(ops):
        if op.kind not in ok:
            raise PmfuzzError(
                f"target {target.name!r} does not support op {op.kind.value!r} (op {i}: `{op}`); "
                f"it supports: {', '.join(sorted(k.value for k in ok))}"
            )
        if isinstance(op, Fallocate) and op.mode not in modes:
            raise PmfuzzError(f"target {target.name!r} does not support the fallocate mode of op {i}: `{op}`")


def metadata_ranges(target: Target, size: int) -> list[tuple[int, int]] | None:
    """The byte ranges a target's recovery and fsck read, if it declares them.

    A target that defines `metadata_ranges(size)` promises that mount and fsck
    read nothing outside them and that its view reads file data from the device
    on every access. The engine then mounts once per distinct metadata state and
    swaps only data lines between states. Without it, every state is mounted.
    """
    fn = getattr(target, "metadata_ranges", None)
    return None if fn is None else list(fn(size))


TargetFactory = Callable[..., Target]
_REGISTRY: dict[str, TargetFactory] = {}


def register(name: str, factory: TargetFactory) -> None:
    """Make a target available by name (`pmfuzz run --target NAME`)."""
    _REGISTRY[name] = factory


def targets() -> dict[str, TargetFactory]:
    """Targets known by name: the built-in ones and those installed under the `pmfuzz.targets` entry points."""
    _load_builtin()
    from importlib.metadata import entry_points

    for ep in entry_points(group="pmfuzz.targets"):
        if ep.name not in _REGISTRY:
            _REGISTRY[ep.name] = _Lazy(ep)
    return dict(_REGISTRY)


class _Lazy:
    """An entry point loaded only when the target is used."""

    def __init__(self, ep) -> None:
        self.ep = ep

    def __call__(self, **opts: str) -> Target:
        try:
            factory = self.ep.load()
        except Exception as e:
            raise PmfuzzError(
                f"target {self.ep.name!r} (entry point {self.ep.value}) cannot be loaded: {clip(str(e), 200)}"
            ) from None
        return factory(**opts)


_ADMITTED: dict[str, TargetFactory] = {}
_PROTOCOL = ("name", "guarantees", "format", "mount", "options")
_MODULE_CLASS = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*:[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*$")


def admit(name: str) -> None:
    """Allow `make_target` to build `module:Class`: the command line's choice, never a file's.

    A reproducer is data: it may name registered targets only. Importing a module runs its code,
    so only `--target module:Class` given by the user imports one, and the class is checked
    against the protocol (a class, with name, guarantees, format, mount and options) before any
    of it is called. The current directory is not put on the import path.
    """
    if ":" not in name or name in _ADMITTED or name in targets():
        return  # a plain name is looked up in the registry when the target is made
    _ADMITTED[name] = _import_class(name)


def admitted(name: str) -> bool:
    return name in _ADMITTED


def _import_class(path: str) -> TargetFactory:
    """`module:Class` -> the class, checked against the target protocol before anything of it runs."""
    import importlib
    import inspect

    if not _MODULE_CLASS.match(path):
        raise PmfuzzError(f"target {clip(path)} is neither a registered target nor module:Class")
    mod, _, attr = path.partition(":")
    try:
        module = importlib.import_module(mod)
    except Exception as e:
        raise PmfuzzError(f"cannot import target module {mod!r}: {type(e).__name__}: {clip(str(e), 200)}") from None
    obj: object = module
    for part in attr.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            raise PmfuzzError(f"module {mod!r} has no {attr!r} (target given as {path!r})")
    if not inspect.isclass(obj):
        raise PmfuzzError(f"target {path!r} is a {type(obj).__name__}, not a class implementing the target protocol")
    missing = [a for a in _PROTOCOL if not hasattr(obj, a)]
    if missing:
        raise PmfuzzError(f"class {path!r} does not implement the target protocol (no {', '.join(map(repr, missing))})")
    return obj  # type: ignore[return-value]


def _load_builtin() -> None:
    if "daxfs" not in _REGISTRY:
        from .fs import daxfs  # noqa: F401  (registers itself)


@dataclass(frozen=True, slots=True)
class TargetSpec:
    """A target name and its options, as written in a reproducer: `daxfs design=zero bugs=no-zero`."""

    name: str
    options: tuple[tuple[str, str], ...] = ()

    def __str__(self) -> str:
        return " ".join([self.name, *(f"{k}={v}" for k, v in self.options)])


def parse_target_spec(text: str) -> TargetSpec:
    parts = text.split()
    if not parts:
        raise PmfuzzError("empty target specification")
    opts = []
    for p in parts[1:]:
        k, eq, v = p.partition("=")
        if not eq or not k:
            raise PmfuzzError(f"target option {clip(p)} is not of the form key=value")
        opts.append((k, v))
    return TargetSpec(parts[0], tuple(opts))


def make_target(spec: TargetSpec | str, **overrides: str) -> Target:
    """Build a target from its spec; unknown names and options are one clear error."""
    if isinstance(spec, str):
        spec = parse_target_spec(spec)
    factory = _ADMITTED.get(spec.name) or targets().get(spec.name)
    if factory is None:
        if ":" in spec.name:
            shown = spec.name if len(spec.name) <= 80 else clip(spec.name)
            raise PmfuzzError(
                f"target {shown} is not a registered target, and a file cannot make pmfuzz import a module: "
                f"give --target {shown} on the command line to load it"
            )
        known = ", ".join(sorted(targets()))
        raise PmfuzzError(f"unknown target {clip(spec.name)} (known: {known}; or give --target module:Class)")
    opts = dict(spec.options)
    opts.update(overrides)
    try:
        target = factory(**opts)
    except PmfuzzError:
        raise
    except Exception as e:  # the target's own validation of its options: a configuration error
        raise PmfuzzError(
            f"target {spec.name!r} rejects its options {clip(opts, 200)}: {type(e).__name__}: {clip(str(e), 200)}"
        ) from None
    for attr in ("name", "guarantees", "format", "mount", "options"):
        if not hasattr(target, attr):
            raise PmfuzzError(f"target {spec.name!r} does not implement the target protocol (no {attr!r})")
    return target
