"""Reading store traces: pmemcheck's log as pmreorder reads it (corner cases included), and native JSON lines."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import hypothesis.strategies as st
import pytest
from hypothesis import given, settings

from pmfuzz.errors import ParseError, PmfuzzError
from pmfuzz.traces import (
    Region,
    Trace,
    TraceEvent,
    TraceEventKind,
    format_jsonl,
    format_pmemcheck,
    parse_jsonl,
    parse_pmemcheck,
)

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data" / "traces"
REG = "REGISTER_FILE;/mnt/pmem/pool;0x7f0000000000;0x1000;0x0"


def log(*records: str) -> str:
    return "|".join(("START", REG, *records, "STOP\n"))


def kinds(trace: Trace) -> list[str]:
    return [e.kind.value for e in trace.events]


def test_flag_log_parses_to_device_offsets_and_markers() -> None:
    t = parse_pmemcheck((DATA / "flag_before_data.log").read_text(), source="x.log")
    assert t.regions == (Region("/mnt/pmem/flag.pool", 0, 0x1000, 0x7F3A5C000000),)
    assert t.device_size == 0x1000
    stores = [e for e in t.events if e.kind.is_store]
    assert [(e.addr, e.data) for e in stores] == [
        (0x40, (0x1122334455667788).to_bytes(8, "little")),
        (0x48, (0x99AABBCCDDEEFF00).to_bytes(8, "little")),
        (0x0, (1).to_bytes(8, "little")),
    ]
    names = [(e.kind.value, e.name) for e in t.events if e.kind.is_marker]
    assert names[:2] == [("begin", "WRITE_RECORD"), ("end", "WRITE_RECORD")]
    assert stores[0].where is not None and stores[0].where.line == 1 and stores[0].where.column > 1


def test_only_records_between_the_last_start_and_last_stop_count() -> None:
    first = log("STORE;0x7f0000000000;0xaa;0x1", "FLUSH;0x7f0000000000;0x40", "FENCE")
    second = log("STORE;0x7f0000000008;0xbb;0x1")
    t = parse_pmemcheck(first + second)
    assert [(e.addr, e.data) for e in t.events if e.kind.is_store] == [(8, b"\xbb")]
    # A second run without its STOP leaves nothing to check (pmreorder silently checks nothing).
    with pytest.raises(ParseError, match="no STOP record"):
        parse_pmemcheck(first + "START|" + REG + "|FENCE")
    with pytest.raises(ParseError, match="last STOP comes before the last START"):
        parse_pmemcheck(first.rstrip() + "|START|" + REG + "|FENCE")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("START|" + REG + "|FENCE", "no STOP record"),
        (REG + "|FENCE|STOP", "no START record"),
        (log("STORE;0x7f0000000000;0x1;0x1", "", "FENCE"), "empty record"),
        (log("WRITE;0x7f0000000000;0x1;0x1"), "unknown record 'WRITE'"),
        (log("A.BEGIN", "B.BEGIN", "A.END", "B.END"), "does not close the innermost open marker"),
        (log("A.END"), "open: none"),
        (log("STORE;0x7f0000000000;0x1ff;0x1"), "does not fit in its size of 1 bytes"),
        (log("STORE;0x7f0000000000;0xzz;0x8"), "store value '0xzz' \\(field 2 of STORE\\)"),
        (log("STORE;0x7f0000000000;0x1"), "needs 3 fields"),
        (log("FLUSH;0x7f0000000000"), "needs 2 fields"),
        (log("STORE;0x7f0000000ffc;0x1;0x8"), "straddles the end of registered file /mnt/pmem/pool"),
        ("START|STORE;0x10;0x1;0x1|STOP", "no REGISTER_FILE"),
        (log("REGISTER_FILE;/other;0x7f0000000800;0x1000;0x0"), "overlaps /mnt/pmem/pool"),
    ],
)
def test_bad_logs_are_parse_errors_naming_the_place(text: str, message: str) -> None:
    with pytest.raises(ParseError, match=message) as e:
        parse_pmemcheck(text, source="bad.log")
    assert str(e.value).startswith("bad.log:")


def test_parse_error_gives_line_and_column_of_the_record_or_field() -> None:
    text = "START|" + REG + "|\nFENCE|\n  BOGUS;1|STOP\n"
    with pytest.raises(ParseError) as e:
        parse_pmemcheck(text, source="f.log")
    assert (e.value.line, e.value.column) == (3, 3)
    with pytest.raises(ParseError) as e:
        parse_pmemcheck("START|" + REG + "|\nSTORE;0x7f0000000000;0x1;0xq|STOP")
    assert (e.value.line, e.value.column) == (2, 26)


def test_pmreorder_corner_cases_that_are_accepted() -> None:
    t = parse_pmemcheck(
        log(
            "store;0x7f0000000010;0x0102;0x2;0x4005D6: main (t.c:10);0x4004AB: start",
            "Flush;0x7f0000000000;0x40",
            "fence",
            "STORE;0x7f0000000000;0x0;0x0",
            "STORE;0x10;0x1;0x1",
            "FLUSH;0x7f0000000fc0;0x80",
            "OUTER.BEGIN",
            "IN.NER.BEGIN",
            "IN.NER.END",
            "OUTER.END",
            "UNCLOSED.BEGIN",
        )
        + "trailing text after STOP is ignored|"
    )
    assert kinds(t) == ["store", "clwb", "sfence", "clwb", "begin", "begin", "end", "end", "begin"]
    store = t.events[0]
    assert store.data == b"\x02\x01" and store.frames == ("0x4005D6: main (t.c:10)", "0x4004AB: start")
    assert (t.events[3].addr, t.events[3].size) == (0xFC0, 0x40)  # clipped to the file
    assert t.events[5].name == "IN.NER"
    assert any("zero-size" in n for n in t.notes) and any("outside every registered file" in n for n in t.notes)


def test_whitespace_around_records_and_a_page_offset_base() -> None:
    text = "START|\nREGISTER_FILE;/p;0x7f0000000840;0x100;0x0|\nSTORE;0x7f0000000840;0x1;0x1|\nSTOP\n"
    t = parse_pmemcheck(text)
    assert t.regions[0].offset == 0x840 and t.events[0].addr == 0x840
    assert t.device_size == 0x940


def test_same_registration_twice_counts_once() -> None:
    t = parse_pmemcheck(log(REG, "STORE;0x7f0000000000;0x1;0x1"))
    assert len(t.regions) == 1


# -- native JSON lines ----------------------------------------------------------


def test_jsonl_example_parses() -> None:
    text = "\n".join(
        [
            "# a comment",
            '{"event": "device", "size": 256}',
            '{"event": "marker", "name": "tx.BEGIN"}',
            '{"event": "store", "addr": 64, "data": "2a00"}',
            '{"event": "ntstore", "addr": "0x80", "data": "ff"}',
            '{"event": "clflushopt", "addr": 64, "size": 64}',
            "",
            '{"event": "mfence"}',
            '{"event": "marker", "name": "tx.END"}',
        ]
    )
    t = parse_jsonl(text)
    assert t.device_size == 256
    assert kinds(t) == ["begin", "store", "ntstore", "clflushopt", "mfence", "end"]
    assert (t.events[2].addr, t.events[2].data) == (0x80, b"\xff")
    assert t.events[1].where is not None and t.events[1].where.line == 4


@pytest.mark.parametrize(
    ("text", "message", "line", "column"),
    [
        ('{"event": "sfence"}\n{"event": "store", "addr": 1, "data": "zz"}', "not hex bytes", 2, 31),
        ('{"event": "sfence"}\n  {"event": "bogus"}', "unknown event 'bogus'", 2, 4),
        ('{"event": "clwb", "addr": 0, "size": 1, "sizee": 2}', "unexpected key 'sizee'", 1, 41),
        ('{"event": "store", "addr": 0, "data": "00"', "not JSON", 1, None),
        ('{"event": "marker", "name": "a.END"}', "does not close", 1, None),
        ('{"event": "marker", "name": "plain"}', "must end in .BEGIN or .END", 1, None),
        ('{"event": "device", "size": 64}\n{"event": "store", "addr": 60, "data": "0011223344"}', "reaches past", 2, 1),
        ('{"event": "store", "addr": -1, "data": "00"}', "must not be negative", 1, None),
        ('{"event": "store", "addr": 0}', "needs 'data'", 1, None),
        ('{"event": "sfence"}\n{"event": "device", "size": 64}', "must come first", 2, None),
    ],
)
def test_jsonl_errors_name_line_and_column(text: str, message: str, line: int, column: int | None) -> None:
    with pytest.raises(ParseError, match=message) as e:
        parse_jsonl(text, source="t.jsonl")
    assert e.value.line == line
    if column is not None:
        assert e.value.column == column


# -- round trips -----------------------------------------------------------------

_DEVICE = 512


@st.composite
def events(draw: st.DrawFn, native: bool) -> list[TraceEvent]:
    out: list[TraceEvent] = []
    open_: list[str] = []
    store_kinds = [TraceEventKind.STORE, TraceEventKind.NTSTORE] if native else [TraceEventKind.STORE]
    flush_kinds = (
        [TraceEventKind.CLWB, TraceEventKind.CLFLUSHOPT, TraceEventKind.CLFLUSH] if native else [TraceEventKind.CLWB]
    )
    fence_kinds = [TraceEventKind.SFENCE, TraceEventKind.MFENCE] if native else [TraceEventKind.SFENCE]
    for _ in range(draw(st.integers(0, 20))):
        what = draw(st.sampled_from(["store", "flush", "fence", "begin", "end"]))
        if what == "store":
            n = draw(st.integers(1, 16 if native else 8))
            addr = draw(st.integers(0, _DEVICE - n))
            data = draw(st.binary(min_size=n, max_size=n))
            frames = (
                tuple(
                    draw(
                        st.lists(
                            st.from_regex(r"0x[0-9A-F]{4}: f[a-z]{0,4} \(x\.c:[0-9]\)", fullmatch=True), max_size=2
                        )
                    )
                )
                if not native
                else ()
            )
            out.append(TraceEvent(draw(st.sampled_from(store_kinds)), addr, n, data, frames=frames))
        elif what == "flush":
            n = draw(st.integers(1, 128))
            addr = draw(st.integers(0, _DEVICE - n))
            out.append(TraceEvent(draw(st.sampled_from(flush_kinds)), addr, n))
        elif what == "fence":
            out.append(TraceEvent(draw(st.sampled_from(fence_kinds))))
        elif what == "begin":
            name = draw(st.from_regex(r"[A-Za-z_][A-Za-z0-9_.]{0,8}", fullmatch=True))
            open_.append(name)
            out.append(TraceEvent(TraceEventKind.BEGIN, name=name))
        elif open_:
            out.append(TraceEvent(TraceEventKind.END, name=open_.pop()))
    return out


def _strip(t: Trace) -> list[TraceEvent]:
    return [TraceEvent(e.kind, e.addr, e.size, e.data, e.name, None, e.frames) for e in t.events]


@settings(max_examples=150, deadline=None)
@given(events(native=False))
def test_pmemcheck_round_trip(evs: list[TraceEvent]) -> None:
    t = Trace(_DEVICE, (Region("/pool", 0, _DEVICE, 0x7F0000000000),), tuple(evs))
    back = parse_pmemcheck(format_pmemcheck(t))
    assert back.regions == t.regions
    assert _strip(back) == evs


@settings(max_examples=150, deadline=None)
@given(events(native=True))
def test_jsonl_round_trip(evs: list[TraceEvent]) -> None:
    t = Trace(_DEVICE, (Region("", 0, _DEVICE),), tuple(evs))
    back = parse_jsonl(format_jsonl(t))
    assert back.device_size == _DEVICE
    assert _strip(back) == evs


# -- the command line ------------------------------------------------------------


def pmfuzz(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pmfuzz", *args], cwd=ROOT, capture_output=True, text=True)


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["trace", "check", "/nonexistent.log", "--checker", "x.py:f"], "cannot read /nonexistent.log"),
        (
            ["trace", "check", "tests/data/traces/flag_after_data.log", "--checker", "/nonexistent/prog"],
            "does not exist",
        ),
        (
            ["trace", "check", "tests/data/traces/flag_after_data.log", "--checker", "nosuchmodule_xyz:f"],
            "cannot import",
        ),
        (["trace", "check", "tests/data/traces/flag_after_data.log", "--checker", "missing.so:f"], "does not exist"),
        (["trace", "check", "tests/data/traces/flag_after_data.log", "--checker", "x", "--domain", "nvme"], "nvme"),
        (["trace", "check", "tests/data/traces/flag_checker.py", "--checker", "x"], "cannot tell the format"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args: list[str], needle: str) -> None:
    res = pmfuzz(*args)
    assert res.returncode == 2, res.stdout + res.stderr
    assert "Traceback" not in res.stderr and needle in res.stderr


def test_bad_log_is_one_line_with_its_place(tmp_path: Path) -> None:
    bad = tmp_path / "bad.log"
    bad.write_text(log("STORE;0x7f0000000000;0x1;0x1", "NOPE"))
    res = pmfuzz("trace", "check", str(bad), "--checker", "tests/data/traces/flag_checker.py:check")
    assert res.returncode == 2
    assert res.stderr.count("\n") == 1 and "bad.log:1:" in res.stderr and "'NOPE'" in res.stderr


def test_python_checker_returning_nonsense_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "nonsense.py").write_text("def f(image):\n    return None\n")
    res = pmfuzz("trace", "check", "tests/data/traces/flag_after_data.log", "--checker", f"{tmp_path}/nonsense.py:f")
    assert res.returncode == 2 and "returned None" in res.stderr and "Traceback" not in res.stderr


def test_help_lists_trace_check() -> None:
    res = pmfuzz("trace", "check", "--help")
    assert res.returncode == 0 and "--semantics" in res.stdout and "--checker" in res.stdout
    with pytest.raises(PmfuzzError):
        parse_jsonl('{"event": 1}')
