"""Hypothesis strategies for ops and workloads, for fuzzing and for users' own property tests.

    from hypothesis import given
    from pmfuzz.gen.strategies import workloads

    @given(workloads(max_ops=12))
    def test_my_target(w): ...

Generation is context-aware: it tracks which files exist, their sizes, and
which mappings are live, so most ops name things that exist and ranges that
straddle the interesting boundaries (blocks, EOF, 2 MiB), while a few ops
stay invalid on purpose to exercise error paths.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import hypothesis.strategies as st

from ..lang.falloc import FALLOC_MODES, FallocMode
from ..lang.workload import (
    BLOCK_SIZE,
    FILES,
    MAPPINGS,
    PMD_SIZE,
    Create,
    Dma,
    Fallocate,
    Fault,
    Fsync,
    Madvise,
    Mmap,
    Munmap,
    Op,
    OpKind,
    Parallel,
    Persist,
    Pin,
    Punch,
    Read,
    Reflink,
    Store,
    Sync,
    Truncate,
    Unlink,
    Unpin,
    Workload,
    Write,
)
from .falloc_steps import falloc_steps

__all__ = ["workloads", "ops", "Shape", "DEFAULT_SHAPE", "SCENARIOS", "scenario_shape"]

K = BLOCK_SIZE


@dataclass(frozen=True)
class Shape:
    """Knobs for generated workloads."""

    files: int = 3
    mappings: int = 2
    max_file: int = 16 * K
    pmd: bool = False
    """Allow 2 MiB mappings of single ops (bigger files, slower crash checking). PMD faults are drawn
    either way: on a small mapping they fall back to PTEs, on the `hugezero` scenario's they map 2 MiB."""
    weights: dict[str, int] = field(
        default_factory=lambda: {
            "create": 3,
            "write": 8,
            "truncate": 3,
            "fallocate": 2,
            "punch": 2,
            "reflink": 3,
            "fsync": 3,
            "sync": 1,
            "mmap": 3,
            "munmap": 1,
            "fault": 3,
            "store": 4,
            "persist": 3,
            "unlink": 1,
            "read": 1,
            "madvise": 1,
            "share": 4,
            "mapsync": 2,
            "mapstore": 2,
            "mapeof": 2,
            "race": 6,
            "hugezero": 3,
            "prealloc": 2,
            "falloc": 2,
        }
    )
    """Per-kind weights; `share`, `mapsync`, `mapstore`, `mapeof`, `race`, `hugezero`, `prealloc` and
    `falloc` are scenarios (see `_SCENARIOS`); `race` draws a parallel group, whose every schedule
    within the preemption bound the engine then runs."""
    falloc_modes: tuple[FallocMode, ...] = FALLOC_MODES
    """The fallocate modes drawn (a target may run fewer: `target.supported_falloc_modes`)."""

    def only(self, kinds: frozenset[OpKind] | set[OpKind], modes: tuple[FallocMode, ...] = FALLOC_MODES) -> Shape:
        """The same shape restricted to the op kinds and fallocate modes a target supports."""
        names = {k.value for k in kinds}
        keep = {k: w for k, w in self.weights.items() if k in names or _SCENARIOS.get(k, {"?"}) <= names}
        drawn = tuple(m for m in self.falloc_modes if m in modes) or (FallocMode.ALLOCATE_RANGE,)
        return replace(self, weights=keep, pmd=self.pmd and OpKind.FAULT in kinds, falloc_modes=drawn)


_SCENARIOS: dict[str, set[str]] = {
    "share": {"create", "write", "reflink"},
    "mapsync": {"mmap", "store", "persist"},
    "mapstore": {"mmap", "store", "fsync"},
    "mapeof": {"create", "write", "mmap", "truncate", "fault"},
    "race": {"create", "write", "truncate", "mmap", "parallel"},
    "hugezero": {"create", "truncate", "mmap", "fault", "write"},
    "prealloc": {"create", "fallocate", "mmap", "fault", "store"},
    "falloc": {"create", "write", "fallocate"},
}
"""Multi-op steps and the op kinds they need. Crash bugs of COW and MAP_SYNC paths need
a few ops in a row (data, then sharing, then a write into the shared range; a
sync mapping, a store, a persist; a mapping across EOF, then a truncate or a
fault at the EOF page; a `parallel` group of two ops on one range after a
prefix that maps, shares or pins it; a huge zero page under a write); drawn
op by op they are rare, drawn as one step
they are as common as any single op, which is what ACE's workload skeletons do."""

DEFAULT_SHAPE = Shape()

_UNSHARE = tuple(m for m in FALLOC_MODES if m & FallocMode.UNSHARE_RANGE)
SCENARIOS: tuple[str, ...] = tuple(_SCENARIOS)


def scenario_shape(kind: str, weight: int = 16, base: Shape = DEFAULT_SHAPE) -> Shape:
    """`base` with scenario `kind` weighted up (`"ops"`: single ops only, no scenario), so a test or a
    benchmark can give every scenario its share of workloads instead of trusting the mix."""
    if kind == "ops":
        return replace(base, weights={k: w for k, w in base.weights.items() if k not in _SCENARIOS})
    if kind not in _SCENARIOS:
        raise ValueError(f"unknown scenario {kind!r} (scenarios: ops, {', '.join(_SCENARIOS)})")
    return replace(base, weights={**base.weights, kind: weight})


@dataclass
class _Ctx:
    sizes: dict[str, int] = field(default_factory=dict)
    maps: dict[str, tuple[str, int, int]] = field(default_factory=dict)


def _offsets(ctx: _Ctx, name: str | None, shape: Shape) -> st.SearchStrategy[int]:
    size = ctx.sizes.get(name or "", 0)
    around = [0, size, max(0, size - 1), size + 1, size // 2, (size // K) * K, (size // K) * K + 100]
    return st.one_of(
        st.sampled_from(sorted(set(around))),
        st.sampled_from([0, 1, 100, K - 8, K, K + 1, 2 * K, 3 * K + 17, 4 * K]),
        st.integers(0, shape.max_file),
    )


_LENGTHS = st.one_of(st.sampled_from([1, 8, 64, 100, K - 1, K, K + 1, 2 * K, 3 * K]), st.integers(1, 4 * K))


@st.composite
def _op(draw: st.DrawFn, ctx: _Ctx, shape: Shape) -> Op:
    names = list(FILES[: shape.files])
    live = sorted(ctx.sizes)
    w = {k: v for k, v in shape.weights.items() if k not in _SCENARIOS}
    if not live and "create" in w:
        w = {"create": 1}
    kind = draw(st.sampled_from([k for k, n in w.items() for _ in range(n)] or ["create"]))
    pick = st.sampled_from(live) if live else st.sampled_from(names)
    file = draw(st.one_of(pick, pick, pick, st.sampled_from(names)))
    if kind == "create":
        free = [n for n in names if n not in ctx.sizes]
        f = draw(st.sampled_from(free)) if free and draw(st.integers(0, 9)) != 0 else draw(st.sampled_from(names))
        return Create(f)
    if kind == "unlink":
        return Unlink(file)
    if kind in ("write", "punch", "fallocate", "read"):
        off = draw(_offsets(ctx, file, shape))
        n = draw(_LENGTHS)
        if kind == "fallocate":
            return Fallocate(file, off, n, draw(st.sampled_from(shape.falloc_modes)))
        if kind == "write" and ctx.maps and not draw(st.integers(0, 3)):
            src = draw(st.sampled_from(sorted(ctx.maps)))
            return Write(file, off, n, map=src, moff=draw(st.sampled_from([0, 100, K])))
        return {"write": Write, "punch": Punch, "read": Read}[kind](file, off, n)
    if kind == "truncate":
        return Truncate(file, draw(_offsets(ctx, file, shape)))
    if kind == "reflink":
        dst = draw(st.one_of(pick, st.sampled_from(names)))
        if draw(st.booleans()):
            return Reflink(file, dst)
        soff = draw(st.sampled_from([0, K, 2 * K]))
        doff = draw(st.sampled_from([0, K, 2 * K, 4 * K]))
        size = ctx.sizes.get(file, 0)
        n = draw(st.sampled_from([K, 2 * K, max(1, size - soff)]))
        return Reflink(file, dst, soff, doff, n)
    if kind == "fsync":
        return Fsync(file)
    if kind == "sync":
        return Sync()
    live_maps = sorted(ctx.maps)
    if kind == "mmap":
        free = [m for m in MAPPINGS[: shape.mappings] if m not in ctx.maps] or list(MAPPINGS[: shape.mappings])
        m = draw(st.sampled_from(free))
        length = draw(st.sampled_from([K, 2 * K, 4 * K, 8 * K] + ([PMD_SIZE * 2] if shape.pmd else [])))
        off = draw(st.sampled_from([0, 0, K, 2 * K]))
        return Mmap(m, file, off, length, draw(st.booleans()))
    m = (
        draw(st.sampled_from(live_maps))
        if live_maps and draw(st.integers(0, 9)) != 0
        else draw(st.sampled_from(MAPPINGS[: shape.mappings]))
    )
    span = ctx.maps.get(m, ("", 0, 4 * K))[2]
    if kind == "munmap":
        return Munmap(m)
    if kind == "madvise":
        return Madvise(m)
    if kind == "fault":
        pmd = draw(st.integers(0, 3)) == 0
        return Fault(m, draw(st.integers(0, max(0, span // K))), draw(st.booleans()), pmd)
    off = draw(st.integers(0, max(0, span - 1)))
    n = draw(st.sampled_from([8, 64, 100, K, K + 8]))
    return (Store if kind == "store" else Persist)(m, off, n)


_RACE_OPS = (
    *("write",) * 3,
    *("fault-read",) * 3,
    *("fault-write", "store") * 2,
    *("read", "truncate", "punch", "fsync", "fallocate", "persist", "zero-range", "unshare-range"),
)
"""The ops a group draws from, the write-against-fault races of the DAX threads most often."""
_CHANGERS = ("write", "write", "truncate", "punch", "fallocate", "zero-range", "unshare-range")
_ACCESSORS = ("fault-read", "fault-read", "fault-write", "store", "read")
"""A quarter of the groups pair an op that changes the file's blocks with one that reads or maps them,
a quarter are any two ops."""
_CLASSIC = (
    ("write", "fault-read"),
    ("fault-read", "write"),
    ("write", "fault-write"),
    ("fault-write", "write"),
    ("write", "store"),
    ("truncate", "store"),
    ("punch", "fault-read"),
)
"""Half are the pairs the DAX threads argued about: the zero page installed over a block a
write just allocated, a write fault against a write(2) on a shared block (both twice: either
thread may start), a store against a write, a truncate or a punch."""


def _race_op(kind: str, f: str, m: str, o: int, n: int, size: int) -> Op:
    if kind == "write":
        return Write(f, o, n)
    if kind in ("fault-read", "fault-write"):
        return Fault(m, o // K, kind == "fault-write")
    if kind in ("store", "persist"):
        return (Store if kind == "store" else Persist)(m, o, n)
    if kind == "read":
        return Read(f, o, n)
    if kind == "truncate":
        return Truncate(f, size)
    if kind == "punch":
        return Punch(f, o, n)
    if kind == "fallocate":
        return Fallocate(f, o, n)
    if kind in ("zero-range", "unshare-range"):
        return Fallocate(f, o, n, FallocMode.ZERO_RANGE if kind == "zero-range" else FallocMode.UNSHARE_RANGE)
    return Fsync(f)


@st.composite
def _race(draw: st.DrawFn, ctx: _Ctx, shape: Shape) -> list[Op]:
    """A prefix that makes a file (sparse, written, or sharing its blocks with another by reflink)
    and maps it (maybe faulting a page in, not for a read fault: it would take none), then two ops at once.

    The races the DAX threads argued about are two ops on the same page: a write against a
    fault, a truncate against a store, a DMA into a pinned page against a truncate, a write
    and a write fault copying the same shared block on write.
    """
    names = list(FILES[: shape.files])
    f = draw(st.sampled_from(names))
    m = draw(st.sampled_from(MAPPINGS[: shape.mappings]))
    size = draw(st.sampled_from([K, 2 * K, 6000]))
    pin = draw(st.integers(0, 4)) == 0
    how = draw(st.integers(0, 3))
    if how <= 1:
        kinds = list(draw(st.sampled_from(_CLASSIC)))
    elif how == 2:
        kinds = [draw(st.sampled_from(_CHANGERS)), draw(st.sampled_from(_ACCESSORS))]
    else:
        kinds = [draw(st.sampled_from(_RACE_OPS)) for _ in range(2)]
    named = {"zero-range": FallocMode.ZERO_RANGE, "unshare-range": FallocMode.UNSHARE_RANGE}
    kinds = [k if named.get(k, 0) in (0, *shape.falloc_modes) else "fallocate" for k in kinds]
    # The prefix each race needs most: a hole under a read fault (the zero page), shared blocks
    # under a write and a write fault (two copies on write), a hole or shared blocks under a write
    # and a store (two initialise, or two copy, one block), data under a truncate.
    fits = {
        "fault-read": ("truncate",),
        "fault-write": ("share",),
        "store": ("truncate", "share"),
        "truncate": ("write",),
        "unshare-range": ("share",),
    }
    likely = draw(st.sampled_from(fits.get(kinds[1], fits.get(kinds[0], ("write",)))))
    first = draw(st.sampled_from([likely, likely, "write", "truncate", "share"]))
    out: list[Op] = [] if f in ctx.sizes else [Create(f)]
    if first == "share" and len(names) > 1:
        src = draw(st.sampled_from([n for n in names if n != f]))
        out += [] if src in ctx.sizes else [Create(src)]
        out += [Write(src, 0, size), Reflink(src, f)]
    else:
        out.append(Write(f, 0, size) if first in ("write", "share") else Truncate(f, size))
    out.append(Mmap(m, f, 0, 2 * K, draw(st.booleans())))
    if "fault-read" not in kinds and draw(st.integers(0, 2)) == 0:
        out.append(Fault(m, 0, draw(st.booleans())))
    if pin:
        pg = draw(st.sampled_from([0, 1]))
        cut = draw(st.sampled_from([Truncate(f, 0), Truncate(f, 100), Punch(f, pg * K, K)]))
        return [*out, Pin(m, pg), Parallel((cut, Dma(m, pg * K, 100), Unpin(m, pg)))]
    o = draw(st.sampled_from([0, 100, K]))
    n = draw(st.sampled_from([100, K]))
    group: list[Op] = []
    for kind in kinds:
        if not draw(st.integers(0, 3)):
            o, n = draw(st.sampled_from([0, 100, K])), draw(st.sampled_from([100, K]))
        group.append(_race_op(kind, f, m, o, n, draw(st.sampled_from([0, 2000, K]))))
    out.append(Parallel(tuple(group)))
    if draw(st.booleans()):
        out.append(Fsync(f))
    return out


@st.composite
def _scenario(draw: st.DrawFn, ctx: _Ctx, shape: Shape, kind: str) -> list[Op]:
    names = list(FILES[: shape.files])
    out: list[Op] = []
    if kind == "share":
        with_data = [f for f in sorted(ctx.sizes) if ctx.sizes[f] > 0]
        if with_data and draw(st.booleans()) is True:
            src = draw(st.sampled_from(with_data))
        else:
            src = draw(st.sampled_from(names))
            if src not in ctx.sizes:
                out.append(Create(src))
            out.append(Write(src, 0, draw(st.sampled_from([K, 2 * K, 3 * K]))))
        if draw(st.booleans()):
            out.append(Fsync(src))
        others = [f for f in names if f != src]
        dst = draw(st.sampled_from(others or names))
        if dst not in ctx.sizes:
            out.append(Create(dst))
        out.append(Reflink(src, dst))
        size = max([ctx.sizes.get(src, 0), K] + [o.off + o.len for o in out if isinstance(o, Write)])
        target = draw(st.sampled_from([dst, dst, dst, src]))
        how = draw(st.sampled_from(["write", "write", "write", "truncate", "punch", "store", "mapread", "unshare"]))
        off = draw(st.sampled_from([0, 1, 100, K - 8, K, K + 100, size - 100]) | st.integers(0, max(0, size - 1)))
        off = max(0, min(off, size - 1))
        n = draw(st.sampled_from([8, 64, 100, 200, K - 100, K, K + 8]))
        if how == "write":
            out.append(Write(target, off, n))
        elif how == "truncate":
            out.append(Truncate(target, off))
        elif how == "punch":
            out.append(Punch(target, off, n))
        elif how == "unshare" and (unshare := [m for m in _UNSHARE if m in shape.falloc_modes]):
            out.append(Fallocate(target, off, n, draw(st.sampled_from(unshare))))
            if draw(st.booleans()):
                out.append(Write(target, off, draw(st.sampled_from([8, 100, K]))))
        elif how == "mapread":
            m = draw(st.sampled_from(MAPPINGS[: shape.mappings]))
            span = max(K, -(-size // K) * K)
            fault = Fault(m, off // K, not draw(st.integers(0, 2)), not draw(st.integers(0, 2)))
            out += [Mmap(m, target, 0, span, draw(st.booleans())), fault, Write(target, off, n)]
        else:
            m = draw(st.sampled_from(MAPPINGS[: shape.mappings]))
            out += [Mmap(m, target, 0, max(K, -(-size // K) * K), draw(st.booleans())), Store(m, off, min(n, 64))]
            if draw(st.booleans()):
                out.append(Persist(m, off, min(n, 64)))
        if draw(st.booleans()):
            out.append(Fsync(target))
        return out
    if kind == "race":
        return draw(_race(ctx, shape))
    if kind == "falloc":
        return draw(falloc_steps(ctx.sizes, shape.files, shape.mappings, set(shape.weights), shape.falloc_modes))
    if kind == "hugezero":
        return draw(_huge(ctx, shape))
    if kind == "prealloc":
        return draw(_prealloc(ctx, shape))
    if kind == "mapeof":
        f = draw(st.sampled_from(names))
        size = ctx.sizes.get(f, 0)
        if f not in ctx.sizes:
            out.append(Create(f))
        if size == 0 or draw(st.booleans()):
            size = max(size, draw(st.sampled_from([K, 2 * K, K + 100, 3 * K])))
            out.append(Write(f, 0, size))
        m = draw(st.sampled_from(MAPPINGS[: shape.mappings]))
        span = -(-size // K) * K + draw(st.sampled_from([0, K]))
        out.append(Mmap(m, f, 0, span, draw(st.booleans())))
        eof_page = size // K
        how = draw(st.sampled_from(["truncate", "fault", "store", "grow"]))
        if how == "grow":
            # A store past EOF in the EOF page, then the size grows over it: EOF zeroing must clear it.
            out.append(Store(m, draw(st.sampled_from([size, size + 8, -(-size // K) * K - 8])), 8))
            new = size + draw(st.sampled_from([8, 100, K]))
            out.append(draw(st.sampled_from([Truncate(f, new), Write(f, new - 4, 4), Fallocate(f, size, new - size)])))
            if draw(st.booleans()):
                out.append(Fsync(f))
        elif how == "truncate":
            new = draw(st.sampled_from([100, K + 100, size - 100, size // 2]))
            out.append(Truncate(f, max(1, min(new, size - 1))))
            if draw(st.booleans()):
                out.append(Truncate(f, size))
        elif how == "fault":
            out.append(
                Fault(m, draw(st.sampled_from([eof_page, max(0, eof_page - 1), eof_page + 1])), draw(st.booleans()))
            )
        else:
            out.append(Store(m, draw(st.sampled_from([size, max(0, size - 8), eof_page * K])), 8))
        return out
    live = [f for f in sorted(ctx.sizes) if f not in {m[0] for m in ctx.maps.values()}] or sorted(ctx.sizes)
    f = draw(st.sampled_from(live or names))
    if f not in ctx.sizes:
        out.append(Create(f))
    size = ctx.sizes.get(f, 0)
    hole = 0
    if size < K or draw(st.booleans()):
        hole = -(-size // K) * K
        size = hole + draw(st.sampled_from([K, 2 * K]))
        out.append(draw(st.sampled_from([Truncate(f, size)] * 3 + [Write(f, hole, size - hole)])))
        # Half the time not yet on the log: a MAP_SYNC fault must then force what the write allocated.
        if draw(st.booleans()):
            out.append(Fsync(f))
    m = draw(st.sampled_from(MAPPINGS[: shape.mappings]))
    span = -(-size // K) * K
    sync = kind == "mapsync"
    out.append(Mmap(m, f, 0, span, sync))
    if not draw(st.integers(0, 3)):
        out.append(
            Fault(m, draw(st.integers(0, span // K - 1)), draw(st.integers(0, 3)) > 0, not draw(st.integers(0, 2)))
        )
    off = draw(st.sampled_from([hole, hole + 8, hole + 100, 0, K - 64]) | st.integers(0, span - 1))
    n = draw(st.sampled_from([8, 64, 100]))
    n = max(1, min(n, span - off))
    out.append(Store(m, off, n))
    out.append(Persist(m, off, n) if sync else Fsync(f))
    if not draw(st.integers(0, 5)):
        out.append(Unlink(f))  # an orphan while mapped: its blocks stay until munmap
    return out


@st.composite
def _huge(draw: st.DrawFn, ctx: _Ctx, shape: Shape) -> list[Op]:
    """A 4 MiB file mapped whole (MAP_SYNC or not) and a PMD fault, read (the huge zero page) or write
    (a 2 MiB allocation, zeroed; synchronous on MAP_SYNC) on a page that is a hole, preallocated,
    written (durably or not), shared or past EOF; then a write, store or punch under it (in the PMD
    the fault mapped) and maybe its writeback."""
    names = list(FILES[: shape.files])
    have = set(shape.weights)
    f = draw(st.sampled_from([n for n in names if n not in ctx.sizes] or names))
    m = draw(st.sampled_from(MAPPINGS[: shape.mappings]))
    out: list[Op] = [] if f in ctx.sizes else [Create(f)]
    sync = draw(st.booleans())
    pg = draw(st.sampled_from([0, 0, 1, 512]))
    # Half the draws put the huge zero page under the fault (a hole or a preallocated range), the
    # scenario's namesake; the rest a PMD of written, not yet durable, shared or past-EOF blocks.
    under = draw(st.sampled_from(["hole", "hole", "unwritten", "unwritten", "written", "fresh", "shared", "past-eof"]))
    out += [Truncate(f, 2 * PMD_SIZE), Mmap(m, f, 0, 2 * PMD_SIZE, sync)]
    if under == "unwritten" and "fallocate" in have:
        out.append(Fallocate(f, 0, PMD_SIZE))
    elif under in ("written", "fresh"):
        out.append(Write(f, pg * K, K))
        if under == "written" and "fsync" in have:
            out.append(Fsync(f))
    elif under == "shared" and "reflink" in have and len(names) > 1:
        src = draw(st.sampled_from([n for n in names if n != f]))
        out += [] if src in ctx.sizes else [Create(src)]
        out += [Write(src, 0, K), Reflink(src, f, 0, pg * K, K)]
    elif under == "past-eof":
        pg = max(pg, 1)
        out.append(Truncate(f, pg * K))
    out.append(Fault(m, pg, draw(st.integers(0, 2)) == 0, True))
    off = pg * K // PMD_SIZE * PMD_SIZE + draw(st.sampled_from([0, 100, K, PMD_SIZE - K]))
    how = draw(st.sampled_from(["write", "write", "write", "store", "store", "punch"]))
    if how == "write":
        out.append(Write(f, off, draw(st.sampled_from([100, K]))))
    elif how == "punch":
        out.append(Punch(f, off, K))
    else:
        out.append(Store(m, off, 64))
        if draw(st.booleans()):
            out.append(Persist(m, off, 64) if sync else Fsync(f))
    return out


@st.composite
def _prealloc(draw: st.DrawFn, ctx: _Ctx, shape: Shape) -> list[Op]:
    """fallocate over a hole, data, data not yet on the log, or a shared range, then an access to the
    preallocated (unwritten) blocks: a fault, a store through a mapping (MAP_SYNC or not), a write,
    a read, a punch or a truncate into them."""
    names = list(FILES[: shape.files])
    f = draw(st.sampled_from(names))
    out: list[Op] = [] if f in ctx.sizes else [Create(f)]
    size = ctx.sizes.get(f, 0)
    under = draw(st.sampled_from(["hole", "data", "fresh", "shared", "unwritten"]))
    if under == "unwritten":
        out.append(Fallocate(f, 0, 2 * K))
    elif under in ("data", "fresh") or (under == "shared" and len(names) < 2):
        out.append(Write(f, 0, draw(st.sampled_from([K, 2 * K]))))
        if under == "data":
            out.append(Fsync(f))
    elif under == "shared":
        src = draw(st.sampled_from([n for n in names if n != f]))
        out += [] if src in ctx.sizes else [Create(src)]
        out += [Write(src, 0, 2 * K), Reflink(src, f)]
    end = max(size, 2 * K)
    off = draw(st.sampled_from([0, K, end, end + 100]))
    n = draw(st.sampled_from([K, 2 * K, 3 * K - 100]))
    keep = FallocMode.KEEP_SIZE in shape.falloc_modes and draw(st.booleans())
    out.append(Fallocate(f, off, n, FallocMode.KEEP_SIZE if keep else FallocMode.ALLOCATE_RANGE))
    if draw(st.booleans()):
        out.append(Fsync(f))
    span = -(-(off + n) // K) * K
    m = draw(st.sampled_from(MAPPINGS[: shape.mappings]))
    sync = draw(st.booleans())
    how = draw(st.sampled_from(["fault", "fault", "store", "store", "write", "read", "punch", "truncate"]))
    pg = (off + draw(st.sampled_from([0, 100, K]))) // K
    if how in ("fault", "store"):
        out.append(Mmap(m, f, 0, span, sync))
        if how == "fault":
            out.append(Fault(m, pg, draw(st.booleans()), not draw(st.integers(0, 3))))
        else:
            out.append(Store(m, pg * K + draw(st.sampled_from([0, 8, 100])), 64))
            if draw(st.booleans()):
                out.append(Persist(m, pg * K, 64) if sync else Fsync(f))
    elif how == "write":
        at, n = pg * K + draw(st.sampled_from([0, 100])), draw(st.sampled_from([100, K]))
        if draw(st.booleans()):
            out += [Mmap(m, f, 0, span, sync), Write(f, at, n, map=m, moff=draw(st.sampled_from([0, 100])))]
        else:
            out.append(Write(f, at, n))
    elif how == "read":
        out.append(Read(f, pg * K, K))
    elif how == "punch":
        out.append(Punch(f, pg * K, K))
    else:
        out.append(Truncate(f, pg * K + 100))
    return out


def _advance(ctx: _Ctx, op: Op) -> None:
    """Track (roughly) what exists after an op, so later ops can name it."""
    if isinstance(op, Create):
        ctx.sizes.setdefault(op.file, 0)
    elif isinstance(op, Unlink):
        ctx.sizes.pop(op.file, None)
    elif isinstance(op, Write | Fallocate) and op.file in ctx.sizes:
        if not (isinstance(op, Fallocate) and op.mode & FallocMode.KEEP_SIZE):
            ctx.sizes[op.file] = max(ctx.sizes[op.file], op.off + op.len)
    elif isinstance(op, Truncate) and op.file in ctx.sizes:
        ctx.sizes[op.file] = op.size
    elif isinstance(op, Reflink) and op.src in ctx.sizes and op.dst in ctx.sizes:
        if op.soff is None:
            ctx.sizes[op.dst] = max(ctx.sizes[op.dst], ctx.sizes[op.src])
        else:
            ctx.sizes[op.dst] = max(ctx.sizes[op.dst], (op.doff or 0) + (op.len or 0))
    elif isinstance(op, Mmap) and op.file in ctx.sizes and op.map not in ctx.maps:
        ctx.maps[op.map] = (op.file, op.off, op.len)
    elif isinstance(op, Munmap):
        ctx.maps.pop(op.map, None)


@st.composite
def workloads(draw: st.DrawFn, min_ops: int = 1, max_ops: int = 12, shape: Shape = DEFAULT_SHAPE) -> Workload:
    """Workloads of min_ops..max_ops ops, mostly valid in context.

    A scenario drawn near the end runs to its end while it fits in max_ops: cut short, a race
    loses its parallel group and a MAP_SYNC scenario its persist, which are their point."""
    n = draw(st.integers(min_ops, max_ops))
    ctx = _Ctx()
    out: list[Op] = []
    scenarios = [k for k, w in shape.weights.items() if k in _SCENARIOS for _ in range(w)]
    singles = sum(w for k, w in shape.weights.items() if k not in _SCENARIOS)
    while len(out) < n:
        if scenarios and draw(st.integers(0, singles + len(scenarios) - 1)) >= singles:
            step = draw(_scenario(ctx, shape, draw(st.sampled_from(scenarios))))
        else:
            step = [draw(_op(ctx, shape))]
        for op in step[: (max_ops if len(step) > 1 else n) - len(out)]:
            _advance(ctx, op)
            out.append(op)
    return Workload(tuple(out))


def ops(shape: Shape = DEFAULT_SHAPE) -> st.SearchStrategy[Op]:
    """Single ops, context-free (any names, any ranges)."""
    return _op(_Ctx(), shape)
