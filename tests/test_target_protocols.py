"""The target surface in one file: capability protocols and their helpers, the registry's entry
point for daxfs, and the kernel rules the reference and daxfs share (`pmfuzz.lang.rules`)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from pmfuzz.fs import DaxfsTarget
from pmfuzz.lang.falloc import FALLOC_MODES
from pmfuzz.lang.rules import EFAULT, page_pieces, reflink_error, round_up
from pmfuzz.lang.workload import OpKind, Parallel, parse
from pmfuzz.pmem import PMem
from pmfuzz.reference import Reference
from pmfuzz.target import (
    DEFAULT_DEVICE_SIZE,
    Errno,
    Guarantee,
    HasMetadataRanges,
    HasRangeLocks,
    HasRegions,
    HasVariants,
    MapsBlocks,
    MapsFileBlocks,
    ReportsLayout,
    Schedulable,
    declared_regions,
    declares_range_locks,
    device_size,
    file_blocks,
    is_target_error,
    layout_violations_hook,
    mapping_blocks_hook,
    metadata_ranges,
    min_op_timeout,
    scheduler_hook,
    supported_falloc_modes,
    supported_ops,
    target_variants,
    targets,
)


class Bare:
    """A target with the required surface only."""

    name = "bare"
    guarantees = frozenset({Guarantee.POSIX})

    def format(self, pm: PMem) -> None: ...

    def mount(self, pm: PMem):
        return object()

    def options(self) -> dict[str, str]:
        return {}


def test_a_target_without_hooks_gets_the_documented_defaults() -> None:
    t = Bare()
    assert supported_ops(t) == frozenset(OpKind)
    assert supported_falloc_modes(t) == FALLOC_MODES
    assert metadata_ranges(t, 1 << 20) is None
    assert declared_regions(t, 1 << 20) is None
    assert not declares_range_locks(t)
    assert target_variants(t) is None
    assert device_size(t) == DEFAULT_DEVICE_SIZE
    assert min_op_timeout(t) is None
    fs = t.mount(PMem(4096))
    assert scheduler_hook(fs) is None and mapping_blocks_hook(fs) is None and layout_violations_hook(fs) is None
    assert file_blocks(fs, "f0", 10) is None


def test_daxfs_declares_its_hooks_through_the_protocols() -> None:
    t = DaxfsTarget(locks="range")
    assert isinstance(t, HasMetadataRanges) and isinstance(t, HasVariants) and isinstance(t, HasRangeLocks)
    assert isinstance(t, HasRegions) and declared_regions(t, 4 << 20)[0][:2] == ("superblock", 0)
    assert declares_range_locks(t) and not declares_range_locks(DaxfsTarget())
    assert target_variants(t) == t.variants()
    assert metadata_ranges(t, 4 << 20) == list(t.metadata_ranges(4 << 20))
    pm = PMem(4 << 20)
    t.format(pm)
    fs = t.mount(pm)
    assert isinstance(fs, Schedulable) and isinstance(fs, MapsBlocks) and isinstance(fs, ReportsLayout)
    assert scheduler_hook(fs) == fs.set_scheduler and layout_violations_hook(fs) == fs.layout_violations
    assert isinstance(fs, MapsFileBlocks) and file_blocks(fs, "f0", 10) == []
    for i, op in enumerate(parse("create f0\nwrite f0 0 5000\n")):
        fs.execute(i, op, None if i == 0 else bytes(5000))
    (first, dev, unwritten), (second, _, _) = file_blocks(fs, "f0", 5000)
    assert (first, second) == (0, 4096) and dev is not None and not unwritten


def test_the_registry_finds_daxfs_by_its_entry_point_without_target_importing_fs() -> None:
    assert targets()["daxfs"] is DaxfsTarget
    code = "import sys, pmfuzz.target; print(any(m.startswith('pmfuzz.fs') for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


class _Sized:
    def __init__(self, size: int) -> None:
        self.size = size


def test_reflink_rule_is_generic_remap_checks() -> None:
    a, b = _Sized(8192), _Sized(100)
    assert reflink_error(a, b, 0, 0, 4096) is None
    assert reflink_error(a, b, 1, 0, 4096) is Errno.EINVAL  # unaligned source
    assert reflink_error(a, b, 4096, 0, 8192) is Errno.EINVAL  # past the source's EOF
    assert reflink_error(_Sized(5000), b, 0, 0, 5000) is None  # a partial block that ends at EOF
    assert reflink_error(a, _Sized(9000), 0, 0, 100) is Errno.EINVAL  # partial, not at EOF
    assert reflink_error(a, a, 0, 4096, 8192 - 4096) is None
    assert reflink_error(a, a, 0, 0, 4096) is Errno.EINVAL  # onto itself, overlapping
    assert EFAULT is Errno.EFAULT


def test_page_pieces_and_round_up() -> None:
    assert page_pieces(4000, 200) == [(4000, 96), (4096, 104)]
    assert page_pieces(0, 0) == []
    assert round_up(1, 4096) == 4096 and round_up(4096, 4096) == 4096 and round_up(0, 8) == 0


def test_reference_dispatches_on_op_classes() -> None:
    ref = Reference()
    ops = list(parse("create f0\nwrite f0 0 10\nread f0 0 10\n"))
    assert [str(ref.apply(i, op)) for i, op in enumerate(ops)] == ["0", "10", "10 bytes"]
    with pytest.raises(TypeError):
        ref.apply(3, Parallel(tuple(ops[:2])))


def test_an_exception_declares_itself_the_targets() -> None:
    class GuestGone(Exception):
        is_target_error = True

    assert is_target_error(GuestGone()) and not is_target_error(ValueError())
