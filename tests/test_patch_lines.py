"""Swapping a crash state's data lines onto a mounted device a page at a time leaves exactly the
bytes one write per line leaves, and exactly the state's image; a read into a buffer reads what was written."""

from __future__ import annotations

import random

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from pmfuzz.execution.execute import execute
from pmfuzz.judging.mounted import _BULK_LINES, Mounted
from pmfuzz.lang.workload import parse
from pmfuzz.pmem import LINE, PAGE, CrashImage, Pages, PMem
from pmfuzz.target import make_target
from pmfuzz.verdict import Options


@settings(max_examples=200, deadline=None)
@given(
    pages=st.integers(1, 6),
    short=st.integers(0, PAGE - LINE).map(lambda n: n - n % LINE),
    data=st.data(),
)
def test_write_lines_equals_one_write_per_line(pages: int, short: int, data: st.DataObject) -> None:
    size = pages * PAGE - short
    nlines = size // LINE
    lines = data.draw(st.lists(st.integers(0, nlines - 1), unique=True, max_size=3 * PAGE // LINE))
    seed = data.draw(st.integers(0, 2**32 - 1))
    content = np.random.default_rng(seed).integers(0, 256, (len(lines), LINE), dtype=np.uint8)
    start = np.random.default_rng(seed + 1).integers(0, 256, size, dtype=np.uint8)
    bulk, single = Pages.from_array(start), Pages.from_array(start)
    bulk.write_lines(np.array(lines, dtype=np.int64), content, LINE)
    for k, ln in enumerate(lines):
        single.write(ln * LINE, content[k])
    assert np.array_equal(bulk.to_array(), single.to_array())
    assert np.array_equal(Pages.from_array(start).to_array(), start), "the pages written on were forked"


WORKLOADS = [
    "create f0\nwrite f0 0 65536\nfsync f0\nwrite f0 4096 9000\n",  # many one-line groups in flight
    "create f0\nwrite f0 0 8192\nfsync f0\ncreate f1\nreflink f0 f1\nwrite f1 100 5000\nfsync f1\n",
    "create f0\nwrite f0 100 300\ntruncate f0 10\n",  # few lines: one write per line
]


def test_patched_device_is_the_states_image() -> None:
    """Whatever order the states come in, and from either base, the mount's device reads as each
    state's own image; both the page-at-a-time and the per-line ways are taken."""
    bulk = few = False
    rng = random.Random(7)
    for text in WORKLOADS:
        run = execute(make_target("daxfs"), parse(text), Options())
        for point in run.crash_points():
            data_g = list(range(len(point.groups)))
            pm = PMem.from_image(CrashImage(point.base_pages(), {}, 0), record=False)
            mounted = Mounted(None, pm, point, data_g)  # type: ignore[arg-type]
            states = list(point.states("bounded", limit=40))
            rng.shuffle(states)
            for state in states:
                before = pm.pages.to_array()
                mounted.patch(state)
                want = state.image().pages().to_array()
                got = pm.pages.to_array()
                assert np.array_equal(got, want), f"{point} {state}"
                bulk = bulk or np.count_nonzero((before != got).reshape(-1, LINE).any(axis=1)) >= _BULK_LINES
            few = few or 0 < sum(len(g.lines) for g in point.groups) < _BULK_LINES
    assert bulk and few


@settings(max_examples=200, deadline=None)
@given(pages=st.integers(1, 5), short=st.integers(0, PAGE - 1), data=st.data())
def test_read_into_a_buffer_equals_the_bytes_written(pages: int, short: int, data: st.DataObject) -> None:
    size = pages * PAGE - short
    start = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1))).integers(0, 256, size, dtype=np.uint8)
    pm = Pages.from_array(start)
    for _ in range(data.draw(st.integers(0, 4))):  # pages of the top layer as well as the base
        at = data.draw(st.integers(0, size - 1))
        chunk = np.full(data.draw(st.integers(1, size - at)), data.draw(st.integers(0, 255)), dtype=np.uint8)
        pm.write(at, chunk)
        start[at : at + len(chunk)] = chunk
    addr = data.draw(st.integers(0, size - 1))
    n = data.draw(st.integers(1, size - addr))
    pad = data.draw(st.integers(0, 3))
    buf = np.zeros(n + 2 * pad, dtype=np.uint8)
    pm.read_into(addr, buf[pad : pad + n])
    assert np.array_equal(buf[pad : pad + n], start[addr : addr + n])
    assert not buf[:pad].any() and not buf[pad + n :].any(), "read_into wrote outside its buffer"
    assert np.array_equal(pm.read(addr, n), start[addr : addr + n])
