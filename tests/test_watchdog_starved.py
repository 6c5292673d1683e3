"""A deadline counts the block's own time: a pmfuzz starved of CPU does not file its slowness as a target hang.

Each case runs in a child pinned to one CPU beside a busy competitor of higher priority, so that the
child gets about a quarter of the CPU: a block that needs 0.25 s of CPU takes about a second of wall
time. Before deadlines counted runqueue waits, a 0.5 s deadline fired there on a block that never hung.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(
    not Path("/proc/thread-self/schedstat").exists() or not hasattr(os, "sched_setaffinity"),
    reason="the kernel does not report runqueue waits (/proc/<pid>/task/<tid>/schedstat)",
)

_CHILD = r"""
import json, os, sys, threading, time
from pmfuzz.execution.watchdog import TargetHang, deadline, deadline_session

cpu = min(os.sched_getaffinity(0))
os.sched_setaffinity(0, {cpu})
rival = os.fork()
if rival == 0:
    while True:
        pass
os.nice(5)
time.sleep(0.05)

def busy(cpu_seconds):
    t = time.thread_time()
    while time.thread_time() - t < cpu_seconds:
        pass

def case(body, on_thread):
    out = {}
    def run():
        t = time.monotonic()
        try:
            with deadline(LIMIT, "the block"):
                body()
            out["hang"] = False
        except TargetHang:
            out["hang"] = True
        out["wall"] = time.monotonic() - t
    if on_thread == 1:
        th = threading.Thread(target=run)
        th.start()
        th.join(60)
    elif on_thread == 2:
        with deadline_session():
            with deadline(5.0, "a block before"):
                pass
            run()
    else:
        run()
    return out

LIMIT = 0.5
try:
    res = {
        name: case(body, on_thread)
        for on_thread in (0, 1, 2)
        for name, body in (
            (f"fits{int(on_thread)}", lambda: busy(0.25)),
            (f"spins{int(on_thread)}", lambda: busy(0.8)),
            (f"sleeps{int(on_thread)}", lambda: [time.sleep(0.01) for _ in range(500)]),
        )
    }
finally:
    os.kill(rival, 9)
    os.waitpid(rival, 0)
print(json.dumps(res))
"""


@pytest.fixture(scope="module")
def starved() -> dict[str, dict[str, float]]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, "-c", _CHILD], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


@pytest.mark.parametrize("thread", [0, 1, 2], ids=["main thread (SIGALRM)", "worker thread (watchdog)", "session"])
def test_a_starved_block_that_fits_its_own_time_is_not_a_hang(starved: dict, thread: int) -> None:
    r = starved[f"fits{thread}"]
    assert not r["hang"]
    assert r["wall"] > 0.5, f"not starved ({r['wall']:.2f} s wall for 0.25 s of CPU): the test shows nothing"


@pytest.mark.parametrize("thread", [0, 1, 2], ids=["main thread (SIGALRM)", "worker thread (watchdog)", "session"])
def test_a_starved_block_that_spins_past_its_own_time_is_still_a_hang(starved: dict, thread: int) -> None:
    assert starved[f"spins{thread}"]["hang"]


@pytest.mark.parametrize("thread", [0, 1, 2], ids=["main thread (SIGALRM)", "worker thread (watchdog)", "session"])
def test_a_block_asleep_past_its_deadline_is_a_hang_however_loaded_the_machine(starved: dict, thread: int) -> None:
    """Short sleeps: an exception injected into a worker thread arrives only between two C calls."""
    r = starved[f"sleeps{thread}"]
    assert r["hang"]
    assert r["wall"] < 2.5


def test_deadlines_on_many_short_lived_threads_leave_no_open_files() -> None:
    """A campaign starts a thread per op of every parallel group: their deadlines must not keep a file each."""
    from pmfuzz.execution.watchdog import deadline

    def body() -> None:
        with deadline(5.0, "a block"):
            pass

    fds = Path("/proc/self/fd")
    before = len(list(fds.iterdir()))
    for _ in range(200):
        t = threading.Thread(target=body)
        t.start()
        t.join()
    with deadline(5.0, "the main thread's"):
        pass
    assert len(list(fds.iterdir())) <= before + 2
