"""The atheris engine: a real libFuzzer campaign in a child process, counted and summed up like a native one."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pmfuzz.fuzzing.campaign import CampaignConfig, Driver
from pmfuzz.fuzzing.campaign_config import config_from_json, config_to_json
from pmfuzz.fuzzing.corpus import CrashDir
from pmfuzz.fuzzing.reporting import NOT_MINIMIZED
from pmfuzz.signature import oracle_of

pytest.importorskip("atheris")

ROOT = Path(__file__).resolve().parents[1]


def _start(crashes: Path, *args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    cmd = [sys.executable, "-m", "pmfuzz", "run", "--engine", "atheris", "--no-corpus", "--crashes", str(crashes)]
    return subprocess.Popen([*cmd, *args], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for(pred, seconds: float) -> bool:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.5)
    return False


def _minimized(crashes: Path) -> list[Path]:
    return [p for p in crashes.glob("*.pmfuzz") if NOT_MINIMIZED not in p.read_text()]


def test_an_atheris_campaign_finds_a_zoo_bug_and_sums_it_up(tmp_path: Path) -> None:
    crashes = tmp_path / "c"
    p = _start(crashes, "--bugs", "zero-after-commit", "--seconds", "600", "--preemptions", "0", "--op-timeout", "9")
    try:
        found = _wait_for(lambda: bool(_minimized(crashes)), 400)
    finally:
        p.send_signal(signal.SIGINT)  # the command line hands it to the child, which stops and sums up
        out, err = p.communicate(timeout=300)
    assert found, err[-3000:]
    assert p.returncode == 0, err[-3000:]
    assert "Traceback" not in err
    first = out.splitlines()[0]
    m = re.match(
        r"stopped \(SIGINT\) after \d+ s: (\d+) execs .*, (\d+) crash states judged, corpus (\d+), coverage (\d+)",
        first,
    )
    assert m, out
    execs, states, corpus, coverage = map(int, m.groups())
    assert execs > 0 and states > 0 and coverage > 0
    assert corpus == len(list((crashes / "corpus").glob("*"))) > 0
    index = json.loads((crashes / "findings.json").read_text())
    assert index and all(oracle_of(key) == "stale-exposure" for key in index)
    assert f"findings: {len(index)} root cause(s) ({len(index)} new this run)" in out
    for key, info in index.items():
        n = len(info.get("signatures", ()))
        where = f"  at {n} crash sites" if n > 1 else ""
        assert f"new {key}  x{info['count']}{where}  {info['file']}" in out
    stats = json.loads((crashes / "stats.jsonl").read_text().splitlines()[-1])
    assert (stats["execs"], stats["states"], stats["corpus"], stats["coverage"]) == (execs, states, corpus, coverage)


def test_an_atheris_campaign_honours_the_op_timeout(tmp_path: Path) -> None:
    crashes = tmp_path / "c"
    target = "tests.looping_target:LoopingTarget hang=write how=spin"
    p = _start(crashes, "--target", target, "--seconds", "600", "--op-timeout", "0.25")
    try:
        found = _wait_for(lambda: bool(list(crashes.glob("*.txt"))), 300)
    finally:
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=300)
    assert found and p.returncode == 0, err[-3000:]
    reports = [t.read_text() for t in crashes.glob("*.txt")]
    assert any("did not return within 0.25 s" in r for r in reports), reports
    assert "stopped (SIGINT)" in out


def test_the_atheris_child_judges_with_the_campaigns_options(tmp_path: Path) -> None:
    """The child rebuilds the configuration from JSON; its driver's options are the command line's."""
    cfg = CampaignConfig(corpus=None, crashes=tmp_path, preemption_bound=0, op_timeout=2.5, max_states=7)
    child = config_from_json(config_to_json(cfg))
    crashes = CrashDir.open(tmp_path)
    try:
        opts = Driver(child, crashes).opts
    finally:
        crashes.close()
    assert (opts.preemption_bound, opts.op_timeout, opts.max_states, opts.features) == (0, 2.5, 7, True)
