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
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field
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
from .target import Errno, Guarantee, MountedFS, Target, check_supported, metadata_ranges
from .workload import Workload

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
    """Record every judged state's violations in `Verdict.state_log` (for tests and debugging)."""
    """Mount once per distinct metadata state when the target declares its metadata ranges (same verdicts)."""


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

    @property
    def signature(self) -> tuple[str, str, str]:
        """What deduplicates findings: (oracle, op kind at the crash, code site).

        The site is the top-level label of the crash point ("xfs_file_fsync" for
        "xfs_file_fsync.commit_record"): one code path, whichever phase of its log push.
        """
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
    if isinstance(exc, PMemError):
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


def _guard(exc: BaseException) -> str:
    if _pmfuzz_fault(exc):
        raise exc
    return "".join(traceback.format_exception(exc))


def _window(point: CrashPoint, nops: int) -> tuple[int, int]:
    """(ops finished, last boundary reachable) for a crash at this point."""
    if point.kind is PointKind.END:
        return nops, nops
    k = point.op
    if k < 0:
        return 0, 0
    if point.kind is PointKind.OP:
        return k, k
    return k, min(k + 1, nops)


def check(target: Target, workload: Workload | Sequence, opts: Options = Options()) -> Verdict:
    """Execute a workload on a fresh device, then judge every crash state; return the verdict."""
    ops = workload.ops if isinstance(workload, Workload) else tuple(workload)
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

    state_log: list[tuple[str, list[str]]] = []

    def add_crash(here: _Here, v: _V) -> None:
        """A crash finding; its crash site (the costly part) is built only if it will be kept."""
        oracle, message, evidence, tb = v
        if opts.log_states:
            state_log[-1][1].append(f"{oracle.value}: {message} {' '.join(map(str, evidence))}")
        old = findings.get((oracle.value, here.op_kind, here.point.site.split(".", 1)[0]))
        if (
            old is not None
            and opts.first_per_signature
            and old.crash is not None
            and (old.crash.deviations <= here.state.deviations)
        ):
            return
        add(here.finding(oracle, message, evidence, tb))

    t0 = time.perf_counter()
    pm = PMem.from_image(formatted(target, opts.device_size), opts.domain)
    try:
        fs = target.mount(pm)
    except Exception as e:
        tb = _guard(e)
        add(Finding(OracleName.MOUNT, f"the freshly formatted device does not mount: {e}", traceback=tb))
        return Verdict(tuple(findings.values()), stats)
    pm.quiesce()
    ref = Reference()
    hist = History(ref)
    executed = 0
    results: list[str] = []
    for i, op in enumerate(ops):
        payload = ref.payload(i, op)
        want = ref.apply(i, op)
        try:
            got = fs.execute(i, op, payload)
        except Exception as e:
            tb = _guard(e)
            add(
                Finding(
                    OracleName.TARGET_ERROR,
                    f"op {i} `{op}` raised {type(e).__name__}: {e}",
                    op=i,
                    op_text=str(op),
                    op_kind=op.kind.value,
                    traceback=tb,
                )
            )
            hist.record()
            executed = i
            notes.append(f"stopped at op {i}: the target raised")
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
        for o in run_oracles:
            for v in o.check(ctx):
                add(Finding(v.oracle, v.message, v.evidence, i, str(op), op.kind.value, ""))
    stats.ops = executed
    stats.t_exec = time.perf_counter() - t0
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
    for point, fixed in todo:
        if skip_crashes:
            break
        if point.op >= executed and point.kind is not PointKind.END and opts.crash is None:
            continue
        if opts.focus is not None and opts.crash is None:
            fk = ops[point.op].kind.value if 0 <= point.op < len(ops) else ""
            if (fk, point.site.split(".", 1)[0]) != opts.focus[1:]:
                continue
        if opts.features:
            feats.add(f"point:{point.kind.value}:{point.site}")
        stats.points += 1
        completed, upper = _window(point, executed)
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
                    rfs: MountedFS = target.mount(mpm)
                except Exception as e:
                    hit = f"recovery failed: {type(e).__name__}: {e}\n{_guard(e)}"
                else:
                    stats.mounts += 1
                    hit = _Mounted(rfs, mpm, point, data_g)
                    meta_ctx = CrashContext(rfs, expect)
                    for o in meta_oracles:
                        hit.meta_findings += _run_oracle(o, meta_ctx)
                if meta is not None:
                    if len(mounts) >= 64:
                        mounts.pop(next(iter(mounts)))
                    mounts[mkey] = hit
            t3 = time.perf_counter()
            stats.t_mount += t3 - t2
            if isinstance(hit, str):
                msg, _, tb = hit.partition("\n")
                add_crash(here, (OracleName.MOUNT, msg, (), tb))
                continue
            for v in hit.meta_findings:
                add_crash(here, v)
            hit.patch(ch)
            cctx = CrashContext(hit.fs, expect, verdicts=hit.verdicts)
            for o in data_oracles:
                for v in _run_oracle(o, cctx):
                    add_crash(here, v)
            stats.t_oracles += time.perf_counter() - t3
    log = tuple((sid, tuple(sorted(msgs))) for sid, msgs in state_log)
    if opts.features:
        feats.update(f"finding:{f.signature_text}" for f in findings.values())
    return Verdict(tuple(findings.values()), stats, tuple(notes), log, frozenset(feats))


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


_V = tuple  # (oracle, message, evidence, traceback): a violation before it becomes a finding


def _run_oracle(o: Oracle, ctx: CrashContext) -> list[_V]:
    try:
        vs: list[Violation] = o.check(ctx)
    except Exception as e:
        tb = _guard(e)
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
