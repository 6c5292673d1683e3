"""The tutorial's target: clean when correct, caught with its planted bug."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from hypothesis import HealthCheck, given, settings

from examples.tinyfs import TinyFS
from pmfuzz.gen.strategies import DEFAULT_SHAPE, workloads
from pmfuzz.judging.engine import Options, check
from pmfuzz.lang.workload import parse
from pmfuzz.signature import oracle_of
from pmfuzz.target import supported_ops

ROOT = Path(__file__).resolve().parents[1]
OPTS = Options(device_size=1 << 20, max_states=64)
SHAPE = DEFAULT_SHAPE.only(supported_ops(TinyFS()))


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(workloads(max_ops=12, shape=SHAPE))
def test_tinyfs_is_clean(w) -> None:
    assert {op.kind for op in w} <= supported_ops(TinyFS())
    v = check(TinyFS(), w, OPTS)
    assert v.clean, [f.message for f in v.findings]


def test_tinyfs_create_over_an_unlinked_file_is_clean() -> None:
    """Found by the property above: create stored the name and size words with one 16-byte store,
    which may tear, and a crash kept the name over the size the unlinked file had left."""
    v = check(TinyFS(), parse("create f0\ncreate f1\nwrite f1 0 1\nunlink f1\nsync\ncreate f1\n"), OPTS)
    assert v.clean, [f.message for f in v.findings]


def test_tinyfs_planted_bug_is_stale_exposure() -> None:
    v = check(TinyFS(bug="size-before-data"), parse("create f0\nwrite f0 0 100\n"), OPTS)
    assert "stale-exposure" in v.oracles()
    assert any("poison" in str(e) for f in v.findings for e in f.evidence)


def _campaign(tmp: Path, spec: str, execs: int) -> object:
    from pmfuzz.fuzzing.campaign import CampaignConfig, run_campaign
    from pmfuzz.target import parse_target_spec

    cfg = CampaignConfig(
        target=parse_target_spec(spec),
        corpus=None,
        crashes=tmp,
        quiet=True,
        max_execs=execs,
        seed=3,
        device_size=1 << 20,
    )
    return run_campaign(cfg)


def test_pmlog_is_atomic_and_clean() -> None:
    from examples.pmlog import PmLog

    w = parse("create f0\nwrite f0 0 100\nwrite f0 50 5000\ntruncate f0 10\nunlink f0\n")
    v = check(PmLog(), w, OPTS)
    assert v.clean, [f.message for f in v.findings]


def test_pmlog_planted_bug_breaks_atomicity() -> None:
    from examples.pmlog import PmLog

    v = check(PmLog(bug="commit-with-data"), parse("create f0\nwrite f0 0 100\n"), OPTS)
    assert {"atomic-ops", "stale-exposure"} <= v.oracles()


def test_pmlog_fuzzed_from_empty_corpus(tmp_path: Path) -> None:
    buggy = _campaign(tmp_path / "buggy", "examples.pmlog:PmLog bug=commit-with-data", 20)
    assert any(oracle_of(s) == "atomic-ops" for s in buggy.findings), buggy.findings
    clean = _campaign(tmp_path / "clean", "examples.pmlog:PmLog", 20)
    assert not clean.findings, clean.findings


def test_pmlog_found_by_entry_point(tmp_path: Path) -> None:
    """A distribution on the path that declares `pmfuzz.targets` makes `--target pmlog` work, in a fresh process."""
    dist = tmp_path / "pmlog_example-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: pmlog-example\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[pmfuzz.targets]\npmlog = examples.pmlog:PmLog\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)])}
    res = subprocess.run(
        [
            *(sys.executable, "-m", "pmfuzz", "run", "--target", "pmlog bug=commit-with-data", "--max-execs", "8"),
            *("--no-corpus", "--device", "1M", "--seed", "3", "--quiet", "--crashes", str(tmp_path / "c")),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
    )
    assert res.returncode == 0, res.stderr
    reproducers = list((tmp_path / "c").glob("*.pmfuzz"))
    assert reproducers and all("target: pmlog bug=commit-with-data" in p.read_text() for p in reproducers)
