"""`Expectation.block_side` remembers a COW block's sides per content: what it remembers must be
what it computes, for every block, window, content and size, asked in any order."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from pmfuzz.execution.execute import execute
from pmfuzz.fs.daxfs import DaxfsTarget
from pmfuzz.gen.strategies import scenario_shape, workloads
from pmfuzz.lang.workload import parse
from pmfuzz.reference.expect import WORDS_PER_BLOCK
from pmfuzz.verdict import Options

OPTS = Options(device_size=1 << 20)


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    w=workloads(min_ops=3, max_ops=10, shape=scenario_shape("share", weight=400)),
    design=st.sampled_from(["zero", "unwritten", "cow-remap"]),
    data=st.data(),
)
def test_a_remembered_side_is_the_side_computed_afresh(w, design, data) -> None:
    run = execute(DaxfsTarget(design=design), w.ops, OPTS)
    h = run.history
    assert h is not None
    completed = data.draw(st.integers(0, h.ops), label="completed")
    upper = data.draw(st.integers(completed, h.ops), label="upper")
    ex = h.expect(completed, upper)
    events = [(name, ev) for name in ex.names() for ev in ex.cow_events(name)]
    event("has COW events" if events else "no COW event")
    if not events:
        return
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="rng"))
    for _ in range(data.draw(st.integers(1, 12), label="asks")):
        name, ev = events[data.draw(st.integers(0, len(events) - 1), label="event")]
        lo = ev.block * WORDS_PER_BLOCK
        n = data.draw(st.sampled_from([WORDS_PER_BLOCK, WORDS_PER_BLOCK // 2, 1]), label="words")
        idx = np.arange(lo, lo + n)
        versions = [v for v in ex.versions(name, range(ex.upper + 1)) if len(v.words) > lo] or [None]
        found = np.zeros(n, dtype=np.uint64)
        for k, c in enumerate(rng.choice(3, n, p=(0.8, 0.1, 0.1)).tolist()):
            v = versions[int(rng.integers(len(versions)))]
            if c == 0 and v is not None and lo + k < len(v.words):
                found[k] = v.words[lo + k]
            elif c == 2:
                found[k] = np.uint64(0x5A5A5A5A00000000 + k)
        size = data.draw(st.one_of(st.none(), st.integers(lo * 8, (lo + n) * 8)), label="size")
        assert ex.block_side(name, ev, idx, found, size) == ex._block_side(name, ev, idx, found, size)


def test_two_cows_of_one_block_are_remembered_apart() -> None:
    """The same block copied on write twice: one content is one side of the first COW and the
    other side of the second."""
    w = parse("create f0\nwrite f0 0 4096\ncreate f1\nreflink f0 f1\nwrite f1 0 100\nreflink f0 f1\nwrite f1 0 200\n")
    run = execute(DaxfsTarget(design="zero"), w.ops, OPTS)
    assert run.history is not None
    ex = run.history.expect(0, run.history.ops)
    events = [ev for ev in ex.cow_events("f1") if ev.block == 0]
    assert len(events) == 2
    idx = np.arange(WORDS_PER_BLOCK)
    contents = [v.words[:WORDS_PER_BLOCK] for v in ex.versions("f1", range(ex.upper + 1)) if len(v.words)]
    seen = set()
    for found in contents:
        for ev in events:
            got = ex.block_side("f1", ev, idx, found, 4096)
            assert got == ex._block_side("f1", ev, idx, found, 4096)
            seen.add((ev.op, got))
    assert len({got for _op, got in seen}) > 1
