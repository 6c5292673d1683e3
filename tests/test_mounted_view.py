"""A mount's file list and sizes are asked of the target once, and the judge's verdicts stay the
ones it gives when it asks every time."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from pmfuzz.execution.execute import execute
from pmfuzz.execution.watchdog import TargetNonsense
from pmfuzz.judging.mounted import FixedMetadataView
from pmfuzz.lang.workload import parse
from pmfuzz.pmem import PMem
from pmfuzz.target import make_target
from pmfuzz.verdict import Options


class _Counting:
    """A real recovered daxfs, counting the calls that reach it."""

    def __init__(self, fs: Any) -> None:
        self.fs, self.calls = fs, Counter[str]()

    def __getattr__(self, name: str) -> Any:
        self.calls[name] += 1
        return getattr(self.fs, name)


def _recovered() -> _Counting:
    target = make_target("daxfs")
    w = parse("create f0\nwrite f0 0 8192\ncreate f1\nwrite f1 0 100\nfsync f1\n")
    run = execute(target, w, Options())
    return _Counting(target.mount(PMem.from_image(run.crash_points()[-1].state().image(), record=False)))


def test_files_and_sizes_are_asked_once_and_equal_the_targets() -> None:
    inner = _recovered()
    view = FixedMetadataView(inner)  # type: ignore[arg-type]
    want = inner.fs.files()
    assert want == ["f0", "f1"]
    for _ in range(3):
        got = view.files()
        assert got == want
        got.append("scribbled")  # a caller's change stays its own
        assert [view.size(n) for n in ("f0", "f1", "nope")] == [8192, 100, None]
    assert inner.calls["files"] == 1 and inner.calls["size"] == 3
    assert view.read("f1", 0, 4) == inner.fs.read("f1", 0, 4), "other calls go to the target"
    assert inner.calls["read"] == 1


def test_a_failed_call_is_not_kept() -> None:
    class Flaky:
        def __init__(self) -> None:
            self.n = 0

        def files(self) -> list[str]:
            self.n += 1
            if self.n == 1:
                raise TargetNonsense("first call fails")
            return ["f0"]

    flaky = Flaky()
    view = FixedMetadataView(flaky)  # type: ignore[arg-type]
    with pytest.raises(TargetNonsense):
        view.files()
    assert view.files() == ["f0"] and view.files() == ["f0"] and flaky.n == 2


CASES = [
    ("daxfs design=zero bugs=no-zero cil=eager", "create f0\nwrite f0 100 5000\nfsync f0\nwrite f0 9000 100\n"),
    (
        "daxfs design=cow-remap bugs=cow-remap-before-copy cil=eager",
        "create f0\nwrite f0 0 8192\nfsync f0\ncreate f1\nreflink f0 f1\nwrite f1 100 5000\nfsync f1\nunlink f0\n",
    ),
    ("daxfs", "create f0\nwrite f0 0 9000\ncreate f1\nfsync f0\ntruncate f0 100\nwrite f1 0 5000\nfsync f1\n"),
]


@pytest.mark.parametrize(("spec", "text"), CASES)
def test_every_state_gets_the_findings_of_a_target_asked_each_time(
    spec: str, text: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pmfuzz.judging import mounted
    from pmfuzz.judging.engine import check

    opts = Options(log_states=True, first_per_signature=False)
    w = parse(text)
    kept = check(make_target(spec), w, opts)
    monkeypatch.setattr(mounted, "FixedMetadataView", lambda fs: fs)
    asked = check(make_target(spec), w, opts)
    assert len(kept.state_log) > 20
    assert kept.state_log == asked.state_log
    assert [f.signature_text for f in kept.findings] == [f.signature_text for f in asked.findings]
