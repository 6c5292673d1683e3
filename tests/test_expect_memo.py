"""An expectation remembers what it answered about each file: asked in any order, after any other
question about the same or another file, it answers what a fresh expectation of the same window does."""

from __future__ import annotations

import random

import pytest

from pmfuzz.execution.execute import execute
from pmfuzz.judging.engine import Options
from pmfuzz.lang.workload import parse
from pmfuzz.reference.expect import Expectation
from pmfuzz.target import TargetSpec, make_target

ASKED = ("start", "may_exist", "must_exist", "existed_before", "sizes", "held_sizes", "incarnations")

WORKLOADS = [
    "create f1\nwrite f1 0 4096\ncreate f0\nwrite f0 0 5000\nfsync f0\ntruncate f0 100\n"
    "unlink f0\ncreate f0\nwrite f0 0 9000\nreflink f0 f1\n",
    "create f0\nwrite f0 0 4096\nparallel { truncate f0 8192 ; write f0 4096 100 }\nfsync f0\nunlink f0\ncreate f0\n",
]


@pytest.mark.parametrize("text", WORKLOADS)
@pytest.mark.parametrize("seed", range(3))
def test_answers_do_not_depend_on_what_was_asked_before(text: str, seed: int) -> None:
    run = execute(make_target(TargetSpec("daxfs", ())), parse(text).ops, Options())
    h = run.history
    assert h is not None
    rng = random.Random(seed)
    names = sorted({n for b in h.boundaries for n in b} | {"f9"})
    for completed in range(len(h.boundaries) - 1):
        for upper in (completed, completed + 1):
            for durable, synchronous in ((True, False), (False, False), (True, True)):
                asked = Expectation(h, completed, upper, durable, synchronous)
                questions = [(q, n) for q in ASKED for n in names] * 2
                rng.shuffle(questions)
                for q, n in questions:
                    fresh = Expectation(h, completed, upper, durable, synchronous)
                    assert getattr(asked, q)(n) == getattr(fresh, q)(n), (q, n, completed, upper)
