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
from pmfuzz.lang.workload import parse
from pmfuzz.verdict import Options

OPTS = Options(device_size=1 << 20)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
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
        mix = data.draw(st.sampled_from([(1, 0, 0), (0.6, 0.3, 0.1), (0.2, 0.7, 0.1), (0, 1, 0)]), label="mix")
        kind = rng.choice(3, n, p=mix)  # 0: a version's word, 1: zero, 2: a value the file never held
        found = np.zeros(n, dtype=np.uint64)
        for k, c in enumerate(kind.tolist()):
            if c == 0 and k < width and len(vals):
                found[k] = vals[int(rng.integers(len(vals))), k]
            elif c == 2:
                found[k] = np.uint64(0x5A5A5A5A5A5A5A5A + k)
        size = data.draw(st.integers(max(0, n * 8 - 15), n * 8), label="size") if n else 0
        whole = ex.classify_whole(name, found, size)
        ref = ex.classify(name, np.arange(n), found, size)
        for part in ("ok", "older", "stale", "lost"):
            assert np.array_equal(getattr(whole, part), getattr(ref, part)), (name, part)


def _same(ex, name: str, found: np.ndarray, size: int) -> None:
    whole = ex.classify_whole(name, found, size)
    ref = ex.classify(name, np.arange(len(found)), found, size)
    for part in ("ok", "older", "stale", "lost"):
        assert np.array_equal(getattr(whole, part), getattr(ref, part)), (name, part, size)


def test_words_a_truncate_or_punch_removed_may_read_zero_in_both_paths() -> None:
    """Ranges a shrinking truncate or a punch removed (`OpEffects.removed`), at every window."""
    w = parse("create f0\nwrite f0 0 8192\nfsync f0\npunch f0 100 4000\ntruncate f0 300\nwrite f0 1000 50\n")
    run = execute(DaxfsTarget(design="zero"), w.ops, OPTS)
    h = run.history
    assert h is not None
    for completed in range(h.ops + 1):
        for upper in range(completed, h.ops + 1):
            for durable in (False, True):
                ex = h.expect(completed, upper, durable=durable)
                width = ex._stack("f0")[0].shape[1]
                zeros = np.zeros(width, dtype=np.uint64)
                mixed = zeros.copy()
                mixed[::3] = np.uint64(0x5A5A5A5A5A5A5A5A)
                for size in (0, 100, 300, 1050, 8192, 8190):
                    _same(ex, "f0", zeros[: -(-size // 8)], size)
                    _same(ex, "f0", mixed[: -(-size // 8)], size)
