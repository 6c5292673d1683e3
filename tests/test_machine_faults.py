"""Faults of the machine end in one line and a summary, and lose nothing already written.

A full disk (here: RLIMIT_FSIZE, which fails writes with EFBIG the way a full disk fails them with
ENOSPC), an unwritable or impossible crashes directory, a kill -9 of a parent with workers, an
interrupted minimization, torn or damaged index files, and two campaigns on one directory.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pmfuzz.errors import PmfuzzError
from pmfuzz.fuzzing.campaign import CampaignConfig, run_campaign
from pmfuzz.fuzzing.campaign_config import config_from_json, config_to_json
from pmfuzz.fuzzing.corpus import CorpusDir, CrashDir, atomic_write
from pmfuzz.fuzzing.progress import Progress, repair_jsonl
from pmfuzz.judging.repro import parse_reproducer
from pmfuzz.pmem import Domain, EadrPoints
from pmfuzz.sight.stats import load_campaign
from pmfuzz.target import TargetSpec

ROOT = Path(__file__).resolve().parents[1]
NO_ZERO = TargetSpec("daxfs", (("design", "zero"), ("bugs", "no-zero")))


def _pmfuzz(*args: str, limit_bytes: int | None = None, **kw) -> subprocess.CompletedProcess:
    def cap() -> None:
        if limit_bytes is not None:
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))

    return subprocess.run(
        [sys.executable, "-m", "pmfuzz", *args], capture_output=True, text=True, cwd=ROOT, preexec_fn=cap, **kw
    )


def test_a_write_that_fails_mid_run_stops_with_one_line_and_the_summary(tmp_path: Path) -> None:
    crashes = tmp_path / "c"
    res = _pmfuzz(
        *("run", "--bugs", "no-zero", "--design", "zero", "--max-execs", "100", "--seed", "1"),
        *("--no-corpus", "--quiet", "--crashes", str(crashes)),
        limit_bytes=500,  # over the first reproducer and report, under the index as it grows
        timeout=600,
    )
    assert res.returncode == 2, res.stdout + res.stderr
    assert "Traceback" not in res.stdout + res.stderr
    err = res.stderr.splitlines()
    assert len(err) == 1 and err[0].startswith("pmfuzz: error: cannot write ") and "File too large" in err[0], err
    assert str(crashes) in err[0] and "everything written before is kept" in err[0]
    assert "stopped (write error)" in res.stdout and "stopped early: cannot write" in res.stdout
    written = list(crashes.glob("*.pmfuzz"))
    assert written, "the campaign stopped before writing anything: the limit is too low to test what is kept"
    for p in written:  # every file written before the fault is whole
        assert parse_reproducer(p.read_text(), source=str(p)).signature
    assert not list(crashes.glob(".*.tmp"))


@pytest.mark.parametrize("where", ["/proc/pmfuzz-x", "/etc/hostname/x"])
def test_an_impossible_crashes_directory_is_refused_before_running(where: str) -> None:
    res = _pmfuzz("run", "--seconds", "600", "--crashes", where, "--no-corpus", timeout=120)
    assert res.returncode == 2 and res.stderr.count("\n") == 1, res.stderr
    assert res.stderr.startswith(f"pmfuzz: error: crashes directory {where} is not writable")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_a_read_only_crashes_directory_is_refused_before_running(tmp_path: Path) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    res = _pmfuzz("run", "--seconds", "600", "--crashes", str(ro), "--no-corpus", timeout=120)
    assert res.returncode == 2 and "is not writable: Permission denied" in res.stderr


def test_kill_9_of_the_parent_ends_its_workers(tmp_path: Path) -> None:
    args = ["run", "--workers", "2", "--seconds", "600", "--no-corpus", "--quiet", "--crashes", str(tmp_path / "c")]
    p = subprocess.Popen(
        [sys.executable, "-m", "pmfuzz", *args],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        children: list[int] = []
        for _ in range(240):  # the two workers start after the imports
            children = _children(p.pid)
            if len(children) >= 2:
                break
            time.sleep(0.25)
        assert len(children) >= 2, children
        os.kill(p.pid, signal.SIGKILL)
        p.wait()
        alive = children
        for _ in range(120):
            alive = [c for c in children if _running(c)]
            if not alive:
                break
            time.sleep(0.25)
        assert alive == [], f"still running after their parent was killed: {alive}"
    finally:
        for c in _children(p.pid):
            os.kill(c, signal.SIGKILL)
        p.kill()


def _children(pid: int) -> list[int]:
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                stat = (d / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(d.name))
    return out


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def test_an_interrupted_minimization_is_resumed(tmp_path: Path) -> None:
    """A finding written as found (`not minimized yet`) and never minimized is minimized by the next run."""
    raw = (ROOT / "corpora" / "regression" / "no-zero.pmfuzz").read_text()
    raw = raw.replace("# note: zoo bug no-zero: f0 shows data it never held", "# note: not minimized yet")
    raw = raw.replace("create f0\n", "create f0\ncreate f1\nwrite f1 0 8192\nsync\n")
    name = "stale-exposure_end_--00f40103.pmfuzz"
    (tmp_path / name).write_text(raw)
    s = run_campaign(CampaignConfig(target=NO_ZERO, corpus=None, crashes=tmp_path, quiet=True, max_execs=1))
    r = parse_reproducer((tmp_path / name).read_text())
    assert r.notes and r.notes[0].startswith("minimized from 6 to ")
    assert len(r.workload) < 6 and str(r.signature) == "stale-exposure:end:-"
    assert s.findings["stale-exposure:end:-"]["count"] >= 1


def test_repeat_counts_are_flushed_with_the_statistics(tmp_path: Path) -> None:
    """findings.json follows repeats every stats interval, not only at a new finding (a kill lost them)."""
    crashes = CrashDir.open(tmp_path)
    crashes.record("mount:x:y", "# pmfuzz reproducer v1\ncreate f0\n", "r\n", elapsed=0, execs=0)
    prog = Progress(CampaignConfig(crashes=tmp_path, quiet=True), crashes, CorpusDir(tmp_path / "corpus"))
    for _ in range(3):
        prog.handle("repeat", ("mount:x:y", "mount:a:b", "mount:x:y"))
    prog.tick(force=True)
    entry = json.loads((tmp_path / "findings.json").read_text())["mount:x:y"]
    assert entry["count"] == 4 and entry["signatures"] == ["mount:a:b"] and entry["last_exec"] == 0
    crashes.close()


def test_resume_does_not_count_the_corpus_replay_again(tmp_path: Path) -> None:
    corpus = tmp_path / "seeds"
    corpus.mkdir()
    (corpus / "a.pmfuzz").write_text("create f0\nwrite f0 100 200\nfsync f0\n")
    cfg = CampaignConfig(target=NO_ZERO, corpus=corpus, crashes=tmp_path / "c", quiet=True, max_execs=1, batch=1)
    first = run_campaign(cfg)
    assert first.findings
    again = run_campaign(cfg)  # replays the one corpus entry, which gives the same findings
    assert {k: v["count"] for k, v in again.findings.items()} == {k: v["count"] for k, v in first.findings.items()}


def test_a_damaged_findings_index_is_set_aside_not_reset(tmp_path: Path) -> None:
    (tmp_path / "findings.json").write_text('{"mount:x:y": {"count": 5')
    (tmp_path / "f.pmfuzz").write_text("# pmfuzz reproducer v1\n# signature: mount:x:y\ncreate f0\n")
    d = CrashDir.open(tmp_path)
    assert (tmp_path / "findings.json.corrupt-1").read_text() == '{"mount:x:y": {"count": 5'
    assert d.counts == {"mount:x:y": {"count": 1, "file": "f.pmfuzz"}}
    assert len(d.warnings) == 1 and "findings.json.corrupt-1" in d.warnings[0]
    d.close()


def test_a_torn_stats_line_is_cut_before_appending(tmp_path: Path) -> None:
    rec = {"seconds": 1, "execs": 1, "states": 1, "corpus": 1, "coverage": 1, "findings": 0}
    stats = tmp_path / "stats.jsonl"
    stats.write_text(json.dumps(rec) + "\n" + '{"seconds": 6, "exe')
    assert len(load_campaign(stats).records) == 1  # plot reads a torn file as it is
    repair_jsonl(stats)
    stats.write_text(stats.read_text() + json.dumps({**rec, "seconds": 0.5}) + "\n")
    assert [r.seconds for r in load_campaign(stats).records] == [1, 0.5]


def test_two_campaigns_on_one_directory(tmp_path: Path) -> None:
    first = CrashDir.open(tmp_path)
    with pytest.raises(PmfuzzError, match=f"is in use by another campaign \\(pid {os.getpid()}\\)"):
        CrashDir.open(tmp_path)
    first.close()
    CrashDir.open(tmp_path).close()


def test_atomic_write_syncs_the_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[bool] = []
    real = os.fsync

    def spy(fd: int) -> None:
        synced.append(os.path.isdir(f"/proc/self/fd/{fd}"))
        real(fd)

    monkeypatch.setattr(os, "fsync", spy)
    atomic_write(tmp_path / "x.pmfuzz", "x\n")
    assert synced == [False, True]  # the file, then the directory holding its new name


@given(
    st.builds(
        CampaignConfig,
        target=st.builds(TargetSpec, st.text(min_size=1), st.lists(st.tuples(st.text(), st.text())).map(tuple)),
        domain=st.sampled_from(Domain),
        eadr_points=st.sampled_from(EadrPoints),
        seed=st.integers(),
        seconds=st.none() | st.floats(0.1, 1e6),
        max_execs=st.none() | st.integers(1, 10**9),
        corpus=st.none() | st.just(Path("corpora/seeds")),
        op_timeout=st.none() | st.floats(0.1, 100),
        stop_on=st.none() | st.text(),
    )
)
def test_the_atheris_child_gets_its_configuration_as_json(cfg: CampaignConfig) -> None:
    assert config_from_json(config_to_json(cfg)) == cfg


@pytest.mark.parametrize(
    "text",
    ['{"seed": "1"}', '{"target": {"name": 1, "options": []}}', '{"x": 1}', "[1]", "{", '{"corpus": 5}'],
)
def test_a_damaged_child_configuration_is_an_error(text: str) -> None:
    with pytest.raises(PmfuzzError):
        config_from_json(text)


def test_a_stats_line_that_cannot_be_written_names_its_file(tmp_path: Path) -> None:
    """os.write's error carries no file name; a campaign's one-line error must say which file."""
    from pmfuzz.fuzzing.progress import append_line

    code = (
        "import resource, signal, sys\n"
        "from pathlib import Path\n"
        "from pmfuzz.fuzzing.progress import append_line\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (10, 10))\n"
        "try:\n"
        "    append_line(Path(sys.argv[1]), 'x' * 100)\n"
        "except OSError as e:\n"
        "    print(e.filename, e.strerror)\n"
    )
    target = tmp_path / "stats.jsonl"
    out = subprocess.run([sys.executable, "-c", code, str(target)], capture_output=True, text=True, cwd=ROOT)
    assert out.stdout.strip() == f"{target} File too large", out.stdout + out.stderr
    append_line(tmp_path / "ok.jsonl", "fine")
    assert (tmp_path / "ok.jsonl").read_text() == "fine\n"
