"""The crash-free check reads a file or mapping again only when the target's content key for it
changed, and finds exactly what it finds reading everything after every op."""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from oracles import functional
from pmfuzz.execution.execute import execute
from pmfuzz.gen.strategies import workloads
from pmfuzz.lang.workload import Workload, parse
from pmfuzz.pmem import PMem
from pmfuzz.target import make_target
from pmfuzz.verdict import Options


class _Mounted:
    """A mounted daxfs, counting its reads; without `keyed`, it names no content keys."""

    def __init__(self, fs: Any, keyed: bool, reads: Counter[str]) -> None:
        self._fs, self._keyed, self._reads = fs, keyed, reads

    def __getattr__(self, name: str) -> Any:
        if not self._keyed and name in ("content_key", "mapping_key"):
            raise AttributeError(name)
        if name in ("read", "read_mapping"):
            self._reads[name] += 1
        return getattr(self._fs, name)


class _Target:
    """daxfs under a spec, its mounts wrapped in `_Mounted`."""

    def __init__(self, spec: str, keyed: bool) -> None:
        self._inner = make_target(spec)
        self.keyed = keyed
        self.reads: Counter[str] = Counter()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def mount(self, pm: PMem, *args: Any) -> _Mounted:
        return _Mounted(self._inner.mount(pm, *args), self.keyed, self.reads)


KEYED = functional.KEYED_FROM

SPECS = [
    "daxfs",
    "daxfs design=cow-remap bugs=cow-in-place",
    "daxfs design=zero bugs=no-zero",
    "daxfs bugs=truncate-no-zero-tail",
    "daxfs bugs=fault-eof-round-up",
    "daxfs design=unwritten bugs=convert-before-persist",
]


def _facts(spec: str, w: Workload, keyed: bool) -> tuple[tuple, Counter[str]]:
    t = _Target(spec, keyed)
    run = execute(t, w, Options())
    found = sorted((f.oracle.value, f.message, f.op) for f in run.findings)
    return (found, run.notes, run.results, run.executed), t.reads


@settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck))
@given(w=workloads(max_ops=14), k=st.integers(0, len(SPECS) - 1))
def test_keyed_check_finds_what_reading_everything_finds(w: Workload, k: int) -> None:
    """Keys used for files of any size (drawn files are small; the campaign keys from 64 KiB)."""
    functional.KEYED_FROM = 0
    try:
        _keyed_finds_the_same(w, k)
    finally:
        functional.KEYED_FROM = KEYED


def _keyed_finds_the_same(w: Workload, k: int) -> None:
    keyed, reads = _facts(SPECS[k], w, True)
    whole, all_reads = _facts(SPECS[k], w, False)
    assert keyed == whole
    assert reads["read"] <= all_reads["read"] and reads["read_mapping"] <= all_reads["read_mapping"]


def test_an_untouched_file_is_not_read_again_and_a_changed_one_is() -> None:
    w = parse(
        "create f0\nwrite f0 0 65536\nmmap m0 f0 0 65536\ncreate f1\n"
        "write f1 0 100\nwrite f1 100 100\nwrite f1 200 100\nfsync f1\n"
    )
    _, keyed = _facts("daxfs", w, True)
    _, whole = _facts("daxfs", w, False)
    assert keyed["read"] < whole["read"] and keyed["read_mapping"] < whole["read_mapping"]


def test_a_mapping_past_eof_read_alike_page_by_page_is_not_read_again() -> None:
    """A mapping longer than its file faults past EOF, so it is compared a page at a time: once
    every page read alike its key stands for that too. A bug that maps the page past EOF is found
    alike keyed or not (the fault that maps it writes a page-table entry: the key changes)."""
    text = "create f0\ntruncate f0 65536\nmmap m0 f0 0 262144\ncreate f1\nwrite f1 0 100\nwrite f1 100 100\n"
    keyed, reads = _facts("daxfs", parse(text), True)
    whole, all_reads = _facts("daxfs", parse(text), False)
    assert keyed == whole
    assert reads["read_mapping"] * 3 < all_reads["read_mapping"]
    buggy = parse(text + "fault m0 16 read\nwrite f1 0 8\n")
    keyed, _ = _facts("daxfs bugs=fault-eof-round-up", buggy, True)
    assert keyed == _facts("daxfs bugs=fault-eof-round-up", buggy, False)[0]
    assert any(o == "functional" and op == 6 for o, _m, op in keyed[0]), keyed[0]


def test_a_write_through_another_file_is_seen() -> None:
    """cow-in-place writes a block f0 shares with f1 in place: an op on f1 changes f0, whose key
    changes with the device's write to its block, so the check reads it and finds it."""
    w = parse("create f0\nwrite f0 0 8192\nfsync f0\ncreate f1\nreflink f0 f1\nwrite f1 100 200\n")
    spec = "daxfs design=cow-remap bugs=cow-in-place"
    keyed, _ = _facts(spec, w, True)
    assert any(o == "functional" and "f0" in m and op == 5 for o, m, op in keyed[0]), keyed[0]


def test_the_device_counts_its_writes_per_page() -> None:
    pm = PMem(4 * 4096)
    pages = np.array([1, 2], dtype=np.int64)
    assert pm.generation(pages) == 0
    pm.store(4096 + 10, b"x")
    first = pm.generation(pages)
    assert first > 0 and pm.generation(np.array([0, 3], dtype=np.int64)) == 0
    pm.clwb(4096 + 10)
    pm.sfence()
    assert pm.load(4096 + 10, 1) == b"x" and pm.generation(pages) == first
    pm.ntstore(3 * 4096 - 4, b"12345678")  # crosses into page 3
    assert pm.generation(pages) > first and pm.generation(np.array([3], dtype=np.int64)) > 0


def test_a_mapping_key_follows_the_block_a_stale_entry_maps() -> None:
    """cow-remap-stale-mapping leaves m1's entry on the block f1 copied away from: a store into that
    block changes what m1 shows, and m1's key with it, though no extent of f1 reaches the block."""
    from pmfuzz.lang.workload import flatten
    from pmfuzz.reference import Reference

    target = make_target("daxfs bugs=cow-remap-stale-mapping")
    pm = PMem(8 << 20)
    target.format(pm)
    pm.quiesce()
    fs = target.mount(pm)
    ref = Reference.for_target(target)
    text = "create f0\nwrite f0 0 8192\nfsync f0\ncreate f1\nreflink f0 f1\nmmap m1 f1 0 8192\nfault m1 0 read\n"
    for i, op in enumerate(flatten(parse(text + "write f1 0 100\n").ops)):
        payload = ref.payload(i, op)
        ref.apply(i, op)
        fs.execute(i, op, payload)
    before, f1 = fs.mapping_key("m1"), fs.content_key("f1")
    view = fs.read_mapping("m1", 0, 4096)
    stale, owned = fs.mapping_blocks("m1")[0]
    assert stale is not None and stale != owned
    assert stale not in {b for e in fs.fs.lookup("f1").extents for b in range(e.pblk, e.pblk + e.len)}
    pm.store(stale * 4096, b"changed!")
    assert fs.read_mapping("m1", 0, 4096) != view
    assert fs.mapping_key("m1") != before
    assert fs.content_key("f1") == f1
