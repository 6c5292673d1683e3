"""The command line: regress over the corpus, replay exit codes, one-line errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def pmfuzz(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pmfuzz", *args], cwd=cwd, capture_output=True, text=True)


def test_regress_corpus_passes() -> None:
    res = pmfuzz("regress", "corpora/regression")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "0 failed" in res.stdout
    files = sorted((ROOT / "corpora" / "regression").glob("*.pmfuzz"))
    assert files and res.stdout.count("ok ") == len(files)
    assert f"{len(files)} passed, 0 failed" in res.stdout


def test_replay_exit_codes(tmp_path: Path) -> None:
    assert pmfuzz("replay", "corpora/regression/no-zero.pmfuzz").returncode == 1
    assert pmfuzz("replay", "corpora/regression/no-zero--zero.pmfuzz").returncode == 0
    bad = tmp_path / "bad.pmfuzz"
    bad.write_text("# pmfuzz reproducer v1\ncreate f0\nwrite f0 nowhere 3\n")
    res = pmfuzz("replay", str(bad))
    assert res.returncode == 2
    assert res.stderr.count("\n") == 1 and "bad.pmfuzz:3:" in res.stderr and "Traceback" not in res.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["replay", "/nonexistent/file.pmfuzz"],
        ["frobnicate"],
        ["replay", "--bogus", "x"],
        ["regress", "/nonexistent"],
    ],
)
def test_bad_invocations_are_one_clear_error(args: list[str]) -> None:
    res = pmfuzz(*args)
    assert res.returncode == 2
    assert "Traceback" not in res.stderr and res.stderr.strip()


def test_regress_reports_mismatch(tmp_path: Path) -> None:
    (tmp_path / "x.pmfuzz").write_text(
        "# pmfuzz reproducer v1\n# target: daxfs design=zero\n# expect: stale-exposure\ncreate f0\n"
    )
    (tmp_path / "y.pmfuzz").write_text("# pmfuzz reproducer v1\n# target: daxfs design=zero\ncreate f0\n")
    res = pmfuzz("regress", str(tmp_path))
    assert res.returncode == 2
    assert "FAIL  x.pmfuzz" in res.stdout and "ERROR y.pmfuzz" in res.stdout


def test_help_and_lists() -> None:
    assert pmfuzz("--help").returncode == 0
    bugs = pmfuzz("bugs").stdout
    assert "zero-after-commit" in bugs and "caught by: stale-exposure" in bugs
    assert "cow-remap" in pmfuzz("designs").stdout


def test_the_cli_module_runs_as_a_program() -> None:
    """`python -m pmfuzz.cli` is the command line too, not a silent exit 0."""
    res = subprocess.run([sys.executable, "-m", "pmfuzz.cli", "bugs"], cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 0 and "caught by: stale-exposure" in res.stdout, res.stderr
    res = subprocess.run(
        [sys.executable, "-m", "pmfuzz.cli", "nosuchcommand"], cwd=ROOT, capture_output=True, text=True
    )
    assert res.returncode == 2 and res.stderr.startswith("pmfuzz: error:")


def test_regress_replays_every_file_whatever_one_does(tmp_path: Path) -> None:
    """A target that cannot be built or a device it cannot format is that file's ERROR line; the rest still run."""
    v1 = "# pmfuzz reproducer v1\n"
    (tmp_path / "a.pmfuzz").write_text(v1 + "# target: daxfs design=nope\n# expect: clean\ncreate f0\n")
    (tmp_path / "b.pmfuzz").write_text(v1 + "# device: 64K\n# expect: clean\ncreate f0\n")
    (tmp_path / "c.pmfuzz").write_text(v1 + "# target: daxfs\n# expect: clean\ncreate f0\n")
    res = pmfuzz("regress", str(tmp_path))
    assert res.returncode == 2, res.stdout + res.stderr
    lines = res.stdout.splitlines()
    assert lines[0].startswith("ERROR a.pmfuzz: ") and "design" in lines[0]
    assert lines[1].startswith("ERROR b.pmfuzz: target daxfs cannot format a device of 64 KiB")
    assert lines[2].startswith("ok    c.pmfuzz")
    assert lines[3] == "1 passed, 0 failed, 2 in error, of 3" and res.stderr == ""
