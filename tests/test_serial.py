"""The serial-order search of parallel groups: split orders (ops seen step by step) are exactly the
order-keeping merges of the ops' steps. (That they do not hide bugs is checked by the zoo's race
reproducers in test_races.py and `pmfuzz regress`.)"""

from __future__ import annotations

import itertools
from math import factorial

from hypothesis import given
from hypothesis import strategies as st

from pmfuzz.execution.serial import _interleavings, _steps
from pmfuzz.judging.engine import Options, check
from pmfuzz.lang.workload import Store, Write, parse
from pmfuzz.pmem import Domain
from pmfuzz.target import make_target


@given(st.lists(st.integers(1, 3), min_size=1, max_size=3))
def test_interleavings_are_every_order_keeping_merge_once(counts: list[int]) -> None:
    got = [tuple(m) for m in _interleavings([[0] * c for c in counts])]
    labels = [c for c, k in enumerate(counts) for _ in range(k)]
    brute = set(itertools.permutations(labels))
    assert len(got) == len(set(got)) and set(got) == brute
    multinomial = factorial(sum(counts))
    for k in counts:
        multinomial //= factorial(k)
    assert len(got) == multinomial


@given(st.integers(0, 3 * 4096), st.integers(1, 3 * 4096))
def test_a_store_steps_page_by_page_and_covers_its_range(off: int, n: int) -> None:
    steps = [op for _kind, op in _steps(Store("m0", off, n))]
    assert all(isinstance(s, Store) for s in steps)
    assert steps[0].off == off and sum(s.len for s in steps) == n
    assert all(a.off + a.len == b.off for a, b in itertools.pairwise(steps))
    assert all(s.off // 4096 == (s.off + s.len - 1) // 4096 for s in steps)
    assert [kind for kind, _op in _steps(Write("f0", off, n))] == ["head", "data", "size"]


def test_a_store_split_by_an_extending_write_is_explained() -> None:
    """The store's first page after the write's data, its second before the new size: SIGBUS."""
    text = "create f0\ntruncate f0 4096\nmmap m0 f0 0 8192\nparallel { write f0 100 4096 ; store m0 100 4096 }\n"
    v = check(make_target("daxfs design=unwritten"), parse(text), Options(domain=Domain.EADR, schedule="3=1,0x4,1"))
    assert v.clean, [f.message for f in v.findings]
