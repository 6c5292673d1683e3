"""A punch (or zero-range) writes back the dirty DAX entries over its range before it deletes them,
as xfs_flush_unmap_range does: a store under a PMD entry the punch deletes whole stays durable
after fsync. Found by a 4-hour campaign as a false `durability` finding on the correct target."""

from __future__ import annotations

import pytest

from pmfuzz.judging.engine import check
from pmfuzz.lang.workload import parse
from pmfuzz.target import make_target
from pmfuzz.verdict import Options

HEAD = "create f2\ntruncate f2 2097152\nmmap m1 f2 0 2097152\nfault m1 0 write pmd\nstore m1 4096 2\n"
CUTS = ["punch f2 0 4096\n", "fallocate f2 0 4096 zero-range keep-size\n"]


@pytest.mark.parametrize("cut", CUTS)
@pytest.mark.parametrize("spec", ["daxfs design=zero cil=lazy", "daxfs design=unwritten", "daxfs design=cow-remap"])
def test_a_store_under_a_deleted_pmd_entry_is_durable_after_fsync(spec: str, cut: str) -> None:
    v = check(make_target(spec), parse(HEAD + cut + "fsync f2\n"), Options())
    assert v.clean, [f.message for f in v.findings]


@pytest.mark.parametrize("cut", CUTS)
def test_without_the_writeback_the_store_is_lost(cut: str) -> None:
    v = check(make_target("daxfs bugs=fsync-no-flush"), parse(HEAD + cut + "fsync f2\n"), Options())
    assert "durability" in v.oracles()
