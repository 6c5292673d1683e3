"""Root causes: one bug is one cause wherever the crash fell; triage and replay --against from the command line."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from oracles import OracleName
from pmfuzz.errors import PmfuzzError
from pmfuzz.fuzzing.campaign import CampaignConfig, run_campaign
from pmfuzz.fuzzing.corpus import CrashDir
from pmfuzz.fuzzing.triage import format_triage, triage
from pmfuzz.judging.cause import _data_codes, _what_it_wrote
from pmfuzz.judging.engine import Options, check
from pmfuzz.judging.repro import Reproducer, format_reproducer, parse_reproducer
from pmfuzz.lang.data import payload
from pmfuzz.lang.workload import parse
from pmfuzz.pmem import Event, EventKind, StateId
from pmfuzz.signature import Cause, How, oracle_of, rule_of
from pmfuzz.target import TargetSpec, make_target
from pmfuzz.verdict import CrashSite, Finding, Findings

ROOT = Path(__file__).resolve().parent.parent

ZERO_AFTER_COMMIT = """create f0
truncate f0 8192
write f0 100 200
fsync f0
create f1
mmap m0 f1 0 4096 sync
truncate f1 4096
fault m0 0 write
store m0 0 64
persist m0 0 64
"""
ZAC = "daxfs design=zero bugs=zero-after-commit cil=eager"


def all_findings(spec: str, text: str) -> list:
    """Every finding of every crash site (one per signature, each its least deviating state)."""
    v = check(make_target(spec), parse(text), Options(max_states=64, exhaustive_upto=64))
    return list(v.findings)


def test_one_bug_is_one_cause_at_every_crash_site() -> None:
    stale = [f for f in all_findings(ZAC, ZERO_AFTER_COMMIT) if f.oracle is OracleName.STALE_EXPOSURE]
    assert len({f.signature for f in stale}) >= 3, "the workload must reveal the bug at several crash sites"
    assert len({f.op_kind for f in stale}) >= 3, "through the write, the fault and the fsync or persist after them"
    assert {f.root_cause for f in stale} == {Cause(OracleName.STALE_EXPOSURE, How.LOST, "xfs_zero_extent")}


def test_the_cause_names_the_lost_store_of_each_bug() -> None:
    """Different bugs, different causes: the store each one fails to make durable in time."""
    fsync = all_findings(
        "daxfs design=zero bugs=fsync-no-flush cil=lazy",
        "create f0\nwrite f0 0 4096\nfsync f0\nmmap m0 f0 0 4096\nstore m0 0 64\nfsync f0\n",
    )
    causes = {f.root_cause for f in fsync if f.oracle is OracleName.DURABILITY}
    assert causes == {Cause(OracleName.DURABILITY, How.LOST, "data")}
    cow = all_findings(
        "daxfs design=zero bugs=cow-remap-before-copy cil=eager",
        "create f0\nwrite f0 0 8192\nfsync f0\ncreate f1\nreflink f0 f1\nwrite f1 100 200\nfsync f1\n",
    )
    cow_causes = {f.root_cause for f in cow if f.oracle is OracleName.COW_ATOMICITY}
    assert cow_causes == {Cause(OracleName.COW_ATOMICITY, How.LOST, "data")}


def test_a_correct_design_has_no_cause_to_report() -> None:
    assert all_findings("daxfs design=zero cil=eager", ZERO_AFTER_COMMIT) == []


@given(
    st.sampled_from(list(OracleName)),
    st.sampled_from(list(How)),
    st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=40).filter(lambda s: s.strip() == s),
)
def test_cause_text_round_trips(oracle: OracleName, how: How, where: str) -> None:
    c = Cause(oracle, how, where if where != "-" else "")
    assert Cause.parse(str(c)) == c
    assert oracle_of(str(c)) == oracle.value


def test_a_malformed_cause_is_one_clear_error() -> None:
    with pytest.raises(PmfuzzError, match="oracle/how/where"):
        Cause.parse("stale-exposure")
    with pytest.raises(PmfuzzError, match="names an oracle"):
        Cause.parse("no-such-oracle/lost/x")
    text = "# pmfuzz reproducer v1\n# cause: stale-exposure/sometimes/x\ncreate f0\n"
    with pytest.raises(PmfuzzError, match=r"^2: a cause.s second field is one of"):
        parse_reproducer(text)


@given(st.integers(0, 10**9), st.integers(0, 10**9), st.integers(0, 7), st.integers(0, 7))
def test_rules_do_not_depend_on_numbers_or_names(a: int, b: int, f: int, g: int) -> None:
    def msg(n: int, m: int, x: int) -> str:
        return f"fsck: block {n}: refcount {m} but mapped by f{x} (allowed: [{n}, {m}])"

    assert rule_of(msg(a, b, f)) == rule_of(msg(b, a, g)) == "fsck: block N: refcount N but mapped by F"


def test_a_signal_due_is_one_rule_whatever_op_met_it() -> None:
    seen = {
        rule_of("op 3 `fault m0 0 read` returned 0, POSIX says SIGBUS"),
        rule_of("op 7 `store m1 4096 8` returned 8, POSIX says SIGBUS"),
        rule_of("op 4 `persist m0 0 64` returned SIGSEGV, POSIX says SIGBUS"),
    }
    assert seen == {"an access did not get the SIGBUS POSIX says"}
    assert rule_of("op 5 `write f0 0 4 from m0 0` returned 4, POSIX says EFAULT") not in seen
    assert rule_of("op 2 `truncate f0 0` returned 0, POSIX says ENOSPC") != rule_of(
        "op 2 `write f0 0 1` returned 0, POSIX says ENOSPC"
    )


def test_rules_of_different_messages_differ() -> None:
    assert rule_of("f0 recovered with size 4096, older than durable") != rule_of("f0 is missing after recovery")


def pmfuzz(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pmfuzz", *args], capture_output=True, text=True, cwd=ROOT)


def old_style_directory(tmp: Path) -> list[str]:
    """A crashes directory as an older version wrote it: one reproducer per signature, no cause lines."""
    stale = [f for f in all_findings(ZAC, ZERO_AFTER_COMMIT) if f.oracle is OracleName.STALE_EXPOSURE]
    index = {}
    for i, f in enumerate(stale):
        r = Reproducer(
            parse(ZERO_AFTER_COMMIT),
            target=TargetSpec("daxfs", (("design", "zero"), ("bugs", "zero-after-commit"), ("cil", "eager"))),
            crash=f.crash.state,
            expect=("stale-exposure",),
            signature=f.signature,
        )
        (tmp / f"old{i}.pmfuzz").write_text(format_reproducer(r))
        index[str(f.signature)] = {"count": 3, "file": f"old{i}.pmfuzz", "first_seconds": float(i), "first_exec": i}
    (tmp / "findings.json").write_text(json.dumps(index))
    return [str(f.signature) for f in stale]


def test_triage_groups_an_older_directory_by_root_cause(tmp_path: Path) -> None:
    sigs = old_style_directory(tmp_path)
    assert len(sigs) >= 2
    res = pmfuzz("triage", str(tmp_path))
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0].startswith(f"1 root cause(s) in {tmp_path}/ ({len(sigs)} reproducer(s))")
    assert "stale-exposure/lost/xfs_zero_extent" in lines[2] and f"{3 * len(sigs)}" in lines[2].split()
    res = pmfuzz("triage", "--json", str(tmp_path))
    [group] = json.loads(res.stdout)["causes"]
    assert group["count"] == 3 * len(sigs) and sorted(group["signatures"]) == sorted(sigs)
    assert group["oracle"] == "stale-exposure" and group["first_seconds"] == 0.0
    assert group["last_seconds"] == float(len(sigs) - 1)


def test_triage_without_replay_keeps_older_findings_by_signature(tmp_path: Path) -> None:
    sigs = old_style_directory(tmp_path)
    res = pmfuzz("triage", "--no-replay", "--json", str(tmp_path))
    assert sorted(g["cause"] for g in json.loads(res.stdout)["causes"]) == sorted(sigs)


def test_triage_of_a_missing_directory_is_one_line(tmp_path: Path) -> None:
    res = pmfuzz("triage", str(tmp_path / "nope"))
    assert res.returncode == 2 and "Traceback" not in res.stderr


def test_a_campaign_files_findings_by_root_cause(tmp_path: Path) -> None:
    cfg = CampaignConfig(
        target=TargetSpec("daxfs", (("design", "zero"), ("bugs", "zero-after-commit"))),
        seed=1,
        max_execs=30,
        corpus=None,
        crashes=tmp_path,
        quiet=True,
        pictures=False,
    )
    s = run_campaign(cfg)
    assert s.findings
    for key, entry in s.findings.items():
        cause = Cause.parse(key)
        r = parse_reproducer((tmp_path / entry["file"]).read_text())
        assert r.cause == cause and str(r.signature) in entry["signatures"]
        assert entry["first_exec"] <= entry["last_exec"]
    res = pmfuzz("triage", str(tmp_path))
    assert res.returncode == 0 and res.stdout.startswith(f"{len(s.findings)} root cause(s)")


def test_replay_against_the_design_without_the_bug(tmp_path: Path) -> None:
    path = ROOT / "corpora" / "regression" / "zero-after-commit.pmfuzz"
    gone = pmfuzz("replay", str(path), "--against", "daxfs design=zero cil=eager")
    assert gone.returncode == 0, gone.stdout + gone.stderr
    assert gone.stdout.splitlines()[-1].startswith("against `daxfs design=zero cil=eager`: gone (no stale-exposure")
    r = parse_reproducer(path.read_text())
    v = check(make_target(r.target), r.workload, Options(crash=r.crash))
    here = tmp_path / "with-cause.pmfuzz"
    here.write_text(format_reproducer(replace(r, cause=v.findings[0].root_cause)))
    still = pmfuzz(
        "replay", str(here), "--against", "daxfs design=zero bugs=zero-after-commit,fsync-no-flush cil=eager"
    )
    assert still.returncode == 1
    assert still.stdout.splitlines()[-1].endswith("still there: stale-exposure (same root cause)")
    bad = pmfuzz("replay", str(path), "--against", "daxfs design=nosuch")
    assert bad.returncode == 2 and "nosuch" in bad.stderr and "Traceback" not in bad.stderr


def test_minimizing_drops_a_parallel_group_the_finding_does_not_need() -> None:
    from pmfuzz.fuzzing.minimize import minimize
    from pmfuzz.lang.workload import Parallel

    w = parse(
        "create f0\ncreate f1\nwrite f1 0 4096\nmmap m1 f1 0 4096\n"
        "parallel { store m1 0 64 ; write f1 100 64 }\ntruncate f0 8192\nwrite f0 100 200\nfsync f0\n"
    )
    target = make_target(ZAC)
    f = next(f for f in check(target, w, Options()).findings if f.oracle is OracleName.STALE_EXPOSURE)
    m = minimize(target, w, f.signature)
    assert m.complete and m.stopped_in == ""
    assert not any(isinstance(op, Parallel) for op in m.workload.ops)
    assert len(m.workload) <= 4 and m.finding.signature == f.signature


def test_a_minimizer_out_of_budget_keeps_its_progress_and_says_where_it_stopped() -> None:
    from pmfuzz.fuzzing.minimize import MinimizeBudget, minimize

    w = parse(
        "create f0\ntruncate f0 8192\nwrite f0 100 200\nfsync f0\ncreate f1\nwrite f1 0 10\nsync\n"
        "create f2\nwrite f2 0 4096\nfsync f2\n"
    )
    target = make_target(ZAC)
    f = next(f for f in check(target, w, Options()).findings if f.signature.op_kind == "write")
    m = minimize(target, w, f.signature, budget=MinimizeBudget(checks=3))
    assert not m.complete and m.stopped_in
    assert len(m.workload) < len(w), "the cut after the crash succeeded before the budget ran out"
    assert any(x.signature == f.signature for x in check(target, m.workload, Options()).findings)


@given(st.integers(0, 1 << 20).map(lambda a: a * 8), st.integers(1, 7))
def test_a_wrong_word_reads_the_same_cause_wherever_eof_cuts_it(addr: int, keep: int) -> None:
    """Poison read in full or cut short by EOF, where data or zeroes were due, is one cause; data in
    place of data is told apart."""
    from oracles._words import content_cause
    from pmfuzz.lang.data import payload, poison

    bad = poison(addr, 8).tobytes()
    assume(any(bad[:keep]))  # a prefix of zero bytes reads as zero, rightly
    assert content_cause(bad, bytes(8)) == content_cause(bad[:keep], bytes(keep)) == "garbage"
    assert content_cause(bad, payload(1, 5, addr, 8)) == "garbage", "garbage is garbage whatever was due"
    mine, older, other = payload(1, 5, 64, 8), payload(1, 3, 64, 8), payload(2, 5, 64, 8)
    assert content_cause(older, mine) == "older data for data"
    assert content_cause(other, mine) == "data of another file or offset"
    assert content_cause(bytes(8), mine) == "zero for data"


def test_a_campaign_files_no_crash_finding_after_the_run_left_the_reference() -> None:
    """cow-in-place changes the reflink source: read(2) diverges at once, and the crash findings after
    that op follow from it; the campaign files the divergence (and crashes inside that op), `check`
    still reports everything."""
    from pmfuzz.verdict import filed

    w = parse("create f0\nwrite f0 0 4096\nfsync f0\ncreate f1\nreflink f0 f1\nwrite f1 0 100\nfsync f1\n")
    v = check(make_target("daxfs design=zero bugs=cow-in-place cil=lazy"), w, Options())
    functional = [f for f in v.findings if f.oracle is OracleName.FUNCTIONAL and f.crash is None]
    assert functional and any(f.crash is not None for f in v.findings)
    first = min(f.op for f in functional)
    kept = filed(v.findings)
    assert set(functional) <= set(kept)
    assert all(f.crash is None or (f.crash.point != "E" and f.crash.op <= first) for f in kept)
    assert len(kept) < len(v.findings), "the crash findings after the divergence are not filed"
    clean_run = all_findings(ZAC, ZERO_AFTER_COMMIT)
    assert filed(tuple(clean_run)) == tuple(clean_run), "without a divergence every finding is filed"


COW_WORKLOAD = "create f0\nwrite f0 0 8192\nfsync f0\ncreate f1\nreflink f0 f1\nwrite f1 100 5000\nfsync f1\n"


def test_oracles_that_fault_one_state_for_one_store_are_linked() -> None:
    """A torn copy on write is a `cow-atomicity` and a `stale-exposure` violation of one crash state,
    for one store: each finding names the other's cause."""
    found = all_findings("daxfs design=zero bugs=cow-edges-unflushed cil=lazy", COW_WORKLOAD)
    at = [f for f in found if f.signature.op_kind == "fsync"]
    by_oracle = {f.oracle: f for f in at}
    stale, cow = by_oracle[OracleName.STALE_EXPOSURE], by_oracle[OracleName.COW_ATOMICITY]
    assert cow.root_cause in stale.also and stale.root_cause in cow.also
    assert all(f.root_cause not in f.also for f in found)


def test_crash_states_after_the_run_left_the_reference_link_nothing() -> None:
    """cow-skip-tail-copy's write already reads wrong crash-free: crash states after it are judged
    against a reference the target no longer follows, so what their oracles share is not evidence."""
    found = all_findings("daxfs design=zero bugs=cow-skip-tail-copy cil=lazy", COW_WORKLOAD)
    assert any(f.oracle is OracleName.FUNCTIONAL and f.crash is None for f in found)
    after = [f for f in found if f.crash is not None and f.signature.op_kind == "fsync"]
    assert {f.oracle for f in after} >= {OracleName.STALE_EXPOSURE, OracleName.COW_ATOMICITY}
    assert all(f.also == () for f in after)


def test_a_crash_state_faulted_by_one_oracle_links_nothing() -> None:
    found = all_findings(ZAC, ZERO_AFTER_COMMIT)
    assert found and all(f.also == () for f in found)


def test_a_campaign_files_linked_causes_as_one_group_and_remembers_the_link(tmp_path: Path) -> None:
    corpus = tmp_path / "seeds"
    corpus.mkdir()
    (corpus / "cow.pmfuzz").write_text(COW_WORKLOAD)
    spec = TargetSpec("daxfs", (("design", "zero"), ("bugs", "cow-edges-unflushed"), ("cil", "lazy")))
    cfg = CampaignConfig(
        target=spec, seed=1, max_execs=1, corpus=corpus, crashes=tmp_path / "crashes", quiet=True, pictures=False
    )
    run_campaign(cfg)
    index = json.loads((tmp_path / "crashes" / "findings.json").read_text())
    linked = {c: k for k, e in index.items() for c in e.get("also", ())}
    causes = set(index) | set(linked)
    stale, cow = (f"{o}/lost/unflushed dax_iomap_copy_around" for o in ("stale-exposure", "cow-atomicity"))
    assert {stale, cow} <= causes
    assert not ({stale, cow} <= set(index)), "two oracles' view of one store filed as two groups"
    assert not set(linked) & set(index)
    groups, _ = triage(tmp_path / "crashes", replay=False)
    (group_row,) = [g for g in groups if g.cause in (stale, cow)]
    assert set(group_row.also) & {stale, cow}
    assert "(also seen as " in format_triage(groups, [], tmp_path / "crashes")
    stopped = run_campaign(replace(cfg, crashes=tmp_path / "again", stop_on=oracle_of(cow if cow in linked else stale)))
    assert stopped.first_hit is not None, "a stop oracle's finding filed under another oracle's group still stops"
    again = CrashDir.open(tmp_path / "crashes", lock=False)
    group = linked.get(cow) or linked[stale]
    other = cow if cow in linked else stale
    assert again.group_of(other, (), set(again.counts)) == group


def test_a_cause_that_is_a_group_of_its_own_stays_one(tmp_path: Path) -> None:
    d = CrashDir.open(tmp_path, lock=False)
    d.record("a/lost/x", "repro", "report", elapsed=0, execs=0)
    d.record("b/lost/y", "repro", "report", elapsed=0, execs=0)
    d.link("a/lost/x", ("b/lost/y", "c/lost/z"), set(d.counts))
    assert d.counts["a/lost/x"]["also"] == ["c/lost/z"]
    assert d.group_of("b/lost/y", (), set(d.counts)) == "b/lost/y"
    assert d.group_of("c/lost/z", (), set(d.counts)) == "a/lost/x"
    assert d.group_of("d/lost/w", ("c/lost/z",), set(d.counts)) == "a/lost/x"
    assert d.group_of("d/lost/w", (), set(d.counts)) is None


def test_a_lost_store_of_a_data_path_is_data_whatever_bytes_it_moved() -> None:
    """write(2) from a hole's mapping, or a copy on write of zeroes, moves no workload word; its code
    moves workload data elsewhere in the trace, so its loss is the same cause as a data store's. A
    zeroing whose code never moves data keeps its site."""
    data = Event(0, EventKind.NTSTORE, 4096, 64, payload(1, 1, 0, 64), 1, "dax_copy_from_iter")
    zeroes_by_write = Event(1, EventKind.NTSTORE, 8192, 64, bytes(64), 2, "dax_copy_from_iter")
    zeroing = Event(2, EventKind.NTSTORE, 12288, 64, bytes(64), 3, "xfs_zero_extent")
    copy = Event(3, EventKind.STORE, 16384, 64, payload(1, 1, 0, 64), 4, "dax_iomap_copy_around")
    codes, own = _data_codes([data, zeroes_by_write, zeroing, copy])
    assert codes == {"dax_copy_from_iter", "dax_iomap_copy_around"}
    assert own == {"dax_copy_from_iter"}, "a copy on write stores older ops' data, never its own op's"
    assert _what_it_wrote(data, 4096, codes) == "data"
    assert _what_it_wrote(zeroes_by_write, 8192, codes) == "data"
    assert _what_it_wrote(zeroing, 12288, codes) == "xfs_zero_extent"
    assert _what_it_wrote(zeroes_by_write, 8192, _data_codes([zeroes_by_write])[0]) == "dax_copy_from_iter"


def test_a_crash_finding_of_another_cause_at_one_signature_is_kept_beside_it_with_its_own_links() -> None:
    """One crash site, two causes (a second bug behind the first's signature): both are kept; a
    finding never takes over another cause's links."""

    def finding(cause: Cause, deviations: int, also: tuple[Cause, ...] = ()) -> Finding:
        site = CrashSite("F1", StateId("F1", ()), 2, "fsync f0", "", "xfs_file_fsync", (), deviations)
        return Finding(
            cause.oracle, "m", op=2, op_kind="fsync", site="xfs_file_fsync", crash=site, cause=cause, also=also
        )

    lost_log = Cause(OracleName.DURABILITY, How.LOST, "xlog.commit_record")
    lost_data = Cause(OracleName.DURABILITY, How.LOST, "data")
    cow = Cause(OracleName.COW_ATOMICITY, How.LOST, "data")
    fs = Findings()
    fs.add(finding(lost_data, 2, (cow,)))
    fs.add(finding(lost_log, 1))
    kept = {f.cause: f for f in fs.values()}
    assert set(kept) == {lost_data, lost_log}
    assert kept[lost_log].also == () and kept[lost_data].also == (cow,)
    fs2 = Findings()
    fs2.add(finding(lost_data, 2, (cow,)))
    fs2.add(finding(lost_data, 1))
    assert fs2.values()[0].also == (cow,), "the same cause keeps what it was linked to"
