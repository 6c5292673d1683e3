"""Stale media exposed: one cause however a campaign meets it (a race, a read, a crash).

A block mapped before anything initialised it shows its media to a read, to a mapping past EOF
inside a parallel group, and to a crash that drops the data written into it; these name what the
media is, not which of those met it.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from oracles import ELSEWHERE, OracleName
from pmfuzz.execution.reach import Reach
from pmfuzz.fuzzing.replaying import run_reproducer
from pmfuzz.judging.engine import Options, check
from pmfuzz.judging.repro import parse_reproducer
from pmfuzz.lang.data import poison
from pmfuzz.lang.workload import parse
from pmfuzz.pmem import Event, EventKind, never_stored
from pmfuzz.signature import Cause, How
from pmfuzz.target import make_target
from pmfuzz.verdict import filed

ALLOCATED = Cause(OracleName.STALE_EXPOSURE, How.NEVER_WRITTEN, Reach.ALLOCATED.value)
"""Media a block held before an allocation made it the file's."""
REMAPPED = Cause(OracleName.STALE_EXPOSURE, How.NEVER_WRITTEN, Reach.REMAPPED.value)
"""What a copy on write's new block held before the remap made it the file's."""
EXHAUSTIVE = Options(max_states=64, exhaustive_upto=64, log_states=True)

RACES = [
    # no-zero: a write fault past EOF loses to a write that allocates the block unzeroed; the
    # mapping shows the block's media past the new EOF.
    ("no-zero", "create f0\nmmap m1 f0 0 4096\nparallel { fault m1 0 write ; write f0 0 1 }\n", ALLOCATED),
    # cow-skip-tail-copy: a write to a shared block copies its head only; the mapping of the file
    # shows, past EOF in the copied block, what the copy never covered.
    (
        "cow-skip-tail-copy",
        "create f0\ncreate f1\nwrite f0 0 6000\nreflink f0 f1\nmmap m1 f1 0 8192\n"
        "parallel { write f1 4096 1 ; fault m1 0 read }\n",
        REMAPPED,
    ),
]


def _race_findings(spec: str, body: str):
    text = f"# pmfuzz reproducer v1\n# target: {spec}\n# schedule: -\n{body}"
    v = run_reproducer(parse_reproducer(text))
    return [f for f in v.findings if "no serial order" in f.message]


@pytest.mark.parametrize(("bug", "body", "cause"), RACES)
def test_a_race_whose_mapping_shows_media_past_eof_is_named_by_that_media(bug: str, body: str, cause: Cause) -> None:
    race = _race_findings(f"daxfs design=zero bugs={bug} cil=lazy", body)
    assert race and {f.root_cause for f in race} == {cause}


@pytest.mark.parametrize(("bug", "body", "cause"), RACES)
def test_the_same_races_on_the_correct_design_are_explained(bug: str, body: str, cause: Cause) -> None:
    for cil in ("lazy", "eager"):
        text = f"# pmfuzz reproducer v1\n# target: daxfs design=zero cil={cil}\n# schedule: -\n{body}"
        assert run_reproducer(parse_reproducer(text)).findings == ()


NO_ZERO_RUNS = [
    "create f0\nwrite f0 2 1\n",
    "create f0\ntruncate f0 8192\nwrite f0 0 4096\nfsync f0\n",
    "create f0\ntruncate f0 2\nmmap m1 f0 0 1 sync\nstore m1 0 4\n",
    "create f0\ntruncate f0 8192\nmmap m0 f0 0 8192\nfault m0 0 write\nstore m0 0 64\npersist m0 0 64\n",
    # a write into the middle of a word: half data, half media (it decodes as neither)
    "create f0\nwrite f0 4 8\n",
    "create f0\nwrite f0 4 4\n",
    # a write(2) from a mapping stores another op's words through the plain write's code: its payload
    "create f1\nwrite f1 0 4096\ntruncate f1 20480\nmmap m1 f1 0 20480\nwrite f1 12288 4096 from m1 100\n",
]


@pytest.mark.parametrize("text", NO_ZERO_RUNS)
def test_no_zero_is_one_cause_crash_free_and_after_a_crash(text: str) -> None:
    """A block allocated unzeroed shows its media to a read and to a crash that drops the data
    written into it (losing the data is allowed; zero was due then): media nobody wrote, both."""
    causes: set[Cause] = set()
    for cil in ("lazy", "eager"):
        v = check(make_target(f"daxfs design=zero bugs=no-zero cil={cil}"), parse(text), EXHAUSTIVE)
        causes |= {f.root_cause for f in v.findings if f.oracle in (OracleName.FUNCTIONAL, OracleName.STALE_EXPOSURE)}
    assert causes == {ALLOCATED}


@pytest.mark.parametrize("text", NO_ZERO_RUNS)
def test_the_correct_design_shows_no_media(text: str) -> None:
    for cil in ("lazy", "eager"):
        assert check(make_target(f"daxfs design=zero cil={cil}"), parse(text), EXHAUSTIVE).findings == ()


def test_a_zeroing_the_crash_lost_is_still_named_by_its_site() -> None:
    """zero-after-commit issues the zeroing and makes it durable too late: the lost zeroing, not
    the media, is its cause (the media would never show had it been kept)."""
    for text in (
        "create f0\ntruncate f0 8192\nwrite f0 0 4096\nfsync f0\n",
        "create f0\ntruncate f0 8192\nwrite f0 100 10\n",
    ):
        v = check(make_target("daxfs design=zero bugs=zero-after-commit cil=eager"), parse(text), EXHAUSTIVE)
        causes = {f.root_cause for f in filed(v.findings) if f.oracle is OracleName.STALE_EXPOSURE}
        assert causes == {Cause(OracleName.STALE_EXPOSURE, How.LOST, "xfs_zero_extent")}


_stores = st.lists(
    st.tuples(st.integers(0, 40), st.integers(1, 12), st.sampled_from([EventKind.STORE, EventKind.CLWB])),
    max_size=8,
)


@given(_stores, st.integers(0, 40), st.integers(0, 10), st.sets(st.integers(0, 7)))
def test_never_stored_is_the_bytes_no_store_or_a_copy_of_media_wrote(stores, addr: int, n: int, copies) -> None:
    """Brute force: per byte, the last store that covered it, and whether it wrote a whole word of
    poison there (stores numbered in `copies` copy poison, the rest write data)."""
    events = []
    for i, (a, size, k) in enumerate(stores):
        media = bytes(poison(a - a % 8, -(-(a + size) // 8) * 8 - (a - a % 8)))[a % 8 : a % 8 + size]
        events.append(Event(i, k, a, size, (media if i in copies else b"\x01" * size) if k.is_store else None))
    want = []
    for b in range(addr, addr + n):
        last = next((e for e in reversed(events) if e.kind.is_store and e.addr <= b < e.addr + e.size), None)
        w = b - b % 8
        whole = last is not None and last.addr <= w and w + 8 <= last.addr + last.size
        if last is None or (whole and last.seq in copies):
            want.append(b - addr)
    assert never_stored(events, addr, n) == want


def test_a_copy_on_write_of_a_block_nobody_initialised_shows_media_nobody_wrote() -> None:
    """no-zero: a shared block that was never zeroed is copied on write; the copy's poison (of the
    old block's address) past the written byte is the same media, one cause with the rest."""
    text = (
        "# pmfuzz reproducer v1\n# target: daxfs design=zero bugs=no-zero cil=eager\n# schedule: -\n"
        "create f2\ncreate f1\nwrite f2 0 1\nreflink f2 f1\nmmap m1 f1 0 2\n"
        "parallel { fault m1 0 write ; write f1 0 1 }\n"
    )
    v = run_reproducer(parse_reproducer(text))
    assert v.findings and {f.root_cause for f in v.findings} == {ALLOCATED}


REUSED = "create f0\nwrite f0 0 4096\npunch f0 0 4096\ncreate f1\nwrite f1 8 1\n"
"""no-zero: a punched block comes back to another file with its old data."""

IN_PLACE = (
    "create f2\ncreate f1\nwrite f1 0 4\nreflink f1 f2\nmmap m1 f2 0 1 sync\nfault m1 0 write\n"
    "fallocate f2 0 4096 zero-range\nmmap m0 f1 0 1\nstore m0 0 4\npersist m0 0 1\n"
)
"""cow-in-place: a store through f1's mapping lands in the block f2 still shares."""


def test_a_reused_blocks_old_data_is_what_the_block_held_before_not_data_for_zero() -> None:
    """Data written for another file, read where zero was due, in a block no other file maps: the
    block's content from before it was this file's, the cause its media has (crash-free and after
    a crash alike)."""
    v = check(make_target("daxfs design=zero bugs=no-zero cil=eager"), parse(REUSED), EXHAUSTIVE)
    assert {f.root_cause for f in filed(v.findings)} == {ALLOCATED}


def test_data_another_file_wrote_into_a_block_it_shares_is_that_files_write_after_a_crash_too() -> None:
    v = check(make_target("daxfs design=zero bugs=cow-in-place cil=lazy"), parse(IN_PLACE), EXHAUSTIVE)
    causes = {f.root_cause for f in filed(v.findings) if f.oracle is OracleName.STALE_EXPOSURE}
    assert causes == {Cause(OracleName.FUNCTIONAL, How.CONTENT, ELSEWHERE)}


@pytest.mark.parametrize("text", [REUSED, IN_PLACE])
def test_neither_shows_on_the_correct_design(text: str) -> None:
    for cil in ("lazy", "eager"):
        assert check(make_target(f"daxfs design=zero cil={cil}"), parse(text), EXHAUSTIVE).findings == ()


@pytest.mark.parametrize(
    "text",
    [
        "create f0\nwrite f0 0 4096\ntruncate f0 10\nmmap m0 f0 0 4096\nfault m0 0 read\ntruncate f0 4096\n",
        # f0's words were written by f1 (a reflink): still f0's own, though another file shares the block
        "create f1\nwrite f1 0 4096\ncreate f0\nreflink f1 f0\ntruncate f0 10\nmmap m0 f0 0 4096\n"
        "fault m0 0 read\ntruncate f0 4096\n",
    ],
)
def test_the_files_own_old_word_where_zero_was_due_is_data_for_zero(text: str) -> None:
    """truncate-no-zero-tail: the file's own old data at the same offset comes back past a new EOF
    (its own by the reference's history, whatever file its words name)."""
    v = check(make_target("daxfs design=zero bugs=truncate-no-zero-tail cil=eager"), parse(text), EXHAUSTIVE)
    assert {f.root_cause for f in v.findings if f.crash is None} == {
        Cause(OracleName.FUNCTIONAL, How.CONTENT, "data for zero")
    }


def test_a_campaign_stops_on_the_findings_oracle_whatever_oracle_its_cause_names(tmp_path) -> None:
    """A functional finding filed as stale-exposure/never-written is still the functional finding
    `stop_on` (and the time-to-bug benchmark) waits for."""
    from pmfuzz.fuzzing.campaign import CampaignConfig, run_campaign
    from pmfuzz.target import TargetSpec

    corpus = tmp_path / "seeds"
    corpus.mkdir()
    (corpus / "w.pmfuzz").write_text("create f0\nwrite f0 2 1\n")
    spec = TargetSpec("daxfs", (("design", "zero"), ("bugs", "no-zero"), ("cil", "lazy")))
    cfg = CampaignConfig(
        target=spec, seed=1, max_execs=1, corpus=corpus, crashes=tmp_path / "crashes", quiet=True, pictures=False,
        stop_on="functional",
    )  # fmt: skip
    s = run_campaign(cfg)
    assert s.first_hit is not None
    assert "stale-exposure/never-written/allocated" in s.findings


def test_a_reflinked_files_own_older_data_after_a_crash_is_its_own_not_another_files_write() -> None:
    """map-sync-no-commit on a reflinked file: the older data it recovers was written through the
    source file, yet it is f0's own older version -- not an in-place write by another file. It is
    read from the shared block the sync fault's unlogged copy on write left behind: the block map
    did not hold, the cause the bug's other durability findings have."""
    text = (
        "create f1\nwrite f1 0 4096\ncreate f0\nreflink f1 f0\nsync\n"
        "mmap m0 f0 0 4096 sync\nstore m0 0 8\npersist m0 0 8\n"
    )
    v = check(make_target("daxfs design=zero bugs=map-sync-no-commit cil=lazy"), parse(text), EXHAUSTIVE)
    assert {f.root_cause for f in filed(v.findings)} == {Cause(OracleName.DURABILITY, How.METADATA, "")}
    assert check(make_target("daxfs design=zero cil=lazy"), parse(text), EXHAUSTIVE).findings == ()
