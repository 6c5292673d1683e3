"""A serial order's states share the words of the files it did not change, and hold what it did."""

from __future__ import annotations

import copy

import hypothesis.strategies as st
import numpy as np
from hypothesis import given, settings

from pmfuzz.lang.workload import parse
from pmfuzz.reference import History, Reference

_PREFIX = "create f0\nwrite f0 0 6000\ncreate f1\nwrite f1 0 100\nmmap m0 f1 0 4096\nunlink f1\ncreate f2\n"
_GROUP_OPS = [
    "write f0 100 50",
    "write f2 0 9000",
    "truncate f0 0",
    "truncate f0 20000",
    "store m0 8 8",
    "punch f0 0 4096",
    "unlink f0",
    "create f1",
    "write f1 0 10",
    "reflink f0 f2",
]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from(_GROUP_OPS), min_size=1, max_size=3))
def test_alternatives_keep_each_files_content_and_share_the_unchanged(group: list[str]) -> None:
    ref = Reference()
    hist = History(ref)
    prefix = parse(_PREFIX).ops
    for i, op in enumerate(prefix):
        ref.apply(i, op)
        hist.record()
    r2 = copy.deepcopy(ref)
    touched_before = {f.ino: f.version for f in [*r2.names.values(), *(m.file for m in r2.maps.values())]}
    for k, op in enumerate(parse("".join(g + "\n" for g in group)).ops):
        r2.apply(len(prefix) + k, op)
    shared, alone = History(ref), History(ref)
    shared.add_alternative(1, r2, ref)
    alone.add_alternative(1, r2)
    (got,), (want,) = shared.alternatives[1], alone.alternatives[1]
    assert got.keys() == want.keys()
    originals = {v.ino: v for v in hist.by_ino[-1].values()}
    for ino, (name, v) in got.items():
        assert name == want[ino][0] and v.size == want[ino][1].size
        assert np.array_equal(v.words, want[ino][1].words)
        f = next(f for f in [*r2.names.values(), *(m.file for m in r2.maps.values())] if f.ino == ino)
        if touched_before.get(ino) == f.version:
            assert np.shares_memory(
                v.words,
                shared._version(
                    next(g for g in [*ref.names.values(), *(m.file for m in ref.maps.values())] if g.ino == ino)
                ).words,
            )
            assert np.array_equal(v.words, originals[ino].words)
