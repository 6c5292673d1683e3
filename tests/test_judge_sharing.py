"""What the judge shares between states (mounts, verdicts of unchanged words, the words and
verdicts of a file as judged at an earlier point of the same window) changes no state's findings:
each state judged inside a whole run gets what it gets judged alone."""

from __future__ import annotations

from dataclasses import replace

import pytest

from pmfuzz.judging.engine import Options, check
from pmfuzz.lang.workload import parse
from pmfuzz.target import make_target

OPTS = Options(log_states=True, first_per_signature=False)

CASES = [
    ("daxfs design=zero bugs=no-zero cil=eager", "create f0\nwrite f0 100 5000\nfsync f0\nwrite f0 9000 100\n"),
    (
        "daxfs design=zero bugs=zero-after-commit cil=eager",
        "create f0\ntruncate f0 8192\nwrite f0 0 8192\ncreate f1\nwrite f1 0 100\nfsync f1\n",
    ),
    (
        "daxfs design=unwritten bugs=truncate-no-zero-tail",
        "create f0\nwrite f0 0 8192\nfsync f0\ntruncate f0 5000\ntruncate f0 8192\nfsync f0\n",
    ),
    (
        "daxfs design=cow-remap cil=eager",
        "create f0\nwrite f0 0 8192\nfsync f0\ncreate f1\nreflink f0 f1\nwrite f1 100 5000\nfsync f1\nwrite f0 0 100\n",
    ),
]


@pytest.mark.parametrize(("spec", "text"), CASES)
def test_every_state_judged_in_a_run_is_judged_as_alone(spec: str, text: str) -> None:
    w = parse(text)
    whole = check(make_target(spec), w, OPTS)
    logged = whole.state_log
    assert len(logged) > 20
    # the first state of each point is where a file's words from an earlier point are reused
    firsts = [e for i, e in enumerate(logged) if i == 0 or logged[i - 1][0].split("/")[0] != e[0].split("/")[0]]
    picked = firsts[:: max(1, len(firsts) // 60)] + list(logged[:: max(1, len(logged) // 20)])
    for key, msgs in picked:
        state = key.split("/", 1)[1]
        alone = check(make_target(spec), w, replace(OPTS, crash=state))
        assert [m for k, m in alone.state_log if k == key] == [msgs], key
