"""A line's prefixes from checkpoints give the same contents as applying every unit from the start.

`Group._apply_chain` starts from a checkpoint every 64 pieces (so that checking every prefix of a
line with n pending stores is no longer quadratic in n); these properties pin it to the plain
definition on lines with hundreds of pending stores, including cut stores (a unit at a time).
"""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from pmfuzz.pmem.groups import Group
from pmfuzz.pmem.persistency import GroupSpec, Piece
from pmfuzz.pmem.trace import LINE, WORD, words_in


@st.composite
def chains(draw: st.DrawFn) -> tuple[Group, bytes]:
    line = draw(st.integers(0, 3))
    n = draw(st.integers(1, 300))
    pieces = []
    for seq in range(n):
        off = draw(st.integers(0, LINE - 1))
        size = draw(st.integers(1, LINE - off))
        data = bytes([seq % 251 + 1]) * size
        pieces.append(Piece(seq, line, line * LINE + off, data, False, words_in(line * LINE + off, size)))
    base = draw(st.binary(min_size=LINE, max_size=LINE))
    return Group(GroupSpec(f"L{line}", tuple(pieces))), base


def plain(group: Group, choice: int, base: bytes) -> bytes:
    """Apply the first `choice` units one by one: the definition."""
    buf = bytearray(base)
    left = choice
    for p in group.spec.pieces:
        off = p.addr % LINE
        for u in range(p.addr // WORD, (p.addr + len(p.data) - 1) // WORD + 1):
            if left == 0:
                return bytes(buf)
            lo, hi = max(p.addr, u * WORD), min(p.addr + len(p.data), (u + 1) * WORD)
            buf[off + lo - p.addr : off + hi - p.addr] = p.data[lo - p.addr : hi - p.addr]
            left -= 1
    return bytes(buf)


@settings(max_examples=60, deadline=None)
@given(chains(), st.data())
def test_every_prefix_matches_the_definition(gb: tuple[Group, bytes], data: st.DataObject) -> None:
    group, base = gb
    line = group.lines[0]
    choices = data.draw(st.lists(st.integers(0, group.n), min_size=1, max_size=20))
    for c in [*choices, group.n, 0]:  # in any order: checkpoints are filled as needed
        assert group.apply(c, lambda _ln: base)[line] == plain(group, c, base)


class _Choices:
    def __init__(self, values: list[int]) -> None:
        self.values = values

    def choices(self):
        return iter(self.values)


@given(st.lists(st.lists(st.integers(0, 9), max_size=4), max_size=5))
def test_lazy_product_is_itertools_product(shape: list[list[int]]) -> None:
    """Crash states are drawn lazily (a limit no longer lists every choice of every line), in the same order."""
    from pmfuzz.pmem.odometer import product as _product

    assert list(_product([_Choices(c) for c in shape])) == list(itertools.product(*shape))


@st.composite
def mixed_groups(draw: st.DrawFn) -> Group:
    """A line's pieces, cached and non-temporal, of any size, torn or not."""
    line = draw(st.integers(0, 3))
    pieces = []
    for seq in range(draw(st.integers(1, 12))):
        off = draw(st.integers(0, LINE - 1))
        size = draw(st.integers(1, LINE - off))
        nt = draw(st.booleans())
        pieces.append(
            Piece(seq, line, line * LINE + off, bytes([seq + 1]) * size, nt, words_in(line * LINE + off, size))
        )
    return Group(GroupSpec(f"L{line}", tuple(pieces), tear=draw(st.booleans())))


@settings(max_examples=200, deadline=None)
@given(mixed_groups())
def test_a_group_is_a_chain_exactly_when_each_unit_must_follow_the_one_before(group: Group) -> None:
    preds = group.preds
    assert group.chain == all((j - 1) in preds[j] for j in range(1, len(preds)))


@settings(max_examples=200, deadline=None)
@given(mixed_groups())
def test_predecessor_masks_are_the_predecessor_lists(group: Group) -> None:
    assert group.pred_masks == tuple(sum(1 << p for p in ps) for ps in group.preds)
    if not group.chain and group.n <= 10:
        valid = [
            c
            for c in range(1 << group.n)
            if all(all(c >> p & 1 for p in group.preds[i]) for i in range(group.n) if c >> i & 1)
        ]
        assert [c for c in range(1 << group.n) if group.is_valid(c)] == valid
        assert sorted(group.choices()) == valid
