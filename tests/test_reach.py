"""How a block became a file's: the run's block-map log, and the causes it names.

Media a block held before it was the file's is one cause per way the block was exposed: an
allocation that did not zero it (no-zero), a copy on write that did not fill it
(cow-skip-tail-copy). The log tells the two apart where the stores alone cannot.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from oracles import ELSEWHERE, OracleName
from pmfuzz.execution.execute import execute
from pmfuzz.execution.reach import BlockMapLog, Reach, Reached, changes
from pmfuzz.execution.reach import _predates as predates
from pmfuzz.fuzzing.replaying import run_reproducer
from pmfuzz.judging.engine import Options, check
from pmfuzz.judging.repro import parse_reproducer
from pmfuzz.lang.workload import parse
from pmfuzz.pmem import Event, EventKind
from pmfuzz.signature import Cause, How
from pmfuzz.target import make_target
from pmfuzz.verdict import filed

EXHAUSTIVE = Options(max_states=64, exhaustive_upto=64, log_states=True)
B = 4096


def _log(spec: str, text: str) -> list[tuple[str, int, Reach, int]]:
    run = execute(make_target(spec), parse(text), Options())
    return [(r.name, r.off, r.how, r.op) for r in run.reached.entries]


@pytest.mark.parametrize("design", ["zero", "unwritten"])
def test_each_kind_of_block_map_change_is_named(design: str) -> None:
    text = (
        "create f0\ncreate f1\nwrite f1 0 16\nwrite f0 0 1\nreflink f1 f0\nwrite f0 0 1\n"
        "fallocate f0 8192 8192\nwrite f0 9000 10\n"
    )
    assert _log(f"daxfs design={design}", text) == [
        ("f1", 0, Reach.ALLOCATED, 2),
        ("f0", 0, Reach.ALLOCATED, 3),
        ("f0", 0, Reach.SHARED, 4),
        ("f0", 0, Reach.REMAPPED, 5),
        ("f0", 2 * B, Reach.ALLOCATED, 7),  # converted from unwritten
    ]


def test_a_parallel_group_is_logged_under_its_first_op() -> None:
    text = "create f0\ncreate f1\nparallel { write f0 0 1 ; write f1 5000 1 }\n"
    assert sorted(_log("daxfs design=zero", text)) == [("f0", 0, Reach.ALLOCATED, 2), ("f1", B, Reach.ALLOCATED, 2)]


def test_changes_skips_unwritten_and_unchanged_blocks() -> None:
    before = {"a": ((0, 10 * B, 2 * B, False),)}
    after = {"a": ((0, 10 * B, 2 * B, False), (2 * B, 20 * B, B, True)), "b": ((0, 10 * B, B, False),)}
    assert changes(before, after, op=3, start=7, end=9) == [Reached("b", 0, 10 * B, Reach.SHARED, 3, 7, 9)]


def test_origin_follows_a_share_back_to_where_the_block_was_fresh() -> None:
    log = BlockMapLog(
        (
            Reached("a", 0, 5 * B, Reach.ALLOCATED, 1, 10, 12),
            Reached("b", B, 5 * B, Reach.SHARED, 2, 20, 22),
            Reached("c", 0, 5 * B, Reach.REMAPPED, 3, 30, 31),
        )
    )
    assert log.origin(5 * B + 8, 25, "b", B + 8) == log.entries[0]
    assert log.origin(5 * B, None, "c", 0) == log.entries[2]
    assert log.origin(5 * B, None) == log.entries[2]
    assert log.origin(5 * B, 10) is None  # nothing began before trace index 10
    quiet = BlockMapLog((Reached("a", 0, 5 * B, Reach.ALLOCATED, 1, 10, 10),))
    assert quiet.origin(5 * B, 10) == quiet.entries[0]  # an op with no events of its own ended by 10
    assert log.origin(6 * B, None) is None
    assert log.origin(5 * B, None, "b", 0) is None  # b never had the block at offset 0


_stores = st.lists(st.tuples(st.integers(0, 24), st.binary(min_size=1, max_size=6)), max_size=8)


@given(_stores, st.integers(0, 24), st.binary(min_size=1, max_size=8), st.integers(0, 8), st.integers(0, 8))
def test_predates_is_some_byte_no_store_in_the_window_wrote(
    stores, addr: int, raw: bytes, start: int, end: int
) -> None:
    """Brute force: a byte is explained when any store of trace[start:end] wrote that value there."""
    trace = [Event(i, EventKind.STORE, a, len(d), d) for i, (a, d) in enumerate(stores)]
    window = trace[start:end]

    def explained(b: int) -> bool:
        return any(e.addr <= addr + b < e.addr + e.size and e.data[addr + b - e.addr] == raw[b] for e in window)

    assert predates(trace, addr, raw, start, end) == (not all(explained(b) for b in range(len(raw))))


COW_SKIP = "daxfs design=zero bugs=cow-skip-tail-copy cil={cil}"
COW_SKIP_RUNS = [
    # the COW of a block reflinked over the file's own: the new block is the file's freed one
    "create f0\ncreate f1\nwrite f1 0 16\nwrite f0 0 1\nreflink f1 f0\nwrite f0 0 1\n",
    "create f0\ncreate f1\nwrite f1 0 6000\nreflink f1 f0\nwrite f0 4100 1\nfsync f0\n",
    "create f0\ncreate f1\nwrite f1 0 4\nwrite f0 0 4\nreflink f1 f0\nwrite f0 4 4\n",
]
REMAPPED = Cause(OracleName.STALE_EXPOSURE, How.NEVER_WRITTEN, Reach.REMAPPED.value)
ALLOCATED = Cause(OracleName.STALE_EXPOSURE, How.NEVER_WRITTEN, Reach.ALLOCATED.value)


@pytest.mark.parametrize("text", COW_SKIP_RUNS)
def test_a_copy_on_write_that_skipped_the_copy_is_one_cause_whatever_the_block_held(text: str) -> None:
    """Media, the file's own older data, another file's data: whatever the new block held before
    the remap, every oracle that meets it (torn COW, durability, stale exposure, a crash-free read)
    names the remap that exposed it."""
    causes: set[Cause] = set()
    for cil in ("lazy", "eager"):
        v = check(make_target(COW_SKIP.format(cil=cil)), parse(text), EXHAUSTIVE)
        causes |= {f.root_cause for f in filed(v.findings)}
    assert causes == {REMAPPED}


@pytest.mark.parametrize("text", COW_SKIP_RUNS)
def test_the_same_copies_on_write_are_clean_on_the_correct_design(text: str) -> None:
    for cil in ("lazy", "eager"):
        assert check(make_target(f"daxfs design=zero cil={cil}"), parse(text), EXHAUSTIVE).findings == ()


@pytest.mark.parametrize(
    ("text", "cause"),
    [
        ("create f2\nwrite f2 4 8\n", ALLOCATED),
        ("create f0\ncreate f1\nwrite f1 0 16\nreflink f1 f0\nwrite f0 0 1\n", REMAPPED),
    ],
)
def test_an_unzeroed_allocation_and_an_unfilled_copy_are_two_causes(text: str, cause: Cause) -> None:
    """The same media shows for both bugs (both on here); what made the block reachable tells them apart."""
    v = check(make_target("daxfs design=zero bugs=no-zero,cow-skip-tail-copy cil=eager"), parse(text), EXHAUSTIVE)
    assert {f.root_cause for f in filed(v.findings)} == {cause}


def test_a_word_two_racing_stores_tore_in_a_shared_block_is_the_other_files_write() -> None:
    """write-fault-shared-no-cow: a store through f0's mapping lands in the block f2 still shares,
    inside a word f2's own write began; after a crash f2 shows the torn word. No one store wrote
    it, yet every byte was written: by the op on the file sharing the block."""
    text = (
        "# pmfuzz reproducer v1\n# target: daxfs design=zero bugs=write-fault-shared-no-cow cil=eager\n"
        "# crash: F35\n# schedule: 7=1\n"
        "create f1\nstore m0 4764 4096\ncreate f0\ncreate f2\nwrite f2 0 8192\nreflink f2 f0\n"
        "mmap m0 f0 0 8192\nparallel { write f0 100 100 ; store m0 100 100 }\n"
    )
    v = run_reproducer(parse_reproducer(text))
    stale = [f for f in v.findings if f.oracle is OracleName.STALE_EXPOSURE]
    assert stale and {f.root_cause for f in stale} == {Cause(OracleName.FUNCTIONAL, How.CONTENT, ELSEWHERE)}
    fixed = run_reproducer(parse_reproducer(text.replace("bugs=write-fault-shared-no-cow ", "")))
    assert fixed.findings == ()


class _BadExtents:
    """daxfs whose mounted fs lists extents that are not extents."""

    def __init__(self) -> None:
        self.inner = make_target("daxfs design=zero")

    def __getattr__(self, name: str):
        return getattr(self.inner, name)

    def mount(self, pm):
        fs = self.inner.mount(pm)

        class Mounted:
            def __getattr__(self, name: str):
                return getattr(fs, name)

            def file_extents(self, name: str):
                return [(0, 4096, 4096, "written")]

        return Mounted()


def test_extents_that_are_not_extents_are_a_target_error() -> None:
    v = check(_BadExtents(), parse("create f0\nwrite f0 0 1\n"), Options())
    assert [f.oracle for f in v.findings] == [OracleName.TARGET_ERROR]
    assert "file_extents('f0') returned (0, 4096, 4096, 'written')" in v.findings[0].message


UNSHARE = "create f2\nwrite f2 0 8\ncreate f1\nreflink f2 f1\nfallocate f1 0 1 unshare-range\n"
COPIES = [
    # the order: the remap is logged before the copy is flushed
    ("cow-remap-before-copy", "create f0\ncreate f1\nwrite f1 0 2\nreflink f1 f0\nwrite f0 0 8\n", "lost", "data"),
    # a flush missing from one copy path: the copy on write's edges, the unshare's copy
    (
        "cow-edges-unflushed",
        "create f0\ncreate f1\nwrite f1 0 64\nreflink f1 f0\nwrite f0 64 1\n",
        "lost",
        "unflushed dax_iomap_copy_around",
    ),
    ("unshare-copy-unflushed", UNSHARE, "lost", "unflushed dax_unshare_iter"),
    # a copy that never covered the block, by the path that remapped it
    ("unshare-partial-copy", UNSHARE.replace("write f2 0 8", "write f2 0 2"), "never-written", "unshared"),
    (
        "cow-skip-tail-copy",
        "create f0\ncreate f1\nwrite f1 0 16\nreflink f1 f0\nwrite f0 0 1\n",
        "never-written",
        "remapped",
    ),
]


def test_an_unshare_remaps_as_unshared() -> None:
    assert _log("daxfs design=zero", UNSHARE)[-1] == ("f1", 0, Reach.UNSHARED, 4)


@pytest.mark.parametrize(("bug", "text", "how", "where"), COPIES)
def test_each_copy_on_write_bug_is_its_own_cause(bug: str, text: str, how: str, where: str) -> None:
    """Five bugs that all expose a copy on write's new block before it holds its data: the order
    (the remap first), a flush missing from one copy path, a copy that covers too little. Each
    names its own cause, and none names another's (the mixed campaigns' groups = bugs)."""
    v = check(make_target(f"daxfs design=zero bugs={bug} cil=eager"), parse(text), EXHAUSTIVE)
    causes = {f.root_cause for f in filed(v.findings)}
    assert causes and {(c.how.value, c.where) for c in causes} == {(how, where)}
    assert check(make_target("daxfs design=zero cil=eager"), parse(text), EXHAUSTIVE).findings == ()


def test_a_block_an_op_mapped_and_a_racing_truncate_freed_is_named_by_that_op() -> None:
    """convert-before-persist: a store's fault allocates and converts the block, a racing truncate
    frees it before the group ends; the crash inside the group recovers it mapped, a mapping the
    log's op boundaries never saw. The maps before the group say how it came: allocated."""
    text = (
        "# pmfuzz reproducer v1\n# target: daxfs design=unwritten bugs=convert-before-persist cil=eager\n"
        "# crash: F17\n# schedule: 3=1\n"
        "create f2\ntruncate f2 2\nmmap m0 f2 0 1\nparallel { truncate f2 0 ; store m0 0 1 }\n"
    )
    v = run_reproducer(parse_reproducer(text))
    assert v.findings and {f.root_cause for f in v.findings} == {ALLOCATED}
    fixed = run_reproducer(parse_reproducer(text.replace("bugs=convert-before-persist ", "")))
    assert fixed.findings == ()


RACING_COPY = (
    "# pmfuzz reproducer v1\n# target: daxfs design=zero bugs=cow-remap-before-copy cil=lazy\n"
    "# crash: F2\n# schedule: 5=1x3,0\n"
    "create f1\ncreate f0\nwrite f0 0 2\nreflink f0 f1\nmmap m1 f1 0 1 sync\n"
    "parallel { fault m1 0 write ; write f1 0 1 }\n"
)
REMAP_BEFORE_STORES = (
    "# pmfuzz reproducer v1\n# target: daxfs design=zero bugs=cow-remap-before-copy cil=lazy\n"
    "# crash: F2\n# schedule: 5=1x3,0\n"
    "create f0\ncreate f1\nwrite f1 0 8192\nreflink f1 f0\nmmap m1 f0 0 8192 sync\n"
    "parallel { write f0 4096 4096 ; store m1 4096 4096 }\n"
)
DATA_BESIDE_STORE = (
    "# pmfuzz reproducer v1\n# target: daxfs design=zero bugs=cow-remap-before-copy cil=lazy\n"
    "# crash: F5:L5632=x0\n# schedule: 5=1x3,0\n"
    "create f2\ncreate f0\nwrite f0 0 6000\nreflink f0 f2\nmmap m1 f2 0 8192 sync\n"
    "parallel { write f2 4096 64 ; store m1 4096 1 }\nfsync f2\n"
)
REMAP_TRUNCATED = (
    "# pmfuzz reproducer v1\n# target: daxfs design=zero bugs=cow-remap-before-copy cil=eager\n"
    "# crash: F40:L5568=1\n# schedule: -\n"
    "create f0\ncreate f2\nwrite f2 0 2\nreflink f2 f0\nparallel { write f0 0 2 ; truncate f0 0 }\n"
)
FLUSHED_BY_A_RACER = (
    "# pmfuzz reproducer v1\n# target: daxfs design=zero bugs=cow-edges-unflushed cil=lazy\n"
    "# crash: F2:L5633=0\n# schedule: 7=1\n"
    "create f1\nfsync f0\ncreate f2\ncreate f0\nwrite f0 0 6000\nreflink f0 f2\nmmap m1 f2 0 8192 sync\n"
    "parallel { write f2 4096 100 ; store m1 4096 100 }\nfsync f2\n"
)
EDGE_NOT_YET_COPIED = (
    "# pmfuzz reproducer v1\n# target: daxfs design=zero bugs=cow-edges-unflushed,cow-remap-before-copy cil=eager\n"
    "# crash: F37\ncreate f0\ncreate f1\nwrite f1 0 8\nreflink f1 f0\nwrite f0 8 8\n"
)
EDGE_BESIDE_DATA = (
    "# pmfuzz reproducer v1\n# target: daxfs design=zero bugs=cow-edges-unflushed cil=eager\n# crash: F37:L5569=0\n"
    "create f0\ncreate f1\nwrite f1 0 128\nreflink f1 f0\nwrite f0 0 1\n"
)
UNFLUSHED_STORE = (
    "# pmfuzz reproducer v1\n# target: daxfs design=zero bugs=fsync-no-flush cil=lazy\n# crash: E:L5568=0\n"
    "create f2\nwrite f2 0 4\ncreate f1\nreflink f2 f1\nmmap m0 f2 0 1\nstore m0 0 4\nfsync f2\n"
)


@pytest.mark.parametrize(
    ("text", "bug", "cause"),
    [
        # the copy a racing op of the group issues after the remap the crash kept is lost as much
        (RACING_COPY, "cow-remap-before-copy", Cause(OracleName.STALE_EXPOSURE, How.LOST, "data")),
        # the sync fault's log force commits the remap before either store into the new block: the
        # racing store's own data is not owed, the remapping write's, issued after it, is
        (REMAP_BEFORE_STORES, "cow-remap-before-copy", Cause(OracleName.STALE_EXPOSURE, How.LOST, "data")),
        # the line lost both the racing store's own byte and, after it, the remapping write's data
        (DATA_BESIDE_STORE, "cow-remap-before-copy", Cause(OracleName.STALE_EXPOSURE, How.LOST, "data")),
        # the remap committed before the copy was issued: the order's loss, though no flush would
        # have followed the copy either (the two bugs on at once)
        (
            EDGE_NOT_YET_COPIED,
            "cow-edges-unflushed,cow-remap-before-copy",
            Cause(OracleName.STALE_EXPOSURE, How.LOST, "data"),
        ),
        # a racing truncate undid the remap by the group's end: the maps before the group say it was one
        (REMAP_TRUNCATED, "cow-remap-before-copy", Cause(OracleName.STALE_EXPOSURE, How.LOST, "data")),
        # the racing write flushed the line the fault's copy left unflushed: not the copy's own flush
        (
            FLUSHED_BY_A_RACER,
            "cow-edges-unflushed",
            Cause(OracleName.STALE_EXPOSURE, How.LOST, "unflushed dax_iomap_copy_around"),
        ),
        # the write's flushed byte shares the edge's first line; the second line, never flushed, is lost
        (
            EDGE_BESIDE_DATA,
            "cow-edges-unflushed",
            Cause(OracleName.STALE_EXPOSURE, How.LOST, "unflushed dax_iomap_copy_around"),
        ),
        # a store's own data after its fault copied the block: what fsync was to make durable
        (UNFLUSHED_STORE, "fsync-no-flush", Cause(OracleName.DURABILITY, How.LOST, "data")),
    ],
)
def test_a_lost_store_in_a_copied_block_is_named_by_what_was_owed(text: str, bug: str, cause: Cause) -> None:
    v = run_reproducer(parse_reproducer(text))
    causes = {f.root_cause for f in v.findings}
    assert cause in causes and {(c.how, c.where) for c in causes} == {(cause.how, cause.where)}  # torn COW too
    fixed = "".join(ln for ln in text.replace(f"bugs={bug} ", "").splitlines(True) if not ln.startswith("# crash:"))
    assert run_reproducer(parse_reproducer(fixed)).findings == ()  # every crash point of the fixed design


def test_a_block_a_log_replay_made_written_is_named_by_the_reordered_log() -> None:
    """journal-commit-no-fence: the reordered log replays an unwritten preallocation as written;
    no op made it readable, so its media is not named after one (no-zero's `allocated`) but after
    the log store the crash dropped under the commit -- the cause the mount rules give the same bug."""
    text = (
        "# pmfuzz reproducer v1\n# target: daxfs design=zero bugs=journal-commit-no-fence cil=eager\n"
        "# crash: F17:L66=x7f\n"
        "create f1\nfallocate f1 0 12288\nmmap m1 f1 0 6144\nstore m1 4096 1\nfallocate f1 0 4096 zero-range\n"
    )
    v = run_reproducer(parse_reproducer(text))
    stale = [f for f in v.findings if f.oracle is OracleName.STALE_EXPOSURE]
    assert stale and {f.root_cause for f in stale} == {Cause(OracleName.MOUNT, How.REORDERED, "xlog.log_write")}
    fixed = "".join(
        ln for ln in text.replace("bugs=journal-commit-no-fence ", "").splitlines(True) if "crash:" not in ln
    )
    assert run_reproducer(parse_reproducer(fixed)).findings == ()


@pytest.mark.parametrize(
    ("bugs", "text", "cause"),
    [
        # zero-after-commit: a zero-range over a shared extent remaps a new block and zeroes it
        # after the commit; the zeroing, not a copy, is what the crash lost
        (
            "fsync-no-flush,refcount-not-journaled,zero-after-commit",
            "# crash: F50\n# schedule: 5=1\ncreate f1\ncreate f2\nwrite f1 0 1\nreflink f1 f2\nmmap m1 f2 0 1\n"
            "parallel { fault m1 0 write ; fallocate f2 0 4096 zero-range }\n",
            Cause(OracleName.STALE_EXPOSURE, How.LOST, "xfs_zero_extent"),
        ),
        # cow-skip-tail-copy: a store's own data, left to a later persist, is lost; what the copy
        # never covered shows
        (
            "cow-skip-tail-copy",
            "# crash: F42\n# schedule: -\ncreate f1\nfsync f0\ncreate f2\ncreate f0\nwrite f0 0 6000\n"
            "reflink f0 f2\nmmap m1 f2 0 8192 sync\nparallel { write f2 4096 100 ; store m1 4096 100 }\nfsync f2\n",
            REMAPPED,
        ),
        # map-sync-no-commit: the sync fault's copy on write is not logged; the durable store reads
        # from the old block after recovery -- the block map did not hold
        (
            "map-sync-no-commit",
            "# crash: E\ncreate f1\ncreate f0\nwrite f0 0 4\nfsync f0\nreflink f0 f1\nmmap m0 f0 0 1 sync\n"
            "store m0 0 4\npersist m0 0 8\n",
            Cause(OracleName.DURABILITY, How.METADATA, ""),
        ),
    ],
)
def test_what_the_crash_lost_in_a_copied_block_is_named_by_its_kind(bugs: str, text: str, cause: Cause) -> None:
    cil = "lazy" if "map-sync" in bugs else "eager"
    head = f"# pmfuzz reproducer v1\n# target: daxfs design=zero bugs={bugs} cil={cil}\n"
    v = run_reproducer(parse_reproducer(head + text))
    assert {f.root_cause for f in filed(v.findings) if f.crash is not None} == {cause}
    fixed = "".join(ln for ln in text.splitlines(True) if not ln.startswith("# crash:"))
    assert run_reproducer(parse_reproducer(head.replace(f"bugs={bugs} ", "") + fixed)).findings == ()


def test_an_old_incarnation_recovered_is_not_a_remap_that_did_not_hold() -> None:
    """fsync-no-flush: f1 is unlinked and made again; a crash in the second fsync recovers the old
    f1, whose block the new one never had. No copy on write moved it: the data, not the block
    map, is what the fsync did not make durable."""
    text = (
        "# pmfuzz reproducer v1\n# target: daxfs design=zero bugs=fsync-no-flush cil=lazy\n# crash: F5:L5504=0\n"
        "create f1\ntruncate f1 4\nmmap m1 f1 0 1\nstore m1 0 4\nfsync f1\nunlink f1\ncreate f1\nwrite f1 0 4\n"
        "fsync f1\n"
    )
    v = run_reproducer(parse_reproducer(text))
    assert v.findings and {f.root_cause for f in v.findings} == {Cause(OracleName.DURABILITY, How.LOST, "data")}
