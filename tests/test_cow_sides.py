"""`Expectation.block_side` remembers a COW block's sides per content: what it remembers must be
what it computes, for every block, window, content and size, asked in any order."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from pmfuzz.execution.execute import execute
from pmfuzz.fs.daxfs import DaxfsTarget
from pmfuzz.gen.strategies import scenario_shape, workloads
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
