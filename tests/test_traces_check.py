"""Checking crash images of outside traces: the planted flag bug with three checkers; the models vs brute force."""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import sys
import tempfile
from contextlib import closing
from pathlib import Path

import hypothesis.strategies as st
import pytest
from hypothesis import HealthCheck, given, settings

from pmfuzz.errors import PmfuzzError
from pmfuzz.pmem import Domain
from pmfuzz.traces import (
    CheckOptions,
    Fate,
    ImageSink,
    PythonChecker,
    Semantics,
    Verdict,
    check_trace,
    format_report,
    make_checker,
    parse_jsonl,
    parse_pmemcheck,
    replay,
)

from .pmem_bruteforce import Op, adr, eadr

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data" / "traces"
PMFUZZ_CHECK = [sys.executable, "-m", "pmfuzz", "trace", "check"]
BUGGY = DATA / "flag_before_data.log"
FIXED = DATA / "flag_after_data.log"

C_CHECKER = r"""
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
int flag_ok(const char *path) {
    uint64_t w[10];
    FILE *f = fopen(path, "rb");
    if (!f) return 2;
    size_t n = fread(w, 8, 10, f);
    fclose(f);
    if (n != 10) return 3;
    if (w[0] == 1 && (w[8] != 0x1122334455667788ULL || w[9] != 0x99aabbccddeeff00ULL)) return 1;
    return 0;
}
int segfaults(const char *path) { volatile int *p = 0; (void)path; return *p; }
int needs_markers(const char *path) {
    const char *m = getenv("PMREORDER_MARKERS");
    (void)path;
    return m && strstr(m, "WRITE_RECORD.BEGIN") ? 0 : 1;
}
"""


@pytest.fixture(scope="module")
def libchecker(tmp_path_factory: pytest.TempPathFactory) -> Path:
    gcc = shutil.which("gcc") or shutil.which("cc")
    if gcc is None:
        pytest.skip("no C compiler (gcc) on this machine")
    d = tmp_path_factory.mktemp("lib")
    (d / "flag.c").write_text(C_CHECKER)
    subprocess.run([gcc, "-shared", "-fPIC", "-O1", "-o", str(d / "libflag.so"), str(d / "flag.c")], check=True)
    return d / "libflag.so"


def spec_for(kind: str, lib: Path) -> str:
    if kind == "program":
        return f"{sys.executable} {DATA / 'flag_checker.py'}"
    if kind == "python":
        return f"{DATA / 'flag_checker.py'}:check"
    return f"{lib}:flag_ok"


def run_check(log: Path, spec: str, **kw: object):
    trace = parse_pmemcheck(log.read_text(), source=log.name)
    checker = make_checker(spec, timeout=20)
    try:
        return check_trace(trace, checker, CheckOptions(**kw))  # type: ignore[arg-type]
    finally:
        checker.close()


@pytest.mark.parametrize("kind", ["program", "python", "library"])
@pytest.mark.parametrize("semantics", [Semantics.PX86, Semantics.PMREORDER])
def test_planted_flag_bug_is_flagged_and_the_fix_is_clean(kind: str, semantics: Semantics, libchecker: Path) -> None:
    spec = spec_for(kind, libchecker)
    bad = run_check(BUGGY, spec, semantics=semantics)
    assert not bad.clean
    assert {f.result.verdict for f in bad.findings} == {Verdict.INCONSISTENT}
    for f in bad.findings:
        fates = {s.ordinal: s for s in f.stores}
        assert fates[2].fate is Fate.KEPT and fates[2].markers == ("SET_FLAG",)
        assert Fate.DROPPED in {fates[0].fate, fates[1].fate}
        assert fates[0].markers == ("WRITE_RECORD",)
        assert f.minimized_deviations <= f.deviations and not f.minimized_result.ok
    if semantics is Semantics.PX86:
        assert {f.state_id for f in bad.findings} == {"F0:L1=0", "F0:L1=1"}
    else:
        assert {f.state_id for f in bad.findings} == {"P0:s2", "P0:s0,s2", "P0:s1,s2"}
    text = format_report(bad)
    assert "INCONSISTENT" in text and "[SET_FLAG]" in text and "dropped" in text
    good = run_check(FIXED, spec, semantics=semantics)
    assert good.clean and good.distinct >= 4
    assert "all crash images consistent" in format_report(good)


def test_cli_exit_codes_for_the_planted_bug() -> None:
    def cli(log: Path) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "pmfuzz", "trace", "check", str(log), "--checker", f"{DATA}/flag_checker.py:check"],
            cwd=ROOT,
            capture_output=True,
            text=True,
        )

    bad, good = cli(BUGGY), cli(FIXED)
    assert bad.returncode == 1 and "F0:L1=0" in bad.stdout and "minimized: F0:L1=0" in bad.stdout
    assert good.returncode == 0 and "all crash images consistent" in good.stdout


def test_crashing_and_hanging_checkers_are_reported_not_raised(libchecker: Path, tmp_path: Path) -> None:
    crash = run_check(BUGGY, f"{libchecker}:segfaults", minimize=False)
    assert crash.findings and {f.result.verdict for f in crash.findings} == {Verdict.CRASHED}
    assert "SIGSEGV" in crash.findings[0].result.reason
    (tmp_path / "chk.py").write_text(
        "def boom(image):\n    raise ValueError('bad magic')\ndef spin(image):\n    while True:\n        pass\n"
    )
    boom = run_check(FIXED, f"{tmp_path}/chk.py:boom", minimize=False)
    assert boom.findings[0].result.verdict is Verdict.CRASHED
    assert "ValueError: bad magic" in boom.findings[0].result.reason
    trace = parse_pmemcheck(FIXED.read_text())
    spinner = make_checker(f"{tmp_path}/chk.py:spin", timeout=0.05)
    try:
        spin = check_trace(trace, spinner, CheckOptions(minimize=False))
    finally:
        spinner.close()
    assert {f.result.verdict for f in spin.findings} == {Verdict.TIMEOUT}
    prog = tmp_path / "killself.sh"
    prog.write_text("#!/bin/sh\nkill -SEGV $$\n")
    prog.chmod(0o755)
    killed = run_check(FIXED, str(prog), minimize=False)
    assert {f.result.verdict for f in killed.findings} == {Verdict.CRASHED}
    assert "SIGSEGV" in killed.findings[0].result.reason
    slow = tmp_path / "slow.sh"
    slow.write_text("#!/bin/sh\nsleep 30\n")
    slow.chmod(0o755)
    checker = make_checker(str(slow), timeout=0.2)
    timed = check_trace(trace, checker, CheckOptions(minimize=False, max_states=1))
    assert timed.findings and timed.findings[0].result.verdict is Verdict.TIMEOUT


def test_checkers_see_the_markers_like_pmreorder_sets_them(libchecker: Path, tmp_path: Path) -> None:
    # Every crash point of the fixed log comes after WRITE_RECORD.BEGIN.
    assert run_check(FIXED, f"{libchecker}:needs_markers").clean
    prog = tmp_path / "markers.sh"
    prog.write_text('#!/bin/sh\ncase "$PMREORDER_MARKERS" in *WRITE_RECORD.BEGIN*) exit 0;; esac\nexit 1\n')
    prog.chmod(0o755)
    assert run_check(FIXED, str(prog)).clean
    with closing(PythonChecker("x:f", lambda v: None, 5)) as none, pytest.raises(PmfuzzError, match="returned None"):
        check_trace(parse_pmemcheck(FIXED.read_text()), none)


def test_minimized_state_keeps_only_the_lines_that_matter() -> None:
    # Four lines in flight at one fence; the image is bad only when line 3 (the flag) persists without line 0.
    lines = [f'{{"event": "store", "addr": {64 * i}, "data": "{i + 1:02x}"}}' for i in range(4)]
    text = "\n".join([*lines, '{"event": "clwb", "addr": 0, "size": 256}', '{"event": "sfence"}'])

    def flag_needs_data(image: memoryview) -> bool | str:
        return "flag without data" if image[192] == 4 and image[0] != 1 else True

    with closing(PythonChecker("t:f", flag_needs_data, 5)) as checker:
        report = check_trace(parse_jsonl(text, source="t.jsonl"), checker)
    worst = max(report.findings, key=lambda f: f.deviations)
    assert worst.deviations == 3
    assert worst.minimized_id == "F0:L0=0" and worst.minimized_deviations == 1
    assert report.checks > report.distinct - 1  # minimization asked the checker about no image twice
    assert all(f.minimized_id == "F0:L0=0" for f in report.findings)


def test_images_are_rewritten_incrementally(tmp_path: Path) -> None:
    size = 1 << 20
    events = [f'{{"event": "device", "size": {size}}}']
    for k in range(6):
        events += [f'{{"event": "store", "addr": {4096 * j + 64 * k}, "data": "ab"}}' for j in range(4)]
        events += ['{"event": "clwb", "addr": 0, "size": 16384}', '{"event": "sfence"}']
    trace = parse_jsonl("\n".join(events))
    seen: list[int] = []
    prog = tmp_path / "count.sh"
    prog.write_text(f'#!/bin/sh\nstat -c %s "$1" >> {tmp_path}/sizes\n')
    prog.chmod(0o755)
    checker = make_checker(str(prog))
    report = check_trace(trace, checker, CheckOptions(strategy="bounded"))  # type: ignore[arg-type]
    seen = [int(x) for x in (tmp_path / "sizes").read_text().split()]
    assert report.clean and len(seen) == report.distinct > 20 and set(seen) == {size}
    assert report.bytes_written < size // 8  # far less than one whole image, over every state


# -- the models against brute force ---------------------------------------------------------

SIZE = 256
INITIAL = bytes([0xEE]) * SIZE


@st.composite
def small_traces(draw: st.DrawFn, max_units: int = 10, nt: bool = True, span: int = SIZE) -> list[Op]:
    ops: list[Op] = []
    units = 0
    stamp = 1
    store_kinds = ["store", "store", "ntstore"] if nt else ["store"]
    for _ in range(draw(st.integers(1, 12))):
        kind = draw(st.sampled_from([*store_kinds, "store", "clwb", "clflushopt", "clflush", "sfence", "mfence"]))
        if kind in ("store", "ntstore"):
            n = draw(st.integers(1, 12))
            addr = draw(st.integers(0, span - n))
            words = (addr + n - 1) // 8 - addr // 8 + 1
            if units + words > max_units:
                continue
            units += words
            ops.append(Op(kind, addr, bytes((stamp * 37 + i) % 251 + 1 for i in range(n))))
            stamp += 1
        elif kind in ("clwb", "clflushopt", "clflush"):
            n = draw(st.integers(1, 80))
            ops.append(Op(kind, draw(st.integers(0, max(0, span - n))), size=n))
        else:
            ops.append(Op(kind))
    return ops


def to_jsonl(ops: list[Op]) -> str:
    import json

    out = [json.dumps({"event": "device", "size": SIZE})]
    for op in ops:
        if op.kind in ("store", "ntstore"):
            out.append(json.dumps({"event": op.kind, "addr": op.addr, "data": op.data.hex()}))
        elif op.kind in ("clwb", "clflushopt", "clflush"):
            out.append(json.dumps({"event": op.kind, "addr": op.addr, "size": op.size}))
        else:
            out.append(json.dumps({"event": op.kind}))
    return "\n".join(out)


def images_checked(text: str, **kw: object) -> tuple[list[bytes], object]:
    calls: list[bytes] = []

    def record(image: memoryview) -> bool:
        calls.append(bytes(image))
        return True

    checker = PythonChecker("rec:f", record, 5)
    try:
        report = check_trace(parse_jsonl(text), checker, CheckOptions(**kw), {"": INITIAL})  # type: ignore[arg-type]
    finally:
        checker.close()
    return calls, report


SETTINGS = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(small_traces(), st.sampled_from([Domain.ADR, Domain.EADR]))
def test_px86_images_equal_brute_force_and_each_is_checked_once(ops: list[Op], domain: Domain) -> None:
    calls, _ = images_checked(to_jsonl(ops), domain=domain)
    assert len(calls) == len(set(calls))
    want = adr(ops, INITIAL)[0] if domain is Domain.ADR else eadr(ops, INITIAL)
    assert set(calls) == want


def pmreorder_brute_force(ops: list[Op]) -> set[bytes]:
    """pmreorder's ReorderFull, written from its statemachine: every ordered sequence at every replay point."""
    media = bytearray(INITIAL)
    pending: list[list] = []
    armed = False
    images: set[bytes] = set()
    for op in ops:
        if op.kind in ("store", "ntstore"):
            pending.append([op, op.kind == "ntstore"])
            armed = armed or op.kind == "ntstore"
        elif op.kind in ("clwb", "clflushopt", "clflush"):
            armed = True
            for p in pending:
                s = p[0]
                if s.addr < op.addr + op.size and op.addr < s.addr + len(s.data):
                    p[1] = True
        elif armed:
            flushed = [p[0] for p in pending if p[1]]
            pending = [p for p in pending if not p[1]]
            for n in range(len(flushed) + 1):
                for perm in itertools.permutations(flushed, n):
                    img = bytearray(media)
                    for s in perm:
                        img[s.addr : s.addr + len(s.data)] = s.data
                    images.add(bytes(img))
            for s in flushed:
                media[s.addr : s.addr + len(s.data)] = s.data
            armed = False
    return images


@SETTINGS
@given(st.one_of(small_traces(max_units=12, span=40), small_traces(max_units=12)))
def test_pmreorder_semantics_equal_brute_force_reorder_full(ops: list[Op]) -> None:
    if sum(op.kind in ("store", "ntstore") for op in ops) > 6:
        return
    calls, _ = images_checked(to_jsonl(ops), semantics=Semantics.PMREORDER)
    assert len(calls) == len(set(calls))
    assert set(calls) == pmreorder_brute_force(ops)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(small_traces(), st.sampled_from([Domain.ADR, Domain.EADR]), st.randoms(use_true_random=False))
def test_image_file_always_equals_the_image(ops: list[Op], domain: Domain, rnd) -> None:
    rp = replay(parse_jsonl(to_jsonl(ops)), domain, {"": INITIAL})
    states = [s for p in rp.pmem.crash_points() for s in p.states()]
    rnd.shuffle(states)
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "img")
        sink = ImageSink(rp.trace.regions[0], path, INITIAL)
        try:
            for s in states[:30]:
                img = s.image()
                sink.update(img)
                want = img.to_bytes()
                assert bytes(sink.view) == want
                with open(path, "rb") as f:
                    assert f.read() == want
        finally:
            sink.close()


def test_pmreorder_and_px86_differ_as_documented() -> None:
    """Two stores to one line, both flushed, one fence; a third store never flushed."""
    text = "\n".join(
        [
            '{"event": "device", "size": 256}',
            '{"event": "store", "addr": 0, "data": "aaaa"}',
            '{"event": "store", "addr": 1, "data": "bb"}',
            '{"event": "store", "addr": 128, "data": "cc"}',
            '{"event": "clwb", "addr": 0, "size": 64}',
            '{"event": "sfence"}',
        ]
    )
    px86 = {img[:2] + img[128:129] for img in images_checked(text)[0]}
    pmr = {img[:2] + img[128:129] for img in images_checked(text, semantics=Semantics.PMREORDER)[0]}
    e, a, b, c = 0xEE, 0xAA, 0xBB, 0xCC
    # Px86: the line persists a prefix of its stores; the unflushed line may be evicted any time.
    assert px86 == {bytes(x) for x in [(e, e, e), (a, a, e), (a, b, e), (e, e, c), (a, a, c), (a, b, c)]}
    # pmreorder: any subset in any order (B then A leaves A's byte), the unflushed store never written.
    assert pmr == {bytes(x) for x in [(e, e, e), (a, a, e), (e, b, e), (a, b, e)]}


def test_base_image_is_the_file_before_the_run(tmp_path: Path) -> None:
    # A pool whose flag is already set but whose record is empty: every crash image of the fixed log
    # before the record is durable is inconsistent, so the base really is the media the run starts from.
    pool = bytearray(0x1000)
    pool[0] = 1
    (tmp_path / "pool.before").write_bytes(bytes(pool))
    res = subprocess.run(
        [
            *PMFUZZ_CHECK,
            str(FIXED),
            "--base",
            str(tmp_path / "pool.before"),
            "--checker",
            f"{DATA}/flag_checker.py:check",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert res.returncode == 1 and "F0:L1=0" in res.stdout, res.stdout + res.stderr
    short = tmp_path / "short"
    short.write_bytes(b"\0" * 10)
    res = subprocess.run(
        [*PMFUZZ_CHECK, str(FIXED), "--base", str(short), "--checker", "x.py:f"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert res.returncode == 2 and "10 bytes but the trace maps 4096 bytes" in res.stderr


def test_each_registered_file_is_checked_separately() -> None:
    text = "|".join(
        [
            "START",
            "REGISTER_FILE;/pm/a;0x10000;0x100;0x0",
            "REGISTER_FILE;/pm/b;0x30040;0x80;0x0",
            "STORE;0x10000;0x1;0x1",
            "STORE;0x30040;0x2;0x1",
            "FLUSH;0x10000;0x40",
            "FLUSH;0x30040;0x40",
            "FENCE",
            "STOP",
        ]
    )
    trace = parse_pmemcheck(text)
    assert [(r.path, r.offset) for r in trace.regions] == [("/pm/a", 0), ("/pm/b", 0x1040)]
    seen: list[tuple[int, int]] = []

    def b_needs_a(image: memoryview) -> bool | str:
        seen.append((len(image), image[0]))
        return "b written" if len(image) == 0x80 and image[0] == 2 else True

    with closing(PythonChecker("t:f", b_needs_a, 5)) as checker:
        report = check_trace(trace, checker)
    assert {n for n, _ in seen} == {0x100, 0x80}
    assert report.findings and all(f.result.reason == "/pm/b: b written" for f in report.findings)


def test_a_checker_that_rejects_the_final_image_gets_a_warning() -> None:
    with closing(PythonChecker("t:f", lambda image: "always", 5)) as always:
        report = check_trace(parse_pmemcheck(FIXED.read_text()), always, CheckOptions(minimize=False))
    assert report.warnings and "every store persisted" in format_report(report)
    with closing(PythonChecker("t:f", lambda image: True, 5)) as never:
        assert not check_trace(parse_pmemcheck(FIXED.read_text()), never).warnings
