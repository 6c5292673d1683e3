"""Each oracle flags a hand-made violation and passes the matching correct case."""

from __future__ import annotations

import numpy as np

from oracles import CrashContext, OracleName, RunContext
from oracles.atomic_ops import AtomicOps
from oracles.cow_atomicity import CowAtomicity
from oracles.durability import Durability
from oracles.functional import Functional
from oracles.mount import Mount
from oracles.stale_exposure import StaleExposure
from pmfuzz.lang.data import poison
from pmfuzz.lang.workload import parse
from pmfuzz.reference import History, Reference
from pmfuzz.target import OK, Errno, Result, err


class View:
    """A recovered file system as plain data: the scaffolding the oracles read through."""

    def __init__(self, files: dict[str, bytes], problems: list[str] | None = None) -> None:
        self._files = files
        self._problems = problems or []

    def files(self) -> list[str]:
        return sorted(self._files)

    def size(self, name: str) -> int | None:
        return len(self._files[name]) if name in self._files else None

    def read(self, name: str, off: int, n: int) -> bytes:
        return self._files[name][off : off + n]

    def read_mapping(self, name: str, off: int, n: int) -> Result:
        return err(Errno.EINVAL)

    def fsck(self) -> list[str]:
        return list(self._problems)

    def execute(self, index, op, payload) -> Result:
        raise AssertionError("a view does not execute")


def run(text: str) -> tuple[Reference, History]:
    ref = Reference()
    hist = History(ref)
    for i, op in enumerate(parse(text)):
        ref.apply(i, op)
        hist.record()
    return ref, hist


def state(hist: History, b: int) -> dict[str, bytes]:
    return {n: v.words.tobytes()[: v.size] for n, v in hist.boundaries[b].items()}


def judge(oracle, hist: History, files: dict[str, bytes], completed: int, upper: int, **kw):
    return oracle.check(CrashContext(View(files, kw.pop("problems", None)), hist.expect(completed, upper, **kw)))


W = "create f0\nwrite f0 0 4096\nfsync f0\nwrite f0 0 100\n"


def test_stale_exposure_flags_poison_and_passes_old_or_new_words() -> None:
    _, h = run(W)
    good = state(h, 4)
    assert judge(StaleExposure(), h, good, 3, 4) == []
    mixed = bytearray(state(h, 3)["f0"])
    mixed[:8] = good["f0"][:8]
    assert judge(StaleExposure(), h, {"f0": bytes(mixed)}, 3, 4) == []
    bad = bytearray(good["f0"])
    bad[512:576] = poison(1 << 20, 64).tobytes()
    [v] = judge(StaleExposure(), h, {"f0": bytes(bad)}, 3, 4)
    assert v.oracle is OracleName.STALE_EXPOSURE
    assert v.evidence[0].start == 512 and "poison" in v.evidence[0].found


def test_stale_exposure_flags_another_files_data() -> None:
    _, h = run("create f0\ncreate f1\nwrite f1 0 64\nwrite f0 0 64\n")
    s = state(h, 4)
    [v] = judge(StaleExposure(), h, {"f0": s["f1"], "f1": s["f1"]}, 4, 4)
    assert "file#1" in v.evidence[0].found


def test_durability_flags_lost_fsynced_data_missing_files_and_old_sizes() -> None:
    _, h = run(W)
    assert judge(Durability(), h, state(h, 3), 3, 4) == []
    assert judge(Durability(), h, state(h, 4), 3, 4) == []
    [v] = judge(Durability(), h, {"f0": bytes(4096)}, 3, 4)
    assert "reads zero" in v.message
    _, h2 = run("create f0\nwrite f0 0 4096\nwrite f0 0 4096\nfsync f0\n")
    assert judge(Durability(), h2, state(h2, 3), 4, 4) == []
    [v] = judge(Durability(), h2, state(h2, 2), 4, 4)
    assert "older than what was made durable" in v.message
    assert judge(Durability(), h2, state(h2, 2), 3, 4) == []
    [v] = judge(Durability(), h, {}, 3, 4)
    assert "missing" in v.message
    [v] = judge(Durability(), h, {"f0": b""}, 3, 4)
    assert "size 0" in v.message


def test_before_any_sync_anything_recoverable_is_fine_but_size_without_data_is_not() -> None:
    _, h = run("create f0\nwrite f0 0 4096\n")
    assert judge(Durability(), h, {}, 2, 2) == []
    assert judge(Durability(), h, {"f0": b""}, 2, 2) == []
    assert judge(Durability(), h, state(h, 2), 2, 2) == []
    [v] = judge(Durability(), h, {"f0": bytes(4096)}, 2, 2)
    assert "reads zero" in v.message
    assert judge(StaleExposure(), h, {"f0": bytes(4096)}, 2, 2) == []


def test_durability_of_a_map_sync_persist() -> None:
    text = "create f0\ntruncate f0 4096\nfsync f0\nmmap m0 f0 0 4096 sync\nstore m0 0 64\npersist m0 0 64\n"
    _, h = run(text)
    assert judge(Durability(), h, state(h, 6), 6, 6) == []
    [v] = judge(Durability(), h, state(h, 4), 6, 6)
    assert v.evidence[0].start == 0 and v.evidence[0].end == 64
    assert judge(Durability(), h, state(h, 4), 5, 6) == []


def test_a_map_sync_persist_makes_the_size_that_covers_it_durable() -> None:
    """The write fault forced the inode (and its size) to the log: losing that size loses the data."""
    text = "create f0\nfsync f0\ntruncate f0 4096\nmmap m0 f0 0 4096 sync\nstore m0 0 64\npersist m0 0 64\n"
    _, h = run(text)
    assert judge(Durability(), h, state(h, 6), 6, 6) == []
    [v] = judge(Durability(), h, {"f0": b""}, 6, 6)
    assert "size 0" in v.message and "[4096]" in v.message
    assert judge(Durability(), h, {"f0": b""}, 5, 6) == []
    gone = judge(Durability(), h, {}, 6, 6)
    assert [v.message.split(" is ")[0] for v in gone] == ["f0"]


def test_a_size_change_after_the_fault_is_not_made_durable_by_a_persist() -> None:
    """A truncate after the fault breaks the layout: the page must fault again before a persist counts."""
    text = (
        "create f0\nfsync f0\ntruncate f0 4096\nmmap m0 f0 0 8192 sync\nstore m0 0 64\n"
        "truncate f0 8192\npersist m0 0 64\n"
    )
    _, h = run(text)
    assert judge(Durability(), h, {"f0": b""}, 7, 7) == []


def test_cow_atomicity_accepts_a_side_from_another_serial_order_of_a_group() -> None:
    """A version that only another serial order of a parallel group held counts for the before side."""
    text = "create f0\nwrite f0 0 4096\nwrite f0 0 4096\ncreate f1\nreflink f0 f1\nwrite f1 0 100\n"
    _, h = run(text)
    other = Reference()
    for i, op in enumerate(parse("create f0\nwrite f0 0 4096\ncreate f1\nreflink f0 f1\n")):
        other.apply(i if i < 2 else i + 1, op)
    torn = bytearray(state(h, 5)["f1"])
    torn[64:128] = h.boundaries[2]["f0"].words.tobytes()[64:128]
    files = {"f0": state(h, 6)["f0"], "f1": bytes(torn)}
    assert [v.oracle for v in judge(CowAtomicity(), h, files, 5, 6)] == [OracleName.COW_ATOMICITY]
    h.add_alternative(3, other)
    assert h.alternatives[3]
    older = bytearray(state(h, 5)["f1"])
    older[64:128] = other.read("f1", 64, 64)
    files = {"f0": state(h, 6)["f0"], "f1": bytes(older)}
    assert judge(CowAtomicity(), h, files, 5, 6) == []


def test_an_unaligned_edge_word_may_tear_byte_by_byte_a_whole_word_may_not() -> None:
    """A kernel copies an unaligned edge with narrower stores: its word may mix old and new bytes."""
    _, h = run("create f0\ntruncate f0 64\nfsync f0\nwrite f0 3 37\n")
    old, new = state(h, 3)["f0"], state(h, 4)["f0"]
    edge = bytearray(old)
    edge[5:8] = new[5:8]
    assert bytes(edge[:8]) not in (old[:8], new[:8])
    assert judge(StaleExposure(), h, {"f0": bytes(edge)}, 3, 4) == []
    assert judge(Durability(), h, {"f0": bytes(edge)}, 3, 4) == []
    whole = bytearray(old)
    whole[20:24] = new[20:24]
    assert bytes(whole[16:24]) not in (old[16:24], new[16:24])
    [v] = judge(StaleExposure(), h, {"f0": bytes(whole)}, 3, 4)
    assert v.evidence[0].start == 16
    assert judge(StaleExposure(), h, {"f0": bytes(edge)}, 4, 4) == []
    [v] = judge(StaleExposure(), h, {"f0": bytes(edge)}, 2, 3)
    assert v.evidence[0].start == 0, "a torn edge before the op that writes it is stale"


def test_cow_atomicity_flags_a_block_half_old_half_new() -> None:
    text = "create f0\nwrite f0 0 4096\ncreate f1\nreflink f0 f1\nwrite f1 0 100\n"
    _, h = run(text)
    before, after = state(h, 4), state(h, 5)
    assert judge(CowAtomicity(), h, before, 4, 5) == []
    assert judge(CowAtomicity(), h, after, 4, 5) == []
    mixed = bytearray(after["f1"])
    mixed[8:16] = before["f1"][8:16]
    files = {"f0": after["f0"], "f1": bytes(mixed)}
    [v] = judge(CowAtomicity(), h, files, 4, 5)
    assert v.oracle is OracleName.COW_ATOMICITY and "block 0 of f1" in v.message
    assert judge(StaleExposure(), h, files, 4, 5) == []


def test_cow_atomicity_ignores_writes_to_unshared_blocks() -> None:
    _, h = run("create f0\nwrite f0 0 4096\nwrite f0 0 100\n")
    mixed = bytearray(state(h, 3)["f0"])
    mixed[8:16] = state(h, 2)["f0"][8:16]
    assert judge(CowAtomicity(), h, {"f0": bytes(mixed)}, 2, 3) == []


def test_mount_reports_fsck_problems_and_sizes_never_held() -> None:
    _, h = run(W)
    assert judge(Mount(), h, state(h, 4), 3, 4) == []
    [v] = judge(Mount(), h, state(h, 4), 3, 4, problems=["block 9: leaked"])
    assert "block 9" in v.message
    [v] = judge(Mount(), h, {"f0": bytes(5000)}, 3, 4)
    assert "never had" in v.message
    [v] = judge(Mount(), h, {**state(h, 4), "f5": b""}, 3, 4)
    assert "never created" in v.message


def test_atomic_ops_accepts_before_or_after_only() -> None:
    _, h = run(W)
    kw = {"synchronous": True}
    assert judge(AtomicOps(), h, state(h, 3), 3, 4, **kw) == []
    assert judge(AtomicOps(), h, state(h, 4), 3, 4, **kw) == []
    mixed = bytearray(state(h, 4)["f0"])
    mixed[50:100] = state(h, 3)["f0"][50:100]
    [v] = judge(AtomicOps(), h, {"f0": bytes(mixed)}, 3, 4, **kw)
    assert v.oracle is OracleName.ATOMIC_OPS


def test_functional_compares_results_and_state() -> None:
    ref, _ = run("create f0\nwrite f0 0 10\n")
    from pmfuzz.lang.workload import Write

    same = View({"f0": ref.read("f0", 0, 10)})
    ok = Functional().check(RunContext(1, Write("f0", 0, 10), Result(10), Result(10), same, ref))
    assert ok == []
    bad = Functional().check(RunContext(1, Write("f0", 0, 10), OK, Result(10), same, ref))
    assert bad and "returned 0" in bad[0].message
    wrong = View({"f0": bytes(10)})
    [v] = Functional().check(RunContext(1, Write("f0", 0, 10), Result(10), Result(10), wrong, ref))
    assert "differs" in v.message


def test_removed_words_may_read_zero_within_the_old_size() -> None:
    _, h = run("create f0\nwrite f0 0 8192\nfsync f0\ntruncate f0 100\n")
    old = bytearray(state(h, 3)["f0"])
    old[100:4096] = bytes(3996)
    assert judge(StaleExposure(), h, {"f0": bytes(old)}, 3, 4) == []
    assert judge(Durability(), h, {"f0": bytes(old)}, 3, 4) == []
    words = np.frombuffer(bytes(old), dtype="<u8")
    v = h.expect(3, 4).classify("f0", np.arange(len(words)), words, len(old))
    assert v.ok.all()


class MappedView(View):
    """A live file system as plain data, with mappings: what loads through each would see, and its PTEs."""

    def __init__(self, files: dict[str, bytes], maps: dict[str, bytes], ptes: dict | None = None) -> None:
        super().__init__(files)
        self._maps = maps
        self._ptes = ptes or {}

    def read_mapping(self, name: str, off: int, n: int) -> Result:
        return Result(self._maps[name][off : off + n])

    def mapping_blocks(self, name: str) -> dict:
        return self._ptes.get(name, {})


def _coherency(view: View, ref: Reference) -> list:
    from oracles.mmap_coherency import MmapCoherency

    return MmapCoherency().check(RunContext(0, parse("sync\n")[0], OK, OK, view, ref))


def test_mmap_coherency_flags_a_mapping_that_disagrees_with_read() -> None:
    ref = Reference()
    for i, op in enumerate(parse("create f0\nwrite f0 0 8192\nmmap m0 f0 0 8192\n")):
        ref.apply(i, op)
    data = ref.read("f0", 0, 8192)
    assert _coherency(MappedView({"f0": data}, {"m0": data}), ref) == []
    stale = data[:4096] + bytes(4096)
    vs = _coherency(MappedView({"f0": data}, {"m0": stale}), ref)
    assert [v.oracle for v in vs] == [OracleName.MMAP_COHERENCY]
    assert "page 1" in vs[0].message and "from offset 4096" in vs[0].message


def test_mmap_coherency_judges_only_bytes_inside_the_size() -> None:
    ref = Reference()
    for i, op in enumerate(parse("create f0\nwrite f0 0 100\nmmap m0 f0 0 4096\n")):
        ref.apply(i, op)
    data = ref.read("f0", 0, 100)
    assert _coherency(MappedView({"f0": data}, {"m0": data + b"\xff" * 3996}), ref) == []


def test_mmap_coherency_flags_a_pte_to_a_block_the_file_no_longer_owns() -> None:
    ref = Reference()
    for i, op in enumerate(parse("create f0\nwrite f0 0 8192\nmmap m0 f0 0 8192\n")):
        ref.apply(i, op)
    data = ref.read("f0", 0, 8192)
    fine = {"m0": {0: (40, 40), 1: (None, 41)}}
    assert _coherency(MappedView({"f0": data}, {"m0": data}, fine), ref) == []
    moved = {"m0": {0: (40, 40), 1: (12, 41)}}
    vs = _coherency(MappedView({"f0": data}, {"m0": data}, moved), ref)
    assert len(vs) == 1 and "maps device block 12" in vs[0].message and "block 41" in vs[0].message
