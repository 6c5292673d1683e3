"""Campaigns: same seed same findings, dedup by signature, resume, atomic files, clean stop, minimize."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pmfuzz.fuzzing.campaign import CampaignConfig, run_campaign
from pmfuzz.fuzzing.corpus import CrashDir, atomic_write
from pmfuzz.fuzzing.minimize import minimize
from pmfuzz.judging.repro import parse_reproducer
from pmfuzz.lang.workload import parse
from pmfuzz.target import TargetSpec, make_target

ROOT = Path(__file__).resolve().parents[1]
BUGGY = TargetSpec("daxfs", (("design", "zero"), ("bugs", "no-zero")))


def campaign(tmp: Path, **kw) -> object:
    cfg = CampaignConfig(
        **{"target": BUGGY, "corpus": None, "crashes": tmp, "quiet": True, "max_execs": 25, "seed": 7, **kw}
    )
    return run_campaign(cfg)


def files(d: Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted(d.glob("*.pmfuzz"))}


def test_same_seed_same_findings(tmp_path: Path) -> None:
    a = campaign(tmp_path / "a")
    b = campaign(tmp_path / "b")
    assert a.findings.keys() == b.findings.keys() and a.findings
    assert files(tmp_path / "a") == files(tmp_path / "b")
    assert a.execs == b.execs == 25


def test_findings_are_deduplicated_and_replayable(tmp_path: Path) -> None:
    s = campaign(tmp_path)
    reproducers = list(tmp_path.glob("*.pmfuzz"))
    assert len(reproducers) == len(s.findings) == len(set(s.findings))
    counts = json.loads((tmp_path / "findings.json").read_text())
    assert sum(v["count"] for v in counts.values()) >= len(counts)
    for p in reproducers:
        r = parse_reproducer(p.read_text(), source=str(p))
        assert r.expect and r.cause is not None and str(r.cause) in s.findings
        assert str(r.signature) in s.findings[str(r.cause)]["signatures"]
        assert (p.with_suffix(".txt")).exists()
        res = subprocess.run(
            [sys.executable, "-m", "pmfuzz", "replay", str(p)], capture_output=True, text=True, cwd=ROOT
        )
        assert res.returncode == 1, res.stdout + res.stderr


def test_resume_does_not_report_known_findings_again(tmp_path: Path) -> None:
    first = campaign(tmp_path)
    again = campaign(tmp_path, seed=8)
    assert set(first.findings) <= set(again.findings)
    assert not set(again.new) & set(first.findings)
    assert (tmp_path / "corpus").is_dir() and any((tmp_path / "corpus").iterdir())
    lines = (tmp_path / "stats.jsonl").read_text().splitlines()
    assert all("execs_per_s" in json.loads(x) for x in lines)


def test_correct_design_finds_nothing(tmp_path: Path) -> None:
    s = campaign(tmp_path, target=TargetSpec("daxfs", (("design", "unwritten"),)), max_execs=30)
    assert s.findings == {}


def test_atomic_write_never_leaves_partial_files(tmp_path: Path) -> None:
    target = tmp_path / "x.pmfuzz"
    atomic_write(target, "old\n")

    class Boom(Exception):
        pass

    import pmfuzz.fuzzing.corpus as corpus

    real = os.fsync

    def explode(fd: int) -> None:
        raise Boom

    corpus.os.fsync = explode
    try:
        with pytest.raises(Boom):
            atomic_write(target, "new and half written")
    finally:
        corpus.os.fsync = real
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["x.pmfuzz"]


def test_crash_dir_survives_garbage(tmp_path: Path) -> None:
    (tmp_path / "findings.json").write_text("{not json")
    (tmp_path / "junk.pmfuzz").write_text("this is not a reproducer at all\n")
    d = CrashDir.open(tmp_path)
    assert d.counts == {}


def test_sigterm_stops_cleanly_with_a_summary(tmp_path: Path) -> None:
    cmd = [
        sys.executable,
        "-m",
        "pmfuzz",
        "run",
        "--seconds",
        "120",
        "--bugs",
        "no-zero",
        "--no-corpus",
        "--crashes",
        str(tmp_path),
        "--design",
        "zero",
    ]
    p = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 90
    while time.time() < deadline and not list(tmp_path.glob("*.pmfuzz")):
        time.sleep(0.5)
    p.send_signal(signal.SIGTERM)
    out, err = p.communicate(timeout=120)
    assert p.returncode == 0, err
    assert "stopped (SIGTERM)" in out and "findings:" in out
    assert list(tmp_path.glob("*.pmfuzz")) and (tmp_path / "stats.jsonl").exists()


def test_minimize_shrinks_and_keeps_the_signature() -> None:
    w = parse(
        "create f2\ncreate f0\nwrite f0 100 9000\nmmap m0 f2 0 4096\nfsync f0\nwrite f2 0 300\n"
        "create f1\nstore m0 0 64\nreflink f0 f1\nwrite f1 100 200\nfsync f1\nsync\n"
    )
    target = make_target("daxfs design=zero bugs=cow-remap-before-copy cil=eager")
    from pmfuzz.judging.engine import Options, check

    v = check(target, w, Options())
    f = next(f for f in v.findings if f.oracle.value == "cow-atomicity")
    m = minimize(target, w, f.signature)
    assert m.complete and len(m.workload) < len(w) and len(m.workload) <= 6
    assert m.finding.signature == f.signature
    v2 = check(target, m.workload, Options(crash=m.crash))
    assert any(x.signature == f.signature for x in v2.findings)


def test_run_needs_a_budget_and_a_real_target(tmp_path: Path) -> None:
    def run(*a: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "pmfuzz", "run", "--crashes", str(tmp_path), *a],
            capture_output=True,
            text=True,
            cwd=ROOT,
        )

    r = run()
    assert r.returncode == 2 and "budget" in r.stderr
    r = run("--seconds", "1", "--target", "nosuchfs")
    assert r.returncode == 2 and "unknown target 'nosuchfs'" in r.stderr and "Traceback" not in r.stderr
    r = run("--seconds", "1", "--bugs", "frobnicate")
    assert r.returncode == 2 and "unknown bug 'frobnicate'" in r.stderr
    r = run("--seconds", "1", "--target", "examples.nothere:X")
    assert r.returncode == 2 and "cannot import" in r.stderr


def test_workers_do_not_change_what_a_seed_finds(tmp_path: Path) -> None:
    """`--workers N` runs the same batches as one process, so the same seed gives the same campaign."""

    def summed_up(name: str, workers: int) -> tuple:
        s = campaign(tmp_path / name, workers=workers, batch=4, window=4, pictures=False)
        d = tmp_path / name
        corpus = sorted(p.read_text() for p in (d / "corpus").glob("*"))
        counts = {sig: info["count"] for sig, info in s.findings.items()}
        return counts, s.execs, s.states, s.corpus, s.coverage, s.forms, s.new, files(d), corpus

    two = summed_up("two", 2)
    assert two[0] and two[1] == 25
    assert summed_up("two-again", 2) == two
    assert summed_up("one", 1) == two
