"""A reproducer is data: its `# target:` line can never make pmfuzz import or call anything.

Each line below ran code through `replay`, `minimize` or `regress` before issue #15 (shell
commands, deleted or truncated files, a debugger, an abort, and `sys:exit` turning a red CI run
green). Now a reproducer may name registered targets only; `--target module:Class` on the command
line imports a class, checked against the target protocol before anything of it is called.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from pmfuzz.cli import main
from pmfuzz.errors import PmfuzzError
from pmfuzz.target import admit, make_target

ROOT = Path(__file__).resolve().parents[1]


def _hostile_targets(tmp: Path) -> dict[str, str]:
    """name -> `# target:` value; each would leave a visible effect in `tmp` if it ran."""
    (tmp / "victim").mkdir()
    (tmp / "victim" / "keep.txt").write_text("precious")
    (tmp / "keep.txt").write_text("precious")
    (tmp / "script.py").write_text(f"open({str(tmp / 'ran-script')!r}, 'w').close()\n")
    return {
        "system": f"os:system command=touch${{IFS}}{tmp}/ran-system",
        "getoutput": f"subprocess:getoutput cmd=touch${{IFS}}{tmp}/ran-getoutput",
        "rmtree": f"shutil:rmtree path={tmp}/victim",
        "remove": f"os:remove path={tmp}/keep.txt",
        "open": f"builtins:open file={tmp}/keep.txt mode=w",
        "run_path": f"runpy:run_path path_name={tmp}/script.py",
        "set_trace": "pdb:set_trace",
        "abort": "os:abort",
        "exit": "sys:exit",
    }


def _effects(tmp: Path) -> list[str]:
    out = [p.name for p in tmp.iterdir() if p.name.startswith("ran-")]
    if not (tmp / "victim" / "keep.txt").exists():
        out.append("rmtree deleted victim/")
    keep = tmp / "keep.txt"
    if not keep.exists() or keep.read_text() != "precious":
        out.append("keep.txt removed or truncated")
    return out


def _write(path: Path, target: str) -> Path:
    path.write_text(f"# pmfuzz reproducer v1\n# target: {target}\n# expect: clean\ncreate f0\nwrite f0 0 100\n")
    return path


def test_regress_over_hostile_reproducers_runs_nothing_and_fails(tmp_path: Path) -> None:
    """One `regress` run over all of them: every file is an ERROR line, the summary comes, exit 2, no effect."""
    hostile = _hostile_targets(tmp_path)
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for name, target in hostile.items():
        _write(corpus / f"{name}.pmfuzz", target)
    (corpus / "zz-good.pmfuzz").write_text("# pmfuzz reproducer v1\n# target: daxfs\n# expect: clean\ncreate f0\n")
    res = subprocess.run(
        [sys.executable, "-m", "pmfuzz", "regress", str(corpus)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        timeout=300,
    )
    assert res.returncode == 2, res.stdout + res.stderr
    assert _effects(tmp_path) == []
    errors = [ln for ln in res.stdout.splitlines() if ln.startswith("ERROR ")]
    assert len(errors) == len(hostile)
    assert all("is not a registered target" in ln and "give --target" in ln for ln in errors), errors
    assert "ok    zz-good.pmfuzz" in res.stdout
    assert res.stdout.splitlines()[-1] == f"1 passed, 0 failed, {len(hostile)} in error, of {len(hostile) + 1}"
    assert "Traceback" not in res.stdout + res.stderr


@pytest.mark.parametrize("command", ["replay", "minimize"])
def test_replay_and_minimize_of_hostile_reproducers_run_nothing(
    tmp_path: Path, command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    hostile = _hostile_targets(tmp_path)
    for name, target in hostile.items():
        with pytest.raises(SystemExit) as e:
            main([command, str(_write(tmp_path / f"{name}.pmfuzz", target))])
        assert e.value.code == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("pmfuzz: error: target ") and "not a registered target" in err
    assert _effects(tmp_path) == []


@pytest.mark.parametrize("spec", ["os:system", "shutil:rmtree", "sys:exit", "os:abort", "builtins:open"])
def test_command_line_import_must_name_a_target_class(spec: str) -> None:
    """Even given on the command line, a function is refused before it is called."""
    with pytest.raises(PmfuzzError, match="not a class implementing the target protocol"):
        admit(spec)


def test_command_line_admits_a_class_that_a_reproducer_then_names(tmp_path: Path) -> None:
    name = "tests.looping_target:LoopingTarget"
    with pytest.raises(PmfuzzError, match=re.escape(f"give --target {name} on the command line")):
        make_target(name + " kind=x")
    admit(name)
    assert make_target(name).name == "looping"


def test_current_directory_is_not_on_the_import_path(tmp_path: Path) -> None:
    """A module lying in the working directory is not imported by the installed `pmfuzz` command."""
    (tmp_path / "evilmod.py").write_text(f"open({str(tmp_path / 'ran-import')!r}, 'w').close()\nclass X: pass\n")
    r = _write(tmp_path / "r.pmfuzz", "evilmod:X")
    pmfuzz = Path(sys.executable).parent / "pmfuzz"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    for args in (["replay", str(r)], ["replay", str(r), "--target", "evilmod:X"]):
        res = subprocess.run([str(pmfuzz), *args], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120)
        assert res.returncode == 2 and res.stderr.count("\n") == 1, res.stderr
    assert "cannot import target module 'evilmod'" in res.stderr
    assert not (tmp_path / "ran-import").exists()
