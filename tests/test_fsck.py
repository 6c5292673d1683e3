"""daxfs's fsck names each kind of block-accounting damage, and nothing on a consistent image."""

from __future__ import annotations

import pytest

from pmfuzz.execution.execute import execute
from pmfuzz.fs.fsck import fsck
from pmfuzz.fs.layout import COW_STAGING
from pmfuzz.lang.workload import parse
from pmfuzz.pmem import PMem
from pmfuzz.target import make_target
from pmfuzz.verdict import Options


def _mounted():
    target = make_target("daxfs")
    run = execute(target, parse("create f0\nwrite f0 0 8192\ncreate f1\nwrite f1 0 100\nfsync f1\n"), Options())
    fs = target.mount(PMem.from_image(run.crash_points()[-1].state().image(), record=False)).fs
    mapped = sorted(b for ip in fs.inodes.values() for e in ip.extents for b in range(e.pblk, e.pblk + e.len))
    free = next(b for b in range(fs.geo.data_start, fs.geo.nblocks) if not fs.space.used[b])
    return fs, mapped, free


def test_a_consistent_image_has_no_problems() -> None:
    fs, mapped, _ = _mounted()
    assert mapped and fsck(fs) == []


@pytest.mark.parametrize(
    ("damage", "says"),
    [
        ("leak", "used in the bitmap but mapped by no file (leaked)"),
        ("unmark", "but free in the bitmap"),
        ("refcount", "refcount 3 but mapped by 1 extent(s)"),
        ("staging", "CoW staging extent left after mount"),
    ],
)
def test_each_kind_of_block_damage_is_named(damage: str, says: str) -> None:
    fs, mapped, free = _mounted()
    if damage == "leak":
        fs.space.used[free] = True
        block = free
    elif damage == "unmark":
        block = mapped[0]
        fs.space.used[block] = False
    elif damage == "refcount":
        block = mapped[0]
        fs.space.refc[block] = 3
    else:
        block = free
        fs.space.used[block] = True
        fs.space.refc[block] = COW_STAGING
    got = fsck(fs)
    assert any(p.startswith(f"block {block}: ") and says in p for p in got), got
