"""Stale media exposed: one cause however a campaign meets it (a race, a read, a crash).

A block mapped before anything initialised it shows its media to a read, to a mapping past EOF
inside a parallel group, and to a crash that drops the data written into it; these name what the
media is, not which of those met it.
"""

from __future__ import annotations

import pytest

from oracles import OracleName
from pmfuzz.fuzzing.replaying import run_reproducer
from pmfuzz.judging.repro import parse_reproducer
from pmfuzz.signature import Cause, How

GARBAGE = Cause(OracleName.FUNCTIONAL, How.CONTENT, "garbage")

RACES = [
    # no-zero: a write fault past EOF loses to a write that allocates the block unzeroed; the
    # mapping shows the block's media past the new EOF.
    ("no-zero", "create f0\nmmap m1 f0 0 4096\nparallel { fault m1 0 write ; write f0 0 1 }\n"),
    # cow-skip-tail-copy: a write to a shared block copies its head only; the mapping of the file
    # shows, past EOF in the copied block, what the copy never covered.
    (
        "cow-skip-tail-copy",
        "create f0\ncreate f1\nwrite f0 0 6000\nreflink f0 f1\nmmap m1 f1 0 8192\n"
        "parallel { write f1 4096 1 ; fault m1 0 read }\n",
    ),
]


def _race_findings(spec: str, body: str):
    text = f"# pmfuzz reproducer v1\n# target: {spec}\n# schedule: -\n{body}"
    v = run_reproducer(parse_reproducer(text))
    return [f for f in v.findings if "no serial order" in f.message]


@pytest.mark.parametrize(("bug", "body"), RACES)
def test_a_race_whose_mapping_shows_media_past_eof_is_named_by_what_it_shows(bug: str, body: str) -> None:
    race = _race_findings(f"daxfs design=zero bugs={bug} cil=lazy", body)
    assert race and {f.root_cause for f in race} == {GARBAGE}


@pytest.mark.parametrize(("bug", "body"), RACES)
def test_the_same_races_on_the_correct_design_are_explained(bug: str, body: str) -> None:
    for cil in ("lazy", "eager"):
        assert _race_findings(f"daxfs design=zero cil={cil}", body) == []
