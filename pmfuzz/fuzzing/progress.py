"""A campaign's progress in the main process: counts, progress lines, statistics, and the writes to disk.

The crashes directory is the campaign's result, so every write to it goes
through `Progress.handle`. A machine fault there (a full disk, a directory
made read-only or removed) stops the campaign with one line and its summary,
keeping every file already written, instead of a chain of tracebacks.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from oracles import OracleName

from ..errors import shown_path
from ..execution.watchdog import deadline
from ..gen.forms import ALL_FORMS, missing
from ..lang.workload import parse
from ..signature import oracle_of
from .campaign_config import PICTURE_SECONDS, CampaignConfig
from .corpus import CorpusDir, CrashDir
from .isolated import ChildDied, ChildFailed, run_isolated
from .memory import campaign_resident_mib, heap_mib

__all__ = ["Progress", "Summary", "append_line", "repair_jsonl", "summary_from_json", "summary_text", "summary_to_json"]


@dataclass
class Summary:
    elapsed: float = 0.0
    execs: int = 0
    states: int = 0
    corpus: int = 0
    coverage: int = 0
    findings: dict[str, dict] = field(default_factory=dict)
    new: list[str] = field(default_factory=list)
    stopped: str = ""
    forms: set[str] = field(default_factory=set)
    """Op forms reached (`pmfuzz.gen.forms`): op kind, flags and the state each op hit."""
    seeds_left: int = 0
    """Corpus entries still to be replayed before fuzzing proper starts (the seed-replay phase)."""
    first_hit: float | None = None
    """Seconds to the first finding of `stop_on`'s oracle (raw, before minimizing)."""
    error: str | None = None
    """Why the campaign stopped early on a fault of the machine (a write that failed); None if it did not."""


def summary_to_json(s: Summary) -> str:
    """The summary as data: how the atheris child hands its campaign's summary to the command line."""
    data = {f.name: getattr(s, f.name) for f in fields(s)}
    data["forms"] = sorted(s.forms)
    return json.dumps(data, sort_keys=True)


def summary_from_json(text: str) -> Summary:
    """What `summary_to_json` wrote; ValueError (or TypeError) if it is not that."""
    data = json.loads(text)
    if not isinstance(data, dict) or set(data) != {f.name for f in fields(Summary)}:
        raise ValueError("not a campaign summary")
    s = Summary(**data)
    s.forms = set(s.forms)
    return s


def repair_jsonl(path: Path) -> None:
    """Cut a torn last line (a kill in mid-append) so that the next record starts on a line of its own.

    Why: appended to a torn line, the next run's record would be glued to it and the file would no
    longer parse (`pmfuzz plot` rejected it).
    """
    try:
        with open(path, "rb+") as f:
            size = f.seek(0, os.SEEK_END)
            if size == 0:
                return
            f.seek(size - 1)
            if f.read(1) == b"\n":
                return
            keep = size - 1
            while keep > 0:
                start = max(0, keep - 65536)
                f.seek(start)
                chunk = f.read(keep - start)
                nl = chunk.rfind(b"\n")
                if nl >= 0:
                    keep = start + nl + 1
                    break
                keep = start
            f.truncate(keep)
    except FileNotFoundError:
        return


def append_line(path: Path, line: str) -> None:
    """Append one line with a single write(2) on an O_APPEND descriptor: a kill tears at most that
    line. A failed write names the file (os.write's own error does not)."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        data = (line + "\n").encode()
        while data:
            try:
                n = os.write(fd, data)
            except OSError as e:
                raise OSError(e.errno, e.strerror, str(path)) from None
            data = data[n:]
    finally:
        os.close(fd)


class Progress:
    """The main process's view of a campaign: counts, the crashes directory and corpus it writes, progress lines.

    Every write goes through `handle`; the first that fails (disk full, directory gone or read-only)
    is kept in `error`, nothing more is written, and the campaign stops with its summary.
    """

    def __init__(self, cfg: CampaignConfig, crashes: CrashDir, corpus: CorpusDir, out: Any = sys.stderr) -> None:
        self.cfg = cfg
        self.crashes = crashes
        self.corpus = corpus
        self.out = out
        self.t0 = time.monotonic()
        self.s = Summary()
        self.tty = out.isatty() and not cfg.quiet
        self.features: set[str] = set()
        self._last_print = self._last_stats = 0.0
        self.done = False
        self.stats_path = crashes.path / "stats.jsonl"
        self.error: str | None = None
        self._guarded(lambda: repair_jsonl(self.stats_path))
        for w in crashes.warnings:
            self._line(f"warning: {w}")

    def elapsed(self) -> float:
        return time.monotonic() - self.t0

    def _guarded(self, write: Callable[[], object]) -> None:
        """Run a write; on a machine fault keep its one-line description and stop writing (what is written stays)."""
        if self.error is not None:
            return
        try:
            write()
        except OSError as e:
            where = f" {shown_path(e.filename)}" if e.filename else ""
            self.error = f"cannot write{where}: {e.strerror or e}"
            self.s.error = self.error

    def handle(self, kind: str, value: Any) -> None:
        if self.error is None:
            self._guarded(lambda: self._handle(kind, value))

    def _handle(self, kind: str, value: Any) -> None:
        s = self.s
        if kind == "exec":
            distinct, forms = value
            s.execs += 1
            s.states += distinct
            s.forms.update(forms)
        elif kind == "corpus":
            text, feats = value
            self.corpus.add(parse(text))
            self.features.update(feats)
        elif kind == "repeat":
            key, sig, cause = value
            self.crashes.bump(key, sig, elapsed=self.elapsed(), execs=s.execs)
            if self.cfg.stop_on and oracle_of(sig or cause) == self.cfg.stop_on:
                # the stop oracle's finding, filed under a group another oracle opened (or named)
                if s.first_hit is None:
                    s.first_hit = self.elapsed()
                self.done = True
        elif kind == "finding":
            sig, repro, report, final = value
            fresh = not self.crashes.known(sig)
            try:
                found_as = re.search(r"^# signature: (.+)$", repro, re.M)
                path = self.crashes.record(
                    sig, repro, report, elapsed=self.elapsed(), execs=s.execs, signature=found_as[1] if found_as else ""
                )
            finally:
                if fresh and self.crashes.known(sig):
                    s.new.append(sig)  # counted as new even when a later write of it failed
            if self.cfg.stop_on and oracle_of(found_as[1] if found_as else sig) == self.cfg.stop_on:
                # the finding's own oracle: a cause may name another (a read of media nobody wrote is
                # a functional finding whose cause is stale-exposure/never-written)
                if s.first_hit is None:
                    s.first_hit = self.elapsed()
                if final:
                    self.done = True
            if fresh:
                self._line(f"new finding: {sig}  -> {path}")
            elif final:
                self._line(f"  minimized: {path.name} ({report.splitlines()[0] if report else ''})")
            if final and self.cfg.pictures and oracle_of(sig) != OracleName.TARGET_ERROR.value:
                self._picture(path)
        elif kind == "warning":
            self._line(f"warning: {value}")
        self._tick()

    def _picture(self, path: Path) -> None:
        """A picture is a convenience: if drawing it fails, say so and keep fuzzing.

        Drawing re-runs the reproducer on the target and imports matplotlib: it runs in a child
        process (`isolated`, so the driver does not keep that memory) and under a deadline (a
        finding about a target that hangs gets no picture at all)."""
        try:
            run_isolated(_draw, path, PICTURE_SECONDS, self.cfg.target.name, seconds=PICTURE_SECONDS + 10)
        except (ChildFailed, ChildDied) as e:  # reported, not allowed to end the campaign
            self._line(f"warning: no picture for {path.name}: {e}")

    def tick(self, force: bool = False) -> None:
        self._guarded(lambda: self._tick(force))

    def _tick(self, force: bool = False) -> None:
        now = self.elapsed()
        if force or now - self._last_stats >= 5:
            self._last_stats = now
            self._stats_line()
            self.crashes.flush_if_changed()  # repeat counts survive a kill, at most 5 s behind
        every = 1.0 if self.tty else 10.0
        if not self.cfg.quiet and (force or now - self._last_print >= every):
            self._last_print = now
            self._status()

    def _rates(self) -> tuple[float, float]:
        t = max(self.elapsed(), 1e-9)
        return self.s.execs / t, self.s.states / t

    def _status(self) -> None:
        s = self.s
        eps, sps = self._rates()
        t = int(self.elapsed())
        line = (
            f"[{t // 3600:02d}:{t % 3600 // 60:02d}:{t % 60:02d}] execs {s.execs} ({eps:.1f}/s)  "
            f"states {s.states} ({sps:,.0f}/s)  corpus {len(self.corpus.entries)}  "
            f"coverage {len(self.features)}  findings {len(self.crashes.counts)} ({len(s.new)} new)"
        )
        if self.tty:
            print("\r" + line + " " * 4, end="", file=self.out, flush=True)
        else:
            print(line, file=self.out, flush=True)

    def _line(self, text: str) -> None:
        if self.cfg.quiet:
            return
        if self.tty:
            print("\r" + " " * 110 + "\r", end="", file=self.out)
        print(text, file=self.out, flush=True)

    def _stats_line(self) -> None:
        eps, sps = self._rates()
        rec = {
            "seconds": round(self.elapsed(), 2),
            "execs": self.s.execs,
            "execs_per_s": round(eps, 2),
            "states": self.s.states,
            "states_per_s": round(sps, 1),
            "corpus": len(self.corpus.entries),
            "coverage": len(self.features),
            "forms": len(self.s.forms & _ALL_FORM_TEXTS),
            "seeds_left": self.s.seeds_left,
            "findings": len(self.crashes.counts),
            "oracles": sorted({oracle_of(k) for k in self.crashes.counts}),
        }
        rss = campaign_resident_mib()
        if rss is not None:
            rec["rss_mib"] = round(rss, 1)
        heap = heap_mib()
        if heap is not None:
            rec["heap_in_use_mib"], rec["heap_free_mib"] = round(heap[0], 1), round(heap[1], 1)
        rec["py_blocks"] = sys.getallocatedblocks()
        append_line(self.stats_path, json.dumps(rec))


def _draw(path: Path, seconds: float, target: str) -> None:
    from ..sight.cli import picture_beside

    with deadline(seconds, f"drawing {path.name}", target=target):
        picture_beside(path)


def summary_text(s: Summary, crashes: Path) -> str:
    eps = s.execs / s.elapsed if s.elapsed else 0.0
    lines = [
        f"stopped ({s.stopped}) after {s.elapsed:.0f} s: {s.execs} execs ({eps:.1f}/s), "
        f"{s.states} crash states judged, corpus {s.corpus}, coverage {s.coverage}",
        _forms_line(s.forms),
        f"findings: {len(s.findings)} root cause(s) ({len(s.new)} new this run) in {crashes}/",
    ]
    for key, info in sorted(s.findings.items()):
        mark = "new " if key in s.new else "    "
        n = len(info.get("signatures", ()))
        where = f"  at {n} crash sites" if n > 1 else ""
        lines.append(f"  {mark}{key}  x{info.get('count', 1)}{where}  {info.get('file', '')}")
    if s.error:
        lines.append(f"stopped early: {s.error} (everything written before is kept)")
    return "\n".join(lines)


_ALL_FORM_TEXTS = frozenset(str(f) for f in ALL_FORMS)


def _forms_line(reached: set[str]) -> str:
    gaps = missing(reached)
    text = f"op forms: {len(reached & _ALL_FORM_TEXTS)} of {len(_ALL_FORM_TEXTS)} reached"
    if gaps:
        shown = " ".join(str(f) for f in gaps[:12])
        text += f" (missing: {shown}{' ...' if len(gaps) > 12 else ''})"
    return text
