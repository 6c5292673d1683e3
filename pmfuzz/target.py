"""The target protocol: what pmfuzz needs from a file system (or any PMem program) under test.

A target formats a fresh `PMem` device, mounts a device (running its
recovery), executes ops one at a time and offers a read-only view of its files
plus an fsck. It declares the guarantees it makes; the engine runs exactly the
oracles those guarantees select. See `docs/targets.md` for a tutorial.

Everything else a target may offer is optional, and declared here as one small
capability protocol each (`HasOps`, `HasMetadataRanges`, `Schedulable`, ...), so
that this file is the whole surface a target author can implement. pmfuzz reads
an optional hook only through the helper next to its protocol (`supported_ops`,
`metadata_ranges`, `scheduler_hook`, ...), which says what its absence means.

Errors of the target are findings: an exception raised by `mount` or
`execute` is reported by the `mount` oracle (or as a target error), never
swallowed and never confused with pmfuzz's own errors.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Collection, Hashable, Iterable, Sequence
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Protocol, cast, runtime_checkable

from .errors import PmfuzzError, clip
from .lang.falloc import FALLOC_MODES, FallocMode
from .lang.results import OK, Errno, Result, Signal, err, sig
from .lang.workload import BLOCK_SIZE, Fallocate, Op, OpKind
from .pmem import PMem

if TYPE_CHECKING:
    from importlib.metadata import EntryPoint

__all__ = [
    "mapped_blocks",
    "shared_elsewhere",
    "Errno",
    "Signal",
    "Result",
    "OK",
    "err",
    "sig",
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
    "HasOps",
    "HasFallocModes",
    "HasMetadataRanges",
    "HasRegions",
    "HasRangeLocks",
    "HasVariants",
    "HasDeviceSize",
    "HasMinOpTimeout",
    "Schedulable",
    "MapsBlocks",
    "KeysContent",
    "content_key_hooks",
    "ReportsLayout",
    "DEFAULT_DEVICE_SIZE",
    "metadata_ranges",
    "declared_regions",
    "supported_ops",
    "supported_falloc_modes",
    "check_supported",
    "declares_range_locks",
    "target_variants",
    "device_size",
    "min_op_timeout",
    "scheduler_hook",
    "mapping_blocks_hook",
    "layout_violations_hook",
    "FingerprintsState",
    "state_fingerprint_hook",
    "MapsFileBlocks",
    "file_blocks",
    "MapsFileExtents",
    "file_extents",
    "byte_address",
    "TargetError",
    "is_target_error",
]


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


# -- optional capabilities ------------------------------------------------------------------
# Each protocol is one hook a target (or its mounted fs) may have; the helper after it is the
# only place pmfuzz looks for it. The helpers use getattr rather than isinstance so that a
# wrapper forwarding attributes (guarded.GuardedFS) passes its target's hooks through.


@runtime_checkable
class HasOps(Protocol):
    """A target that runs only some op kinds (a workload with others is rejected up front)."""

    ops: Collection[OpKind]


def supported_ops(target: Target) -> frozenset[OpKind]:
    """The op kinds a target handles: its `ops` attribute, or every op of the language."""
    ops = getattr(target, "ops", None)
    return frozenset(OpKind) if ops is None else frozenset(ops)


@runtime_checkable
class HasFallocModes(Protocol):
    """A target that runs only some fallocate modes (ext4 has no FALLOC_FL_UNSHARE_RANGE, for one)."""

    falloc_modes: Collection[FallocMode]


def supported_falloc_modes(target: Target) -> tuple[FallocMode, ...]:
    """The fallocate modes a target runs: its `falloc_modes` attribute, or every mode the language has."""
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


@runtime_checkable
class HasMetadataRanges(Protocol):
    """A target whose mount and fsck read only these byte ranges of a device of `size` bytes, whose
    file list and sizes follow from them (the judge asks them once per mount), and whose view reads
    file data from the device on every access."""

    def metadata_ranges(self, size: int) -> Iterable[tuple[int, int]]: ...


def metadata_ranges(target: Target, size: int) -> list[tuple[int, int]] | None:
    """The byte ranges a target's recovery and fsck read, if it declares them.

    With them the engine mounts once per distinct metadata state and swaps only data
    lines between states. Without them, every state is mounted.
    """
    fn = getattr(target, "metadata_ranges", None)
    return None if fn is None else list(fn(size))


@runtime_checkable
class HasRegions(Protocol):
    """A target that names the regions of its device (name, start, end) for pictures."""

    def regions(self, size: int) -> Iterable[tuple[str, int, int]]: ...


def declared_regions(target: Target, size: int) -> list[tuple[str, int, int]] | None:
    """The target's own named regions of a device of `size` bytes, or None if it names none."""
    fn = getattr(target, "regions", None)
    return None if fn is None else [(str(n), int(a), int(b)) for n, a, b in fn(size)]


@runtime_checkable
class HasRangeLocks(Protocol):
    """A target that locks the byte range write(2) changes (`workload.write_lock_span`) and whose
    faults lock their page, so a write from a mapping of that very range gets EDEADLK."""

    range_locks: bool


def declares_range_locks(target: object) -> bool:
    """Whether the reference must expect EDEADLK from range locks (absent: no range locks)."""
    return bool(getattr(target, "range_locks", False))


@runtime_checkable
class HasVariants(Protocol):
    """A target with configurations a campaign alternates between when the user fixes none."""

    def variants(self) -> list[dict[str, str]]: ...


def target_variants(target: Target) -> list[dict[str, str]] | None:
    """The option sets a campaign alternates between, or None for the target as configured."""
    fn = getattr(target, "variants", None)
    return None if fn is None else list(fn())


DEFAULT_DEVICE_SIZE = 8 << 20


@runtime_checkable
class HasDeviceSize(Protocol):
    """A target that needs a device of its own size (XFS's 16 MiB minimum, for one)."""

    device_size: int


def device_size(target: Target, default: int = DEFAULT_DEVICE_SIZE) -> int:
    """The device size a target asks for, else `default`."""
    return int(getattr(target, "device_size", default))


@runtime_checkable
class HasMinOpTimeout(Protocol):
    """A target whose ops need at least this many seconds (one that boots a guest, say)."""

    min_op_timeout: float


def min_op_timeout(target: Target) -> float | None:
    """The floor a target puts under the per-op deadline, or None."""
    return getattr(target, "min_op_timeout", None)


@runtime_checkable
class Schedulable(Protocol):
    """A mounted fs that can run a parallel group: it yields to `sched` at its preemption points."""

    def set_scheduler(self, sched: object) -> None: ...


def scheduler_hook(fs: MountedFS) -> Callable[[object], None] | None:
    """The mounted fs's `set_scheduler`, or None if it cannot run parallel groups."""
    return getattr(fs, "set_scheduler", None)


@runtime_checkable
class MapsBlocks(Protocol):
    """A mounted fs that tells which block each page of a live mapping reaches (per page:
    the block the PTE points at and the block the file has there). `mmap-coherency` checks it
    after every op; the run also records it after every op that uses a mapping or changes a
    block map and after every step of a parallel group, to name a stale entry by how it went
    stale (installed stale, kept over a change, writable on a shared block). It must not
    change anything: it is called while a group's threads are stopped mid-op."""

    def mapping_blocks(self, name: str) -> dict[int, tuple[int | None, int | None]]: ...


def mapping_blocks_hook(fs: MountedFS) -> Callable[[str], dict[int, tuple[int | None, int | None]]] | None:
    """The mounted fs's `mapping_blocks`, or None if it does not tell."""
    return getattr(fs, "mapping_blocks", None)


@runtime_checkable
class ReportsLayout(Protocol):
    """A mounted fs that reports every access it let through to a block the mapped file no longer
    has at that page: (op index, what)."""

    def layout_violations(self) -> list[tuple[int, str]]: ...


def layout_violations_hook(fs: MountedFS) -> Callable[[], list[tuple[int, str]]] | None:
    """The mounted fs's `layout_violations`, or None if it does not report them."""
    return getattr(fs, "layout_violations", None)


@runtime_checkable
class FingerprintsState(Protocol):
    """A mounted fs that digests its in-memory state between ops (no thread of a parallel group in
    flight), apart from its device: two equal digests promise that, on the same device contents,
    every later op does the same thing. The explorer then stops a schedule that reached a state an
    earlier schedule reached, since all that follows was explored from there. A digest may differ
    for equal states (a duplicate run, no harm); it must never be equal for states that differ.
    None: it cannot tell this time. daxfs: `pmfuzz.fingerprint` of its whole object graph, the
    device left out."""

    def state_fingerprint(self) -> bytes | None: ...


def state_fingerprint_hook(fs: MountedFS) -> Callable[[], bytes | None] | None:
    """The mounted fs's `state_fingerprint`, or None if it keeps no state it can digest (no schedule
    is stopped early)."""
    return getattr(fs, "state_fingerprint", None)


@runtime_checkable
class KeysContent(Protocol):
    """A mounted fs that names what its views are a function of: `content_key(name)` a hashable value
    equal to an earlier one only if `read(name, ...)` returns what it returned then, `mapping_key(name)`
    the same for `read_mapping(name, ...)` (None: no such file or mapping). With them the crash-free check reads
    a file or mapping again only after its key changed; a key that stays equal over a change hides it.
    daxfs: the inode, size and extent map (and page-table entries), and `PMem.generation` of the
    blocks they reach."""

    def content_key(self, name: str) -> Hashable | None: ...

    def mapping_key(self, name: str) -> Hashable | None: ...


def content_key_hooks(
    fs: MountedFS,
) -> tuple[Callable[[str], Hashable | None], Callable[[str], Hashable | None]] | None:
    """The mounted fs's `content_key` and `mapping_key`, or None unless it has both."""
    a, b = getattr(fs, "content_key", None), getattr(fs, "mapping_key", None)
    return (a, b) if callable(a) and callable(b) else None


@runtime_checkable
class MapsFileBlocks(Protocol):
    """A mounted fs that tells where each block of a file lives, for pictures of a finding:
    (file offset, device offset or None for a hole, unwritten)."""

    def file_blocks(self, name: str, size: int) -> list[tuple[int, int | None, bool]]: ...


def file_blocks(fs: MountedFS, name: str, size: int) -> list[tuple[int, int | None, bool]] | None:
    """The blocks of file `name` up to `size`, or None if the mounted fs does not tell."""
    fn = getattr(fs, "file_blocks", None)
    return None if fn is None else list(fn(name, size))


@runtime_checkable
class MapsFileExtents(Protocol):
    """A mounted fs that lists a file's mapped extents (what FIEMAP reports): (file offset, device
    offset, length, unwritten) per extent, holes left out, past EOF included. pmfuzz records how
    each op changed them, to tell how a block a finding reads became the file's (allocated, or made
    written from unwritten; copied on write; unshared; shared by a reflink)."""

    def file_extents(self, name: str) -> list[tuple[int, int, int, bool]]: ...


def file_extents(fs: MountedFS, name: str) -> list[tuple[int, int, int, bool]] | None:
    """The mapped extents of file `name`, or None if the mounted fs does not tell."""
    fn = getattr(fs, "file_extents", None)
    return None if fn is None else list(fn(name))


def byte_address(fs: MountedFS, name: str, off: int) -> int | None:
    """The device address byte `off` of file `name` is read from; None for a hole, an unwritten
    block, or a mounted fs that does not tell its blocks."""
    base = off - off % BLOCK_SIZE
    for foff, dev, unwritten in file_blocks(fs, name, off + 1) or ():
        if foff == base:
            return None if dev is None or unwritten else dev + off - base
    return None


def shared_elsewhere(fs: MountedFS, name: str, addr: int, table: dict[int, set[str]] | None = None) -> bool:
    """Whether a file other than `name` maps the device block holding byte `addr` (False when the
    mounted fs does not tell its blocks); `table`: `mapped_blocks(fs)`, when the caller keeps it."""
    names = (mapped_blocks(fs) if table is None else table).get(addr - addr % BLOCK_SIZE, set())
    return bool(names - {name})


def mapped_blocks(fs: MountedFS) -> dict[int, set[str]]:
    """Every device block a file maps (up to its size), and the files that map it."""
    out: dict[int, set[str]] = {}
    for n in fs.files():
        for _off, dev, _u in file_blocks(fs, n, max(fs.size(n) or 0, 1)) or ():
            if dev is not None:
                out.setdefault(dev, set()).add(n)
    return out


@runtime_checkable
class TargetError(Protocol):
    """An exception class of a target's own machinery (a guest that died, a helper that failed)
    that sets `is_target_error = True`: reported against the target, never as pmfuzz's bug."""

    is_target_error: bool


def is_target_error(exc: BaseException) -> bool:
    """Whether an exception declares itself the target's (`TargetError`)."""
    return bool(getattr(exc, "is_target_error", False))


# -- the registry ----------------------------------------------------------------------------

TargetFactory = Callable[..., Target]
_REGISTRY: dict[str, TargetFactory] = {}


def register(name: str, factory: TargetFactory) -> None:
    """Make a target available by name (`pmfuzz run --target NAME`)."""
    _REGISTRY[name] = factory


_BUILTIN = {"daxfs": "pmfuzz.fs.daxfs:DaxfsTarget"}
"""pmfuzz's own entry points (pyproject.toml declares them too), for an install whose metadata
predates them: an editable install keeps the entry points it was made with."""


@cache
def _installed() -> dict[str, EntryPoint]:
    """The `pmfuzz.targets` entry points, read once: scanning every installed distribution's
    metadata took 2% of a campaign when each workload's target was made."""
    from importlib.metadata import entry_points

    return {ep.name: ep for ep in entry_points(group="pmfuzz.targets")}


def targets() -> dict[str, TargetFactory]:
    """Targets known by name: those installed under the `pmfuzz.targets` entry points, daxfs first."""
    from importlib.metadata import EntryPoint

    installed = _installed()
    for name, value in _BUILTIN.items():
        if name not in _REGISTRY:
            ep = installed.get(name) or EntryPoint(name, value, "pmfuzz.targets")
            _REGISTRY[name] = ep.load()
    for ep in installed.values():
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
    return cast(TargetFactory, obj)


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
