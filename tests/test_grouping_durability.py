"""A durability point whose metadata did not hold: one cause whichever piece the crash shows.

map-sync-no-commit returns from a MAP_SYNC write fault before the fault's transaction is in the
log: a crash after the persist loses the file, its new size, or the block under the persisted
data, by what the workload did before. One broken durability point, one cause.
"""

from __future__ import annotations

import pytest

from oracles import OracleName
from oracles.durability import metadata_lost
from pmfuzz.judging.engine import Options, check
from pmfuzz.lang.workload import parse
from pmfuzz.signature import Cause, How
from pmfuzz.target import make_target
from pmfuzz.verdict import filed

EXHAUSTIVE = Options(max_states=64, exhaustive_upto=64)
METADATA = Cause(OracleName.DURABILITY, How.METADATA, "")

SYNC_FAULTS = [
    # the file itself: created and persisted through a MAP_SYNC mapping, never logged
    "create f0\ntruncate f0 4096\nmmap m0 f0 0 4096 sync\nstore m0 0 8\npersist m0 0 8\n",
    # its size: the create was synced, the truncate that sized it was not
    "create f0\nsync\ntruncate f0 4096\nmmap m0 f0 0 4096 sync\nstore m0 0 8\npersist m0 0 8\n",
    # the block under the persisted data
    "create f0\ntruncate f0 8192\nfsync f0\nmmap m0 f0 0 8192 sync\nfault m0 1 write\nstore m0 4096 8\n"
    "persist m0 4096 8\n",
]


@pytest.mark.parametrize("text", SYNC_FAULTS)
def test_a_sync_fault_that_did_not_log_is_one_cause(text: str) -> None:
    """(With an eager log every transaction is pushed as it commits: the bug shows with a lazy one.)"""
    causes: set[Cause] = set()
    for cil in ("lazy", "eager"):
        v = check(make_target(f"daxfs design=zero bugs=map-sync-no-commit cil={cil}"), parse(text), EXHAUSTIVE)
        causes |= {f.root_cause for f in filed(v.findings)}
    assert causes == {METADATA}


@pytest.mark.parametrize("text", SYNC_FAULTS)
def test_the_same_sync_faults_hold_on_the_correct_design(text: str) -> None:
    for cil in ("lazy", "eager"):
        assert check(make_target(f"daxfs design=zero cil={cil}"), parse(text), EXHAUSTIVE).findings == ()


@pytest.mark.parametrize(
    ("message", "metadata"),
    [
        ("f0 is missing after recovery, but it was made durable at op boundary 3", True),
        ("f1 exists after recovery, but its removal was durable", True),
        ("f0 recovered with size 4096, older than durable (allowed: [0, 8192])", True),
        ("f0 holds data older than what was made durable", False),
        ("f0 reads zero where it holds data in every state it may recover to (data lost, ...)", False),
    ],
)
def test_metadata_lost_tells_the_durability_oracles_metadata_messages(message: str, metadata: bool) -> None:
    assert metadata_lost(message) is metadata


def test_a_crash_inside_an_unshare_that_finds_the_old_block_is_the_lost_data_not_the_map() -> None:
    """fsync-no-flush: the reflink did not write the store back; a crash inside the unshare that
    follows finds the old, shared block -- as it may, the remap not being done -- and the store's
    data lost from it: durability/lost/data, not a block map that did not hold."""
    text = (
        "create f0\ntruncate f0 4\nmmap m0 f0 0 1\nstore m0 0 4\ncreate f2\nreflink f0 f2\n"
        "fallocate f2 0 1 unshare-range\n"
    )
    v = check(make_target("daxfs design=zero bugs=fsync-no-flush cil=eager"), parse(text), EXHAUSTIVE)
    causes = {f.root_cause for f in filed(v.findings) if f.oracle is OracleName.DURABILITY}
    assert causes == {Cause(OracleName.DURABILITY, How.LOST, "data")}
    assert check(make_target("daxfs design=zero cil=eager"), parse(text), EXHAUSTIVE).findings == ()
