"""Serial orders run once per workload leave every schedule's run as running them per schedule does."""

from __future__ import annotations

import pytest

from pmfuzz.execution.execute import execute
from pmfuzz.execution.interleave import Chooser, Schedule, explore
from pmfuzz.lang.workload import parse
from pmfuzz.target import make_target
from pmfuzz.verdict import Options, filing_key

WORKLOADS = [
    "create f0\ntruncate f0 6000\nmmap m0 f0 0 8192 sync\nparallel { punch f0 0 100 ; fault m0 0 read }\n",
    "create f1\ncreate f2\ntruncate f2 6000\nmmap m1 f2 0 8192 sync\nparallel { fault m1 0 write ; fsync f2 }\n",
    "create f0\nwrite f0 0 6000\nmmap m0 f0 0 8192\nparallel { fallocate f0 0 4096 ; punch f0 0 4096 }\nfsync f0\n",
    # two groups: the second's orders are shared only by schedules that ordered the first alike
    "create f0\ncreate f1\nwrite f0 0 8192\nmmap m1 f0 0 8192\nparallel { fault m1 1 read ; write f0 4096 100 }\n"
    "truncate f0 6000\nmmap m1 f0 0 8192 sync\nparallel { fallocate f0 4096 4096 zero-range ; fault m1 1 read }\n"
    "fsync f0\n",
    "create f0\nwrite f0 0 200\nparallel { write f0 0 100 ; write f0 50 100 }\n"
    "parallel { write f0 150 10 ; truncate f0 120 }\n",
    "create f0\nwrite f0 0 8192\nfsync f0\ncreate f1\nreflink f0 f1\nmmap m0 f1 0 8192\n"
    "parallel { write f1 0 100 ; fault m0 0 write ; write f1 4000 200 }\n",
]


def _boundaries(run) -> list:
    return [
        (b, [sorted((ino, name, v.size, v.words.tobytes()) for ino, (name, v) in alt.items()) for alt in alts])
        for b, alts in sorted(run.history.alternatives.items())
    ]


def _seen(run) -> tuple:
    return (
        run.digest,
        _boundaries(run),
        sorted(repr(filing_key(f)) + f.message for f in run.findings),
        run.notes,
        run.results,
    )


@pytest.mark.parametrize("bugs", ["", "cow-recopies-staged-block", "write-fault-shared-no-cow"])
@pytest.mark.parametrize("text", WORKLOADS)
def test_shared_serial_orders_change_no_schedule(text: str, bugs: str) -> None:
    w = parse(text)
    opts = Options(features=True)
    target = make_target("daxfs", bugs=bugs) if bugs else make_target("daxfs")
    memo: dict = {}
    schedules = 0
    for chooser in explore(2, prune=False):
        shared = execute(target, w, opts, chooser, digest=True, orders=memo)
        alone = execute(target, w, opts, Chooser(Schedule.parse(shared.schedule or "")), digest=True)
        assert alone.schedule == shared.schedule
        assert _seen(alone) == _seen(shared), shared.schedule
        schedules += 1
    assert schedules > 1
    assert memo, "the first group's orders were kept"
