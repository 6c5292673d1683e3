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
