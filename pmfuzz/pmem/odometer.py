"""Every combination of the groups' choices, drawn lazily in `itertools.product` order.

Why: `itertools.product` lists every input first, and a crash point may hold thousands of groups
(lines) in flight; the odometer also tells which groups changed since the tuple before, so that
a state's digest is the one before it plus those groups' changes.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from .groups import Group

__all__ = ["product", "product_steps"]


def product(groups: Sequence[Group]) -> Iterator[tuple[int, ...]]:
    """`itertools.product` of the groups' choices, in its order (the last group varies fastest), drawn lazily.

    Why: `itertools.product` lists every input first; a line with n pending stores has n + 1
    choices, listed at every crash point even when a limit keeps only a few states. An odometer,
    not recursion: a large write has thousands of lines (groups) in flight.
    """
    return (choices for choices, _ in product_steps(groups))


def product_steps(groups: Sequence[Group]) -> Iterator[tuple[tuple[int, ...], tuple[int, ...] | None]]:
    """`product`, each tuple with the groups whose choice changed since the one before (None: first)."""
    n = len(groups)
    drawn: list[list[int]] = [[] for _ in groups]
    sources = [g.choices() for g in groups]

    def has(i: int, k: int) -> bool:
        while len(drawn[i]) <= k:
            nxt = next(sources[i], None)
            if nxt is None:
                return False
            drawn[i].append(nxt)
        return True

    if not all(has(i, 0) for i in range(n)):
        return
    idx = [0] * n
    rolled: tuple[int, ...] | None = None
    while True:
        yield tuple(drawn[i][idx[i]] for i in range(n)), rolled
        i = n - 1
        while i >= 0:
            idx[i] += 1
            if has(i, idx[i]):
                break
            idx[i] = 0
            i -= 1
        if i < 0:
            return
        rolled = tuple(range(i, n))
