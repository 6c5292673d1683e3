"""Loads through a mapping read as runs of pages give what reading each page alone gives."""

from __future__ import annotations

from dataclasses import replace

import hypothesis.strategies as st
from hypothesis import HealthCheck, given, settings

from pmfuzz.execution.serial import _mapping_read, _maps_misfit
from pmfuzz.fs.core import DaxFS
from pmfuzz.fs.daxfs import DaxfsTarget
from pmfuzz.fs.layout import BS
from pmfuzz.fs.mapview import mapping_view
from pmfuzz.gen.strategies import DEFAULT_SHAPE, scenario_shape, workloads
from pmfuzz.lang.rules import page_pieces
from pmfuzz.lang.workload import PAGE_SIZE, Parallel, Workload, parse
from pmfuzz.pmem import PMem
from pmfuzz.reference import Reference
from pmfuzz.target import Errno, Result, Signal, err, sig


def _page_by_page(fs: DaxFS, name: str, off: int, n: int) -> Result:
    """Each page on its own, in order: its PTE's block, the zero page, or the file's data."""
    vma = fs.vmas.get(name)
    if vma is None:
        return err(Errno.EINVAL)
    out = bytearray()
    for pos, k in page_pieces(off, n):
        vpage = pos // PAGE_SIZE
        if vpage >= vma.npages:
            return sig(Signal.SIGSEGV)
        pte = vma.ptes.get(vpage)
        if pte is not None:
            out += bytes(k) if pte.block is None else fs.pm.load(pte.block * BS + pos % PAGE_SIZE, k)
            continue
        fpos = (vma.pgoff + vpage) * PAGE_SIZE
        if fpos >= vma.inode.size:
            return sig(Signal.SIGBUS)
        out += fs.read_blocks(vma.inode, fpos + pos % PAGE_SIZE, k).tobytes()
    return Result(bytes(out))


_SCENARIOS = (DEFAULT_SHAPE, scenario_shape("hugezero"), scenario_shape("mapeof"))
_SHAPES = [replace(s, weights={**s.weights, "race": 0}) for s in _SCENARIOS]


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.sampled_from(_SHAPES).flatmap(lambda s: workloads(min_ops=3, max_ops=10, shape=s)), st.data())
def test_a_mapping_read_in_runs_equals_it_read_page_by_page(w: Workload, data: st.DataObject) -> None:
    target = DaxfsTarget()
    pm = PMem(8 << 20)
    target.format(pm)
    mounted = target.mount(pm)
    fs: DaxFS = mounted.fs  # type: ignore[attr-defined]
    ref = Reference()
    for i, op in enumerate(w.ops):
        if isinstance(op, Parallel):
            break
        mounted.execute(i, op, ref.payload(i, op))
        ref.apply(i, op)
        for name, vma in fs.vmas.items():
            span = vma.npages * PAGE_SIZE
            off = data.draw(
                st.sampled_from([0, 100, PAGE_SIZE - 1, span // 2, span - 1]) | st.integers(0, span + PAGE_SIZE)
            )
            n = data.draw(st.sampled_from([1, 100, PAGE_SIZE, span, span - off + PAGE_SIZE]) | st.integers(0, span))
            assert mapping_view(fs, name, off, n) == _page_by_page(fs, name, off, n), (str(op), name, off, n)
        assert mapping_view(fs, "m9", 0, 1) == _page_by_page(fs, "m9", 0, 1)


def test_mapped_pages_whose_blocks_are_not_in_order_read_each_its_own() -> None:
    target = DaxfsTarget()
    pm = PMem(8 << 20)
    target.format(pm)
    mounted = target.mount(pm)
    fs: DaxFS = mounted.fs  # type: ignore[attr-defined]
    ref = Reference()
    text = (
        "create f0\ntruncate f0 12288\nwrite f0 8192 4096\nwrite f0 0 4096\nwrite f0 4096 4096\n"
        "mmap m0 f0 0 12288\nfault m0 0 read\nfault m0 1 read\nfault m0 2 read\n"
    )
    for i, op in enumerate(parse(text)):
        assert mounted.execute(i, op, ref.payload(i, op)) == ref.apply(i, op)
    ptes = fs.vmas["m0"].ptes
    assert ptes[1].block == ptes[0].block + 1 and ptes[2].block != ptes[1].block + 1
    for off, n in ((0, 3 * PAGE_SIZE), (100, 2 * PAGE_SIZE), (PAGE_SIZE - 1, PAGE_SIZE + 2)):
        assert mapping_view(fs, "m0", off, n) == _page_by_page(fs, "m0", off, n) == ref.read_mapping("m0", off, n)


def _ref_page_by_page(ref: Reference, name: str, off: int, n: int) -> Result:
    """POSIX's loads one page at a time: past the mapping SIGSEGV, a page past EOF SIGBUS, else the file's bytes."""
    m = ref.maps.get(name)
    if m is None:
        return err(Errno.EINVAL)
    out = bytearray()
    for pos, k in page_pieces(off, n):
        if pos >= -(-m.length // PAGE_SIZE) * PAGE_SIZE:
            return sig(Signal.SIGSEGV)
        if m.off + pos // PAGE_SIZE * PAGE_SIZE >= m.file.size:
            return sig(Signal.SIGBUS)
        m.file.ensure(m.off + pos + k)
        out += m.file.data[m.off + pos : m.off + pos + k].tobytes()  # past EOF in its page: what stores left
    return Result(bytes(out))


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.sampled_from(_SHAPES).flatmap(lambda s: workloads(min_ops=3, max_ops=10, shape=s)), st.data())
def test_the_reference_reads_a_mapping_as_page_by_page_loads_do(w: Workload, data: st.DataObject) -> None:
    ref = Reference()
    for i, op in enumerate(w.ops):
        if isinstance(op, Parallel):
            break
        ref.apply(i, op)
        for name, m in ref.maps.items():
            span = -(-m.length // PAGE_SIZE) * PAGE_SIZE
            off = data.draw(st.sampled_from([0, 100, PAGE_SIZE - 1, span - 1]) | st.integers(0, span + PAGE_SIZE))
            n = data.draw(st.sampled_from([0, 1, PAGE_SIZE, span - off + PAGE_SIZE]) | st.integers(0, span))
            assert ref.read_mapping(name, off, n) == _ref_page_by_page(ref, name, off, n), (str(op), name, off, n)


def _misfit_page_by_page(r2: Reference, fs: Reference):
    """`_maps_misfit` one page at a time: every page's signal, and its bytes past EOF."""
    for m, mp in r2.maps.items():
        size = mp.file.size
        for pos, k in page_pieces(0, mp.length):
            want, got = r2.read_mapping(m, pos, k), fs.read_mapping(m, pos, k)
            if not (want.ok and got.ok):
                if want != got:
                    return str(want) if got.ok and str(want).startswith("SIG") else False
                continue
            cut = min(k, max(0, size - (mp.off + pos)))
            gv, wv = got.value, want.value
            assert isinstance(gv, bytes) and isinstance(wv, bytes)
            if gv[cut:] != wv[cut:]:
                return _mapping_read(r2, m, mp, pos, gv, wv, cut)
    return None


_TAILS = st.lists(
    st.sampled_from(
        [
            "truncate f0 100",
            "truncate f0 5000",
            "truncate f0 0",
            "truncate f0 12288",
            "store m0 4000 200",
            "store m0 100 64",
            "store m0 8190 4",
            "store m0 100 8",
            "store m0 4096 8",
            "store m0 5000 8",
            "store m0 6000 8",
            "write f0 4000 200",
            "punch f0 0 4096",
            "fault m0 1 write",
            "fault m0 2 read",
        ]
    ),
    max_size=4,
)


@settings(max_examples=150, deadline=None)
@given(st.sampled_from([4096, 6000, 8192, 12288]), st.sampled_from([8192, 12288, 16384]), _TAILS, _TAILS)
def test_mappings_compared_whole_misfit_where_page_by_page_they_do(
    size: int, length: int, mine: list[str], theirs: list[str]
) -> None:
    prefix = f"create f0\nwrite f0 0 {size}\nmmap m0 f0 0 {length}\n"
    a, b = Reference(), Reference()
    for ref, tail in ((a, mine), (b, theirs)):
        for i, op in enumerate(parse(prefix + "".join(t + "\n" for t in tail))):
            ref.apply(i, op)
    assert _maps_misfit(a, b) == _misfit_page_by_page(a, b)  # type: ignore[arg-type]
