"""Text forms round-trip, bad text fails with the line, and reproducers and reports are pinned."""

from __future__ import annotations

from pathlib import Path

import hypothesis.strategies as st
import numpy as np
import pytest
from hypothesis import given, settings

from pmfuzz.errors import ParseError, PmfuzzError
from pmfuzz.gen.strategies import Shape, ops, workloads
from pmfuzz.judging.repro import Reproducer, format_reproducer, parse_reproducer
from pmfuzz.lang.data import WordKind, decode, decode_words, describe, payload, poison
from pmfuzz.lang.workload import Workload, format_workload, parse, parse_op
from pmfuzz.target import TargetSpec

GOLDEN = Path(__file__).parent / "golden"


@settings(max_examples=300)
@given(workloads(max_ops=20, shape=Shape(files=8, mappings=8, pmd=True)))
def test_workload_text_round_trips(w: Workload) -> None:
    text = format_workload(w)
    assert parse(text) == w
    assert format_workload(parse(text)) == text


@settings(max_examples=300)
@given(ops())
def test_op_text_round_trips(op) -> None:
    assert parse_op(str(op)) == op


@settings(max_examples=100)
@given(
    workloads(max_ops=8),
    st.sampled_from([None, "F3", "E:L5=0", "F12:L0=x5,L9=2"]),
    st.sampled_from([None, ("clean",), ("stale-exposure",), ("durability", "mount")]),
)
def test_reproducer_round_trips(w: Workload, crash, expect) -> None:
    r = Reproducer(w, TargetSpec("daxfs", (("design", "unwritten"), ("cil", "eager"))), crash=crash, expect=expect)
    assert parse_reproducer(format_reproducer(r)) == r


@pytest.mark.parametrize(
    ("text", "line", "col", "what"),
    [
        ("create f0\nwrite f0 0\n", 2, None, "FILE OFF LEN"),
        ("create f0\n\nwrite f9 0 1\n", 3, 7, "file name"),
        ("fault m0 1 sideways\n", 1, 12, "read or write"),
        ("create f0\nsnapshot f0\n", 2, 1, "unknown op"),
        ("write f0 -1 5\n", 1, 10, "number"),
        ("mmap m0 f0 0 4096 nosync\n", 1, 19, "sync"),
    ],
)
def test_parse_errors_name_line_and_column(text: str, line: int, col, what: str) -> None:
    with pytest.raises(ParseError) as e:
        parse(text, source="w.txt")
    assert e.value.line == line and e.value.column == col
    assert what in str(e.value) and str(e.value).startswith(f"w.txt:{line}:")
    assert "\n" not in str(e.value)


@pytest.mark.parametrize(
    ("header", "what"),
    [
        ("# domain: pmem", "domain must be adr or eadr"),
        ("# expect: stale", "expect must be"),
        ("# expect: clean, mount", "cannot be combined"),
        ("# device: 8 MiB", "device size"),
        ("# crash: somewhere", "crash must be"),
        ("# exepct: clean", "unknown header key"),
        ("# target: daxfs design", "key=value"),
        ("# target: daxfs\n# target: daxfs", "a second `target:` header (the first is on line 3)"),
    ],
)
def test_bad_reproducer_headers(header: str, what: str) -> None:
    text = f"# pmfuzz reproducer v1\n# note: a bad header follows\n{header}\ncreate f0\n"
    with pytest.raises(ParseError) as e:
        parse_reproducer(text, source="r.pmfuzz")
    assert what in str(e.value) and f"r.pmfuzz:{2 + header.count(chr(10)) + 1}:" in str(e.value)


def test_unsupported_version() -> None:
    with pytest.raises(ParseError, match="v2"):
        parse_reproducer("# pmfuzz reproducer v2\ncreate f0\n")


def test_reproducer_golden_text() -> None:
    text = (GOLDEN / "cow-remap-before-copy.pmfuzz").read_text()
    assert format_reproducer(parse_reproducer(text)) == text


def test_report_golden_text() -> None:
    from pmfuzz.fuzzing.replaying import run_reproducer
    from pmfuzz.judging.report import format_report

    r = parse_reproducer((Path(__file__).parents[1] / "corpora/regression/refcount-not-journaled.pmfuzz").read_text())
    assert format_report(run_reproducer(r), r) == (GOLDEN / "refcount-not-journaled.report").read_text()


@settings(max_examples=200)
@given(st.integers(0, 4095), st.integers(0, 4095), st.integers(0, (1 << 30) - 64), st.integers(1, 64))
def test_payload_words_decode_to_what_wrote_them(file: int, op: int, off: int, n: int) -> None:
    data = payload(file, op, off - off % 8, 64)
    words = np.frombuffer(data, dtype="<u8")
    for i, w in enumerate(words.tolist()):
        d = decode(w)
        assert (d.kind, d.file, d.op, d.offset) == (WordKind.DATA, file, op, off - off % 8 + 8 * i)
    assert payload(file, op, off, n) == payload(file, op, off - off % 8, n + off % 8)[off % 8 :]


@settings(max_examples=100)
@given(st.integers(0, (1 << 40) // 8).map(lambda x: x * 8))
def test_poison_decodes_to_its_address(addr: int) -> None:
    [w] = poison(addr, 8).view("<u8").tolist()
    d = decode(w)
    assert d.kind is WordKind.POISON and d.offset == addr
    assert decode(w | 3).kind is WordKind.UNKNOWN


def test_decode_words_matches_decode() -> None:
    vals = [0, *np.frombuffer(payload(1, 2, 0, 24), "<u8").tolist(), *poison(4096, 16).view("<u8").tolist(), 12345]
    kinds = decode_words(np.array(vals, dtype=np.uint64)).tolist()
    names = {0: WordKind.ZERO, 1: WordKind.DATA, 2: WordKind.POISON, 3: WordKind.UNKNOWN}
    assert [names[k] for k in kinds] == [decode(v).kind for v in vals]
    assert describe(bytes(16)) == "[0:16] zero"


@st.composite
def _with_parallel_groups(draw) -> Workload:
    from pmfuzz.lang.workload import Parallel

    base = list(draw(workloads(max_ops=8)).ops)
    for _ in range(draw(st.integers(1, 3))):
        group = Parallel(tuple(draw(st.lists(ops(), min_size=2, max_size=3))))
        base.insert(draw(st.integers(0, len(base))), group)
    return Workload(tuple(base))


@settings(max_examples=200)
@given(_with_parallel_groups())
def test_parallel_groups_round_trip(w: Workload) -> None:
    from pmfuzz.lang.workload import Parallel, flatten, groups

    text = format_workload(w)
    assert parse(text) == w
    assert format_workload(parse(text)) == text
    flat = flatten(w.ops)
    for top, start, n in groups(w.ops):
        g = w.ops[top]
        assert isinstance(g, Parallel) and flat[start : start + n] == g.ops


@pytest.mark.parametrize(
    ("text", "col", "what"),
    [
        ("parallel { create f0 }\n", 10, "2 to 3 ops"),
        ("parallel { sync ; sync ; sync ; sync }\n", 10, "2 to 3 ops"),
        ("parallel { create f0 ; write f9 0 1 }\n", 30, "file name"),
        ("parallel create f0 ; sync\n", 9, "expected '{'"),
        ("parallel { create f0 ; sync\n", 28, "not closed"),
        ("parallel { sync ; sync } x\n", 25, "after the closing"),
        ("parallel { sync ; ; sync }\n", 18, "empty op"),
        ("parallel { sync ; parallel { sync ; sync } }\n", 19, "do not nest"),
    ],
)
def test_parallel_parse_errors_name_the_column(text: str, col: int, what: str) -> None:
    with pytest.raises(ParseError) as e:
        parse("create f0\n" + text)
    assert e.value.line == 2 and e.value.column == col, str(e.value)
    assert what in str(e.value)


@given(st.integers(0, 1 << 20), st.sampled_from(["", "K", "M", "G"]))
def test_one_size_reader_for_ops_headers_and_flags(n: int, unit: str) -> None:
    """`--device`, `# device:` and an op's numbers read a size the same way (one reader, `textform`)."""
    from pmfuzz.lang.limits import parse_size
    from pmfuzz.lang.textform import read_size
    from pmfuzz.lang.workload import MAX_FILE_SIZE, parse_op

    tok = f"{n}{unit}"
    value = read_size(tok)
    assert parse_size(tok) == value == n * {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}[unit]
    if value <= MAX_FILE_SIZE:
        assert parse_op(f"truncate f0 {tok}").size == value
    for bad in (f"0{tok}" if n else "00", f"{tok}x", f"-{tok}"):
        with pytest.raises(PmfuzzError):
            parse_size(bad)
        with pytest.raises(PmfuzzError):
            parse_op(f"truncate f0 {bad}")
