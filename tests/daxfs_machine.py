"""A hypothesis state machine: random ops through a daxfs and the reference side by side."""

from __future__ import annotations

from typing import ClassVar

import hypothesis.strategies as st
from hypothesis import assume, note
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from pmfuzz.fs import DaxfsTarget
from pmfuzz.lang.falloc import FALLOC_MODES
from pmfuzz.lang.workload import (
    FILES,
    MAPPINGS,
    Create,
    Fallocate,
    Fault,
    Fsync,
    Mmap,
    Munmap,
    Op,
    Persist,
    Punch,
    Read,
    Reflink,
    Store,
    Sync,
    Truncate,
    Unlink,
    Write,
)
from pmfuzz.pmem import PMem
from pmfuzz.reference import Reference
from pmfuzz.target import Errno

K = 4096
OFFSETS = st.one_of(
    st.sampled_from([0, 1, 100, K - 1, K, K + 1, 2 * K, 3 * K - 8, 4 * K, 5 * K + 123, 8 * K]),
    st.integers(0, 12 * K),
)
LENGTHS = st.one_of(st.sampled_from([1, 8, 100, K - 1, K, K + 1, 2 * K, 3 * K]), st.integers(1, 4 * K))
ALIGNED = st.sampled_from([0, K, 2 * K, 3 * K, 4 * K])


def file_names(m: DaxfsMachine) -> st.SearchStrategy[str]:
    """Mostly files that exist, often ones that are mapped; sometimes any name."""
    live = m.ref.files()
    mapped = sorted({n for n in live for mp in m.ref.maps.values() if m.ref.names.get(n) is mp.file})
    options = [st.sampled_from(FILES[:4])]
    if live:
        options += [st.sampled_from(live)] * 3
    if mapped:
        options += [st.sampled_from(mapped)] * 2
    return st.one_of(options)


def near_size(m: DaxfsMachine, name: str) -> st.SearchStrategy[int]:
    """Offsets around a file's EOF and inside its blocks, where the interesting cases are."""
    size = m.ref.size(name) or 0
    around = [size, max(0, size - 1), size + 1, size // 2, max(0, size - 100), (size // K) * K + 17]
    return st.one_of(OFFSETS, st.sampled_from(around))


class Disagreement(AssertionError):
    """daxfs answered otherwise than the reference model: what a functional bug must cause.

    Its own class, so that a test expecting a functional bug is not satisfied by an assertion
    failing inside the model itself."""


class FsckProblem(AssertionError):
    """daxfs's own consistency check found a problem with no crash."""


def _agree(got: object, want: object, what: str) -> None:
    if got != want:
        raise Disagreement(what)


class DaxfsMachine(RuleBasedStateMachine):
    config: ClassVar[dict[str, str]] = {}

    def __init__(self) -> None:
        super().__init__()
        self.target = DaxfsTarget(**self.config)
        pm = PMem(16 << 20)
        self.target.format(pm)
        pm.quiesce()
        self.fs = self.target.mount(pm)
        pm.quiesce()
        self.ref = Reference()
        self.index = 0
        self.draw_bias = True

    def do(self, op: Op) -> None:
        payload = self.ref.payload(self.index, op)
        want = self.ref.apply(self.index, op)
        got = self.fs.execute(self.index, op, payload)
        note(f"{self.index}: {op} -> ref {want}, daxfs {got}")
        assume(got.errno is not Errno.ENOSPC)
        self.index += 1
        _agree(got, want, f"op {op}: daxfs returned {got}, reference {want}")

    @initialize(n=st.integers(1, 3 * K), mapped=st.booleans(), sync=st.booleans())
    def seed_file(self, n: int, mapped: bool, sync: bool) -> None:
        """Start from a file with data (often mapped), so the first steps already meet real blocks."""
        self.do(Create("f0"))
        self.do(Write("f0", 0, n))
        if mapped:
            self.do(Mmap("m0", "f0", 0, 4 * K, sync))

    @rule(data=st.data())
    def create(self, data: st.DataObject) -> None:
        self.do(Create(data.draw(st.sampled_from(FILES[:4]))))

    @rule(data=st.data())
    def unlink(self, data: st.DataObject) -> None:
        self.do(Unlink(data.draw(file_names(self))))

    @rule(data=st.data(), n=LENGTHS)
    def write(self, data: st.DataObject, n: int) -> None:
        f = data.draw(file_names(self))
        self.do(Write(f, data.draw(near_size(self, f)), n))

    @rule(data=st.data(), off=OFFSETS, n=LENGTHS)
    def read(self, data: st.DataObject, off: int, n: int) -> None:
        self.do(Read(data.draw(file_names(self)), off, n))

    @rule(data=st.data())
    def truncate(self, data: st.DataObject) -> None:
        f = data.draw(file_names(self))
        self.do(Truncate(f, data.draw(near_size(self, f))))

    @rule(data=st.data(), off=OFFSETS, n=LENGTHS, mode=st.sampled_from(FALLOC_MODES))
    def fallocate(self, data: st.DataObject, off: int, n: int, mode) -> None:
        self.do(Fallocate(data.draw(file_names(self)), off, n, mode))

    @rule(data=st.data(), n=LENGTHS, mode=st.sampled_from(FALLOC_MODES[2:]))
    def fallocate_near_eof(self, data: st.DataObject, n: int, mode) -> None:
        """zero-range and unshare-range around EOF, where the edge zeroing and the unshare clamp stop."""
        f = data.draw(file_names(self))
        self.do(Fallocate(f, data.draw(near_size(self, f)), n, mode))

    @rule(data=st.data(), n=LENGTHS)
    def punch(self, data: st.DataObject, n: int) -> None:
        f = data.draw(file_names(self))
        self.do(Punch(f, data.draw(near_size(self, f)), n))

    @rule(data=st.data())
    def reflink_whole(self, data: st.DataObject) -> None:
        self.do(Reflink(data.draw(file_names(self)), data.draw(file_names(self))))

    @rule(data=st.data(), soff=ALIGNED, doff=ALIGNED, n=st.sampled_from([K, 2 * K, 100, K + 50]))
    def reflink_range(self, data: st.DataObject, soff: int, doff: int, n: int) -> None:
        src = data.draw(file_names(self))
        size = self.ref.size(src)
        if size is not None and n % K and data.draw(st.booleans()):
            n = max(1, size - soff)
        self.do(Reflink(src, data.draw(file_names(self)), soff, doff, n))

    @rule(data=st.data())
    def fsync(self, data: st.DataObject) -> None:
        self.do(Fsync(data.draw(file_names(self))))

    @rule()
    def sync(self) -> None:
        self.do(Sync())

    @rule(
        m=st.sampled_from(MAPPINGS[:3]),
        data=st.data(),
        off=ALIGNED,
        n=st.sampled_from([K, 2 * K, 5 * K, 100]),
        sync=st.booleans(),
    )
    def mmap(self, m: str, data: st.DataObject, off: int, n: int, sync: bool) -> None:
        self.do(Mmap(m, data.draw(file_names(self)), off, n, sync))

    @rule(m=st.sampled_from(MAPPINGS[:3]))
    def munmap(self, m: str) -> None:
        self.do(Munmap(m))

    @rule(m=st.sampled_from(MAPPINGS[:3]), pg=st.integers(0, 5), write=st.booleans())
    def fault(self, m: str, pg: int, write: bool) -> None:
        self.do(Fault(m, pg, write))

    @rule(m=st.sampled_from(MAPPINGS[:3]), off=st.integers(0, 5 * K), n=st.integers(1, 2 * K))
    def store(self, m: str, off: int, n: int) -> None:
        self.do(Store(m, off, n))

    @rule(m=st.sampled_from(MAPPINGS[:3]), off=st.integers(0, 5 * K), n=st.integers(1, 2 * K))
    def persist(self, m: str, off: int, n: int) -> None:
        self.do(Persist(m, off, n))

    @precondition(lambda self: len(self.ref.files()) > 0)
    @rule(data=st.data())
    def pmd_fault(self, data: st.DataObject) -> None:
        f = data.draw(file_names(self))
        m = data.draw(st.sampled_from(MAPPINGS[3:5]))
        self.do(Truncate(f, data.draw(st.sampled_from([2 << 20, (2 << 20) + K, 4 << 20]))))
        self.do(Mmap(m, f, 0, 4 << 20))
        self.do(Fault(m, data.draw(st.sampled_from([0, 1, 511, 512, 700])), data.draw(st.booleans()), True))
        self.do(Store(m, data.draw(st.sampled_from([0, 4096 * 3, (2 << 20) - 8])), 64))
        self.do(Munmap(m))

    @invariant()
    def agree(self) -> None:
        _agree(self.fs.files(), self.ref.files(), "files")
        for f in self.ref.files():
            _agree(self.fs.size(f), self.ref.size(f), f"size of {f}")
            _agree(self.fs.read(f, 0, 1 << 30), self.ref.read(f, 0, 1 << 30), f"contents of {f}")
        for m, mp in self.ref.maps.items():
            for pg in range(-(-mp.length // K)):
                want = self.ref.read_mapping(m, pg * K, K)
                got = self.fs.read_mapping(m, pg * K, K)
                if got != want:
                    raise Disagreement(f"mapping {m} page {pg}: daxfs {_diff(got, want)}")

    @invariant()
    def fsck_clean(self) -> None:
        problems = [p for p in self.fs.fsck() if "orphan" not in p]
        if problems:
            raise FsckProblem(problems)


def _diff(got, want) -> str:
    if isinstance(got.value, bytes) and isinstance(want.value, bytes) and got.ok and want.ok:
        i = next((i for i, (a, b) in enumerate(zip(got.value, want.value, strict=False)) if a != b), None)
        return f"differs from the reference first at byte {i}"
    return f"{got}, reference {want}"


def machine_for(**config: str) -> type[DaxfsMachine]:
    return type(f"Daxfs_{'_'.join(config.values())}", (DaxfsMachine,), {"config": config})
