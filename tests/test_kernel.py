"""The ext4-dax target on the real kernel: fidelity of the recorded trace, planted missing flushes,
grouping by metadata, guest death as a finding. Skips with one line when `pmfuzz kernel-setup`
has not been run (see README, "Real kernels: ext4-DAX")."""

from __future__ import annotations

import random
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from oracles import OracleName
from pmfuzz.errors import PmfuzzError
from pmfuzz.gen.drawing import Drawer
from pmfuzz.gen.strategies import DEFAULT_SHAPE, workloads
from pmfuzz.judging.engine import Options, check
from pmfuzz.kernel import flushcache as fc
from pmfuzz.kernel.commands import FALLOC_MODES_EXT4, OPS
from pmfuzz.kernel.paths import KERNEL, missing
from pmfuzz.lang.workload import parse
from pmfuzz.pmem import PMem
from pmfuzz.reference import Reference
from pmfuzz.target import make_target

MiB = 1 << 20
SMALL = Options(device_size=8 * MiB, exhaustive_upto=48, max_states=48)


@pytest.fixture(scope="module")
def target():
    why = missing()
    if why:
        pytest.skip(f"ext4-dax: {why}")
    return make_target("ext4-dax")


# -- no guest needed ------------------------------------------------------------------


def test_memcpy_flushcache_split_follows_alignment():
    # 8-aligned and a multiple of 4: all movnti, nothing cached, no flush, no fence (pmem_do_write).
    assert fc.memcpy_flushcache(4096, 4096) == [fc.Op(fc.Insn.NTSTORE, 4096, 0, 4096)]
    # unaligned head: cached bytes to the next 8, clwb of their line; a 2-byte cached tail.
    ops = fc.memcpy_flushcache(4100, 14)
    assert [o.insn for o in ops] == [fc.Insn.STORE, fc.Insn.CLWB, fc.Insn.NTSTORE, fc.Insn.STORE, fc.Insn.CLWB]
    assert (ops[0].addr, ops[0].n, ops[2].addr, ops[2].n, ops[3].addr, ops[3].n) == (4100, 4, 4104, 8, 4112, 2)


def test_copy_user_flushcache_fences_the_body_and_flushes_the_edges():
    ops = fc.copy_user_flushcache(100, 10000)
    kinds = [o.insn for o in ops]
    # __copy_user_nocache: cached head to 8-alignment, movnti body, sfence; then clwb of both edge lines
    assert kinds == [fc.Insn.STORE, fc.Insn.NTSTORE, fc.Insn.NTSTORE, fc.Insn.SFENCE, fc.Insn.CLWB, fc.Insn.CLWB]
    assert ops[0].n == 4 and ops[1].n == 9992 and ops[2].n == 4
    assert ops[4].addr == 64 and ops[5].addr == (100 + 10000 - 1) // 64 * 64
    # small unaligned copies are cached and flushed whole
    assert [o.insn for o in fc.copy_user_flushcache(3, 5)] == [fc.Insn.STORE, fc.Insn.SFENCE, fc.Insn.CLWB]


def test_a_reproducer_names_its_kernel():
    with pytest.raises(PmfuzzError, match=r"ran on kernel 5\.10\.0-1-amd64"):
        make_target("ext4-dax kernel=5.10.0-1-amd64")
    assert make_target("ext4-dax").options()["kernel"] == KERNEL.release


# -- on the guest ----------------------------------------------------------------------


def _run(target, text: str, size: int = 8 * MiB) -> tuple[PMem, object]:
    """Format, mount and run ops on the guest directly (no crash states)."""
    blank = PMem(size)
    target.format(blank)
    pm = PMem.from_image(blank.pages)
    fs = target.mount(pm)
    pm.quiesce()
    ref = Reference()
    for i, op in enumerate(parse(text).ops):
        payload = ref.payload(i, op)
        ref.apply(i, op)
        fs.execute(i, op, payload)
    return pm, fs


def test_trace_replays_to_the_guests_pmem_byte_for_byte(target):
    """Random workloads: replaying the recorded events gives the guest's real pmem, with no byte
    the recorder did not see (unexplained) and no event outside the device."""
    draw = Drawer(workloads(max_ops=10, shape=DEFAULT_SHAPE.only(OPS, FALLOC_MODES_EXT4)))
    rng = random.Random(17)
    done = 0
    while done < 6:
        w = draw(rng.randbytes(2048))
        if w is None or not w.ops:
            continue
        acct = target.accounting
        before = (acct.unexplained_bytes, acct.events)
        pm, _ = _run(target, "\n".join(map(str, w.ops)))
        real = target.guest.pmem(0, pm.size)
        assert np.array_equal(pm.load_array(0, pm.size), real)
        assert acct.unexplained_bytes == before[0], f"{acct.unexplained_bytes - before[0]} bytes unseen in:\n{w}"
        assert acct.missing_data == 0 and acct.outside == 0, acct.notes
        done += 1
    assert target.accounting.events > 0


def test_the_write_path_is_recorded_with_its_kernel_sites(target):
    pm, _ = _run(target, "create f0\nwrite f0 100 10000\nfsync f0\n")
    sites = {e.site for e in pm.trace}
    assert "ext4_issue_zeroout.memcpy_flushcache" in sites  # the blocks are zeroed before they are mapped
    assert "dax_iomap_rw.copy_user_flushcache" in sites  # the data: movnti body, cached edges
    assert "jbd2_journal_commit_transaction.memcpy_flushcache" in sites
    assert "journal_submit_commit_record.nvdimm_flush" in sites  # REQ_PREFLUSH / REQ_FUA fences


FSYNC = "create f0\nwrite f0 0 5000\nfsync f0\n"
MAPPED = "create f0\ntruncate f0 8192\nfsync f0\nmmap m0 f0 0 8192\nstore m0 100 300\nfsync f0\n"


def test_fsync_and_mapped_fsync_are_clean(target):
    for text in (FSYNC, MAPPED):
        v = check(target, parse(text), SMALL)
        assert v.clean, [f.message for f in v.findings]
        assert v.stats.distinct > 10


def test_a_missing_commit_fence_is_found():
    """Leave out the fences of the journal's commit-record write (REQ_PREFLUSH|REQ_FUA in
    journal_submit_commit_record): after fsync the commit may still be in flight, and a crash
    loses what fsync made durable."""
    if missing():
        pytest.skip(f"ext4-dax: {missing()}")
    t = make_target("ext4-dax drop=journal_submit_commit_record.nvdimm_flush")
    v = check(t, parse(FSYNC), SMALL)
    assert OracleName.DURABILITY in {f.oracle for f in v.findings}, [f.message for f in v.findings]


def test_a_missing_writeback_flush_is_found():
    """Leave out the clwb of dax_writeback_mapping_range (fsync of a file stored to through a
    mapping): the stores stay in the cache after fsync, and a crash loses them."""
    if missing():
        pytest.skip(f"ext4-dax: {missing()}")
    t = make_target("ext4-dax drop=dax_writeback_mapping_range.wb_cache_pmem")
    v = check(t, parse(MAPPED), SMALL)
    found = [f for f in v.findings if f.oracle is OracleName.DURABILITY]
    assert found and "older than what was made durable" in found[0].message


def test_grouping_by_metadata_gives_the_verdicts_of_full_recovery(target):
    """Recovery once per metadata state, data lines patched in afterwards, judges every state
    as recovering each one from scratch does."""
    text = "create f0\nwrite f0 100 6000\nfsync f0\nmmap m0 f0 0 8192 sync\nstore m0 50 100\npersist m0 50 100\n"
    opts = Options(device_size=8 * MiB, exhaustive_upto=24, max_states=24, log_states=True, first_per_signature=False)
    grouped = check(target, parse(text), opts)
    full = check(target, parse(text), replace(opts, group_by_metadata=False))
    assert grouped.stats.mounts < full.stats.mounts
    assert {m for _, m in grouped.state_log} == {m for _, m in full.state_log}


def test_a_guest_that_dies_is_a_finding_and_the_next_run_boots_a_new_one(target):
    target.boot()
    target.guest.proc.kill()
    target.guest.proc.wait()
    v = check(target, parse("create f0\nwrite f0 0 100\n"), SMALL)
    assert v.clean  # the dead guest is noticed at mount: a new one is booted
    g = target.guest

    class Dying:
        def __init__(self, fs):
            self.fs = fs

        def execute(self, index, op, payload):
            if index == 1:
                g.proc.kill()
            return self.fs.execute(index, op, payload)

        def __getattr__(self, name):
            return getattr(self.fs, name)

    class Target:
        name, guarantees, ops = target.name, target.guarantees, target.ops
        min_op_timeout = target.min_op_timeout

        def format(self, pm):
            target.format(pm)

        def mount(self, pm):
            fs = target.mount(pm)
            return Dying(fs) if getattr(pm, "_recording", True) else fs

        def options(self):
            return target.options()

    v = check(Target(), parse("create f0\nwrite f0 0 100\n"), SMALL)
    errors = [f for f in v.findings if f.oracle is OracleName.TARGET_ERROR]
    assert errors and "the guest went away" in errors[0].message and "console" in errors[0].message


def test_the_kernel_regression_corpus_replays(target):
    """`pmfuzz regress corpora/kernel`: the ext4 and XFS findings and a planted missing fence,
    each named by its crash state, give their expected verdicts on the pinned kernel."""
    from click.testing import CliRunner

    from pmfuzz.cli import cli
    from pmfuzz.kernel.filesystems import XFS

    if missing(tools=XFS.tools):
        pytest.skip(f"xfs-dax: {missing(tools=XFS.tools)}")
    corpus = Path(__file__).resolve().parent.parent / "corpora" / "kernel"
    r = CliRunner().invoke(cli, ["regress", str(corpus)])
    assert r.exit_code == 0, r.output
    n = len(list(corpus.glob("*.pmfuzz")))
    assert n >= 8 and f"{n} passed, 0 failed" in r.output


def test_mapping_ops_fault_by_page_as_the_kernel_does(target):
    """A mapping covers whole pages: a store past its length but inside its last page reaches the
    page (SIGBUS when that page is at or past EOF), not SIGSEGV (a false positive the first campaign
    found in the agent)."""
    v = check(target, parse("create f0\nmmap m0 f0 0 1\nstore m0 1 1\n"), SMALL)
    assert v.clean, [f.message for f in v.findings]
