"""Mutation of corpus workloads: insert, delete, splice, duplicate, swap, change arguments, and
splice in a freshly drawn scenario.

Every mutation returns a syntactically valid workload (ops may still be invalid
in context: that exercises error paths). Deterministic for a given `random.Random`.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import fields, replace

from ..lang.falloc import FallocMode
from ..lang.workload import BLOCK_SIZE, MAX_FILE_SIZE, MAX_OPS, PMD_SIZE, Fallocate, Op, Parallel, Workload

__all__ = ["mutate", "INTERESTING"]

K = BLOCK_SIZE
INTERESTING = (
    0,
    1,
    7,
    8,
    63,
    64,
    100,
    K - 1,
    K,
    K + 1,
    2 * K,
    3 * K + 100,
    4 * K,
    8 * K,
    PMD_SIZE - K,
    PMD_SIZE,
    PMD_SIZE + K,
)
_NUMERIC = ("off", "len", "size", "soff", "doff", "pgoff")


def _tweak(rng: random.Random, v: int, name: str) -> int:
    choice = rng.randrange(6)
    if choice == 0:
        v = rng.choice(INTERESTING)
    elif choice == 1:
        v = v + rng.choice((-1, 1)) * rng.choice((1, 8, 64, 100, K))
    elif choice == 2:
        v = (v // K) * K
    elif choice == 3:
        v = (v // K) * K + rng.choice((1, 100, K - 1))
    elif choice == 4:
        v = v * 2 if v else K
    else:
        v = v // 2
    if name == "pgoff":
        return max(0, min(v, 1023))
    lo = 1 if name == "len" else 0
    return max(lo, min(v, MAX_FILE_SIZE // 2))


def change_args(rng: random.Random, op: Op) -> Op:
    """A numeric argument tweaked, or a flag flipped (fault read/write and pmd, mmap MAP_SYNC), a
    fallocate flag dropped (never added: a target may not run every mode), or one op of a parallel
    group changed so: the forms an op takes are as reachable as its values."""
    if isinstance(op, Parallel):
        i = rng.randrange(len(op.ops))
        return replace(op, ops=(*op.ops[:i], change_args(rng, op.ops[i]), *op.ops[i + 1 :]))
    if isinstance(op, Fallocate) and op.mode and not rng.randrange(3):
        return replace(op, mode=op.mode & ~rng.choice([f for f in FallocMode if op.mode & f]))
    nums = [f.name for f in fields(op) if f.name in _NUMERIC and getattr(op, f.name) is not None]
    flags = [f.name for f in fields(op) if isinstance(getattr(op, f.name), bool)]
    if flags and (not nums or rng.randrange(3) == 0):
        name = rng.choice(flags)
        return replace(op, **{name: not getattr(op, name)})
    if not nums:
        return op
    name = rng.choice(nums)
    new = replace(op, **{name: _tweak(rng, getattr(op, name), name)})
    if hasattr(new, "off") and hasattr(new, "len") and new.off + new.len > MAX_FILE_SIZE:
        return op
    return new


def mutate(
    rng: random.Random,
    w: Workload,
    donors: Sequence[Workload] = (),
    fresh: Sequence[Op] = (),
    scenario: Callable[[], Sequence[Op]] | None = None,
) -> Workload:
    """One to three mutations of `w`, using ops of other corpus entries (`donors`), freshly drawn
    ops, and a freshly drawn workload (`scenario`, drawn only when that mutation is picked), spliced
    in whole: a race group kept from a corpus entry needs a prefix (shared blocks, a hole, a mapping)
    that single-op insertions rarely rebuild, and a fresh scenario brings one."""
    ops = list(w.ops)
    for _ in range(rng.choice((1, 1, 2, 3))):
        kind = rng.randrange(8)
        if kind == 7 and scenario is not None:
            at = rng.randint(0, len(ops))
            ops[at:at] = scenario()
        elif kind == 0 and (fresh or donors):
            pool = list(fresh) or [op for d in donors for op in d.ops]
            ops.insert(rng.randint(0, len(ops)), rng.choice(pool))
        elif kind == 1 and len(ops) > 1:
            del ops[rng.randrange(len(ops))]
        elif kind == 2 and donors:
            d = rng.choice(donors).ops
            ops = ops[: rng.randint(0, len(ops))] + list(d[rng.randint(0, len(d)) :])
        elif kind == 3 and ops:
            i = rng.randrange(len(ops))
            ops.insert(i, ops[i])
        elif kind == 4 and len(ops) > 1:
            i = rng.randrange(len(ops) - 1)
            ops[i], ops[i + 1] = ops[i + 1], ops[i]
        elif ops:
            i = rng.randrange(len(ops))
            ops[i] = change_args(rng, ops[i])
    return Workload(tuple(ops[:MAX_OPS]) or w.ops)
