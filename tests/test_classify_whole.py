"""`Expectation.classify_whole` (slices, a row at a time) gives `classify`'s verdict on every word.

The whole-file path judges every file a mount recovers; `classify` is the reference it must agree
with word for word, on drawn workloads, at every window, for contents drawn from the file's own
versions, zeroes and values it never held, and sizes that cut a word anywhere.
"""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pmfuzz.execution.execute import execute
from pmfuzz.fs.daxfs import DaxfsTarget
from pmfuzz.gen.strategies import workloads
from pmfuzz.verdict import Options

OPTS = Options(device_size=1 << 20)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    w=workloads(max_ops=8),
    design=st.sampled_from(["zero", "unwritten", "cow-remap"]),
    durable=st.booleans(),
    synchronous=st.booleans(),
    data=st.data(),
)
def test_whole_file_verdict_is_classify_word_for_word(w, design, durable, synchronous, data) -> None:
    run = execute(DaxfsTarget(design=design), w.ops, OPTS)
    h = run.history
    assert h is not None
    ops = h.ops
    completed = data.draw(st.integers(0, ops), label="completed")
    upper = data.draw(st.integers(completed, ops), label="upper")
    ex = h.expect(completed, upper, durable=durable, synchronous=synchronous)
    names = sorted({n for b in h.boundaries for n in b})
    for name in names:
        vals = ex._stack(name)[0]
        width = vals.shape[1] if len(vals) else 0
        n = data.draw(st.integers(0, width + 4), label=f"{name} words")
        rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="rng"))
        pick = rng.integers(-2, len(vals), n)  # a version's word, -1: zero, -2: a value never held
        found = np.zeros(n, dtype=np.uint64)
        for k, r in enumerate(pick.tolist()):
            if r >= 0 and k < width:
                found[k] = vals[r, k]
            elif r == -2:
                found[k] = np.uint64(0x5A5A5A5A5A5A5A5A + k)
        size = data.draw(st.integers(max(0, n * 8 - 15), n * 8), label="size") if n else 0
        whole = ex.classify_whole(name, found, size)
        ref = ex.classify(name, np.arange(n), found, size)
        for part in ("ok", "older", "stale", "lost"):
            assert np.array_equal(getattr(whole, part), getattr(ref, part)), (name, part)
