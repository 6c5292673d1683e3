"""The xfs-dax target on the real kernel: its recorder sees the fsdax copy-on-write, crash images are
recovered by the kernel's own log recovery (a mount in the guest), the host reads what the guest reads,
and grouping by metadata gives the verdicts of full recovery. Skips with one line when `pmfuzz
kernel-setup` has not been run (see README, "Real kernels: XFS-DAX"). The guest is the process's
(`pmfuzz.kernel.pool`): booted once, shared with the ext4-dax tests of the same worker."""

from __future__ import annotations

import random
import struct
from dataclasses import replace

import numpy as np
import pytest

from pmfuzz.gen.drawing import Drawer
from pmfuzz.gen.strategies import scenario_shape, workloads
from pmfuzz.judging.engine import Options, check
from pmfuzz.kernel import xfs
from pmfuzz.kernel.filesystems import XFS
from pmfuzz.kernel.guestmount import Extent, FileInfo, Listing, MountedImage, RecoveryFailed, parse_listing
from pmfuzz.kernel.paths import missing
from pmfuzz.lang.workload import parse
from pmfuzz.pmem import LINE, PMem
from pmfuzz.reference import Reference
from pmfuzz.target import make_target

MiB = 1 << 20
SIZE = XFS.device_size
SMALL = Options(device_size=SIZE, exhaustive_upto=24, max_states=24)


@pytest.fixture(scope="module")
def target():
    why = missing(tools=XFS.tools)
    if why:
        pytest.skip(f"xfs-dax: {why}")
    return make_target("xfs-dax")


# -- no guest needed ------------------------------------------------------------------


def _rec(kind: int, idx: int, a: int, b: int, tail: bytes = b"") -> bytes:
    return struct.pack("<IIQQ", kind, idx, a, b) + tail


def test_the_agents_listing_parses():
    buf = (
        _rec(1, 0, 5000, 0)
        + _rec(3, 0, 0, 8192, struct.pack("<QQ", 1 << 20, 0x1))
        + _rec(5, 2, 117, 0)
        + _rec(6, 0, 0, 3, b"odd")
        + _rec(4, 0, 0, 5, b"hello")
    )
    got = parse_listing(buf)
    assert got.files == {"f0": FileInfo(5000, (Extent(0, 8192, 1 << 20, 0x1),), None)}
    assert got.errors == {"f2": 117} and got.others == ("odd",) and got.log == "hello"


def test_the_view_reads_through_extents_and_takes_recoverys_lines():
    """Data comes from the device through the extents (holes and unwritten extents read as zeros);
    a line recovery wrote comes from recovery's copy, whatever the device holds there now."""
    pm = PMem(MiB)
    pm.initialize(0, bytes(range(256)) * (MiB // 256))
    exts = (Extent(0, 4096, 8192, 0), Extent(8192, 4096, 16384, 0x800), Extent(12288, 4096, 20480, 0x1))
    listing = Listing({"f0": FileInfo(14000, exts)})
    line = 20480 // LINE + 1  # the second line of the last extent's block
    view = MountedImage(pm, listing, np.array([line]), np.full((1, LINE), 7, dtype=np.uint8), [])
    data = view.read("f0", 0, 20000)
    assert len(data) == 14000  # clipped at the size
    assert data[:4096] == pm.load(8192, 4096)
    assert data[4096:12288] == bytes(8192)  # a hole, then an unwritten extent
    assert data[12288:12352] == pm.load(20480, 64)
    assert data[12352:12416] == bytes([7]) * 64  # recovery's line
    assert data[12416:14000] == pm.load(20480 + 128, 14000 - 12416)
    assert view.files() == ["f0"] and view.size("f0") == 14000 and view.fsck() == []


def test_mkfs_metadata_is_headers_inodes_and_the_log():
    if missing(tools=("mkfs.xfs",)):
        pytest.skip(f"xfs-dax: {missing(tools=('mkfs.xfs',))}")
    from pmfuzz.lang.data import poison

    base = poison(0, SIZE)
    img = xfs.mkfs(base)
    meta = xfs.written_blocks(base, img)
    lo, hi = xfs.log_range(img)
    assert meta[0][0] == 0  # superblock, AG headers, btree roots
    assert any(a <= lo and hi <= b for a, b in meta)  # the whole log
    assert sum(b - a for a, b in meta) < SIZE // 2  # not the free space mkfs zeroed at the end


def test_run_uses_the_targets_device_size():
    from pmfuzz.cli import _target_device_size
    from pmfuzz.target import parse_target_spec

    assert _target_device_size(parse_target_spec("xfs-dax")) == 16 * MiB
    assert _target_device_size(parse_target_spec("daxfs")) == 8 * MiB


# -- on the guest ----------------------------------------------------------------------


def _run(target, text: str) -> PMem:
    blank = PMem(SIZE)
    target.format(blank)
    pm = PMem.from_image(blank.pages)
    fs = target.mount(pm)
    pm.quiesce()
    ref = Reference()
    for i, op in enumerate(parse(text).ops):
        payload = ref.payload(i, op)
        ref.apply(i, op)
        fs.execute(i, op, payload)
    return pm


COW = "create f0\nwrite f0 0 8192\nfsync f0\ncreate f1\nreflink f0 f1\nwrite f1 100 200\nfsync f1\n"


def test_trace_replays_to_the_guests_pmem_byte_for_byte(target):
    """Random workloads weighted to reflink and writes into shared blocks: replaying the recorded
    events gives the guest's real pmem, with no byte the recorder did not see."""
    draw = Drawer(workloads(max_ops=8, shape=scenario_shape("share").only(XFS.ops, XFS.falloc_modes)))
    rng = random.Random(18)
    done = 0
    while done < 4:
        w = draw(rng.randbytes(2048))
        if w is None or not w.ops:
            continue
        acct = target.accounting
        before = acct.unexplained_bytes
        pm = _run(target, "\n".join(map(str, w.ops)))
        assert np.array_equal(pm.load_array(0, pm.size), target.guest.pmem(0, pm.size))
        assert acct.unexplained_bytes == before, f"{acct.unexplained_bytes - before} bytes unseen in:\n{w}"
        assert acct.missing_data == 0 and acct.outside == 0, acct.notes
        done += 1


def test_the_cow_copy_is_recorded_as_cached_stores(target):
    """dax_iomap_cow_copy copies a shared block's head and tail with copy_mc_to_kernel: cached stores,
    recorded by their own probe, and never flushed before xfs_reflink_end_cow remaps the block."""
    before = target.accounting.unexplained_bytes
    pm = _run(target, COW)
    copies = [e for e in pm.trace if e.site.endswith(".copy_mc")]
    assert copies and all(e.kind.value == "store" for e in copies)
    assert {e.size for e in copies} == {100, 4096 - 300}  # the head and the tail of block 0
    head = copies[0].addr
    flushed = {e.addr // LINE for e in pm.trace if e.kind.value in ("clwb", "clflushopt", "clflush")}
    assert head // LINE not in flushed
    assert target.accounting.unexplained_bytes == before


def test_recovery_reads_what_the_guest_reads(target):
    """For crash images of a reflink workload, the host's view (the guest's extents, data from the
    device, recovery's lines) equals what read(2) gives in the guest after the kernel's log recovery."""
    pm = _run(target, COW + "mmap m0 f1 4096 4096\nstore m0 10 50\nfsync f1\n")
    states = 0
    for point in pm.crash_points():
        for state in point.states("bounded", limit=3):
            img = PMem.from_image(state.image(), record=False)
            view = target.recovery.mount(img, contents=True)
            for name, info in view.listing.files.items():
                assert view.read(name, 0, info.size) == info.content, f"{name} at {state.id}"
            states += 1
    assert states > 10


def test_grouping_by_metadata_gives_the_verdicts_of_full_recovery(target):
    """One recovery per metadata state (and remembered across points), data lines patched in, judges
    every state as mounting each one from scratch does."""
    text = "create f0\nwrite f0 100 6000\nfsync f0\ncreate f1\nreflink f0 f1\nwrite f1 0 100\nfsync f1\n"
    opts = replace(SMALL, log_states=True, first_per_signature=False)
    grouped = check(target, parse(text), opts)
    full = check(make_target("xfs-dax reuse=no"), parse(text), replace(opts, group_by_metadata=False))
    assert grouped.stats.mounts < full.stats.mounts
    assert {m for _, m in grouped.state_log} == {m for _, m in full.state_log}
    # a campaign makes a target object per workload: the next one knows what mkfs made metadata too
    assert make_target("xfs-dax").metadata_ranges(SIZE)[0] != (0, SIZE)


def test_an_image_the_kernel_refuses_is_a_mount_finding(target):
    pm = _run(target, "create f0\nwrite f0 0 100\nfsync f0\n")
    img = PMem.from_image(pm.pages, record=False)
    img.pages.write(0, b"XFSX")  # the superblock's magic
    with pytest.raises(RecoveryFailed, match="mount of the crash image failed"):
        target.recovery.mount(img)
