"""A deadline gives back the time the whole process was frozen (SIGSTOP, a paused VM): a campaign
stopped and continued does not file the stop as a target hang, and a target that sleeps still hangs.

A campaign stopped with SIGSTOP for 40 s filed `target-error ... read_mapping did not return within
10 s` on the correct design. Each case runs a block under a 1 s deadline in a child: a block that
needs 0.6 s of CPU, stopped for 2 s in the middle, is not a hang (before: a hang on each path).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGSTOP"), reason="needs SIGSTOP/SIGCONT")

_CHILD = r"""
import json, sys, threading, time
from pmfuzz.execution.watchdog import TargetHang, deadline, deadline_session

def busy(cpu_seconds):
    t = time.thread_time()
    while time.thread_time() - t < cpu_seconds:
        pass

def run(body, out):
    t = time.monotonic()
    try:
        with deadline(1.0, "the block"):
            body()
        out["hang"] = False
    except TargetHang:
        out["hang"] = True
    out["wall"] = time.monotonic() - t

where, kind = sys.argv[1], sys.argv[2]
body = (lambda: busy(0.6)) if kind == "busy" else (lambda: time.sleep(3))
print("ready", flush=True)
sys.stdin.readline()
out = {}
if where == "thread":
    th = threading.Thread(target=run, args=(body, out))
    th.start()
    th.join(60)
elif where == "session":
    with deadline_session():
        run(body, out)
else:
    run(body, out)
print(json.dumps(out), flush=True)
"""


def _case(where: str, kind: str, stop: float) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    p = subprocess.Popen(
        [sys.executable, "-c", _CHILD, where, kind],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert p.stdin is not None and p.stdout is not None
        assert p.stdout.readline().strip() == "ready"
        p.stdin.write("go\n")
        p.stdin.flush()
        if stop:
            time.sleep(0.2)
            os.kill(p.pid, signal.SIGSTOP)
            time.sleep(stop)
            os.kill(p.pid, signal.SIGCONT)
        return json.loads(p.stdout.readline())
    finally:
        p.kill()
        p.wait()


@pytest.mark.parametrize("where", ["main", "thread", "session"])
def test_a_block_stopped_in_the_middle_is_not_a_hang(where: str) -> None:
    got = _case(where, "busy", stop=2.0)
    assert got["wall"] > 2.0, "the child was not stopped (test premise)"
    assert got["hang"] is False, f"{where}: the stopped time counted as the block's ({got})"


@pytest.mark.parametrize("where", ["main", "session"])
def test_a_block_that_sleeps_still_hangs_at_its_limit(where: str) -> None:
    got = _case(where, "sleep", stop=0.0)
    assert got["hang"] is True and got["wall"] < 2.5, got
