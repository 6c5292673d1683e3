"""Exploring schedules files each schedule's findings by its own divergence.

Two schedules that leave the reference at one group share the divergence's signature, so merged
by signature only one of them carries it; a crash finding of the other schedule after that
divergence must not then stand as a finding of its own.
"""

from __future__ import annotations

from oracles import OracleName
from pmfuzz.judging.engine import Options, check
from pmfuzz.lang.workload import parse
from pmfuzz.target import make_target
from pmfuzz.verdict import filed

RACE = (
    "create f2\ncreate f0\nwrite f0 0 2\nreflink f0 f2\nmmap m1 f2 0 1\n"
    "parallel { write f2 8 4 ; store m1 2 16 }\nfsync f2\n"
)


def test_no_schedule_keeps_a_crash_finding_after_its_own_divergence() -> None:
    """cow-skip-tail-copy: every schedule's copy on write leaves bytes no serial order explains;
    one schedule's durability verdict at the end follows from it and is not filed."""
    v = check(make_target("daxfs design=zero bugs=cow-skip-tail-copy cil=lazy"), parse(RACE), Options())
    assert any(f.oracle is OracleName.FUNCTIONAL for f in v.findings)
    assert filed(v.findings) == v.findings
    assert not [f for f in v.findings if f.crash is not None and f.crash.point == "E"]


def test_the_race_is_explained_on_the_correct_design() -> None:
    assert check(make_target("daxfs design=zero cil=lazy"), parse(RACE), Options()).findings == ()


EFAULT_WRITE = "create f0\nmmap m0 f0 0 1\nwrite f0 0 1 from m0 100\n"
"""fault-eof-round-up: a write(2) from a mapping of the file's page past EOF should fail with
EFAULT; the bug maps the page and the write goes through."""


def test_crashes_inside_an_op_that_should_have_failed_are_not_filed() -> None:
    """The reference holds no version of what the write did, so what its crash states show (its
    size, its data, reached the media) is not judged by it: one finding, the result."""
    from pmfuzz.signature import Cause, How

    v = check(make_target("daxfs design=zero bugs=fault-eof-round-up cil=eager"), parse(EFAULT_WRITE), Options())
    assert any(f.crash is not None for f in v.findings)  # replay still sees them all
    assert {f.root_cause for f in filed(v.findings)} == {
        Cause(OracleName.FUNCTIONAL, How.RULE, "op N `write` returned N, POSIX says EFAULT")
    }
    assert check(make_target("daxfs design=zero cil=eager"), parse(EFAULT_WRITE), Options()).findings == ()


def test_crashes_inside_an_op_whose_read_went_wrong_are_still_filed() -> None:
    """cow-skip-tail-copy: the copy on write's result is right and its content wrong; its torn
    block after a crash inside it shows how it went wrong, and is filed."""
    text = "create f0\ncreate f1\nwrite f1 0 16\nwrite f0 0 1\nreflink f1 f0\nwrite f0 0 1\n"
    v = check(make_target("daxfs design=zero bugs=cow-skip-tail-copy cil=eager"), parse(text), Options())
    assert [f for f in filed(v.findings) if f.crash is not None and f.crash.op == 5]


SHARED_WRITE = "create f0\ncreate f1\nwrite f1 0 8192\nreflink f1 f0\nwrite f0 100 5000\nfsync f0\n"


def _stale_causes(bugs: str) -> dict[str, set[str]]:
    v = check(make_target(f"daxfs design=zero cil=eager bugs={bugs}"), parse(SHARED_WRITE), Options())
    out: dict[str, set[str]] = {}
    for f in filed(v.findings):
        if f.oracle is OracleName.STALE_EXPOSURE and f.crash is not None:
            out.setdefault(str(f.signature), set()).add(str(f.root_cause))
    return out


def test_a_second_bugs_cause_at_the_first_ones_crash_site_is_filed_too() -> None:
    """cow-remap-before-copy loses the copy its remap went ahead of, cow-edges-unflushed the edges
    nothing flushed: with both on, both show at the fsync's crash sites, one signature, and both
    are filed (one finding per signature hid the second bug)."""
    both = _stale_causes("cow-edges-unflushed,cow-remap-before-copy")["stale-exposure:fsync:xfs_file_fsync"]
    assert both == {"stale-exposure/lost/data", "stale-exposure/lost/unflushed dax_iomap_copy_around"}
    alone = _stale_causes("cow-remap-before-copy")
    assert {c for cs in alone.values() for c in cs} == {"stale-exposure/lost/data"}


def test_one_copy_lost_for_two_reasons_links_neither_to_the_other() -> None:
    """The copy's store spans two lines: one the write beside it flushed (lost only because the remap
    went first), one nothing flushed. Both causes blame that store; linked, a campaign filed the
    second bug's cause under the first one's group."""
    v = check(
        make_target("daxfs design=zero cil=eager bugs=cow-edges-unflushed,cow-remap-before-copy"),
        parse(SHARED_WRITE),
        Options(),
    )
    links = {str(f.root_cause): {str(a) for a in f.also} for f in filed(v.findings) if f.crash is not None}
    data, unflushed = "stale-exposure/lost/data", "stale-exposure/lost/unflushed dax_iomap_copy_around"
    assert data in links and unflushed in links
    assert unflushed not in links[data] and data not in links[unflushed]
    assert "cow-atomicity/lost/data" in links[data]  # one store, two oracles: still one cause's
