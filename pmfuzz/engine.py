"""Run one workload on a target, crash it at every crash point, recover every state, judge it.

    verdict = check(target, workload, Options(domain="adr"))

Execution runs the target and the reference side by side (the `functional`
oracle judges every op crash-free); then every crash point's states are
built, mounted and judged by the oracles the target's guarantees select.
Exceptions raised by the target's code are findings (`target-error` while
running an op, `mount` while recovering), kept with their traceback;
exceptions of pmfuzz itself propagate.
"""

from __future__ import annotations

import enum
import hashlib
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from oracles import CrashContext, Oracle, OracleName, Phase, RunContext, VerdictCache, Violation, default_oracles

from .errors import PMemError, PmfuzzError
from .pmem import (
    LINE,
    CrashImage,
    CrashPoint,
    CrashState,
    Domain,
    EadrPoints,
    GroupOutcome,
    Pages,
    PMem,
    PointKind,
    Strategy,
)
from .reference import History, Reference
from .serial import SerialOrder, serial_order
from .target import Errno, Guarantee, MountedFS, Target, check_supported, metadata_ranges
from .watchdog import DEFAULT_OP_TIMEOUT, TargetHang, TargetNonsense, deadline, guarded_mount, hang_stack
from .workload import Fault, Op, Parallel, Pin, Store, Workload, flatten, groups

__all__ = ["Options", "Finding", "CrashSite", "Verdict", "Stats", "check", "StateChoice", "formatted"]

MiB = 1 << 20


class StateChoice(enum.StrEnum):
    """How the engine picks the states of a crash point."""

    AUTO = "auto"
    """Exhaustive where a point has at most `exhaustive_upto` states, else bounded."""
    EXHAUSTIVE = "exhaustive"
    BOUNDED = "bounded"
    SAMPLE = "sample"


@dataclass(frozen=True)
class Options:
    domain: Domain = Domain.ADR
    device_size: int = 8 * MiB
    strategy: StateChoice = StateChoice.AUTO
    exhaustive_upto: int = 256
    max_states: int | None = 2048
    """At most this many states per crash point (None: no limit)."""
    eadr_points: EadrPoints = EadrPoints.STORES
    crash: str | None = None
    """Judge only this crash state (a state id), as a reproducer names it."""
    seed: int = 0
    oracles: tuple[Oracle, ...] | None = None
    first_per_signature: bool = True
    group_by_metadata: bool = True
    log_states: bool = False
    focus: tuple[str, str, str] | None = None
    """(oracle, op kind, site): judge only crash points that could give this signature (for minimizing)."""
    features: bool = False
    """Collect coverage features of the run in `Verdict.features` (for the fuzzer)."""
    schedule: str | None = None
    """Run parallel groups under this schedule id only (as a reproducer's `schedule:` names it)."""
    preemption_bound: int = 2
    """Explore every schedule of the parallel groups with at most this many preemptions."""
    max_schedules: int | None = 2000
    """Stop exploring after this many schedules (a note says so); None: no limit."""
    """Record every judged state's violations in `Verdict.state_log` (for tests and debugging)."""
    """Mount once per distinct metadata state when the target declares its metadata ranges (same verdicts)."""
    op_timeout: float | None = DEFAULT_OP_TIMEOUT
    """Seconds a call into the target (an op, a mount, format, an oracle's reads) may take before it is
    reported as a hang of the target; None: no limit."""


@dataclass(frozen=True)
class CrashSite:
    """Where a crash struck and what it kept."""

    point: str
    state: str
    op: int
    op_text: str
    event: str
    site: str
    outcomes: tuple[GroupOutcome, ...]
    deviations: int


@dataclass(frozen=True)
class Finding:
    oracle: OracleName
    message: str
    evidence: tuple = ()
    op: int = -1
    op_text: str = ""
    op_kind: str = ""
    site: str = ""
    crash: CrashSite | None = None
    traceback: str | None = None
    schedule: str | None = None
    """The schedule id of the parallel groups this finding ran under (None: no groups)."""

    @property
    def signature(self) -> tuple[str, str, str]:
        """What deduplicates findings: (oracle, op kind at the crash, code site).

        The site is the top-level label of the crash point ("xfs_file_fsync" for
        "xfs_file_fsync.commit_record"): one code path, whichever phase of its log push.
        A crash at the end of the run is `end` whatever op came last, so that the
        minimizer may drop trailing ops that played no part.
        """
        if self.crash is not None and self.crash.point == "E":
            return (self.oracle.value, "end", "")
        return (self.oracle.value, self.op_kind, self.site.split(".", 1)[0])

    @property
    def signature_text(self) -> str:
        return ":".join(x or "-" for x in self.signature)


@dataclass
class Stats:
    ops: int = 0
    points: int = 0
    states: int = 0
    distinct: int = 0
    mounts: int = 0
    t_exec: float = 0.0
    t_image: float = 0.0
    t_mount: float = 0.0
    t_oracles: float = 0.0


@dataclass(frozen=True)
class Verdict:
    findings: tuple[Finding, ...]
    stats: Stats
    notes: tuple[str, ...] = ()
    state_log: tuple[tuple[str, tuple[str, ...]], ...] = ()
    """(state id, sorted messages of its violations) per judged state, with `Options.log_states`."""
    features: frozenset[str] = frozenset()
    """What the run exercised (op results, code-site transitions, crash-point sites), with `Options.features`."""

    @property
    def clean(self) -> bool:
        return not self.findings

    def oracles(self) -> set[str]:
        return {f.oracle.value for f in self.findings}


_FORMATTED: dict[tuple[str, tuple[tuple[str, str], ...], int], Pages] = {}


def formatted(target: Target, size: int) -> Pages:
    """A formatted device for this target configuration, made once and shared copy-on-write."""
    key = (target.name, tuple(sorted(target.options().items())), size)
    hit = _FORMATTED.get(key)
    if hit is None:
        pm = PMem(size)
        target.format(pm)
        pm.quiesce()
        hit = pm.pages.fork()
        _FORMATTED[key] = hit
    return hit


def _pmfuzz_fault(exc: BaseException) -> bool:
    """Was this exception raised by pmfuzz's own code (a bug) rather than the target's?"""
    if isinstance(exc, (PMemError, TargetHang, TargetNonsense)):
        return False
    if isinstance(exc, PmfuzzError):
        return True
    tb = traceback.extract_tb(exc.__traceback__)
    if not tb:
        return False
    here = Path(__file__).resolve().parent
    last = Path(tb[-1].filename).resolve()
    inside = here in last.parents
    return inside and (here / "fs") not in last.parents


def _guard(exc: BaseException) -> str | None:
    if _pmfuzz_fault(exc):
        raise exc
    if isinstance(exc, TargetNonsense):
        return None
    if isinstance(exc, TargetHang):
        return hang_stack(exc)
    return "".join(traceback.format_exception(exc))


def _oracle_fault(exc: BaseException) -> bool:
    """Was this exception raised by an oracle's own code (a bug of pmfuzz) rather than by the target it read?"""
    tb = traceback.extract_tb(exc.__traceback__)
    return bool(tb) and _ORACLES in Path(tb[-1].filename).resolve().parents


_ORACLES = Path(default_oracles.__code__.co_filename).resolve().parent


def _failure(exc: BaseException) -> str:
    """What went wrong in a call into the target; a hang or a nonsense result already says it all."""
    return str(exc) if isinstance(exc, (TargetHang, TargetNonsense)) else f"{type(exc).__name__}: {exc}"


def _window(point: CrashPoint, nops: int, spans: dict[int, tuple[int, int]] | None = None) -> tuple[int, int]:
    """(ops finished, last boundary reachable) for a crash at this point.

    Inside a parallel group (`spans` maps each of its op indices to the group's [start, end)),
    any of the group's ops may be under way or done: the window covers the whole group.
    """
    if point.kind is PointKind.END:
        return nops, nops
    k = point.op
    if k < 0:
        return 0, 0
    span = spans.get(k) if spans else None
    if span is not None:
        return span[0], min(span[1], nops)
    if point.kind is PointKind.OP:
        return k, k
    return k, min(k + 1, nops)


def check(target: Target, workload: Workload | Sequence, opts: Options = Options()) -> Verdict:
    """Execute a workload on a fresh device, then judge every crash state; return the verdict.

    A workload with parallel groups is run once per schedule the explorer enumerates (or
    under `opts.schedule` only); findings carry the schedule they ran under.
    """
    top = workload.ops if isinstance(workload, Workload) else tuple(workload)
    grps = groups(top)
    if not grps:
        return _check_once(target, top, opts)
    return _explore(target, top, grps, opts)


def _explore(target: Target, top: tuple[Op, ...], grps: tuple[tuple[int, int, int], ...], opts: Options) -> Verdict:
    from .interleave import Chooser, Schedule, explore

    flat = flatten(top)
    if opts.schedule is not None:
        return _check_once(target, flat, opts, grps, Chooser(Schedule.parse(opts.schedule)))
    findings: dict[tuple[str, str, str], Finding] = {}
    stats = Stats()
    notes: list[str] = []
    log: list[tuple[str, tuple[str, ...]]] = []
    feats: set[str] = set()
    seen: set[bytes] = set()
    runs = distinct = 0
    for chooser in explore(opts.preemption_bound):
        if opts.max_schedules is not None and runs >= opts.max_schedules:
            notes.append(f"stopped exploring after {runs} schedules (max_schedules)")
            break
        runs += 1
        v = _check_once(target, flat, opts, grps, chooser, seen)
        if v is None:
            continue
        distinct += 1
        hung = any(_HUNG in n for n in v.notes)
        for f in v.findings:
            old = findings.get(f.signature)
            if old is None or (
                f.crash is not None and old.crash is not None and f.crash.deviations < old.crash.deviations
            ):
                findings[f.signature] = f
        for k in ("ops", "points", "states", "distinct", "mounts"):
            setattr(stats, k, getattr(stats, k) + getattr(v.stats, k))
        for k in ("t_exec", "t_image", "t_mount", "t_oracles"):
            setattr(stats, k, getattr(stats, k) + getattr(v.stats, k))
        notes += [n for n in v.notes if n not in notes]
        log += v.state_log
        feats |= v.features
        if hung:
            notes.append("stopped exploring: a schedule hung the target (every other would wait out the timeout)")
            break
    notes.insert(
        0,
        f"explored {runs} schedule(s) of {len(grps)} parallel group(s) with at most "
        f"{opts.preemption_bound} preemption(s); {distinct} gave distinct executions",
    )
    return Verdict(tuple(findings.values()), stats, tuple(notes), tuple(log), frozenset(feats))


def _pm_context(pm: PMem):
    """Save/restore/fresh of the PMem's per-thread labels (current op, site stack) for the scheduler."""

    def save():
        return (pm._op, pm._sites)

    def restore(ctx) -> None:
        pm._op, pm._sites = ctx

    return save, restore, lambda: (-1, [])


_HUNG = "the target hung"


def _what_failed(e: BaseException) -> str:
    if isinstance(e, TargetHang):
        return "hung"
    return "returned nonsense" if isinstance(e, TargetNonsense) else "raised"


def _write_faults(group: Sequence[Op]) -> bool:
    """Whether an op of the group may write-fault. A write fault may then have done a write(2)'s
    copy-on-write first -- on the same file, or on another that shared the block, which breaks the
    sharing for both -- and the write(2) then wrote in place, so the group's COWs are not
    all-or-nothing writes that `cow-atomicity` can hold it to (the other oracles still judge it)."""
    return any(isinstance(op, (Store, Pin)) or (isinstance(op, Fault) and op.write) for op in group)


def _run_digest(pm: PMem, results: list[str], orders: list[tuple[int, ...]], fs: MountedFS, ref: Reference) -> bytes:
    """What decides every verdict of a run: its trace, results, serial orders, mapping views, and what
    the target's introspection hooks tell the oracles (which block each mapped page reaches, which
    accesses reached a block the file lost): two schedules may leave the same trace -- a lazy log
    writes nothing at commit -- yet differ in whether a store came before a remap."""
    h = hashlib.blake2b(digest_size=16)
    for e in pm.trace:
        h.update(repr((e.kind, e.addr, e.size, e.op, e.site)).encode())
        if e.data is not None:
            h.update(bytes(e.data))
    h.update(repr((results, orders)).encode())
    blocks = getattr(fs, "mapping_blocks", None)
    for m, mp in sorted(ref.maps.items()):
        h.update(repr(fs.read_mapping(m, 0, mp.length)).encode())
        if blocks is not None:
            h.update(repr(blocks(m)).encode())
    layout = getattr(fs, "layout_violations", None)
    if layout is not None:
        h.update(repr(layout()).encode())
    return h.digest()


@dataclass(frozen=True)
class ScheduleStep:
    """One slice of a schedule in a report: a thread, its op, and the points it passed, in order."""

    thread: int
    op_text: str
    labels: tuple[str, ...]

    def __str__(self) -> str:
        return f"  t{self.thread} `{self.op_text}`: " + " > ".join(self.labels)


def _slices(texts: list[str], steps: tuple[tuple[int, str], ...]) -> list[ScheduleStep]:
    out: list[ScheduleStep] = []
    for t, label in steps:
        if out and out[-1].thread == t:
            out[-1] = ScheduleStep(t, texts[t], (*out[-1].labels, label))
        else:
            out.append(ScheduleStep(t, texts[t], (label,)))
    return out


def _check_once(
    target: Target,
    ops: Sequence[Op],
    opts: Options,
    grps: tuple[tuple[int, int, int], ...] = (),
    chooser=None,
    seen_runs: set[bytes] | None = None,
) -> Verdict:
    """One execution (one schedule of the parallel groups, if any) and its crash states.

    Returns None instead when `seen_runs` already holds an execution identical to this one.
    """
    check_supported(target, ops)
    oracles = default_oracles() if opts.oracles is None else opts.oracles
    guarantees = target.guarantees
    run_oracles = [o for o in oracles if o.phase is Phase.RUN and o.guarantee in guarantees]
    crash_oracles = [o for o in oracles if o.phase is Phase.CRASH and o.guarantee in guarantees]
    stats = Stats()
    findings: dict[tuple[str, str, str], Finding] = {}
    notes: list[str] = []

    def add(f: Finding) -> None:
        old = findings.get(f.signature)
        if (
            old is None
            or (opts.first_per_signature is False)
            or (f.crash is not None and old.crash is not None and f.crash.deviations < old.crash.deviations)
        ):
            findings[f.signature] = f

    def diverged() -> bool:
        """The target already left the reference (a functional finding): later differences follow
        from that first one, so the functional oracle reports only the first diverging op."""
        return any(f.oracle is OracleName.FUNCTIONAL for f in findings.values())

    state_log: list[tuple[str, list[str]]] = []

    def add_crash(here: _Here, v: _V) -> None:
        """A crash finding; its crash site (the costly part) is built only if it will be kept."""
        oracle, message, evidence, tb = v
        if opts.log_states:
            state_log[-1][1].append(f"{oracle.value}: {message} {' '.join(map(str, evidence))}")
        old = findings.get(_signature(oracle, here))
        if (
            old is not None
            and opts.first_per_signature
            and old.crash is not None
            and (old.crash.deviations <= here.state.deviations)
        ):
            return
        add(here.finding(oracle, message, evidence, tb))

    t0 = time.perf_counter()
    try:
        with deadline(opts.op_timeout, "format", target=target.name):
            blank = formatted(target, opts.device_size)
    except (Exception, TargetHang) as e:
        tb = _guard(e)
        add(Finding(OracleName.TARGET_ERROR, f"formatting a fresh device failed: {_failure(e)}", traceback=tb))
        return Verdict(tuple(findings.values()), stats)
    pm = PMem.from_image(blank, opts.domain)
    try:
        fs = guarded_mount(target, pm, opts.op_timeout, "mount")
    except (Exception, TargetHang) as e:
        tb = _guard(e)
        add(Finding(OracleName.MOUNT, f"the freshly formatted device does not mount: {e}", traceback=tb))
        return Verdict(tuple(findings.values()), stats)
    pm.quiesce()
    ref = Reference.for_target(target)
    hist = History(ref)
    executed = 0
    results: list[str] = []
    starts = {start: (g, n) for g, start, n in grps}
    spans = {start + k: (start, start + n) for _g, start, n in grps for k in range(n)}
    orders: list[tuple[int, ...]] = []
    steps: list[ScheduleStep] = []
    crashes_sound = True
    skip_to = 0
    for i, op in enumerate(ops):
        if i < skip_to:
            continue
        if i in starts:
            g, n = starts[i]
            skip_to = i + n
            try:
                gr = _run_group(
                    target, fs, pm, ref, hist, ops, i, g, n, chooser, run_oracles, add, notes, orders, steps, diverged
                )
            except (Exception, TargetHang) as e:  # the target's view failed while the group was judged
                if _oracle_fault(e):
                    raise
                tb = _guard(e)
                msg = f"after the parallel group at op {i}, reading the target's files: {_failure(e)}"
                add(Finding(OracleName.TARGET_ERROR, msg, op=i, op_text=str(ops[i]), op_kind="parallel", traceback=tb))
                notes.append(f"stopped at op {i}: reading the target's files failed")
                executed = i
                crashes_sound = False
                break
            if opts.features:
                results += [f"parallel:{r}" for r in gr[1]]
            if gr[0] is None:
                executed = i
                crashes_sound = False
                break
            executed = gr[0]
            continue
        payload = ref.payload(i, op)
        want = ref.apply(i, op)
        try:
            got = fs.execute(i, op, payload)
        except (Exception, TargetHang) as e:
            tb = _guard(e)
            raised = not isinstance(e, (TargetHang, TargetNonsense))
            add(
                Finding(
                    OracleName.TARGET_ERROR,
                    f"op {i} `{op}` raised {type(e).__name__}: {e}" if raised else str(e),
                    op=i,
                    op_text=str(op),
                    op_kind=op.kind.value,
                    traceback=tb,
                )
            )
            hist.record()
            executed = i
            notes.append(f"stopped at op {i}: the target {_what_failed(e)}")
            break
        hist.record()
        executed = i + 1
        if opts.features:
            results.append(f"{op.kind.value}:{got}" if not got.ok else f"{op.kind.value}:ok")
        if got.errno is Errno.ENOSPC and want.errno is not Errno.ENOSPC:
            notes.append(f"stopped at op {i}: the target ran out of space (ENOSPC); later ops not run")
            executed = i
            break
        ctx = RunContext(i, op, got, want, fs, ref)
        try:
            for o in run_oracles:
                if o.name is OracleName.FUNCTIONAL and diverged():
                    continue
                for v in o.check(ctx):
                    add(Finding(v.oracle, v.message, v.evidence, i, str(op), op.kind.value, ""))
        except (Exception, TargetHang) as e:
            if _oracle_fault(e):
                raise
            tb = _guard(e)
            msg = f"after op {i} `{op}`, reading the target's files: {_failure(e)}"
            add(Finding(OracleName.TARGET_ERROR, msg, op=i, op_text=str(op), op_kind=op.kind.value, traceback=tb))
            notes.append(f"stopped after op {i}: reading the target's files failed")
            break
    stats.ops = executed
    stats.t_exec = time.perf_counter() - t0
    # Crash points before the first group are the same in every schedule: judge them in the first only.
    before = 0
    if chooser is not None and seen_runs is not None:
        key = _run_digest(pm, results, orders, fs, ref)
        if key in seen_runs:
            return None  # type: ignore[return-value]
        if seen_runs:
            before = min((start for _g, start, _n in grps), default=0)
        seen_runs.add(key)
    if not crashes_sound:
        notes.append("crash states not judged: the parallel group did not finish")
    feats: set[str] = set()
    if opts.features:
        feats.update(results)
        prev = ""
        for e in pm.trace:
            if e.site != prev:
                feats.add(f"{prev}>{e.site}")
                prev = e.site

    points = pm.crash_points(opts.eadr_points)
    if opts.crash is not None:
        state = pm.crash_state(opts.crash, opts.eadr_points)
        todo: list[tuple[CrashPoint, list[CrashState]]] = [(state.point, [state])]
    else:
        todo = [(p, []) for p in points]
    seen: set[tuple[int, int, int]] = set()
    durable = Guarantee.FSYNC_DURABLE in guarantees
    synchronous = Guarantee.ATOMIC_OPS in guarantees
    meta = metadata_ranges(target, opts.device_size) if opts.group_by_metadata else None
    meta_oracles = [o for o in crash_oracles if getattr(o, "metadata_only", False)]
    data_oracles = [o for o in crash_oracles if not getattr(o, "metadata_only", False)]
    skip_crashes = opts.focus is not None and opts.focus[0] in (OracleName.FUNCTIONAL, OracleName.TARGET_ERROR)
    hung_points = 0
    for point, fixed in todo:
        if skip_crashes or not crashes_sound:
            break
        if point.op >= executed and point.kind is not PointKind.END and opts.crash is None:
            continue
        if point.kind is not PointKind.END and point.op < before and opts.crash is None:
            continue
        if opts.focus is not None and opts.crash is None:
            if point.kind is PointKind.END:
                where = ("end", "")
            else:
                fk = ops[point.op].kind.value if 0 <= point.op < len(ops) else ""
                where = (fk, point.site.split(".", 1)[0])
            if where != opts.focus[1:]:
                continue
        if opts.features:
            feats.add(f"point:{point.kind.value}:{point.site}")
        stats.points += 1
        completed, upper = _window(point, executed, spans)
        expect = hist.expect(completed, upper, durable=durable, synchronous=synchronous)
        states = fixed or _states(point, opts)
        op_text = str(ops[point.op]) if 0 <= point.op < len(ops) else ""
        op_kind = ops[point.op].kind.value if 0 <= point.op < len(ops) else ""
        mounts: dict[tuple, _Mounted | str] = {}
        if meta is not None:
            meta_g = [gi for gi, g in enumerate(point.groups) if all(_inside(ln, meta) for ln in g.lines)]
        else:
            meta_g = list(range(len(point.groups)))
        meta_set = set(meta_g)
        data_g = [gi for gi in range(len(point.groups)) if gi not in meta_set]
        point_hung = False
        for state in states:
            stats.states += 1
            t1 = time.perf_counter()
            key = (state.digest, completed, upper)
            if key in seen:
                continue
            seen.add(key)
            stats.distinct += 1
            ch = state.choices
            mkey = tuple(ch[gi] for gi in meta_g)
            t2 = time.perf_counter()
            stats.t_image += t2 - t1
            here = _Here(point, state, op_text, op_kind)
            if opts.log_states:
                state_log.append((f"{point.id}/{state.id}", []))
            hit = mounts.get(mkey)
            if hit is None:
                snap = point.timeline._snapshot(point.spec.log_len)
                m_over = {ln: b for gi in meta_g for ln, b in point.group_lines(gi, ch[gi])}
                mpm = PMem.from_image(CrashImage(snap.pages, m_over, 0), opts.domain, record=False)
                try:
                    rfs: MountedFS = guarded_mount(target, mpm, opts.op_timeout, "recovery (mount)")
                except (Exception, TargetHang) as e:
                    hit = f"recovery failed: {_failure(e)}\n{_guard(e) or ''}"
                    point_hung = point_hung or isinstance(e, TargetHang)
                else:
                    stats.mounts += 1
                    hit = _Mounted(rfs, mpm, point, data_g)
                    meta_ctx = CrashContext(rfs, expect)
                    for o in meta_oracles:
                        hit.meta_findings += _run_oracle(o, meta_ctx, opts.op_timeout, target.name)
                if meta is not None:
                    if len(mounts) >= 64:
                        mounts.pop(next(iter(mounts)))
                    mounts[mkey] = hit
            t3 = time.perf_counter()
            stats.t_mount += t3 - t2
            if isinstance(hit, str):
                msg, _, tb = hit.partition("\n")
                add_crash(here, (OracleName.MOUNT, msg, (), tb))
                if point_hung:
                    hung_points += 1
                    break  # each further state would wait out the timeout again
                continue
            for v in hit.meta_findings:
                add_crash(here, v)
                point_hung = point_hung or isinstance(v, _Hung)
            hit.patch(ch)
            cctx = CrashContext(hit.fs, expect, verdicts=hit.verdicts)
            for o in data_oracles:
                for v in _run_oracle(o, cctx, opts.op_timeout, target.name):
                    add_crash(here, v)
                    point_hung = point_hung or isinstance(v, _Hung)
            stats.t_oracles += time.perf_counter() - t3
            if point_hung:
                hung_points += 1
                break
    if hung_points:
        notes.append(f"the target hung at {hung_points} crash point(s): their other crash states were not judged")
    log = tuple((sid, tuple(sorted(msgs))) for sid, msgs in state_log)
    if opts.features:
        feats.update(f"finding:{f.signature_text}" for f in findings.values())
    out = tuple(findings.values())
    if chooser is not None:
        sid = str(chooser.schedule())
        out = tuple(replace(f, schedule=sid, evidence=(*f.evidence, *_schedule_lines(sid, steps))) for f in out)
        log = tuple((f"{sid}/{s}", m) for s, m in log)
    return Verdict(out, stats, tuple(notes), log, frozenset(feats))


@dataclass(frozen=True)
class _ScheduleHead:
    sid: str

    def __str__(self) -> str:
        return f"schedule: {self.sid} (replay with `# schedule: {self.sid}`)"


def _schedule_lines(sid: str, steps: list[ScheduleStep]) -> tuple:
    return (_ScheduleHead(sid), *steps)


def _run_group(
    target: Target,
    fs: MountedFS,
    pm: PMem,
    ref: Reference,
    hist: History,
    ops: Sequence[Op],
    start: int,
    g: int,
    n: int,
    chooser,
    run_oracles: list[Oracle],
    add,
    notes: list[str],
    orders: list[tuple[int, ...]],
    steps: list[ScheduleStep],
    diverged: Callable[[], bool],
) -> tuple[int | None, list[str]]:
    """Run one parallel group under the chooser; apply it to the reference in a serial order that explains it.

    Returns (ops executed after it, or None if the run cannot go on; result texts).
    """
    from .interleave import Scheduler

    hook = getattr(fs, "set_scheduler", None)
    if hook is None:
        raise PmfuzzError(f"target {target.name!r} cannot run parallel groups (its mounted fs has no set_scheduler)")
    idx = list(range(start, start + n))
    texts = [str(ops[j]) for j in idx]
    group_text = str(Parallel(tuple(ops[j] for j in idx)))
    payloads = {j: ref.payload(j, ops[j]) for j in idx}
    sched = Scheduler(chooser, _pm_context(pm))
    hook(sched)
    try:
        run = sched.run_group(g, [lambda j=j: fs.execute(j, ops[j], payloads[j]) for j in idx], texts)
    finally:
        hook(None)
    steps += _slices(texts, run.steps)
    if run.deadlock is not None and not run.deadlock.cycle:
        notes.append(
            f"stopped at op {start}: the parallel group hangs without a lock cycle "
            f"(the workload never releases what it waits for: {run.deadlock})"
        )
        return None, []
    if run.deadlock is not None:
        add(
            Finding(
                OracleName.DEADLOCK,
                f"the parallel group at op {start} deadlocks: {run.deadlock}",
                (),
                start,
                group_text,
                "parallel",
                "+".join(sorted({w[2].split("[", 1)[0] for w in run.deadlock.waits})),
            )
        )
        notes.append(f"stopped at op {start}: the parallel group deadlocked")
        return None, []
    for k, e in enumerate(run.errors):
        if e is not None:
            tb = _guard(e)
            add(
                Finding(
                    OracleName.TARGET_ERROR,
                    f"op {idx[k]} `{texts[k]}` (thread t{k} of a parallel group) "
                    + (str(e) if isinstance(e, (TargetHang, TargetNonsense)) else f"raised {type(e).__name__}: {e}"),
                    op=idx[k],
                    op_text=texts[k],
                    op_kind=ops[idx[k]].kind.value,
                    traceback=tb,
                )
            )
            notes.append(f"stopped at op {start}: the target {_what_failed(e)} in a parallel group")
            return None, []
    got = {j: run.results[j - start] for j in idx}
    out = [f"{ops[j].kind.value}:{got[j]}" if not got[j].ok else f"{ops[j].kind.value}:ok" for j in idx]
    if any(got[j].errno is Errno.ENOSPC for j in idx):
        notes.append(f"stopped at op {start}: the target ran out of space (ENOSPC) in a parallel group")
        return None, out
    last: dict[int, int] = {}
    for e in pm.trace:
        if start <= e.op < start + n:
            last[e.op] = e.seq
    finished = {t: k for k, t in enumerate(run.finish_order)}
    # The order the ops last changed the device in is the order lock-serialized ops really ran in,
    # and it credits a copy-on-write to the op whose remap or copy finished it: a write(2) that
    # staged a block and copied its data after a racing write fault remapped that block wrote in
    # place, not copied on write.
    prefer = tuple(sorted(range(n), key=lambda t: (last.get(start + t, 1 << 62), finished.get(t, n))))
    found = serial_order(ref, hist, ops, start, n, got, fs, prefer)
    mixed: dict[str, bytes] = {}
    split: Reference | None = None
    if isinstance(found, SerialOrder):
        order, mixed, split = found.order, found.mixed, found.split
    else:
        add(
            Finding(
                OracleName.FUNCTIONAL,
                f"no serial order of the parallel group at op {start} explains what it did: results "
                + ", ".join(f"t{j - start} {got[j]}" for j in idx)
                + f"; {found}",
                (),
                start,
                group_text,
                "parallel",
            )
        )
        order = tuple(start + t for t in run.finish_order)
    orders.append(order)
    faults = _write_faults([ops[j] for j in idx])
    if split is not None:
        # Only the ops' steps interleaved explain the run: take over the state they leave. What
        # the ops made durable is not credited, and no COW is held to atomicity (permissive).
        ref.become(split)
    for k, j in enumerate(order):
        want = ref.apply(j, ops[j]) if split is None else got[j]
        if faults:
            ref.fx.cow = []
        if k == len(order) - 1:
            for f, data in mixed.items():
                ref.names[f].put(0, data)
        hist.record()
        last = (j, want)
    j, want = last
    # Results were matched (or reported) by the serial-order search; the state after the group is
    # judged here, so that a difference it left is blamed on the group, not on the op after it.
    ctx = RunContext(start + n - 1, Parallel(tuple(ops[k] for k in idx)), want, want, fs, ref, first=start)
    for o in run_oracles:
        if o.name is OracleName.FUNCTIONAL and diverged():
            continue
        for v in o.check(ctx):
            add(Finding(v.oracle, v.message, v.evidence, start, group_text, "parallel", ""))
    return start + n, out


class _Mounted:
    """A recovered image mounted once per metadata state; data groups are swapped in per crash state.

    The device starts with every data group at "nothing kept"; `patch` rewrites only the groups
    whose choice differs from the previous state's.
    """

    def __init__(self, fs: MountedFS, pm: PMem, point: CrashPoint, data_groups: list[int]) -> None:
        self.fs = fs
        self.pm = pm
        self.point = point
        self.data_groups = data_groups
        self.meta_findings: list[_V] = []
        self.verdicts = VerdictCache()
        self._cur: dict[int, int] = dict.fromkeys(data_groups, 0)
        for gi in data_groups:
            for ln, b in point.group_lines(gi, 0):
                pm.pages.write(ln * LINE, b)

    def patch(self, choices: tuple[int, ...]) -> None:
        pages, point, cur = self.pm.pages, self.point, self._cur
        for gi in self.data_groups:
            c = choices[gi]
            if cur[gi] == c:
                continue
            new = dict(point.group_lines(gi, c))
            for ln in point.groups[gi].lines:
                b = new.get(ln)
                pages.write(ln * LINE, b if b is not None else point.base_line(ln))
            cur[gi] = c


@dataclass
class _Here:
    """Where the engine is: builds findings with their crash site (outcomes computed only when needed)."""

    point: CrashPoint
    state: CrashState
    op_text: str
    op_kind: str

    def site(self) -> CrashSite:
        p, s = self.point, self.state
        ev = p.event
        return CrashSite(
            p.id, s.id, p.op, self.op_text, ev.kind.value if ev else "end", p.site, tuple(s.outcomes()), s.deviations
        )

    def finding(self, oracle: OracleName, message: str, evidence: tuple = (), tb: str | None = None) -> Finding:
        return Finding(
            oracle, message, evidence, self.point.op, self.op_text, self.op_kind, self.point.site, self.site(), tb
        )


def _signature(oracle: OracleName, here: _Here) -> tuple[str, str, str]:
    if here.point.kind is PointKind.END:
        return (oracle.value, "end", "")
    return (oracle.value, here.op_kind, here.point.site.split(".", 1)[0])


_V = tuple  # (oracle, message, evidence, traceback): a violation before it becomes a finding


class _Hung(tuple):
    """A violation saying the target hung reading a recovered image: its crash point's other states are skipped."""


def _run_oracle(o: Oracle, ctx: CrashContext, limit: float | None = None, target: str | None = None) -> list[_V]:
    try:
        with deadline(limit, f"oracle {getattr(o.name, 'value', o.name)}", target=target):
            vs: list[Violation] = o.check(ctx)
    except TargetNonsense as e:
        return [(OracleName.TARGET_ERROR, f"reading the recovered image: {e}", (), None)]
    except (Exception, TargetHang) as e:
        tb = _guard(e)
        if isinstance(e, TargetHang):
            return [_Hung((OracleName.MOUNT, f"reading the recovered image: {e}", (), tb))]
        return [(OracleName.MOUNT, f"reading the recovered image raised {type(e).__name__}: {e}", (), tb)]
    return [(v.oracle, v.message, v.evidence, None) for v in vs]


def _inside(line: int, ranges: list[tuple[int, int]]) -> bool:
    a = line * LINE
    return any(lo <= a < hi for lo, hi in ranges)


def _states(point: CrashPoint, opts: Options):
    s = opts.strategy
    if s is StateChoice.AUTO:
        n = 1
        for g in point.groups:
            n *= g.count(cap=opts.exhaustive_upto + 1)
            if n > opts.exhaustive_upto:
                break
        s = StateChoice.EXHAUSTIVE if n <= opts.exhaustive_upto else StateChoice.BOUNDED
    return point.states(Strategy(s.value), seed=opts.seed, limit=opts.max_states)


def default_options(**kw) -> Options:
    return Options(**kw)


field  # noqa: B018  (dataclasses.field kept for callers building Options)
