"""Work the driver hands to a forked child (minimizing, drawing): its answer comes back, its
failures are told apart, and its memory stays with it."""

from __future__ import annotations

import mmap
import os
import signal
import time
from pathlib import Path

import pytest

import pmfuzz.fuzzing.reporting as reporting
from pmfuzz.fuzzing.campaign import CampaignConfig, run_campaign
from pmfuzz.fuzzing.isolated import ChildDied, ChildFailed, run_isolated
from pmfuzz.target import TargetSpec

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="runs inline where there is no fork")


def _resident_mib() -> float:
    with open("/proc/self/statm", encoding="ascii") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / (1 << 20)


_LEAKED: list[object] = []


def _grow(mib: int) -> tuple[float, float]:
    """The process's resident memory before and after it keeps `mib` MiB of fresh, written pages
    (a mapping of its own: memory its heap already had free would not show)."""
    before = _resident_mib()
    m = mmap.mmap(-1, mib << 20)
    m.write(b"\x01" * (mib << 20))
    _LEAKED.append(m)  # kept, as pinned arenas are: only the process's end gives it back
    return before, _resident_mib()


def _boom() -> None:
    raise ValueError("the work's own error")


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def test_the_answer_comes_from_another_process() -> None:
    assert run_isolated(os.getpid) not in (None, os.getpid())
    assert run_isolated(sorted, [3, 1, 2]) == [1, 2, 3]


def test_an_error_in_the_child_comes_back_with_its_traceback() -> None:
    with pytest.raises(ChildFailed, match="ValueError: the work's own error") as e:
        run_isolated(_boom)
    assert "_boom" in e.value.tb


def test_a_killed_child_is_told_apart() -> None:
    with pytest.raises(ChildDied, match="SIGKILL"):
        run_isolated(_die)
    with pytest.raises(ChildDied, match=r"over 0\.5 s"):
        run_isolated(time.sleep, 30, seconds=0.5)


def test_a_stop_ends_the_child_and_gives_nothing() -> None:
    t = time.monotonic()
    assert run_isolated(time.sleep, 30, stop=lambda: time.monotonic() - t > 0.3) is None
    assert time.monotonic() - t < 10


@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="needs Linux's /proc")
def test_what_the_child_allocates_stays_with_it() -> None:
    before = _resident_mib()
    grown = run_isolated(_grow, 300)
    assert grown is not None and grown[1] > grown[0] + 250, "the child did not allocate (test premise)"
    assert _resident_mib() < before + 50


def test_a_campaign_minimizes_in_a_child(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log = tmp_path / "pids"
    real = reporting.minimize

    def logged(*a, **kw):  # runs in the child: it can only tell the test through a file
        with open(log, "a", encoding="ascii") as f:
            f.write(f"{os.getpid()}\n")
        return real(*a, **kw)

    monkeypatch.setattr(reporting, "minimize", logged)
    cfg = CampaignConfig(
        target=TargetSpec("daxfs", (("design", "zero"), ("bugs", "no-zero"))), corpus=None,
        crashes=tmp_path / "c", quiet=True, max_execs=25, seed=7, pictures=False,
    )  # fmt: skip
    s = run_campaign(cfg)
    pids = {int(x) for x in log.read_text().split()}
    assert s.findings and len(pids) == len(s.findings) and os.getpid() not in pids
    assert all("minimized from" in p.read_text() for p in (tmp_path / "c").glob("*.pmfuzz"))
