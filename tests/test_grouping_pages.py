"""A wrong load through a mapping is named by how its page-table entry went wrong, not by what it showed.

fault-iomap-before-entry-lock showed `zero for data` (the zero page installed over a block a racing
write allocated) and `older data for data` (the old shared block installed after a racing copy on
write): one race, two names. Each test runs the bug and the correct design on the same workload.
"""

from __future__ import annotations

import pytest

from oracles import ELSEWHERE, OracleName
from pmfuzz.execution.pages import PageFrame, PageLog, Stale, entry_cause
from pmfuzz.execution.reach import BlockMapLog
from pmfuzz.fuzzing.replaying import run_reproducer
from pmfuzz.judging.repro import parse_reproducer
from pmfuzz.lang.workload import Fault, Mmap, Write, parse
from pmfuzz.reference import Reference
from pmfuzz.signature import Cause, How

SHARED_F0 = "create f0\ncreate f1\nwrite f1 0 8192\nreflink f1 f0\nmmap m1 f0 0 8192\n"


def _repro(spec: str, schedule: str, body: str) -> str:
    return f"# pmfuzz reproducer v1\n# target: {spec}\n# schedule: {schedule}\n{body}"


def _free_causes(spec: str, schedule: str, body: str) -> set[Cause]:
    """The causes of the crash-free findings of `body` run under `schedule`."""
    v = run_reproducer(parse_reproducer(_repro(spec, schedule, body)))
    return {f.root_cause for f in v.findings if f.crash is None}


INSTALLED = Cause(OracleName.MMAP_COHERENCY, How.PAGE_TABLE, Stale.INSTALLED.value)

RACES = [
    # a read fault that saw a hole installs the zero page after write(2) allocated the block
    ("3=1x3,0", "create f0\ntruncate f0 1\nmmap m0 f0 0 1\nparallel { write f0 0 4 ; fault m0 0 read }\n"),
    # a read fault that saw the shared block installs it after write(2) copied it on write
    ("5=1x3,0", SHARED_F0 + "parallel { write f0 4100 4096 ; fault m1 1 read }\n"),
]


@pytest.mark.parametrize(("schedule", "body"), RACES)
def test_a_fault_that_installs_what_a_racing_op_changed_is_one_cause_whatever_the_page_shows(
    schedule: str, body: str
) -> None:
    bug = _free_causes("daxfs design=zero bugs=fault-iomap-before-entry-lock cil=eager", schedule, body)
    assert bug == {INSTALLED}
    assert _free_causes("daxfs design=zero cil=eager", schedule, body) == set()


@pytest.mark.parametrize(
    ("bug", "body", "how"),
    [
        ("cow-remap-stale-mapping", SHARED_F0 + "fault m1 0 read\nwrite f0 0 4\n", "remapped"),
        ("cow-remap-stale-mapping", SHARED_F0 + "parallel { fault m1 0 read ; write f0 0 4 }\n", "remapped"),
        (
            "write-keeps-huge-zero-page",
            "create f0\ntruncate f0 4194304\nmmap m0 f0 0 4194304\nfault m0 0 read pmd\nwrite f0 0 4096\n",
            "allocated",
        ),
    ],
)
def test_an_entry_a_later_change_left_in_place_is_named_by_that_change(bug: str, body: str, how: str) -> None:
    """Right when installed, stale after: the change that did not unmap it, in a group too (the
    fault's step came before the write's)."""
    kept = Cause(OracleName.MMAP_COHERENCY, How.PAGE_TABLE, f"{Stale.KEPT.value} {how}")
    assert _free_causes(f"daxfs design=zero bugs={bug} cil=eager", "-", body) == {kept}
    assert _free_causes("daxfs design=zero cil=eager", "-", body) == set()


def test_an_entry_made_writable_on_a_shared_block_is_the_broken_isolation_a_store_through_it_shows() -> None:
    """write-fault-shared-no-cow: the store that changes the other file and the stale page a racing
    copy on write leaves behind are one cause."""
    spec = "daxfs design=zero bugs=write-fault-shared-no-cow cil=eager"
    store = SHARED_F0 + "store m1 0 4\nread f1 0 8\n"
    race = SHARED_F0 + "parallel { write f0 0 4 ; fault m1 0 write }\n"
    # a read fault's entry that a write fault then made writable: the view never changed in between
    upgraded = SHARED_F0 + "fault m1 0 read\nparallel { fault m1 0 write ; write f0 0 4 }\n"
    elsewhere = Cause(OracleName.FUNCTIONAL, How.CONTENT, ELSEWHERE)
    assert _free_causes(spec, "-", store) == {elsewhere}
    assert _free_causes(spec, "5=1x3,0", race) == {elsewhere}
    assert _free_causes(spec, "6=1x4,0", upgraded) == {elsewhere}
    for schedule, body in (("5=1x3,0", race), ("6=1x4,0", upgraded)):
        assert _free_causes("daxfs design=zero cil=eager", schedule, body) == set()


def _log(*frames: tuple[int, tuple[int | None, int | None, bool] | None]) -> PageLog:
    ops = (Mmap("m0", "f0", 0, 4096), Fault("m0", 0, False), Write("f0", 0, 4), Fault("m0", 0, True))
    pages = tuple(PageFrame(op, {"m0": {} if e is None else {0: e}}) for op, e in frames)
    return PageLog(pages, ops, {k: k for k in range(len(ops))}, BlockMapLog(), None, max(op for op, _e in frames))


def _ref() -> Reference:
    ref = Reference()
    for i, op in enumerate(parse("create f0\nmmap m0 f0 0 4096\n").ops):
        ref.apply(i, op)
    return ref


@pytest.mark.parametrize(
    ("frames", "want"),
    [
        (((1, (7, 7, True)),), None),
        (((1, (7, 7, True)), (2, (7, 8, True))), "kept over a block-map change"),
        (((1, (None, None, False)), (2, (None, 8, True))), "kept over a block-map change"),
        (((1, (None, 8, False)),), None),  # the zero page over an unwritten block is right
        (((1, None), (2, (7, 8, True))), Stale.INSTALLED.value),
        (((1, (None, None, False)), (2, (7, 8, True))), Stale.INSTALLED.value),
        (((1, (7, 7, True)), (2, (7, 8, True)), (3, (9, 9, True))), None),
    ],
)
def test_entry_cause_follows_the_entry_back_to_where_it_got_its_block(frames, want) -> None:
    assert entry_cause(_log(*frames), _ref(), "m0", 0) == want
