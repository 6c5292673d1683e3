"""The metadata groups of a crash point, picked with whole arrays, equal the per-line bisection."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from pmfuzz.judging.links import ByteRanges, meta_groups
from pmfuzz.pmem import LINE

ranges = st.lists(st.tuples(st.integers(0, 1 << 14), st.integers(0, 1 << 14)), max_size=6)


@given(ranges, st.lists(st.integers(0, 1 << 15), max_size=40))
def test_contain_is_membership_of_each(rs: list[tuple[int, int]], addrs: list[int]) -> None:
    br = ByteRanges(rs)
    got = br.contain(np.array(addrs, dtype=np.int64))
    assert got.tolist() == [a in br for a in addrs]
    assert got.tolist() == [any(lo <= a < hi for lo, hi in rs) for a in addrs]


@given(ranges, st.lists(st.lists(st.integers(0, (1 << 14) // LINE + 4), max_size=4), max_size=30))
def test_meta_groups_are_the_groups_wholly_inside(rs: list[tuple[int, int]], lines: list[list[int]]) -> None:
    point: Any = SimpleNamespace(groups=[SimpleNamespace(lines=tuple(ls)) for ls in lines])
    br = ByteRanges(rs)
    want = [gi for gi, ls in enumerate(lines) if all(any(lo <= ln * LINE < hi for lo, hi in rs) for ln in ls)]
    assert meta_groups(point, br) == want
    assert meta_groups(point, None) == list(range(len(lines)))
