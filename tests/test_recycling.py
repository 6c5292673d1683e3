"""Judging processes replaced after a number of batches: same findings, never two sets at once,
and the memory a process's pinned arenas held goes with it."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import Future
from pathlib import Path

import pytest

import pmfuzz.fuzzing.campaign as campaign_module
from pmfuzz.fuzzing.campaign import CampaignConfig, run_batch, run_campaign
from pmfuzz.fuzzing.memory import campaign_resident_mib
from pmfuzz.fuzzing.recycling import RecyclingPool, recycling_pool
from pmfuzz.target import TargetSpec

BUGGY = TargetSpec("daxfs", (("design", "zero"), ("bugs", "no-zero")))

_KEPT: list[object] = []


def _span(pause: float) -> tuple[int, float, float]:
    t0 = time.monotonic()
    time.sleep(pause)
    return os.getpid(), t0, time.monotonic()


def _fail() -> None:
    raise ValueError("a batch's own error")


def _resident() -> float:
    with open("/proc/self/statm", encoding="ascii") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / (1 << 20)


def _fragment() -> float:
    """Many small objects, one in 500 kept: pymalloc cannot give back an arena with a live block."""
    junk = [(i, str(i)) for i in range(1_500_000)]
    _KEPT.extend(junk[::500])
    del junk
    return _resident()


_KILL_MARK = "PMFUZZ_TEST_KILL_BATCH"


def _killing_run_batch(cfg, index, *rest):
    """`run_batch`, but the process running batch 2 is killed (once while the mark file exists)."""
    mark = Path(os.environ[_KILL_MARK])
    if index == 2 and mark.exists():
        if mark.read_text() == "once":
            mark.unlink()
        os.kill(os.getpid(), signal.SIGKILL)
    return run_batch(cfg, index, *rest)


def _summed_up(tmp: Path, name: str, **kw) -> tuple:
    cfg = CampaignConfig(
        target=BUGGY, corpus=None, crashes=tmp / name, quiet=True, max_execs=25, seed=7, batch=4, window=4,
        pictures=False, **kw,
    )  # fmt: skip
    s = run_campaign(cfg)
    d = tmp / name
    corpus = sorted(p.read_text() for p in (d / "corpus").glob("*"))
    reproducers = {p.name: p.read_text() for p in sorted(d.glob("*.pmfuzz"))}
    counts = {sig: info["count"] for sig, info in s.findings.items()}
    return counts, s.execs, s.states, s.corpus, s.coverage, s.forms, s.new, reproducers, corpus


def test_recycling_does_not_change_what_a_seed_finds(tmp_path: Path) -> None:
    inline = _summed_up(tmp_path, "inline", recycle_after=0)
    assert inline[0] and inline[1] == 25
    assert _summed_up(tmp_path, "every-batch", recycle_after=1) == inline
    assert _summed_up(tmp_path, "two-every-batch", recycle_after=1, workers=2) == inline


def test_a_set_is_replaced_after_its_quota_and_never_beside_the_next() -> None:
    with recycling_pool(1, 2) as pool:
        spans = [pool.submit(_span, 0.01).result(timeout=60) for _ in range(7)]
        assert pool.generations == 4
        pids = [p for p, _, _ in spans]
        assert pids[0] == pids[1] != pids[2] == pids[3] != pids[4] == pids[5] != pids[6]
        assert len(set(pids)) == 4 and os.getpid() not in pids
        # A burst (the campaign's window) is given to the set of its time: it may run past its
        # quota, but a fresh set starts only after the retired one finished all it held.
        burst = [pool.submit(_span, 0.05) for _ in range(3)] + [pool.submit(_span, 0.05) for _ in range(3)]
        spans = [f.result(timeout=60) for f in burst]
    assert len({p for p, _, _ in spans}) >= 2
    for (p, _, end), (q, start, _) in itertools.pairwise(spans):
        assert p == q or end <= start, "a fresh process judged while the retired one still did"


def test_without_a_quota_one_set_serves_all() -> None:
    with recycling_pool(2, None) as pool:
        pids = {f.result(timeout=60)[0] for f in [pool.submit(_span, 0.01) for _ in range(8)]}
        assert pool.generations == 1 and len(pids) <= 2


def test_a_batch_error_reaches_its_future_and_shutdown_ends_waiting_ones() -> None:
    pool = RecyclingPool(1, 1)
    err = pool.submit(_fail)
    slow = pool.submit(_span, 30.0)
    held: list[Future] = [pool.submit(_span, 0.0) for _ in range(3)]
    with pytest.raises(ValueError, match="a batch's own error"):
        err.result(timeout=60)
    time.sleep(0.3)
    t0 = time.monotonic()
    pool.shutdown()
    assert time.monotonic() - t0 < 20, "shutdown waited for a running batch"
    for f in [slow, *held]:
        assert f.cancelled() or f.exception(timeout=30) is not None, "a batch ended by shutdown gave a result"
    with pytest.raises(RuntimeError, match="shut down"):
        pool.submit(_span, 0.0)


def test_shutdown_ends_a_retired_set_still_running_a_batch() -> None:
    """A set past its quota is retired (given no more work) while its batch runs: shutting down
    ends that process too, rather than letting the batch run on and give a result. (A retired
    set's executor forgets its processes when it is shut down; the pool lists them first.)"""
    pool = RecyclingPool(1, 1)
    running = pool.submit(_span, 30.0)
    time.sleep(0.5)  # the first set runs it: the next batch retires that set
    waiting = pool.submit(_span, 0.0)
    assert pool.generations == 2
    t0 = time.monotonic()
    pool.shutdown()
    assert running.exception(timeout=10) is not None and time.monotonic() - t0 < 10
    assert waiting.cancelled() or waiting.exception(timeout=10) is not None


def test_a_fresh_process_leaves_the_pinned_arenas_behind() -> None:
    with recycling_pool(1, 2) as pool:
        fragmented = pool.submit(_fragment).result(timeout=120)
        same = pool.submit(_resident).result(timeout=60)
        fresh = pool.submit(_resident).result(timeout=60)
    assert same > fragmented - 10, "the fragmenting process did not keep its arenas (test premise)"
    assert fresh < same - 50, f"a fresh process kept {fresh:.0f} MiB of the old one's {same:.0f} MiB"


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs Linux's /proc")
def test_campaign_memory_counts_the_processes_it_started() -> None:
    before = campaign_resident_mib()
    assert before is not None and before > 1
    child = subprocess.Popen(
        [sys.executable, "-c", "import sys,time; b = bytearray(200 << 20); print(1, flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE,
    )
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == b"1"
        during = campaign_resident_mib()
        assert during is not None and during > before + 150
    finally:
        child.kill()
        child.wait()


@pytest.mark.parametrize("workers", [1, 2])
def test_a_batch_lost_with_its_process_runs_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, workers: int
) -> None:
    want = _summed_up(tmp_path, "whole", recycle_after=0)
    mark = tmp_path / "kill"
    mark.write_text("once")
    monkeypatch.setenv(_KILL_MARK, str(mark))
    monkeypatch.setattr(campaign_module, "run_batch", _killing_run_batch)
    assert _summed_up(tmp_path, f"killed-{workers}", workers=workers) == want
    assert not mark.exists(), "no process was killed (test premise)"


def test_a_batch_lost_twice_stops_the_campaign_keeping_its_findings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mark = tmp_path / "kill"
    mark.write_text("always")
    monkeypatch.setenv(_KILL_MARK, str(mark))
    monkeypatch.setattr(campaign_module, "run_batch", _killing_run_batch)
    cfg = CampaignConfig(
        target=BUGGY, corpus=None, crashes=tmp_path / "c", quiet=True, max_execs=25, seed=7, batch=4,
        window=1, pictures=False,
    )  # fmt: skip
    s = run_campaign(cfg)
    assert s.stopped == "worker lost" and s.error is not None and "died twice running batch 2" in s.error
    assert s.execs == 8 and s.findings, "the two batches before it were merged and their findings kept"
    index = json.loads((tmp_path / "c" / "findings.json").read_text())
    assert set(index) == set(s.findings)
    assert sorted(p.name for p in (tmp_path / "c").glob("*.pmfuzz")) and mark.exists()
