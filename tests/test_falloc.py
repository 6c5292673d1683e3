"""fallocate modes: the text form, the POSIX results, daxfs's blocks, crash soundness, and the unshare bugs."""

from __future__ import annotations

from dataclasses import replace

import hypothesis.strategies as st
import pytest
from hypothesis import HealthCheck, given, settings

from pmfuzz.errors import ParseError
from pmfuzz.fs import Bug, DaxfsTarget
from pmfuzz.gen.strategies import DEFAULT_SHAPE, workloads
from pmfuzz.judging.engine import Options, check
from pmfuzz.lang.data import payload
from pmfuzz.lang.falloc import FALLOC_MODES, FallocMode
from pmfuzz.lang.workload import FILES, Fallocate, OpKind, flatten, parse, parse_op
from pmfuzz.pmem import Domain, PMem
from pmfuzz.reference import Reference

K = 4096
DESIGNS = ("zero", "unwritten", "cow-remap")
CONFIGS = [(d, c, dom) for d in DESIGNS for c in ("lazy", "eager") for dom in ("adr", "eadr")]


# -- the text form -----------------------------------------------------------------------------


@given(
    st.sampled_from(FILES),
    st.integers(0, 1 << 29),
    st.integers(1, 1 << 29),
    st.sampled_from(FALLOC_MODES),
)
def test_fallocate_text_round_trips(f: str, off: int, n: int, mode: FallocMode) -> None:
    op = Fallocate(f, off, n, mode)
    assert parse_op(str(op)) == op
    assert str(parse_op(str(op))) == str(op)


def test_the_flags_read_like_the_kernels_and_any_order_gives_the_canonical_text() -> None:
    assert str(parse_op("fallocate f0 0 1 keep-size zero-range")) == "fallocate f0 0 1 zero-range keep-size"
    assert parse_op("fallocate f0 0 1 keep-size unshare-range").mode == FallocMode(0x41)
    assert str(parse_op("fallocate f0 8192 8192")) == "fallocate f0 8192 8192"
    assert parse_op("fallocate f0 8192 8192") == Fallocate("f0", 8192, 8192)


@pytest.mark.parametrize(
    ("text", "col", "what"),
    [
        ("fallocate f0 0 1 zero-range unshare-range", 29, "exclude each other"),
        ("fallocate f0 0 1 unshare-range keep-size zero-range", 42, "exclude each other"),
        ("fallocate f0 0 1 keep-size keep-size", 28, "twice"),
        ("fallocate f0 0 1 punch-hole", 18, "fallocate flag"),
        ("fallocate f0 0 1 zero-range keep-size keep-size", 39, "twice"),
        ("fallocate f0 0 1 zero-range keep-size keep-size x", 49, "takes FILE OFF LEN"),
    ],
)
def test_modes_the_kernel_rejects_do_not_parse(text: str, col: int, what: str) -> None:
    with pytest.raises(ParseError) as e:
        parse(text)
    assert e.value.column == col and what in str(e.value)


def test_a_mode_the_kernel_rejects_cannot_be_built() -> None:
    with pytest.raises(ValueError, match="rejected"):
        Fallocate("f0", 0, 1, FallocMode.ZERO_RANGE | FallocMode.UNSHARE_RANGE)


# -- POSIX results (the reference) ----------------------------------------------------------------


def _ref(text: str) -> Reference:
    ref = Reference()
    for i, op in enumerate(parse(text)):
        ref.apply(i, op)
    return ref


DATA = payload(0, 1, 0, 3 * K)
"""What `write f0 0 12288` as op 1 writes."""


@pytest.mark.parametrize(
    ("op", "size", "zero"),
    [
        ("fallocate f0 100 5000 zero-range", 3 * K, (100, 5100)),
        ("fallocate f0 12000 1000 zero-range", 13000, (12000, 13000)),
        ("fallocate f0 12000 1000 zero-range keep-size", 3 * K, (12000, 3 * K)),
        ("fallocate f0 100 200 unshare-range", 3 * K, None),
        ("fallocate f0 12000 8000 keep-size", 3 * K, None),
        ("fallocate f0 12000 8000", 20000, None),
    ],
)
def test_reference_results(op: str, size: int, zero: tuple[int, int] | None) -> None:
    ref = _ref(f"create f0\nwrite f0 0 {3 * K}\n{op}\n")
    want = bytearray(DATA) + bytes(size - 3 * K)
    if zero:
        want[zero[0] : zero[1]] = bytes(zero[1] - zero[0])
    assert ref.size("f0") == size
    assert ref.read("f0", 0, 1 << 20) == bytes(want[:size])


def test_unshare_ends_the_sharing_of_whole_blocks_below_eof_only() -> None:
    ref = _ref(f"create f0\nwrite f0 0 {3 * K}\ncreate f1\nreflink f0 f1\nfallocate f1 100 200 unshare-range\n")
    f0, f1 = ref.names["f0"], ref.names["f1"]
    assert [ref._shared(f1, b) for b in range(3)] == [False, True, True]
    assert not ref._shared(f0, 0) and ref._shared(f0, 1)
    assert ref.read("f1", 0, 3 * K) == DATA
    ref.apply(5, parse_op(f"fallocate f1 {3 * K} {4 * K} unshare-range keep-size"))
    assert ref._shared(f1, 2)


def test_keep_size_preallocates_past_eof_without_changing_the_size() -> None:
    ref = _ref("create f0\nwrite f0 0 100\nfallocate f0 0 16384 keep-size\n")
    assert ref.size("f0") == 100
    assert sorted(ref.names["f0"].backed) == [0, 1, 2, 3]


# -- daxfs: the results agree and the blocks are the kernel's ------------------------------------------


def _daxfs(text: str, **config: str):
    target = DaxfsTarget(**config)
    pm = PMem(8 << 20)
    target.format(pm)
    fs = target.mount(pm)
    ref = Reference()
    for i, op in enumerate(parse(text)):
        assert fs.execute(i, op, ref.payload(i, op)) == ref.apply(i, op), op
    for f in ref.files():
        assert fs.size(f) == ref.size(f) and fs.read(f, 0, 1 << 20) == ref.read(f, 0, 1 << 20), f
    for m, mp in ref.maps.items():
        assert fs.read_mapping(m, 0, mp.length) == ref.read_mapping(m, 0, mp.length), m
    return fs.fs


@pytest.mark.parametrize("design", DESIGNS)
def test_daxfs_unshare_copies_each_shared_block_once_and_leaves_the_rest_shared(design: str) -> None:
    fs = _daxfs(
        f"create f0\nwrite f0 0 {3 * K}\ncreate f1\nreflink f0 f1\nfallocate f1 100 {K} unshare-range\n",
        design=design,
    )
    a, b = fs.lookup("f0").extents.segments(0, 3), fs.lookup("f1").extents.segments(0, 3)
    mine = {s.lblk + i: s.pblk + i for s in a for i in range(s.len)}
    theirs = {s.lblk + i: s.pblk + i for s in b for i in range(s.len)}
    assert mine[0] != theirs[0] and mine[1] != theirs[1] and mine[2] == theirs[2]
    assert [fs.space.shared(mine[i]) for i in range(3)] == [True, True, True]  # busy until the log push
    fs.journal.force("test")
    assert [fs.space.shared(mine[i]) for i in range(3)] == [False, False, True]


def test_daxfs_zero_range_unmaps_whole_blocks_and_zeroes_the_edges_in_place() -> None:
    fs = _daxfs(f"create f0\nwrite f0 0 {3 * K}\nfallocate f0 100 {2 * K + 100} zero-range\n")
    segs = fs.lookup("f0").extents.segments(0, 3)
    assert [(s.len, s.unwritten) for s in segs] == [(1, False), (1, True), (1, False)]


def test_daxfs_unshare_and_zero_range_past_eof_stop_at_eof() -> None:
    fs = _daxfs(
        f"create f0\nwrite f0 0 {K + 100}\ncreate f1\nreflink f0 f1\nmmap m0 f1 0 {2 * K}\nstore m0 {K + 200} 8\n"
        f"fallocate f1 {K + 150} {K} unshare-range keep-size\nfallocate f1 {K + 150} 20 zero-range keep-size\n"
    )
    assert fs.lookup("f1").size == K + 100


# -- crash soundness on the correct designs ---------------------------------------------------------

SOUND = [
    # unshare of a reflinked range, unaligned, then an in-place write into the copy and fsync
    f"create f0\nwrite f0 0 {2 * K}\nfsync f0\ncreate f1\nreflink f0 f1\nfsync f1\n"
    f"fallocate f1 100 {K} unshare-range\nwrite f1 50 100\nfsync f1\n",
    # the source writes in place after the clone unshared: the old block is still shared on media
    f"create f0\nwrite f0 0 {2 * K}\ncreate f1\nreflink f0 f1\nfsync f1\n"
    f"fallocate f1 0 {2 * K} unshare-range keep-size\nwrite f0 0 {K}\nfsync f0\n",
    # zero-range over written, shared and preallocated blocks, across EOF, with and without keep-size
    f"create f0\nwrite f0 0 {3 * K}\nfsync f0\ncreate f1\nreflink f0 f1\n"
    f"fallocate f1 100 {2 * K} zero-range\nfallocate f0 {2 * K + 50} {2 * K} zero-range keep-size\n"
    f"fallocate f0 {K} 300 zero-range\nfsync f0\nfsync f1\n",
    # MAP_SYNC data persisted, then zero-range and unshare over it
    f"create f0\nwrite f0 0 {2 * K}\nfsync f0\ncreate f1\nreflink f0 f1\nmmap m0 f1 0 {2 * K} sync\n"
    f"store m0 {K + 8} 64\npersist m0 {K + 8} 64\nfallocate f1 0 {2 * K} unshare-range\n"
    f"fallocate f1 {K} 100 zero-range\nfsync f1\n",
    # preallocation past EOF, then an extending write into it
    "create f0\nwrite f0 0 100\nfallocate f0 0 16384 keep-size\nfsync f0\nwrite f0 5000 100\nfsync f0\n",
]


@pytest.mark.parametrize("text", SOUND, ids=range(len(SOUND)))
@pytest.mark.parametrize(("design", "cil", "domain"), CONFIGS, ids=["-".join(c) for c in CONFIGS])
def test_correct_designs_are_clean_on_the_new_modes(text: str, design: str, cil: str, domain: str) -> None:
    v = check(DaxfsTarget(design=design, cil=cil), parse(text), Options(domain=Domain(domain)))
    assert v.clean, [(f.oracle.value, f.message) for f in v.findings]


FALLOC_HEAVY = replace(DEFAULT_SHAPE, weights={**DEFAULT_SHAPE.weights, "falloc": 12, "fallocate": 8, "race": 1})
"""Random workloads with the new modes weighted up (the volume is benchmarks/soundness.py --weight)."""


@pytest.mark.parametrize(("design", "cil", "domain"), CONFIGS, ids=["-".join(c) for c in CONFIGS])
def test_correct_designs_are_clean_on_random_workloads_heavy_in_fallocate(design: str, cil: str, domain: str) -> None:
    target = DaxfsTarget(design=design, cil=cil)
    opts = Options(domain=Domain(domain), max_states=24, exhaustive_upto=24, preemption_bound=1, max_schedules=32)

    @settings(max_examples=10, deadline=None, suppress_health_check=list(HealthCheck))
    @given(workloads(max_ops=16, shape=FALLOC_HEAVY))
    def run(w) -> None:
        v = check(target, w, opts)
        assert v.clean, (str(w), [(f.oracle.value, f.message) for f in v.findings])

    run()


RACES = [
    f"create f0\nwrite f0 0 {2 * K}\ncreate f1\nreflink f0 f1\nmmap m0 f1 0 {2 * K}\n"
    f"parallel {{ fallocate f1 100 {K} unshare-range ; fault m0 0 write }}\nfsync f1\n",
    f"create f0\nwrite f0 0 {2 * K}\ncreate f1\nreflink f0 f1\nmmap m0 f0 0 {2 * K}\n"
    f"parallel {{ fallocate f1 0 {2 * K} unshare-range ; store m0 100 64 }}\nfsync f0\n",
    f"create f0\nwrite f0 0 6000\nmmap m0 f0 0 {2 * K}\nfault m0 1 read\n"
    f"parallel {{ fallocate f0 100 {K} zero-range ; write f0 {K} 100 }}\nfsync f0\n",
]


@pytest.mark.parametrize("text", RACES, ids=range(len(RACES)))
@pytest.mark.parametrize("design", DESIGNS)
@pytest.mark.parametrize("locks", ["rwsem", "range"])
def test_the_new_modes_race_cleanly_in_parallel_groups(text: str, design: str, locks: str) -> None:
    v = check(DaxfsTarget(design=design, locks=locks), parse(text), Options(preemption_bound=1, max_states=32))
    assert v.clean, [(f.oracle.value, f.message, f.schedule) for f in v.findings]


# -- the unshare zoo bugs ---------------------------------------------------------------------------

UNSHARE = (
    f"create f0\nwrite f0 0 {K}\nfsync f0\ncreate f1\nreflink f0 f1\nfallocate f1 100 200 unshare-range\nfsync f1\n"
)


@pytest.mark.parametrize("design", DESIGNS)
def test_unshare_partial_copy_is_caught_without_a_crash(design: str) -> None:
    v = check(DaxfsTarget(design=design, bugs=Bug.UNSHARE_PARTIAL_COPY.value), parse(UNSHARE), Options(crash="E"))
    assert "functional" in v.oracles()
    assert check(DaxfsTarget(design=design), parse(UNSHARE), Options()).clean


@pytest.mark.parametrize("design", DESIGNS)
def test_unshare_copy_unflushed_exposes_stale_media_on_adr_only(design: str) -> None:
    buggy = DaxfsTarget(design=design, bugs=Bug.UNSHARE_COPY_UNFLUSHED.value)
    v = check(buggy, parse(UNSHARE), Options(domain=Domain.ADR))
    assert v.oracles() == {"stale-exposure"}
    assert check(buggy, parse(UNSHARE), Options(domain=Domain.EADR)).clean


@settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.sampled_from(FALLOC_MODES), st.integers(0, 3 * K), st.integers(1, 3 * K))
def test_only_an_unshare_of_a_shared_unaligned_range_trips_the_partial_copy(mode, off, n) -> None:
    text = f"create f0\nwrite f0 0 {3 * K}\ncreate f1\nreflink f0 f1\nfallocate f1 {off} {n}{_words(mode)}\n"
    v = check(DaxfsTarget(bugs=Bug.UNSHARE_PARTIAL_COPY.value), parse(text), Options(crash="E"))
    end = min(off + n, 3 * K)
    tripped = bool(mode & FallocMode.UNSHARE_RANGE) and off < end and bool(off % K or end % K)
    assert ("functional" in v.oracles()) == tripped


def _words(mode: FallocMode) -> str:
    return "".join(" " + w for w in str(Fallocate("f0", 0, 1, mode)).split()[4:])


# -- targets that run fewer modes ------------------------------------------------------------------


class _NoUnshare(DaxfsTarget):
    """daxfs declaring ext4's modes: a target may run fewer fallocate modes than the language has."""

    falloc_modes = tuple(m for m in FALLOC_MODES if not m & FallocMode.UNSHARE_RANGE)


def test_a_mode_the_target_does_not_run_is_one_clear_error() -> None:
    from pmfuzz.errors import PmfuzzError

    with pytest.raises(PmfuzzError, match="does not support the fallocate mode of op 1"):
        check(_NoUnshare(), parse("create f0\nfallocate f0 0 1 unshare-range\n"), Options())
    assert check(_NoUnshare(), parse("create f0\nfallocate f0 0 1 zero-range keep-size\n"), Options()).clean


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(workloads(max_ops=16, shape=FALLOC_HEAVY.only(frozenset(OpKind) - {OpKind.REFLINK}, _NoUnshare.falloc_modes)))
def test_generation_keeps_to_the_targets_modes(w) -> None:
    for op in flatten(w.ops):
        assert not (isinstance(op, Fallocate) and op.mode & FallocMode.UNSHARE_RANGE), str(op)


def test_the_kernel_agent_gets_the_mode_bits() -> None:
    from pmfuzz.kernel.commands import command

    assert command(parse_op("fallocate f0 0 4096")) == "fallocate f0 0 4096"
    assert command(parse_op("fallocate f0 100 200 zero-range keep-size")) == "fallocate f0 100 200 17"
