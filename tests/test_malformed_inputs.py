"""Malformed input gets one short `pmfuzz: error:` line and exit 2: never a traceback, a hang or a finding.

The named cases are the ones issue #15 found (each took a traceback, minutes or gigabytes
before); `test_fuzzed_inputs_give_one_line_errors` mutates corpus files and traces with
hypothesis in a child process under a memory cap and a hang guard (`tests/malformed.py`;
`benchmarks/malformed_inputs.py` runs 10,000 variants).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from pmfuzz.cli import main

ROOT = Path(__file__).resolve().parents[1]
V1 = "# pmfuzz reproducer v1\n"


def _run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as e:
        main(args)
    out, err = capsys.readouterr()
    return int(e.value.code or 0), out, err


def _one_line_error(code: int, err: str, *needles: str) -> None:
    assert code == 2, err
    assert err.count("\n") == 1 and err.startswith("pmfuzz: error: ") and len(err) < 500, err
    for n in needles:
        assert n in err, err


@pytest.mark.parametrize(
    ("text", "needles"),
    [
        (V1 + "create f0\nwrite f0 010 8\n", ["r.pmfuzz:3:10:", "offset '010' has a leading zero"]),
        (V1 + "create f0\nwrite f0 0 " + "9" * 5000 + "\n", ["r.pmfuzz:3:12:", "length '99999", "(5000 chars)"]),
        (V1 + "create f0\nwrite f0 0 1073741823\n", ["r.pmfuzz:3:", "reaches byte 1073741823, beyond the device"]),
        (V1 + "# device: 4G\ncreate f0\n", ["r.pmfuzz:2:", "device size 4 GiB is beyond the limit of 256 MiB"]),
        (V1 + "# device: 8M\ntruncate f0 16M\n", ["r.pmfuzz:3:", "beyond the device of 8 MiB"]),
        (V1 + "# schedule: 3=1x300000000\ncreate f0\n", ["r.pmfuzz:2:", "more than 100000 decisions"]),
        (V1 + "# device: 0\ncreate f0\n", ["r.pmfuzz:2:", "positive whole number of 4 KiB pages, got 0"]),
        (V1 + "# device: 1\ncreate f0\n", ["r.pmfuzz:2:", "got 1"]),
        (V1 + "# device: 12345\ncreate f0\n", ["r.pmfuzz:2:", "got 12345"]),
        (V1 + "# device: 64K\ncreate f0\n", ["target daxfs cannot format a device of 64 KiB"]),
        ("# target: daxfs bugs=no-zero\ncreate f0\n", ["r.pmfuzz:1:", "without the version line"]),
        ("# device: 1M\n" + V1 + "create f0\n", ["r.pmfuzz:1:", "the version line must come first"]),
        (V1 + "create f0\n# expect: clean\n", ["r.pmfuzz:3:", "after the first op"]),
        (V1 + "create f0\nwrite f0 0 " + "x" * 900_000 + "\n", ["expected a number for length", "(900000 chars)"]),
        (V1 + "# target: os:system command=true\ncreate f0\n", ["not a registered target"]),
        (V1 + "crate f0 " + "y" * 100_000 + "\n", ["unknown op 'crate'"]),
    ],
)
def test_malformed_reproducer_is_one_short_line(
    tmp_path: Path, text: str, needles: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    f = tmp_path / "r.pmfuzz"
    f.write_text(text)
    for cmd in ("replay", "minimize"):
        code, out, err = _run([cmd, str(f)], capsys)
        _one_line_error(code, err, *needles)
        assert "Traceback" not in out + err


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["run", "--hours", "-1"], "'-1' is not a finite number above 0"),
        (["run", "--minutes", "-5"], "'-5' is not a finite number above 0"),
        (["run", "--seconds", "nan"], "'nan' is not a finite number above 0"),
        (["run", "--seconds", "inf"], "'inf' is not a finite number above 0"),
        (["run", "--seconds", "1", "--device", "0"], "positive whole number of 4 KiB pages, got 0"),
        (["run", "--seconds", "1", "--device", "4G"], "beyond the limit of 256 MiB"),
        (["run", "--seconds", "1", "--device", "64K", "--no-corpus"], "cannot format a device of 64 KiB"),
        (["run", "--bogus"], "No such option '--bogus'"),
        (["replay"], "Missing argument 'FILE'"),
        (["frobnicate"], "No such command 'frobnicate'"),
        (["run", "--seconds", "1", "--seed", "9" * 6000], "--seed"),
        (["run", "--seconds", "1", "--target", "os:system"], "not a class implementing the target protocol"),
        (["run", "--seconds", "1", "--batch", "1" + "0" * 20], "is not in the range 1<=x<=10000"),
        (["run", "--seconds", "1", "--workers", "100000"], "is not in the range 1<=x<=256"),
        (["trace", "check", "x.log", "--checker", "c.py:f", "--timeout", "1e300"], "is not in the range"),
    ],
)
def test_bad_flags_are_one_line(tmp_path: Path, args: list[str], needle: str, capsys) -> None:
    code, _out, err = _run([*args, "--crashes", str(tmp_path / "c")] if args[0] == "run" else args, capsys)
    _one_line_error(code, err, needle)
    assert not (tmp_path / "c" / "stats.jsonl").exists()  # refused before anything ran


def test_a_fifo_is_refused_without_blocking(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fifo = tmp_path / "r.pmfuzz"
    os.mkfifo(fifo)
    unblock = threading.Timer(60, lambda: open(fifo, "wb").close())  # a hang would end here, and fail below
    unblock.start()
    try:
        for args in (["replay", str(fifo)], ["trace", "check", str(fifo), "--checker", "x.py:f"]):
            code, _out, err = _run(args, capsys)
            _one_line_error(code, err, "is not a regular file")
    finally:
        unblock.cancel()


@pytest.mark.parametrize(
    ("name", "text", "needle"),
    [
        ("deep.jsonl", "[" * 100_000 + "\n", "deep.jsonl:1:1: JSON nested too deeply"),
        ("big.jsonl", '{"event": "store", "addr": 1' + "0" * 5000 + ', "data": "00"}\n', "unreadable JSON"),
        ("far.jsonl", '{"event": "store", "addr": "0xffffffffff", "data": "00"}\n', "reaches past the largest device"),
        ("hex.jsonl", '{"event": "clwb", "addr": "0x' + "f" * 30 + '", "size": 64}\n', "is not a number"),
        ("flip.log", "START|REGISTER_FILE;/p;0x7f0000000000;0x4400000000;0x0|FENCE|STOP", "beyond the limit"),
        ("store.log", "START|REGISTER_FILE;/p;0x1000;0x1000;0x0|STORE;0x1000;0x1;0xfffffff|STOP", "at most 4096"),
        ("digits.log", "START|REGISTER_FILE;/p;0x1000;0x1000;0x0|STORE;0x1000;0x1;0x" + "1" * 9000 + "|STOP", "digits"),
    ],
)
def test_malformed_trace_is_one_short_line(tmp_path: Path, name: str, text: str, needle: str, capsys) -> None:
    f = tmp_path / name
    f.write_text(text)
    code, _out, err = _run(["trace", "check", str(f), "--checker", "tests.malformed:consistent"], capsys)
    _one_line_error(code, err, needle)


def test_fuzzed_inputs_give_one_line_errors(tmp_path: Path) -> None:
    """Hypothesis mutates corpus files and traces; replay, minimize, regress and trace check judge each.

    A child process under a 3 GiB address-space cap and a hang guard: any traceback, exit status
    other than 0/1/2, error that is not one short line, target-error finding, hang or abort fails.
    """
    state = tmp_path / "case.json"
    res = subprocess.run(
        [sys.executable, "-m", "tests.malformed", "--examples", "60", "--state", str(state)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "OPENBLAS_NUM_THREADS": "1"},
    )
    last = state.read_text() if state.exists() else "none"
    assert res.returncode == 0, f"{res.stderr[-6000:]}\nlast case: {last}"
    summary = json.loads(res.stdout)
    assert summary["examples"] == 60
    assert any("rejected" in k for k in summary["outcomes"]) and any("accepted" in k for k in summary["outcomes"])
