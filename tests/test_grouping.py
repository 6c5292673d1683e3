"""One cause per bug where the evidence is a rule, a crash-free divergence or a torn word.

A journal that commits before its records are durable breaks a different fsck rule in every
state; a copy on write that writes in place changes the other file through whatever path the
write took; a truncate that zeroes a shared block in place tears a word at EOF. Each is one
cause, named by what the evidence knows, never by which block, inode or bytes it happened to hit.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from oracles import ELSEWHERE, OracleName
from pmfuzz.execution.reach import Reach
from pmfuzz.fuzzing.minimize import NotReproduced, minimize
from pmfuzz.fuzzing.replaying import run_reproducer
from pmfuzz.judging.cause import reordered_store
from pmfuzz.judging.engine import Options, check, execute
from pmfuzz.judging.repro import parse_reproducer
from pmfuzz.lang.workload import parse
from pmfuzz.pmem import Strategy
from pmfuzz.signature import Cause, How
from pmfuzz.target import make_target
from pmfuzz.verdict import Finding, filed, link_alike

EXHAUSTIVE = Options(max_states=64, exhaustive_upto=64, log_states=True)
LOG_PUSH = "create f0\nwrite f0 0 4\ncreate f1\nwrite f1 0 4\nfsync f1\n"
SHARED = "create f0\nwrite f0 0 16\ncreate f1\nreflink f0 f1\n"
COW_IN_PLACE = "daxfs design=zero bugs=cow-in-place cil=eager"
COW_WRITE_SHORT = "create f0\nwrite f0 0 8192\nfsync f0\ncreate f1\nreflink f0 f1\nwrite f1 100 5000\nfsync f1\n"


def _verdict(spec: str, text: str):
    return check(make_target(spec), parse(text), EXHAUSTIVE)


def _causes(spec: str, text: str, oracle: OracleName | None = None) -> set[Cause]:
    return {f.root_cause for f in _verdict(spec, text).findings if oracle is None or f.oracle is oracle}


def test_a_commit_kept_over_its_records_is_one_cause_whatever_rule_it_broke() -> None:
    v = _verdict("daxfs design=zero bugs=journal-commit-no-fence cil=eager", LOG_PUSH)
    mount = [f for f in v.findings if f.oracle is OracleName.MOUNT]
    assert mount, "the workload must break the journal"
    assert {f.root_cause for f in mount} == {Cause(OracleName.MOUNT, How.REORDERED, "xlog.log_write")}


def test_metadata_written_home_ahead_of_its_transaction_names_that_store() -> None:
    """Refcounts written in place reach media before the log does: a prefix of the program order,
    nothing reordered; the cause is the in-place store, whichever fsck rule the mismatch broke."""
    seen: set[Cause] = set()
    for text in (SHARED + "fsync f1\n", SHARED + "fsync f1\nunlink f0\nsync\n", COW_WRITE_SHORT):
        seen |= _causes("daxfs design=zero bugs=refcount-not-journaled cil=eager", text, OracleName.MOUNT)
    assert seen == {Cause(OracleName.MOUNT, How.WRITTEN, "refcount_update_in_place")}


def test_the_data_of_a_state_whose_metadata_breaks_a_rule_is_not_judged() -> None:
    v = _verdict("daxfs design=zero bugs=journal-commit-no-fence cil=eager", LOG_PUSH)
    broken = [msgs for _, msgs in v.state_log if any(m.startswith("mount") for m in msgs)]
    assert broken
    assert all(all(m.startswith("mount") for m in msgs) for msgs in broken)


def test_a_correct_journal_has_no_reordering_that_breaks_a_rule() -> None:
    assert not _verdict("daxfs design=zero cil=eager", LOG_PUSH).findings


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 1 << 30))
def test_the_reordered_store_is_the_earliest_dropped_under_a_later_kept_one(seed: int) -> None:
    """Against the definition, by brute force over every unit of every group of a state."""
    run = execute(make_target("daxfs design=zero cil=eager"), parse(LOG_PUSH), Options())
    points = run.crash_points()
    point = points[seed % len(points)]
    trace = point.timeline.events
    for state in point.states(Strategy.BOUNDED, seed=seed, limit=16):
        units = []
        for gi, g in enumerate(point.groups):
            kept = set(g.kept(state.choices[gi]))
            units += [(u.piece.seq, j in kept) for j, u in enumerate(g.units)]
        dropped_under = [s for s, k in units if not k and any(k2 and s2 > s for s2, k2 in units)]
        got = reordered_store(point, state, range(len(point.groups)), trace)
        want = trace[min(dropped_under)] if dropped_under else None
        assert got is want


@pytest.mark.parametrize(
    "op",
    ["write f1 0 4", "truncate f1 1", "fallocate f1 0 8 zero-range keep-size", "mmap m0 f1 0 1\nstore m0 0 4"],
)
def test_an_op_that_changes_another_file_is_one_cause_whichever_kernel_path(op: str) -> None:
    """cow-in-place writes a shared block in place through write(2), a write fault and zeroing alike."""
    causes = _causes(COW_IN_PLACE, SHARED + op + "\n", OracleName.FUNCTIONAL)
    assert causes == {Cause(OracleName.FUNCTIONAL, How.CONTENT, ELSEWHERE)}


def test_both_bugs_that_write_a_shared_block_through_a_fault_name_the_fault_path() -> None:
    text = SHARED + "mmap m0 f1 0 1\nstore m0 0 4\n"
    a = _causes(COW_IN_PLACE, text, OracleName.FUNCTIONAL)
    b = _causes("daxfs design=zero bugs=write-fault-shared-no-cow cil=eager", text, OracleName.FUNCTIONAL)
    assert a == b == {Cause(OracleName.FUNCTIONAL, How.CONTENT, ELSEWHERE)}


def test_a_wrong_read_of_the_file_the_op_changed_is_named_by_what_it_read() -> None:
    causes = _causes(
        "daxfs design=zero bugs=truncate-no-zero-tail cil=eager",
        "create f0\nwrite f0 0 4096\nmmap m0 f0 0 1\ntruncate f0 100\n",
        OracleName.FUNCTIONAL,
    )
    assert causes and all(c.how is How.CONTENT and "another file" not in c.where for c in causes)


def test_a_crash_inside_the_diverging_op_links_to_the_divergence() -> None:
    """The truncate zeroes the shared block in place: read crash-free, the other file changed; a
    crash in the middle leaves it half zeroed. Both are the zeroing's doing: one group."""
    found = [f for f in _verdict(COW_IN_PLACE, SHARED + "truncate f1 1\n").findings if f.crash is not None]
    div = Cause(OracleName.FUNCTIONAL, How.CONTENT, ELSEWHERE)
    inside = [f for f in found if f.crash.op == 4 and f.crash.point != "E"]
    assert inside and all(div in f.also for f in inside)
    assert all(div not in f.also for f in found if f.crash.point == "E")


def test_a_word_torn_at_eof_names_the_store_that_wrote_its_bytes() -> None:
    """f1's write lands in place one byte into f0's 4-byte file: f0's word is one byte of its own
    data and three of f1's, cut at EOF. Every byte was written: the cause is the write to the file
    that shares the block (the cause its crash-free read has), not media nobody wrote."""
    text = "create f1\ncreate f0\nwrite f0 0 4\nreflink f0 f1\nwrite f1 1 4096\n"
    stale = [f for f in _verdict(COW_IN_PLACE, text).findings if f.oracle is OracleName.STALE_EXPOSURE]
    assert stale and {f.root_cause for f in stale} == {Cause(OracleName.FUNCTIONAL, How.CONTENT, ELSEWHERE)}


def test_a_word_half_written_over_media_nobody_wrote_is_never_written() -> None:
    """A write 4 bytes into a block nobody zeroed: the word holds 4 bytes of media nobody wrote."""
    text = "create f0\nwrite f0 4 8\nfsync f0\n"
    stale = _causes("daxfs design=zero bugs=no-zero cil=eager", text, OracleName.STALE_EXPOSURE)
    assert stale == {Cause(OracleName.STALE_EXPOSURE, How.NEVER_WRITTEN, Reach.ALLOCATED.value)}


def _finding(oracle: OracleName, op: int) -> Finding:
    return Finding(oracle, "m", (), op, "op", "write", "")


def test_a_mapping_incoherence_after_the_divergence_is_not_filed() -> None:
    div = _finding(OracleName.FUNCTIONAL, 3)
    same_op, later = _finding(OracleName.MMAP_COHERENCY, 3), _finding(OracleName.MMAP_COHERENCY, 5)
    assert filed((div, same_op, later)) == (div, same_op)
    assert filed((same_op, later)) == (same_op, later)


def test_a_minimized_finding_is_still_one_a_campaign_files() -> None:
    """A crash inside the diverging op is filed; the minimizer keeps it filed, and an older
    reproducer's crash after the divergence (which a campaign no longer files) still shrinks."""
    text = "create f0\ncreate f2\nwrite f0 0 16\nfsync f0\ncreate f1\nreflink f0 f1\ntruncate f1 1\n"
    v = _verdict(COW_IN_PLACE, text)
    inside = next(f for f in filed(v.findings) if f.crash is not None)
    m = minimize(make_target(COW_IN_PLACE), parse(text), inside.signature)
    assert len(m.workload.ops) < len(parse(text).ops)
    again = check(make_target(COW_IN_PLACE), m.workload, Options())
    assert any(f.signature == inside.signature for f in filed(again.findings))
    after = next(f for f in v.findings if f.crash is not None and f.crash.point == "E")
    assert after not in filed(v.findings)
    assert minimize(make_target(COW_IN_PLACE), parse(text), after.signature).finding.signature == after.signature


@pytest.mark.parametrize(
    ("bug", "group"),
    [
        ("cow-in-place", "write f0 0 4 ; fallocate f0 0 1"),
        ("write-fault-shared-no-cow", "fallocate f0 0 1 ; store m1 0 4"),
    ],
)
def test_a_race_no_serial_order_explains_is_named_by_the_op_that_wrote_the_bytes(bug: str, group: str) -> None:
    """The group changed f1, which none of its ops names: the op whose store the device holds
    there wrote in place -- the cause the same write has outside a group."""
    text = (
        f"# pmfuzz reproducer v1\n# target: daxfs design=zero bugs={bug} cil=eager\n# schedule: -\n"
        f"create f0\ncreate f1\nwrite f1 0 4\nreflink f1 f0\nmmap m1 f0 0 1\nparallel {{ {group} }}\n"
    )
    v = run_reproducer(parse_reproducer(text))
    race = [f for f in v.findings if f.oracle is OracleName.FUNCTIONAL and "no serial order" in f.message]
    assert race and {f.root_cause for f in race} == {Cause(OracleName.FUNCTIONAL, How.CONTENT, ELSEWHERE)}


def test_a_read_and_a_mapping_that_see_one_wrong_block_after_one_op_are_one_cause() -> None:
    """The write lands on the block while the huge zero page stays mapped: loads through the
    mapping disagree with POSIX and with read(2) after the same op, for the same reason -- the
    entry the allocating write left in place -- which both findings name."""
    text = "create f0\ntruncate f0 4194304\nmmap m0 f0 0 4194304\nfault m0 0 read pmd\nwrite f0 0 4096\n"
    v = _verdict("daxfs design=zero bugs=write-keeps-huge-zero-page cil=lazy", text)
    free = {f.oracle: f for f in v.findings if f.crash is None}
    fn, mc = free[OracleName.FUNCTIONAL], free[OracleName.MMAP_COHERENCY]
    assert fn.root_cause == mc.root_cause == Cause(OracleName.MMAP_COHERENCY, How.PAGE_TABLE, "kept over allocated")


def test_link_alike_links_only_the_same_content_after_the_same_op() -> None:
    def free(oracle: OracleName, op: int, where: str) -> Finding:
        return Finding(oracle, "m", (), op, "op", "write", "", cause=Cause(oracle, How.CONTENT, where))

    a, b = free(OracleName.FUNCTIONAL, 3, "zero for data"), free(OracleName.MMAP_COHERENCY, 3, "zero for data")
    other_op, other_kind = (
        free(OracleName.MMAP_COHERENCY, 4, "zero for data"),
        free(OracleName.MMAP_COHERENCY, 3, "garbage"),
    )
    out = link_alike((a, b, other_op, other_kind))
    assert out[0].also == (b.cause,) and out[1].also == (a.cause,)
    assert out[2].also == () and out[3].also == ()


@given(st.integers(0, 1 << 12), st.integers(1, 7))
def test_a_word_cut_by_eof_is_due_zero_past_eof(op: int, cut: int) -> None:
    """The mapping shows a whole word of data where POSIX wants data up to EOF and zeroes after:
    what differs is nonzero bytes where zeroes were due."""
    from oracles._words import content_cause
    from pmfuzz.lang.data import payload

    got = payload(1, op % 4096, 64, 8)
    want = got[:cut] + bytes(8 - cut)
    assert content_cause(got, want) == "data for zero"
    assert content_cause(want, got) == "zero for data"


COW_WRITE = "create f0\nwrite f0 0 8192\nfsync f0\ncreate f1\nreflink f0 f1\nwrite f1 100 5000\nfsync f1\n"


@pytest.mark.parametrize("cil", ["lazy", "eager"])
def test_a_torn_copy_on_write_names_the_store_that_tore_it_not_its_first_word(cil: str) -> None:
    """cow-edges-unflushed drops the copied head or tail of the block; the block's first word may
    be one the copy got right, yet the cause is the copy nothing flushed (the write's own flushed
    bytes share a line with the head's end, not with the line the crash lost)."""
    v = _verdict(f"daxfs design=zero bugs=cow-edges-unflushed cil={cil}", COW_WRITE)
    cow = {f.root_cause for f in filed(v.findings) if f.oracle is OracleName.COW_ATOMICITY}
    assert cow == {Cause(OracleName.COW_ATOMICITY, How.LOST, "unflushed dax_iomap_copy_around")}
    assert _verdict(f"daxfs design=zero cil={cil}", COW_WRITE).findings == ()


def test_a_crash_in_the_diverging_op_links_only_to_what_it_shows_again() -> None:
    """A generic divergence (`garbage`) is linked only by the same device word; a divergence into
    another file also by a store of that op; a store of another op that covers no such word, never."""
    from types import SimpleNamespace

    from pmfuzz.judging.links import divergence_links
    from pmfuzz.pmem import Event, EventKind

    garbage = Cause(OracleName.FUNCTIONAL, How.CONTENT, "garbage")
    elsewhere = Cause(OracleName.FUNCTIONAL, How.CONTENT, ELSEWHERE)
    events = (
        Event(0, EventKind.STORE, 0x1000, 64, b"x" * 64, op=1, site="w"),
        Event(1, EventKind.STORE, 0x2000, 64, b"x" * 64, op=2, site="w"),
    )
    point = SimpleNamespace(op=2, timeline=SimpleNamespace(events=events))
    words = {0x2008: garbage}
    assert divergence_links(point, ("word", 0x2008), words, (elsewhere,)) == (garbage,)
    assert divergence_links(point, ("word", 0x3000), words, (elsewhere,)) == ()
    assert divergence_links(point, ("store", 1), words, (elsewhere,)) == tuple(sorted((garbage, elsewhere), key=str))
    assert divergence_links(point, ("store", 0), words, (elsewhere,)) == ()


def test_causes_that_blame_one_store_in_different_states_are_linked() -> None:
    from pmfuzz.judging.links import link_blamed
    from pmfuzz.verdict import CrashSite

    def crashed(oracle: OracleName, where: str) -> Finding:
        site = CrashSite("F1", None, 2, "op", "sfence", "s", (), 1)
        return Finding(oracle, "m", (), 2, "op", "write", "s", site, cause=Cause(oracle, How.LOST, where))

    a, b, c = (
        crashed(OracleName.DURABILITY, "data"),
        crashed(OracleName.STALE_EXPOSURE, "data"),
        crashed(OracleName.COW_ATOMICITY, "data"),
    )
    out = link_blamed((a, b, c), {("store", 7): {a.cause, b.cause}, ("store", 9): {c.cause}})
    assert out[0].also == (b.cause,) and out[1].also == (a.cause,) and out[2].also == ()


def test_a_copy_that_never_covered_part_of_the_block_is_media_nobody_wrote() -> None:
    """cow-skip-tail-copy drops no store: it never issues the tail's copy. The torn block's cause
    is its first word nobody wrote, not its first word (which the copy got right): media nobody
    wrote, the cause the stale exposure of that word has too."""
    v = _verdict("daxfs design=zero bugs=cow-skip-tail-copy cil=eager", COW_WRITE)
    cow = {f.root_cause for f in filed(v.findings) if f.oracle is OracleName.COW_ATOMICITY}
    assert cow == {Cause(OracleName.STALE_EXPOSURE, How.NEVER_WRITTEN, Reach.REMAPPED.value)}


def test_a_wrong_read_of_a_file_no_store_of_the_op_reached_is_named_by_what_it_read() -> None:
    """no-zero's truncate racing a store into a fresh block leaves media nobody wrote in the
    file; neither op stored into another file's blocks, so it is garbage, not a broken sharing."""
    text = (
        "# pmfuzz reproducer v1\n# target: daxfs design=zero bugs=no-zero cil=eager\n# schedule: -\n"
        "create f0\nmmap m1 f0 0 1\nparallel { truncate f0 1 ; store m1 0 1 }\n"
    )
    v = run_reproducer(parse_reproducer(text))
    free = {f.root_cause for f in v.findings if f.crash is None}
    assert free and all("another file" not in c.where for c in free)


@pytest.mark.parametrize(
    "text",
    [
        "create f0\ntruncate f0 8192\nmmap m0 f0 0 8192\nfault m0 0 write\nstore m0 0 64\nfsync f0\n",
        "create f0\ntruncate f0 8192\nwrite f0 100 200\nfsync f0\n",
    ],
)
def test_a_new_blocks_lost_initialisation_is_one_cause_whichever_op_met_the_block(text: str) -> None:
    """convert-before-persist loses the fault's zeroing of a new block or a write's zeroing around
    its data as much as the data: the data path's own stores, whose loss a crash may cause on a
    correct design too; what the conversion exposed, media nobody wrote, is the one cause. The op
    took a hole and left a written block (its unwritten extent lived inside the op): allocated."""
    seen: set[Cause] = set()
    for cil in ("lazy", "eager"):
        v = _verdict(f"daxfs design=unwritten bugs=convert-before-persist cil={cil}", text)
        seen |= {f.root_cause for f in filed(v.findings) if f.oracle is OracleName.STALE_EXPOSURE}
    assert seen == {Cause(OracleName.STALE_EXPOSURE, How.NEVER_WRITTEN, Reach.ALLOCATED.value)}


def test_a_race_where_every_order_wanted_a_signal_is_the_signal_rule() -> None:
    """fault-eof-round-up maps the page past EOF in a group too: no order gives the results, and
    every order that differs wanted the SIGBUS the fault did not get -- the rule it has alone."""
    text = (
        "# pmfuzz reproducer v1\n# target: daxfs design=zero bugs=fault-eof-round-up cil=eager\n# schedule: -\n"
        "create f0\nwrite f0 0 4096\nmmap m0 f0 0 8192\nparallel { fault m0 1 read ; write f0 0 1 }\n"
    )
    v = run_reproducer(parse_reproducer(text))
    race = [f for f in v.findings if "no serial order" in f.message]
    assert race and {f.root_cause for f in race} == {
        Cause(OracleName.FUNCTIONAL, How.RULE, "an access did not get the SIGBUS POSIX says")
    }
    alone = _causes(
        "daxfs design=zero bugs=fault-eof-round-up cil=eager",
        text.split("# schedule: -\n")[1].replace("parallel { fault m0 1 read ; write f0 0 1 }", "fault m0 1 read"),
    )
    assert {c for c in alone if c.how is How.RULE} == {f.root_cause for f in race}


def test_a_race_whose_mapping_maps_a_page_every_order_leaves_past_eof_is_the_signal_rule() -> None:
    """fault-eof-round-up: a store faults in a page a racing truncate left wholly past EOF. The
    order with the store first gives the results but unmaps the page; the other wants the store's
    SIGBUS: every order wanted that signal, in a result or in a load through the mapping."""
    head = "# pmfuzz reproducer v1\n# target: daxfs design=zero{bugs} cil=lazy\n# schedule: -\n"
    body = "create f2\ntruncate f2 6000\nmmap m0 f2 0 8192\nparallel { truncate f2 2 ; store m0 4096 1 }\n"
    v = run_reproducer(parse_reproducer(head.format(bugs=" bugs=fault-eof-round-up") + body))
    race = [f for f in v.findings if "no serial order" in f.message]
    assert race and {f.root_cause for f in race} == {
        Cause(OracleName.FUNCTIONAL, How.RULE, "an access did not get the SIGBUS POSIX says")
    }
    assert run_reproducer(parse_reproducer(head.format(bugs="") + body)).findings == ()


def test_a_race_whose_read_returned_media_nobody_wrote_is_named_by_that_media() -> None:
    """no-zero: a read racing a write into a fresh block returns the block's media; no order gives
    that result, and the read's wrong bytes name the cause, as they do outside a group."""
    text = (
        "# pmfuzz reproducer v1\n# target: daxfs design=zero bugs=no-zero cil=eager\n"
        "create f0\ntruncate f0 8192\nparallel { write f0 100 8 ; read f0 0 200 }\n"
    )
    v = run_reproducer(parse_reproducer(text))
    race = [f for f in v.findings if "no serial order" in f.message]
    assert race and {f.root_cause for f in race} == {
        Cause(OracleName.STALE_EXPOSURE, How.NEVER_WRITTEN, Reach.ALLOCATED.value)
    }


def test_each_schedule_is_filed_against_its_own_divergence() -> None:
    """Schedule A left the reference at op 3; schedule B did not: B's later findings stay filed."""
    from dataclasses import replace

    div_a = replace(_finding(OracleName.FUNCTIONAL, 3), schedule="A")
    late_a = replace(_finding(OracleName.MMAP_COHERENCY, 5), schedule="A")
    late_b = replace(_finding(OracleName.MMAP_COHERENCY, 5), schedule="B")
    assert filed((div_a, late_a, late_b)) == (div_a, late_b)


def test_a_crash_in_the_diverging_op_that_shows_the_word_the_read_saw_wrong_links_to_it() -> None:
    """no-zero: the write into a fresh block reads back media nobody wrote crash-free; a crash in
    that write that shows the same device word is the same bug, and only such a crash links."""
    v = _verdict("daxfs design=zero bugs=no-zero cil=eager", "create f0\nwrite f0 4 8\nfsync f0\n")
    free = [f for f in v.findings if f.crash is None]
    assert free and all(f.word is not None for f in free)
    inside = [f for f in filed(v.findings) if f.crash is not None]
    assert inside and all({g.root_cause for g in free} & {f.root_cause, *f.also} for f in inside)


def test_a_minimized_reproducer_keeps_the_cause_it_is_filed_under() -> None:
    """The minimizer holds the cause as well as the signature: replaying the reproducer shows the
    `# cause:` it carries, not another cause the same crash site reached in a smaller workload."""
    text = "create f2\nwrite f2 0 8192\ncreate f0\nwrite f0 0 16\nfsync f0\ncreate f1\nreflink f0 f1\ntruncate f1 1\n"
    v = _verdict(COW_IN_PLACE, text)
    for f in filed(v.findings):
        m = minimize(make_target(COW_IN_PLACE), parse(text), f.signature, cause=f.root_cause)
        assert m.finding.root_cause == f.root_cause or f.root_cause in m.finding.also
    wrong = Cause(OracleName.FUNCTIONAL, How.CONTENT, "no such cause")
    with pytest.raises(NotReproduced, match="with cause"):
        minimize(make_target(COW_IN_PLACE), parse(text), filed(v.findings)[0].signature, cause=wrong)


def test_a_write_from_a_mapping_names_the_mapped_file_too() -> None:
    """A write(2) whose source is a mapping faults that file's pages in: a change it makes there is
    not a change to a file it does not name."""
    from oracles._words import elsewhere_cause
    from pmfuzz.lang.workload import Write
    from pmfuzz.reference.model import Reference

    target = make_target("daxfs design=zero cil=eager")
    ref = Reference.for_target(target)
    for i, op in enumerate(parse("create f0\ncreate f1\ntruncate f1 8192\nmmap m1 f1 0 8192\n").ops):
        ref.apply(i, op)
    assert elsewhere_cause(Write("f0", 0, 100, "m1", 0), ref, "f1") == ""
    assert elsewhere_cause(Write("f0", 0, 100), ref, "f1") == ELSEWHERE
