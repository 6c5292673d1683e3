"""Check every crash image of a trace with a checker, and report the inconsistent ones.

Each distinct image (by content digest) is checked once. An inconsistent
state is reported with the stores it kept and dropped (and the marker
sections that issued them), and a minimized state: under Px86, deviating
lines are put back to "everything kept" one at a time while the checker
still fails (a 1-minimal state); under pmreorder semantics, the failing
sequence of the same replay point whose image deviates in the fewest lines.
"""

from __future__ import annotations

import enum
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import PmfuzzError
from ..pmem import CrashState, Domain, EadrPoints, Strategy
from ..pmem.crash import CrashImage
from .checkers import Checker, CheckResult, ImageRef, Verdict
from .model import Trace, TraceEvent, TraceEventKind
from .playback import MarkerLog, Replay, initial_content, replay
from .reorder import ReorderEngine, ReorderState, reorder_points
from .sink import ImageSink

__all__ = ["CheckOptions", "Fate", "Finding", "Semantics", "StoreFate", "TraceReport", "check_trace", "format_report"]

_EXHAUSTIVE_CAP = 1_000_000


class Semantics(enum.StrEnum):
    PX86 = "px86"
    """pmfuzz's x86 persistency model: eviction, per-line order, 8-byte atomicity, ADR or eADR."""
    PMREORDER = "pmreorder"
    """pmreorder's flush-then-fence epochs, with one of its engines."""


class Fate(enum.StrEnum):
    KEPT = "kept"
    PARTIAL = "partial"
    DROPPED = "dropped"
    UNFLUSHED = "unflushed"
    """pmreorder semantics: not flushed by this replay point, so never written."""


@dataclass(frozen=True, slots=True)
class StoreFate:
    """What a crash state did with one store that was in flight."""

    ordinal: int
    event: TraceEvent
    fate: Fate
    markers: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class CheckOptions:
    domain: Domain = Domain.ADR
    semantics: Semantics = Semantics.PX86
    strategy: Strategy = Strategy.EXHAUSTIVE
    max_states: int | None = None
    """At most this many states per crash point (replay point under pmreorder semantics)."""
    seed: int = 0
    engine: ReorderEngine = ReorderEngine.FULL
    eadr_points: EadrPoints = EadrPoints.STORES
    minimize: bool = True

    def __post_init__(self) -> None:
        """Accept the enums' string values too (as the CLI and callers write them), and reject anything else."""
        for name, enum_type in (
            ("domain", Domain),
            ("semantics", Semantics),
            ("strategy", Strategy),
            ("engine", ReorderEngine),
            ("eadr_points", EadrPoints),
        ):
            value = getattr(self, name)
            try:
                object.__setattr__(self, name, enum_type(value))
            except ValueError:
                choices = ", ".join(m.value for m in enum_type)
                raise PmfuzzError(f"unknown {name.replace('_', ' ')} {value!r} (expected one of: {choices})") from None
        if self.max_states is not None and self.max_states <= 0:
            raise PmfuzzError(f"--max-states must be positive, got {self.max_states}")


@dataclass(frozen=True, slots=True)
class Finding:
    """One distinct image the checker did not accept."""

    state_id: str
    point_id: str
    point_where: str
    result: CheckResult
    stores: tuple[StoreFate, ...]
    deviations: int
    minimized_id: str
    minimized_deviations: int
    minimized_result: CheckResult


@dataclass(frozen=True, slots=True)
class TraceReport:
    trace: Trace
    options: CheckOptions
    checker: str
    points: int
    states: int
    distinct: int
    checks: int
    bytes_written: int
    seconds: float
    findings: tuple[Finding, ...] = field(default=())
    warnings: tuple[str, ...] = field(default=())
    """Hints that the setup, not the traced program, may be wrong."""

    @property
    def clean(self) -> bool:
        return not self.findings

    def count(self, verdict: Verdict) -> int:
        return sum(1 for f in self.findings if f.result.verdict is verdict)


class _Judge:
    """Runs the checker on images, once per digest, through one sink per region."""

    def __init__(self, trace: Trace, checker: Checker, initial: bytes, workdir: str | None) -> None:
        self.trace = trace
        self.checker = checker
        self.sinks = []
        for i, r in enumerate(trace.regions):
            path = None
            if workdir is not None:
                name = Path(r.path).name if r.path else Path(trace.source or "image").stem + ".img"
                path = str(Path(workdir) / f"{i}-{name}")
            self.sinks.append(ImageSink(r, path, initial))
        self.verdicts: dict[int, CheckResult] = {}
        self.checks = 0

    def known(self, digest: int) -> bool:
        return digest in self.verdicts

    def judge(self, digest: int, image: CrashImage, markers: str) -> CheckResult:
        hit = self.verdicts.get(digest)
        if hit is not None:
            return hit
        result = CheckResult(Verdict.CONSISTENT)
        for sink in self.sinks:
            sink.update(image)
            result = self.checker.check(ImageRef(sink.view, sink.path, markers))
            if not result.ok:
                if len(self.sinks) > 1:
                    result = CheckResult(result.verdict, f"{sink.region.path}: {result.reason}")
                break
        self.checks += 1
        self.verdicts[digest] = result
        return result

    @property
    def bytes_written(self) -> int:
        return sum(s.bytes_written for s in self.sinks)

    def close(self) -> None:
        for s in self.sinks:
            s.close()


def check_trace(
    trace: Trace, checker: Checker, options: CheckOptions | None = None, bases: Mapping[str, bytes] | None = None
) -> TraceReport:
    """Enumerate the crash states of a trace, check each distinct image, minimize the failures."""
    opts = options or CheckOptions()
    initial = initial_content(trace, bases)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="pmfuzz-trace-") as tmp:
        judge = _Judge(trace, checker, initial, tmp if checker.needs_file else None)
        try:
            if opts.semantics is Semantics.PX86:
                points, states, findings, final = _px86(trace, judge, opts, bases)
            else:
                points, states, findings = _pmreorder(trace, judge, opts, initial)
                final = None
        finally:
            judge.close()
    warnings: tuple[str, ...] = ()
    if final is not None and not final.ok:
        warnings = (
            "the checker also rejects the image with every store persisted (the end of the trace): "
            f"{final.verdict.value}, {final.reason or 'no reason given'}; check the checker and --base",
        )
    return TraceReport(
        trace,
        opts,
        checker.spec,
        points,
        states,
        len(judge.verdicts),
        judge.checks,
        judge.bytes_written,
        time.perf_counter() - t0,
        tuple(findings),
        warnings,
    )


def _where(trace: Trace, index: int | None) -> str:
    if index is None:
        return "at the end of the trace"
    e = trace.events[index]
    loc = f" ({trace.source or 'trace'}:{e.where})" if e.where is not None else ""
    return f"just before {e.describe()}{loc}"


def _px86(
    trace: Trace, judge: _Judge, opts: CheckOptions, bases: Mapping[str, bytes] | None
) -> tuple[int, int, list[Finding], CheckResult | None]:
    rp = replay(trace, opts.domain, bases)
    timeline = rp.pmem.timeline(opts.eadr_points)
    failing: list[CrashState] = []
    states = 0
    for point in timeline.points:
        if opts.strategy is Strategy.EXHAUSTIVE and opts.max_states is None:
            n = point.count()
            if n > _EXHAUSTIVE_CAP:
                raise PmfuzzError(
                    f"crash point {point.id} has {n} states; use --strategy bounded or sample, or --max-states"
                )
        markers = _markers_at(rp, point.spec.seq)
        for state in point.states(opts.strategy, seed=opts.seed, limit=opts.max_states):
            states += 1
            d = state.digest
            if judge.known(d):
                continue
            if not judge.judge(d, state.image(), markers).ok:
                failing.append(state)
    findings = []
    for state in failing:
        markers = _markers_at(rp, state.point.spec.seq)
        result = judge.verdicts[state.digest]
        small = _minimize(state, judge, markers) if opts.minimize else state
        seq = state.point.spec.seq
        findings.append(
            Finding(
                state.id,
                state.point.id,
                _where(trace, None if seq is None else rp.origin[seq]),
                result,
                _fates(rp, state),
                state.deviations,
                small.id,
                small.deviations,
                judge.verdicts[small.digest],
            )
        )
    end = timeline.points[-1].state()
    return len(timeline.points), states, findings, judge.verdicts.get(end.digest)


def _markers_at(rp: Replay, seq: int | None) -> str:
    if seq is None or seq >= len(rp.origin):
        parts = [e.marker_record for e in rp.trace.events if e.kind.is_marker]
        return "|".join(parts)
    return rp.marker_log[rp.origin[seq]]


def _minimize(state: CrashState, judge: _Judge, markers: str) -> CrashState:
    point = state.point
    full = point.full_choices
    choices = list(state.choices)
    for gi in state.deviation_groups:
        trial = list(choices)
        trial[gi] = full[gi]
        candidate = CrashState(point, tuple(trial))
        if not judge.judge(candidate.digest, candidate.image(), markers).ok:
            choices = trial
    return CrashState(point, tuple(choices))


def _fates(rp: Replay, state: CrashState) -> tuple[StoreFate, ...]:
    kept: dict[int, int] = {}
    total: dict[int, int] = {}
    for g, c in zip(state.point.groups, state.choices, strict=True):
        keep = set(g.kept(c))
        for i, u in enumerate(g.units):
            seq = u.piece.seq
            total[seq] = total.get(seq, 0) + 1
            kept[seq] = kept.get(seq, 0) + (i in keep)
    out = []
    for seq in sorted(total):
        idx = rp.origin[seq]
        fate = Fate.KEPT if kept[seq] == total[seq] else Fate.DROPPED if kept[seq] == 0 else Fate.PARTIAL
        out.append(StoreFate(rp.store_ordinal[idx], rp.trace.events[idx], fate, rp.markers[idx]))
    return tuple(out)


def _pmreorder(trace: Trace, judge: _Judge, opts: CheckOptions, initial: bytes) -> tuple[int, int, list[Finding]]:
    points = reorder_points(trace, initial)
    marker_log = MarkerLog(trace.events)
    stack: list[tuple[str, ...]] = []
    cur: list[str] = []
    for e in trace.events:
        stack.append(tuple(cur))
        if e.kind is TraceEventKind.BEGIN:
            cur.append(e.name)
        elif e.kind is TraceEventKind.END:
            cur.pop()
    states = 0
    findings = []
    for point in points:
        markers = marker_log[point.index]
        failing: list[ReorderState] = []
        for n, seq in enumerate(point.sequences(opts.engine), 1):
            state = point.state(seq)
            states += 1
            d = state.digest
            if not judge.known(d) and not judge.judge(d, state.image(), markers).ok:
                failing.append(state)
            if opts.max_states is not None and n >= opts.max_states:
                break
        smallest = min(failing, key=lambda s: (s.deviations, len(s.seq))) if failing else None
        for state in failing:
            small = smallest if opts.minimize and smallest is not None else state
            in_seq = set(state.seq)
            fates = [
                StoreFate(
                    point.flushed[j].ordinal,
                    trace.events[point.flushed[j].index],
                    Fate.KEPT,
                    stack[point.flushed[j].index],
                )
                for j in state.seq
            ]
            fates += [
                StoreFate(s.ordinal, trace.events[s.index], Fate.DROPPED, stack[s.index])
                for j, s in enumerate(point.flushed)
                if j not in in_seq
            ]
            fates += [
                StoreFate(s.ordinal, trace.events[s.index], Fate.UNFLUSHED, stack[s.index]) for s in point.unflushed
            ]
            findings.append(
                Finding(
                    state.id,
                    point.id,
                    _where(trace, point.index),
                    judge.verdicts[state.digest],
                    tuple(fates),
                    state.deviations,
                    small.id,
                    small.deviations,
                    judge.verdicts[small.digest],
                )
            )
    return len(points), states, findings


def _store_line(f: StoreFate, trace: Trace) -> str:
    """One store: the address as the trace gave it (virtual for pmemcheck, with the file offset), markers, place."""
    e = f.event
    loc = f" @{e.where}" if e.where is not None else ""
    marks = f" [{'/'.join(f.markers)}]" if f.markers else ""
    where = f"{e.addr:#x}+{e.size}"
    region = next((r for r in trace.regions if r.offset <= e.addr < r.offset + r.size), None)
    if region is not None and region.path:
        off = e.addr - region.offset
        where = f"{region.map_base + off:#x}+{e.size} ({Path(region.path).name}+{off:#x})"
    return f"      {f.fate.value:<9} store #{f.ordinal} {where}{marks}{loc}"


def format_report(report: TraceReport, detail: int = 20) -> str:
    """The human report: a summary, each failing state in detail (the first `detail`), then the rest one a line."""
    o = report.options
    sem = f"px86/{o.domain.value}" if o.semantics is Semantics.PX86 else f"pmreorder/{o.engine.value}"
    lines = [
        f"trace {report.trace.source or '<trace>'}: {len(report.trace.events)} records, {report.trace.stores} stores, "
        f"{len(report.trace.regions)} file(s); semantics {sem}"
        + (f", strategy {o.strategy.value}" if o.semantics is Semantics.PX86 else ""),
    ]
    lines += [f"note: {n}" for n in report.trace.notes]
    lines += [f"warning: {w}" for w in report.warnings]
    rate = report.distinct / report.seconds if report.seconds > 0 else 0.0
    lines.append(
        f"{report.points} {'crash' if o.semantics is Semantics.PX86 else 'replay'} points, {report.states} states, "
        f"{report.distinct} distinct images checked "
        f"({report.checks} checker runs) in {report.seconds:.2f} s ({rate:,.0f} images/s), checker {report.checker}"
    )
    if report.clean:
        lines.append("all crash images consistent")
        return "\n".join(lines) + "\n"
    counts = ", ".join(
        f"{report.count(v)} {v.value}"
        for v in (Verdict.INCONSISTENT, Verdict.CRASHED, Verdict.TIMEOUT)
        if report.count(v)
    )
    lines.append(f"FAILED: {counts}")
    for i, f in enumerate(report.findings):
        head = f"{f.result.verdict.value.upper()} {f.state_id}"
        reason = f" -- {f.result.reason}" if f.result.reason else ""
        if i == detail and detail:
            lines.append(f"  ... and {len(report.findings) - detail} more, one a line:")
        lines.append(f"  {head}{reason}")
        if i >= detail:
            continue
        lines.append(f"    crash point {f.point_id}: {f.point_where}")
        lines.append(f"    in-flight stores ({f.deviations} deviating line(s)):")
        lines += [_store_line(s, report.trace) for s in f.stores]
        same = " (already minimal)" if f.minimized_id == f.state_id else ""
        lines.append(
            f"    minimized: {f.minimized_id} ({f.minimized_deviations} deviating line(s)){same}"
            + ("" if f.minimized_result.ok else f" -- {f.minimized_result.reason}")
        )
    return "\n".join(lines) + "\n"
