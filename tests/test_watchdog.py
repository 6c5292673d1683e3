"""Deadlines on calls into a target: loops and sleeps become findings naming the target, never hangs or tracebacks."""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from oracles import OracleName
from pmfuzz.cli import main
from pmfuzz.execution.watchdog import TargetHang, deadline
from pmfuzz.judging.engine import Options, check
from pmfuzz.lang.workload import parse
from pmfuzz.verdict import DEFAULT_OP_TIMEOUT
from tests.looping_target import LoopingTarget

ROOT = Path(__file__).resolve().parent.parent
LIMIT = 0.2
HUNG = "op 1 `write f0 0 100` did not return within {:g} s (target looping loops or hangs)"
W = parse("create f0\nwrite f0 0 100\nfsync f0\nwrite f0 50 100\n")
OPTS = Options(device_size=1 << 20, op_timeout=LIMIT)


def _spin() -> None:
    while True:
        pass


def _in_thread(fn) -> object:
    """Run fn on a fresh thread; return its result or the BaseException it raised."""
    out: list[object] = []

    def body() -> None:
        try:
            out.append(fn())
        except BaseException as e:
            out.append(e)

    t = threading.Thread(target=body)
    t.start()
    t.join(20)
    assert not t.is_alive(), "the thread's deadline did not fire"
    return out[0]


def _timed_hang(block) -> tuple[TargetHang, float]:
    t0 = time.monotonic()
    with pytest.raises(TargetHang) as ei:
        block()
    return ei.value, time.monotonic() - t0


# -- the context manager ------------------------------------------------------------------


def test_busy_loop_on_main_thread_is_interrupted() -> None:
    def block() -> None:
        with deadline(LIMIT, "the spin"):
            _spin()

    e, took = _timed_hang(block)
    assert LIMIT <= took < LIMIT + 1.0
    assert str(e) == "the spin did not return within 0.2 s"
    assert not isinstance(e, Exception)


def test_sleep_on_main_thread_is_interrupted() -> None:
    def block() -> None:
        with deadline(LIMIT, "the nap", target="sleepy"):
            time.sleep(100)

    e, took = _timed_hang(block)
    assert took < LIMIT + 1.0
    assert str(e) == "the nap did not return within 0.2 s (target sleepy loops or hangs)"


def test_except_exception_in_the_block_cannot_swallow_it() -> None:
    def block() -> None:
        with deadline(LIMIT, "stubborn"):
            while True:
                try:
                    _spin()
                except Exception:  # what a careless target does
                    continue

    _timed_hang(block)


def test_fast_block_and_none_are_not_interrupted_and_nothing_fires_after() -> None:
    for limit in (LIMIT, None):
        with deadline(limit, "quick"):
            x = sum(range(1000))
        assert x == 499500
    time.sleep(LIMIT * 1.5)  # a timer left armed would raise here


def test_bad_limits_are_refused() -> None:
    for bad in (0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="deadline must be positive"):
            deadline(bad, "x")


def test_nested_on_main_thread_inner_fires_outer_keeps_running() -> None:
    with deadline(5.0, "outer"):
        with pytest.raises(TargetHang) as ei, deadline(LIMIT, "inner"):
            _spin()
        assert ei.value.what == "inner"
        time.sleep(LIMIT)  # the outer is still armed and far from due
    with pytest.raises(TargetHang) as ei, deadline(LIMIT, "outer"), deadline(5.0, "inner"):
        _spin()
    assert ei.value.what == "outer"


def test_previous_alarm_handler_and_timer_are_restored() -> None:
    fired: list[int] = []
    old = signal.signal(signal.SIGALRM, lambda s, f: fired.append(s))
    try:
        # The foreign timer is due well after the spin's deadline: a deadline counts the block's own
        # time, so on a loaded machine the spin may take longer than LIMIT of wall time.
        signal.setitimer(signal.ITIMER_REAL, 2.0)
        with deadline(LIMIT, "inside"):
            pass
        with pytest.raises(TargetHang), deadline(LIMIT, "spinning"):
            _spin()
        assert signal.getsignal(signal.SIGALRM) is not None and fired == []
        remaining = signal.getitimer(signal.ITIMER_REAL)[0]
        assert 0 < remaining <= 2.0
        time.sleep(remaining + 0.2)
        assert fired == [signal.SIGALRM]
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def test_alarm_handler_from_c_is_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    """A SIGALRM handler Python cannot put back (getsignal gives None): the watchdog thread serves instead."""
    import _signal

    import pmfuzz.execution.watchdog as wd

    class FromC:
        def __getattr__(self, name: str) -> object:
            return getattr(_signal, name)

        def getsignal(self, signum: int) -> None:
            return None

    monkeypatch.setattr(wd, "_signal", FromC())
    before = signal.getsignal(signal.SIGALRM)
    seen: list[object] = []

    def block() -> None:
        with deadline(LIMIT, "beside libFuzzer"):
            seen.append(signal.getsignal(signal.SIGALRM))
            _spin()

    e, took = _timed_hang(block)
    assert e.what == "beside libFuzzer" and took < LIMIT + 1.0
    assert seen == [before] and signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)


def test_busy_loop_in_worker_thread_is_interrupted_and_fast_block_is_not() -> None:
    def hang() -> None:
        with deadline(LIMIT, "thread spin"):
            _spin()

    t0 = time.monotonic()
    e = _in_thread(hang)
    assert isinstance(e, TargetHang) and e.what == "thread spin" and time.monotonic() - t0 < LIMIT + 1.0

    def fast() -> str:
        with deadline(LIMIT, "quick"):
            pass
        time.sleep(LIMIT * 1.5)
        return "done"

    assert _in_thread(fast) == "done"


def test_nested_in_worker_thread() -> None:
    def block() -> str:
        with deadline(5.0, "outer"):
            try:
                with deadline(LIMIT, "inner"):
                    _spin()
            except TargetHang as e:
                assert e.what == "inner"
            time.sleep(LIMIT)
        return "outer finished"

    assert _in_thread(block) == "outer finished"


@pytest.mark.parametrize("where", ["main", "thread"])
def test_blocks_ending_as_the_deadline_fires_raise_inside_or_not_at_all(where: str) -> None:
    """Blocks that end before, at and after their limit: a TargetHang is raised inside or not at all, never after."""
    limit = 0.01

    def sweep() -> tuple[int, int]:
        hangs = clean = 0
        for k in range(60):
            end = time.monotonic() + limit * (0.5 + 2.5 * k / 59)
            try:
                with deadline(limit, "edge"):
                    while time.monotonic() < end:
                        pass
                clean += 1
            except TargetHang:
                hangs += 1
            t = time.monotonic() + 2 * limit
            while time.monotonic() < t:
                pass
        return hangs, clean

    # How many end each way depends on the machine's load; what must hold is that no TargetHang
    # escapes after its block (it would leave `sweep` and fail the test) and every block is counted.
    hangs, clean = sweep() if where == "main" else _in_thread(sweep)  # type: ignore[misc]
    assert hangs + clean == 60


def test_target_hang_pickles_with_its_message() -> None:
    e = TargetHang("op 1 `sync`", 0.5, "x")
    assert str(pickle.loads(pickle.dumps(e))) == str(e)


# -- the engine ---------------------------------------------------------------------------


def test_guarded_target_that_behaves_is_clean() -> None:
    assert OPTS.op_timeout == LIMIT and Options().op_timeout == DEFAULT_OP_TIMEOUT
    for opts in (OPTS, Options(device_size=1 << 20, op_timeout=None)):
        v = check(LoopingTarget(), W, opts)
        assert v.clean and v.stats.states > 0


@pytest.mark.parametrize("how", ["spin", "sleep", "stores"])
def test_execute_that_never_returns_is_a_target_error(how: str) -> None:
    t0 = time.monotonic()
    v = check(LoopingTarget(hang="write", how=how), W, OPTS)
    assert time.monotonic() - t0 < 10
    assert [f.oracle for f in v.findings] == [OracleName.TARGET_ERROR]
    f = v.findings[0]
    assert f.message == HUNG.format(LIMIT)
    assert f.op == 1 and "looping_target.py" in (f.traceback or "") and "Traceback" not in (f.traceback or "")
    assert "stopped at op 1: the target hung" in v.notes
    assert v.stats.ops == 1 and v.stats.states > 0  # the crash states of op 0 are still judged


def test_recovery_that_never_returns_is_a_mount_finding_and_the_run_finishes() -> None:
    t0 = time.monotonic()
    v = check(LoopingTarget(recovery="hang"), W, OPTS)
    assert time.monotonic() - t0 < 15
    assert v.findings and {f.oracle for f in v.findings} == {OracleName.MOUNT}
    assert all(
        f.message == "recovery failed: recovery (mount) did not return within 0.2 s (target looping loops or hangs)"
        and f.crash is not None
        for f in v.findings
    )
    assert any(n.startswith("the target hung at ") for n in v.notes)
    assert v.stats.mounts > 0  # crash images without a committed record still mount and are judged


def test_format_that_never_returns_is_a_target_error() -> None:
    v = check(LoopingTarget(mkfs="hang"), W, Options(device_size=1 << 20, op_timeout=LIMIT, seed=1))
    assert [f.message for f in v.findings] == [
        "formatting a fresh device failed: format did not return within 0.2 s (target looping loops or hangs)"
    ]


def test_reading_files_that_never_returns_is_a_target_error() -> None:
    v = check(LoopingTarget(view="hang"), W, OPTS)
    first, *crashed = v.findings
    assert first.oracle is OracleName.TARGET_ERROR and first.message == (
        "after op 0 `create f0`, reading the target's files: files() did not return within 0.2 s "
        "(target looping loops or hangs)"
    )
    assert any(n.startswith("the target hung at ") for n in v.notes)
    assert crashed and all(
        f.oracle is OracleName.MOUNT
        and f.message.startswith("reading the recovered image: oracle ")
        and f.message.endswith(" did not return within 0.2 s (target looping loops or hangs)")
        for f in crashed
    )


@pytest.mark.parametrize(
    ("switch", "said"),
    [
        ({"returns": "write:none"}, "target looping: op 1 `write f0 0 100` returned None, not a pmfuzz.target.Result"),
        ({"returns": "write:int"}, "target looping: op 1 `write f0 0 100` returned 7, not a pmfuzz.target.Result"),
        ({"returns": "create:str"}, "target looping: op 0 `create f0` returned 'ok', not a pmfuzz.target.Result"),
        ({"view": "files"}, "target looping: files() returned [1, 'f0'], not a list of str"),
        ({"view": "size"}, "target looping: size('f0') returned 'big', not an int >= 0 or None"),
        ({"view": "read"}, "target looping: read('f0', 0, 0) returned 'text', not bytes of length <= 0"),
        ({"view": "short"}, "target looping: read('f0', 0, 0) returned b'\\x00', not bytes of length <= 0"),
    ],
)
def test_nonsense_results_are_target_errors(switch: dict[str, str], said: str) -> None:
    v = check(LoopingTarget(**switch), W, OPTS)
    first = v.findings[0]
    assert first.oracle is OracleName.TARGET_ERROR and first.message.endswith(said), first.message
    assert first.traceback is None


def test_hang_in_a_parallel_group_is_a_target_error() -> None:
    w = parse("create f0\ncreate f1\nparallel { write f0 0 100 ; truncate f1 10 }\n")
    v = check(LoopingTarget(hang="write"), w, OPTS)
    assert [f.oracle for f in v.findings] == [OracleName.TARGET_ERROR]
    assert v.findings[0].op == 2
    assert HUNG.replace("op 1", "op 2").format(LIMIT) in v.findings[0].message


def test_view_that_raises_while_running_is_a_target_error() -> None:
    v = check(LoopingTarget(view="raise"), W, OPTS)
    first = v.findings[0]
    assert first.oracle is OracleName.TARGET_ERROR
    assert first.message == "after op 0 `create f0`, reading the target's files: RuntimeError: broken index"
    assert "looping_target.py" in (first.traceback or "")


def test_view_hang_after_a_parallel_group_is_a_target_error() -> None:
    w = parse("create f0\nparallel { write f0 0 100 ; create f1 }\nfsync f0\n")
    v = check(LoopingTarget(view="hang-f1"), w, OPTS)
    assert [f.oracle for f in v.findings] == [OracleName.TARGET_ERROR]
    assert v.findings[0].message == (
        "after the parallel group at op 1, reading the target's files: files() did not return within 0.2 s "
        "(target looping loops or hangs)"
    )


# -- the command line ---------------------------------------------------------------------


LOOPING = "tests.looping_target:LoopingTarget"
"""A module:Class target: a reproducer may name it, only the command line (`--target`) may import it."""


def _reproducer(tmp_path: Path, target: str, name: str = "hang.pmfuzz") -> Path:
    p = tmp_path / name
    p.write_text(
        f"# pmfuzz reproducer v1\n# target: {target}\n# domain: adr\n# device: 1M\n# expect: target-error\n"
        "create f0\nwrite f0 0 100\n"
    )
    return p


def test_cli_replay_of_a_looping_target_names_it_in_one_line(tmp_path: Path) -> None:
    f = _reproducer(tmp_path, "tests.looping_target:LoopingTarget hang=write how=sleep")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    res = subprocess.run(
        [sys.executable, "-m", "pmfuzz", "replay", str(f), "--op-timeout", "0.5", "--target", LOOPING],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=60,
    )
    assert res.returncode == 1
    assert "Traceback" not in res.stdout + res.stderr
    said = [ln for ln in res.stdout.splitlines() if "(target looping loops or hangs)" in ln]
    assert said == [f"1. [target-error] {HUNG.format(0.5)}"]


@pytest.mark.parametrize("bad", ["-1", "abc", "nan", "inf"])
def test_cli_bad_op_timeout_is_one_error_line(tmp_path: Path, bad: str, capsys: pytest.CaptureFixture[str]) -> None:
    f = _reproducer(tmp_path, "tests.looping_target:LoopingTarget")
    for cmd in ("replay", "minimize"):
        with pytest.raises(SystemExit) as ei:
            main([cmd, str(f), "--op-timeout", bad, "--target", LOOPING])
        assert ei.value.code == 2
        assert capsys.readouterr().err.splitlines() == [
            f"pmfuzz: error: Invalid value for '--op-timeout': {bad!r} is not a number of seconds >= 0 "
            f"(0: no limit) (see 'pmfuzz {cmd} --help')"
        ]
    with pytest.raises(SystemExit) as ei:
        main(["regress", str(tmp_path), "--op-timeout", bad])
    assert ei.value.code == 2


def test_cli_regress_and_minimize_take_the_limit(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = _reproducer(tmp_path, "tests.looping_target:LoopingTarget hang=write")
    t0 = time.monotonic()
    with pytest.raises(SystemExit) as ei:
        main(["regress", str(tmp_path), "--op-timeout", "0.3", "--target", LOOPING])
    assert (
        ei.value.code == 0 and "ok    hang.pmfuzz  (expect target-error; got target-error)" in capsys.readouterr().out
    )
    main(["minimize", str(f), "--op-timeout", "0.3", "--checks", "20", "--target", LOOPING])
    out = capsys.readouterr().out
    assert "did not return within 0.3 s (target looping loops or hangs)" in out
    assert time.monotonic() - t0 < 30
    with pytest.raises(SystemExit) as ei:
        main(
            [
                "replay",
                str(_reproducer(tmp_path, "tests.looping_target:LoopingTarget", "ok.pmfuzz")),
                "--op-timeout",
                "0",
                "--target",
                LOOPING,
            ]
        )
    assert ei.value.code == 0
