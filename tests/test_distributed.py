"""Scale-out on Dask: a real LocalCluster on loopback finds what a local run finds, even when a worker dies."""

from __future__ import annotations

import functools
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pmfuzz.cli import main
from pmfuzz.fs import DaxfsTarget
from pmfuzz.fuzzing.campaign import CampaignConfig, batch_workloads, run_batch, run_campaign
from pmfuzz.fuzzing.distributed import DaskRunner, open_scheduler
from pmfuzz.lang.workload import format_workload
from pmfuzz.target import TargetSpec

ROOT = Path(__file__).resolve().parents[1]
BUGGY = TargetSpec("daxfs", (("bugs", "zero-after-commit"),))


class DieOnce(DaxfsTarget):
    """daxfs, except that the third target a Dask worker process builds ends that process, once per marker file.

    Outside a Dask worker it never dies, so a local run gives the reference findings.
    """

    built = 0

    def __init__(self, marker: str = "", **options: str) -> None:
        super().__init__(**options)
        if marker and _in_dask_worker():
            DieOnce.built += 1
            if DieOnce.built == 3:
                try:
                    os.close(os.open(marker, os.O_CREAT | os.O_EXCL))
                except FileExistsError:
                    return
                os._exit(1)


@functools.cache
def finding_seed() -> int:
    """A seed whose first batch of 4 already finds the bug, whatever the generator draws today."""
    for seed in range(100):
        if any(e.found for e in run_batch(CampaignConfig(target=BUGGY, seed=seed, batch=4), 0, ()).execs):
            return seed
    raise AssertionError(f"no seed of 100 finds {BUGGY} in 4 workloads")


def _in_dask_worker() -> bool:
    from distributed import get_worker

    try:
        get_worker()
    except ValueError:
        return False
    return True


@pytest.fixture(scope="module")
def cluster() -> DaskRunner:
    with open_scheduler("local:2") as runner:
        yield runner


def campaign(crashes: Path, runner: DaskRunner | None = None, **kw: object):
    cfg = CampaignConfig(
        **{
            "target": BUGGY,
            "corpus": None,
            "crashes": crashes,
            "quiet": True,
            "max_execs": 16,
            "seed": finding_seed(),
            "batch": 4,
            "minimize_checks": 60,
            **kw,
        }
    )
    return run_campaign(cfg, runner=runner)


def files(d: Path, pattern: str = "*.pmfuzz") -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted(d.glob(pattern))}


def counts(s) -> dict[str, int]:
    return {sig: info["count"] for sig, info in s.findings.items()}


def test_a_dask_run_finds_what_a_local_run_finds(tmp_path: Path, cluster: DaskRunner) -> None:
    local = campaign(tmp_path / "local", max_execs=12, window=2)
    dask = campaign(tmp_path / "dask", cluster, max_execs=12, window=2)
    assert local.findings and counts(dask) == counts(local)
    assert local.execs == dask.execs == 12 and local.states == dask.states
    assert files(tmp_path / "dask") == files(tmp_path / "local")
    assert files(tmp_path / "dask", "*.txt") == files(tmp_path / "local", "*.txt")
    assert files(tmp_path / "dask" / "corpus") == files(tmp_path / "local" / "corpus")
    # Every finding is the planted bug's (its zeroing lost: stale data, or fsynced zeros lost with it).
    assert all("/lost/xfs_zero_extent\n" in t for t in files(tmp_path / "dask").values())


def test_a_batch_lost_with_its_worker_runs_again(tmp_path: Path, cluster: DaskRunner) -> None:
    marker = tmp_path / "died"
    spec = TargetSpec("tests.test_distributed:DieOnce", (("marker", str(marker)), *BUGGY.options))
    before = set(cluster.client.run(os.getpid).values())
    local = campaign(tmp_path / "local", target=spec, max_execs=12, window=3)
    dask = campaign(tmp_path / "dask", cluster, target=spec, max_execs=12, window=3)
    assert marker.exists(), "no worker died: the test did not test anything"
    cluster.client.wait_for_workers(2, timeout=60)
    after = set(cluster.client.run(os.getpid).values())
    assert len(after) == 2 and before != after
    assert local.findings and counts(dask) == counts(local) and dask.execs == 12
    assert files(tmp_path / "dask") == files(tmp_path / "local")


def _pmfuzz(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pmfuzz", *args], capture_output=True, text=True, cwd=ROOT)


def regress(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    with pytest.raises(SystemExit) as e:
        main(["regress", *args])
    assert e.value.code == 0
    return capsys.readouterr().out


def test_cli_run_and_regress_on_a_scheduler(
    tmp_path: Path, cluster: DaskRunner, capsys: pytest.CaptureFixture[str]
) -> None:
    address = cluster.client.scheduler.address
    common = ["--max-execs", "8", "--bugs", "zero-after-commit", "--no-corpus", "--quiet", "--batch", "4"]
    common += ["--seed", str(finding_seed())]
    r = _pmfuzz("run", "--scheduler", address, "--crashes", str(tmp_path / "dask"), *common)
    assert r.returncode == 0, r.stderr
    local = campaign(tmp_path / "local", max_execs=8, minimize_checks=CampaignConfig().minimize_checks)
    assert local.findings and files(tmp_path / "dask") == files(tmp_path / "local")
    assert "Warning" not in r.stderr and "Traceback" not in r.stderr
    assert all(f"new {sig}" in r.stdout for sig in local.findings)
    plain = regress(capsys, str(tmp_path / "local"))
    spread = regress(capsys, "--scheduler", address, str(tmp_path / "local"))
    assert spread == plain and f"{len(local.findings)} passed, 0 failed" in spread


def test_bad_or_missing_scheduler_is_one_line_and_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def run(*args: str) -> str:
        with pytest.raises(SystemExit) as e:
            main(["run", "--max-execs", "1", "--no-corpus", "--crashes", str(tmp_path), *args])
        assert e.value.code == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
        return err

    assert "'local:0'" in run("--scheduler", "local:0")
    assert "'elsewhere'" in run("--scheduler", "elsewhere")
    assert "--workers" in run("--scheduler", "local:2", "--workers", "2")
    monkeypatch.setitem(sys.modules, "distributed", None)
    assert "pip install 'pmfuzz[dask]'" in run("--scheduler", "local:2")


CORPUS = (
    "create f0\nwrite f0 0 4096\nfsync f0\n",
    "create f1\nmmap m0 f1 0 8192 sync\nfault m0 0 write\nstore m0 64 64\npersist m0 64 64\n",
    "create f0\ncreate f1\nreflink f0 f1\nsync\n",
)


@settings(
    max_examples=12,
    deadline=None,
    # batch_workloads draws through pmfuzz.gen.drawing.Drawer, itself a @given run by fuzz_one_input.
    suppress_health_check=[h for h in HealthCheck if h.name == "nested_given"],
)
@given(
    seed=st.integers(0, 2**32),
    index=st.integers(0, 10**6),
    other=st.integers(0, 10**6),
    corpus=st.lists(st.sampled_from(CORPUS), max_size=3),
    todo=st.lists(st.sampled_from(CORPUS), max_size=3),
)
def test_a_batch_depends_only_on_its_arguments(
    seed: int, index: int, other: int, corpus: list[str], todo: list[str]
) -> None:
    cfg = CampaignConfig(target=BUGGY, seed=seed, batch=4)

    def texts(i: int, c: list[str], t: list[str]) -> list[tuple[str, dict[str, str]]]:
        return [(format_workload(w), v) for w, v in batch_workloads(cfg, i, c, t)]

    first = texts(index, corpus, todo)
    texts(other, list(CORPUS), [])
    assert texts(index, corpus, todo) == first
    assert len(first) == 4 and [w for w, _ in first[: len(todo)]] == todo[:4]
