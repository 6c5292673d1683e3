"""The `falloc` scenario of the strategies: a range in a state the fallocate modes treat apart, then a mode over it."""

from __future__ import annotations

from collections.abc import Container, Mapping

import hypothesis.strategies as st

from ..lang.falloc import FALLOC_MODES, FallocMode
from ..lang.workload import BLOCK_SIZE, FILES, MAPPINGS, Create, Fallocate, Fsync, Mmap, Op, Reflink, Store, Write

__all__ = ["falloc_steps"]

K = BLOCK_SIZE


@st.composite
def falloc_steps(
    draw: st.DrawFn,
    sizes: Mapping[str, int],
    files: int,
    mappings: int,
    kinds: Container[str] = frozenset({"reflink", "mmap", "store", "fsync"}),
    modes: tuple[FallocMode, ...] = FALLOC_MODES,
) -> list[Op]:
    """A range written, preallocated (unwritten), shared by reflink, or also mapped and stored to, then
    zero-range, unshare-range or keep-size over it, aligned or not, inside EOF or across it; sometimes
    a write into the range after it (into blocks that are no longer shared) and an fsync. `sizes` are
    the files that exist; `files` and `mappings` how many names the workload uses; `kinds` the op
    kinds and `modes` the fallocate modes the target runs (no reflink, mapping or fsync without them)."""
    flagged = [m for m in modes if m] or [FallocMode.ALLOCATE_RANGE]
    names = list(FILES[:files])
    f = draw(st.sampled_from(names))
    out: list[Op] = [] if f in sizes else [Create(f)]
    size = draw(st.sampled_from([K, 2 * K, 3 * K, 6000]))
    under = draw(st.sampled_from(["written", "unwritten", "shared", "shared"]))
    if under == "shared" and len(names) > 1 and "reflink" in kinds:
        src = draw(st.sampled_from([n for n in names if n != f]))
        out += ([] if src in sizes else [Create(src)]) + [Write(src, 0, size), Reflink(src, f)]
    else:
        out.append(Fallocate(f, 0, size) if under == "unwritten" else Write(f, 0, size))
    if draw(st.booleans()) and "fsync" in kinds:
        out.append(Fsync(f))
    if not draw(st.integers(0, 2)) and "mmap" in kinds and "store" in kinds:
        m = draw(st.sampled_from(MAPPINGS[:mappings]))
        out += [Mmap(m, f, 0, -(-size // K) * K, draw(st.booleans())), Store(m, draw(st.sampled_from([0, 100, K])), 64)]
    off = draw(st.sampled_from([0, 100, K, K + 100, size - 100]))
    n = draw(st.sampled_from([100, K, K + 200, 2 * K, size]))
    out.append(Fallocate(f, off, n, draw(st.sampled_from(flagged))))
    if draw(st.booleans()):
        out.append(Write(f, draw(st.sampled_from([off, 0, K])), draw(st.sampled_from([8, 100, K]))))
    if draw(st.booleans()) and "fsync" in kinds:
        out.append(Fsync(f))
    return out
