"""Judge a `Run`: build every crash point's states, recover each, and let the crash oracles judge it.

    verdict = judge(run)

Whatever executed the workload (the built-in model here, a kernel target in its guest), the
crash points, windows, mounts and findings are decided here alone. A recovery that raises is
a `mount` finding, kept with its traceback.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace

import numpy as np

from oracles import (
    ELSEWHERE,
    CrashContext,
    CrashOracle,
    Evidence,
    OracleName,
    Violation,
    WordVerdict,
    default_oracles,
    is_crash_oracle,
)

from ..execution.blame import failure, pmfuzz_fault, target_traceback
from ..execution.guarded import guarded_mount
from ..execution.run import Run, ScheduleHead
from ..execution.watchdog import TargetHang, TargetNonsense, deadline
from ..pmem import CrashImage, CrashPoint, CrashState, Event, PMem, PointKind, Strategy
from ..reference.effects import held_in
from ..reference.expect import Expectation
from ..signature import Cause, How, Signature, top_site
from ..target import MountedFS, metadata_ranges
from ..verdict import CrashSite, Finding, Findings, Options, StateChoice, Stats, Verdict, first_divergence
from .cause import UNEXPLAINED_MEDIA, code_of, crash_cause_store, reordered_store
from .links import ByteRanges, divergence_links, link_blamed, log_ranges, meta_groups, meta_known, meta_store
from .mounted import Mounted
from .recall import PointRecall, Recall, ops_prefixes, point_key, scope, window_key

__all__ = ["judge", "HUNG"]

HUNG = "the target hung"
"""Said by the note of a run whose crash points hung the target."""


def judge(run: Run, *, skip_before: int = 0, recall: Recall | None = None) -> Verdict:
    """Judge every crash state of the run (or only `Options.crash`) and return its verdict.

    Crash points of ops before `skip_before` are not judged (an earlier schedule judged them).
    `recall` holds the states earlier runs judged clean (the schedules of one exploration, or a
    campaign's workloads under one target and options): a state of this run with the same image,
    window and history up to the window is clean again and is not judged.
    """
    if not run.ran:
        return Verdict(run.findings, Stats())
    return _Judge(run, recall).verdict(skip_before)


class _Judge:
    def __init__(self, run: Run, recall: Recall | None = None) -> None:
        self.run = run
        self.recall = recall
        opts = self.opts = run.options
        oracles = default_oracles() if opts.oracles is None else opts.oracles
        guarantees = run.target.guarantees
        crash = [o for o in oracles if is_crash_oracle(o) and o.guarantee in guarantees]
        h = run.history
        self._prefix = None if recall is None or h is None else h.prefix_digests()
        """Per boundary, what the expectations of windows ending there are made of, for `recall`."""
        names = [str(getattr(o, "name", o)) for o in crash]
        self._scope = b"" if self._prefix is None else scope(run.target, opts, names)
        self._ops = None if self._prefix is None else ops_prefixes(run.ops)
        self._serial_until = min((start for _g, start, _n in run.groups), default=len(run.ops))
        """Ops before the first parallel group: their crash points are functions of the ops up to them."""
        self.meta_oracles = [o for o in crash if o.metadata_only]
        self.data_oracles = [o for o in crash if not o.metadata_only]
        self.findings = Findings(opts.first_per_signature, run.findings)
        self.state_log: list[tuple[str, list[str]]] = []
        self._diverged = first_divergence(run.findings)
        self._diverged_as = tuple(
            sorted(
                {
                    f.root_cause
                    for f in run.findings
                    if f.crash is None and f.op == self._diverged and f.root_cause.where == ELSEWHERE
                },
                key=str,
            )
        )
        """The causes of the crash-free findings at the diverging op that name an op on another file."""
        self._diverged_words = {
            f.word: f.root_cause
            for f in run.findings
            if f.crash is None and f.op == self._diverged and f.word is not None
        }
        """The device words the crash-free reads at the diverging op saw wrong, and their causes."""
        self._tries: dict[Signature, int] = {}  # per signature: violations past its first that `_kept` let through
        self._blamed: dict[tuple[str, int], set[Cause]] = {}
        """Per store (or word) a kept violation blamed, the causes that blamed it, over the run."""
        self.stats = Stats(ops=run.executed, t_exec=run.t_exec)

    def add_crash(self, here: _Here, v: _V, known: tuple[Cause | None, tuple[Cause, ...]] | None = None) -> None:
        """A crash finding; its crash site (the costly part) is built only if it will be kept.

        `known`: its cause, if already worked out, and the causes other oracles gave the same crash
        state for the same store or word."""
        oracle, message, evidence, tb = v
        if self.opts.log_states:
            self.state_log[-1][1].append(f"{oracle.value}: {message} {' '.join(map(str, evidence))}")
        if not self._kept(here, v):
            return
        f = here.finding(oracle, message, evidence, tb)
        cause, also = (self._cause(here, v)[0], ()) if known is None else known
        if cause is not None:
            f = replace(f, cause=cause, also=tuple(a for a in also if a != cause))
        self.findings.add(f)

    def _kept(self, here: _Here, v: _V) -> bool:
        """Whether a violation may become a finding: its signature's first, one that deviates less than
        one of them, or one of `_CAUSE_TRIES` more, whose cause may be another (a second bug's)."""
        sig = here.signature(v[0])
        olds = self.findings.of(sig)
        if not olds or not self.opts.first_per_signature:
            return True
        if any(old.crash is None or old.crash.deviations > here.state.deviations for old in olds):
            return True
        tries = self._tries[sig] = self._tries.get(sig, 0) + 1
        return tries <= _CAUSE_TRIES

    def _cause(self, here: _Here, v: _V) -> tuple[Cause | None, tuple[str, int] | None]:
        """A crash violation's cause and what it blames (None, None: no recovered image to read)."""
        if here.fs is None or isinstance(v, _Hung):
            return None, None
        oracle, message, evidence, _ = v
        p = here.point
        try:
            ev = next((e for e in evidence if isinstance(e, Evidence)), None)
            held = _held_by(here.expect, ev.file) if here.expect is not None and ev is not None else None
            cause, blame = crash_cause_store(
                oracle, message, evidence, p, here.state, here.fs, p.timeline.events, held, self.run.reached
            )
            if cause == UNEXPLAINED_MEDIA and self.run.reached.spans:
                # Media no op's block-map change made readable, in a state whose log the crash
                # reordered: the replay mapped it -- the reordering's cause, as a broken rule has it.
                dropped = reordered_store(p, here.state, meta_groups(p, self._meta_at), p.timeline.events)
                if dropped is not None:
                    return Cause(OracleName.MOUNT, How.REORDERED, code_of(dropped.site)), blame
            return cause, blame
        except Exception as e:  # the target's view failed on a read the oracles did not make
            if pmfuzz_fault(e):
                raise
            return None, None

    def _add_state(self, here: _Here, judged: list[_Judged]) -> None:
        """One crash state's data-oracle violations, each with its cause and what it blames if it is
        to be kept. What each blames is remembered for the run (`_blamed`): kept findings whose
        causes blame one store (or one word), in this state or another, are linked at the end
        (`link_blamed`), unless the run had already left the reference before the crash (what such
        states show follows from that divergence). A crash inside the diverging op
        whose cause blames a store of that op is linked to a divergence that op made in another
        file (a crash in the middle of a copy on write that wrote in place shows the same wrong
        write, torn), and one that blames the very word the crash-free read saw wrong to that
        read's cause. (Not to any divergence named by what a read saw: that name is generic
        enough that linking under it could file a second bug's cause under the first's.)"""
        if not self._after_divergence(here):
            for _, c in judged:
                if c is not None and c[0] is not None and c[1] is not None:
                    self._blamed.setdefault(c[1], set()).add(c[0])
        for v, c in judged:
            if c is None:
                self.add_crash(here, v, (None, ()))
                continue
            cause, blame = c
            self.add_crash(here, v, (cause, self._divergence_links(here, blame) if blame is not None else ()))

    def _meta_store(self, point: CrashPoint, state: CrashState, meta_g: list[int]) -> tuple[How, Event] | None:
        return meta_store(point, state, meta_g, self._meta_at, self._log)

    def _divergence_links(self, here: _Here, blame: tuple[str, int]) -> tuple[Cause, ...]:
        p = here.point
        if p.kind is PointKind.END or p.op != self._diverged:
            return ()
        return divergence_links(p, blame, self._diverged_words, self._diverged_as)

    def _after_divergence(self, here: _Here) -> bool:
        first = self._diverged
        return first is not None and (here.point.kind is PointKind.END or here.point.op > first)

    def verdict(self, skip_before: int) -> Verdict:
        run, opts, stats = self.run, self.opts, self.stats
        assert run.device is not None, "only a run that ran is judged"
        notes = list(run.notes)
        if not run.crashes_sound:
            notes.append("crash states not judged: the parallel group did not finish")
        feats: set[str] = set()
        if opts.features:
            feats.update(run.results)
            prev = ""
            for e in run.device.trace:
                if e.site != prev:
                    feats.add(f"{prev}>{e.site}")
                    prev = e.site
        if opts.crash is not None:
            state = run.crash_state(opts.crash)
            todo: list[tuple[CrashPoint, list[CrashState]]] = [(state.point, [state])]
        else:
            todo = [(p, []) for p in run.crash_points()]
        self.seen: set[tuple[int, int, int]] = set()
        self._beside_of: Expectation | None = None
        self._beside: dict[str, tuple[np.ndarray, int, WordVerdict]] = {}
        """Files as a mount judged them against `_beside_of`: the points of one window share it (the same
        expectation object), so a file a later point recovers is judged only where it differs."""
        self.meta = metadata_ranges(run.target, opts.device_size) if opts.group_by_metadata else None
        self._meta_at = ByteRanges(self.meta) if self.meta is not None else None
        self._log = log_ranges(run.target, opts.device_size)
        skip_crashes = opts.focus is not None and opts.focus[0] in (OracleName.FUNCTIONAL, OracleName.TARGET_ERROR)
        hung_points = 0
        if skip_crashes or not run.crashes_sound:
            todo = []
        elif opts.crash is None:
            todo = self._sampled([(p, f) for p, f in todo if self._wanted(p, skip_before)], notes)
        for point, fixed in todo:
            if opts.features:
                feats.add(f"point:{point.kind.value}:{point.site}")
            stats.points += 1
            if self._point(point, fixed):
                hung_points += 1
            point.forget()
        if hung_points:
            notes.append(f"the target hung at {hung_points} crash point(s): their other crash states were not judged")
        log = tuple((sid, tuple(sorted(msgs))) for sid, msgs in self.state_log)
        out = link_blamed(self.findings.values(), self._blamed)
        if opts.features:
            feats.update(f"finding:{f.signature_text}" for f in out)
        if run.schedule is not None:
            sid = run.schedule
            head = (ScheduleHead(sid), *run.steps)
            out = tuple(replace(f, schedule=sid, evidence=(*f.evidence, *head)) for f in out)
            log = tuple((f"{sid}/{s}", m) for s, m in log)
        return Verdict(out, stats, tuple(notes), log, frozenset(feats))

    def _sampled(
        self, todo: list[tuple[CrashPoint, list[CrashState]]], notes: list[str]
    ) -> list[tuple[CrashPoint, list[CrashState]]]:
        """Every crash point, or, past `Options.max_inflight`, every k-th one and the end (a note says so)."""
        budget = self.opts.max_inflight
        if budget is None or len(todo) < 2:
            return todo
        total = sum(p.spec.width for p, _ in todo)
        if total <= budget:
            return todo
        k = -(-total // budget)
        off = self.opts.seed % k
        kept = [(p, f) for i, (p, f) in enumerate(todo) if i % k == off or p.kind is PointKind.END]
        notes.append(
            f"crash points sampled: 1 in {k} of {len(todo)} judged ({total:,} groups in flight over all of "
            f"them, more than {budget:,})"
        )
        return kept

    def _wanted(self, point: CrashPoint, skip_before: int) -> bool:
        """Whether a crash point is judged: ops that ran, not judged by an earlier schedule, in focus."""
        run, opts = self.run, self.opts
        if point.kind is not PointKind.END and (point.op >= run.executed or point.op < skip_before):
            return False
        if opts.focus is not None:
            if point.kind is PointKind.END:
                where = ("end", "")
            else:
                ops = run.ops
                fk = ops[point.op].kind.value if 0 <= point.op < len(ops) else ""
                where = (fk, top_site(point.site))
            if where != opts.focus[1:]:
                return False
        return True

    def _point(self, point: CrashPoint, fixed: list[CrashState]) -> bool:
        """Judge one crash point's states; True when the target hung (its other states are skipped)."""
        run, opts, stats, target = self.run, self.opts, self.stats, self.run.target
        window = run.window(point)
        completed, upper = window
        recall, prefix = self.recall, self._prefix
        wkey = pkey = None
        if recall is not None and prefix is not None and upper < len(prefix):
            wkey = window_key(self._scope, prefix[upper], completed, upper)
            pkey = None if fixed else self._point_key(point, wkey)
            whole = None if pkey is None else recall.point(pkey)
            if whole is not None:
                self._recalled_point(point, whole, completed, upper)
                return False
        expect = run.expect(point, window)
        states = fixed or _states(point, opts)
        ops = run.ops
        op_text = str(ops[point.op]) if 0 <= point.op < len(ops) else ""
        op_kind = ops[point.op].kind.value if 0 <= point.op < len(ops) else ""
        mounts: dict[tuple, Mounted | tuple[str, str, tuple[How, Event] | None]] = {}
        if expect is not self._beside_of:
            self._beside_of, self._beside = expect, {}
        beside = self._beside
        meta = self.meta
        meta_g = meta_groups(point, self._meta_at)
        meta_set = set(meta_g)
        data_g = [gi for gi in range(len(point.groups)) if gi not in meta_set]
        point_hung = False
        seen = self.seen
        mine: list[bytes] | None = [] if pkey is not None else None
        ids: list[str] | None = [] if pkey is not None and opts.log_states else None
        all_clean = True
        """Whether every state of the point so far is known clean (judged so here, or recalled)."""
        for state in states:
            stats.states += 1
            t1 = time.perf_counter()
            d = state.digest
            rkey = None if wkey is None or recall is None else wkey ^ d
            if mine is not None:
                mine.append(d.to_bytes(16, "little"))
                if ids is not None:
                    ids.append(str(state.id))
            key = (d, completed, upper)
            if key in seen:
                all_clean = all_clean and rkey is not None and recall is not None and rkey in recall
                continue
            seen.add(key)
            stats.distinct += 1
            if rkey is not None and recall is not None and rkey in recall:
                stats.recalled += 1
                if opts.log_states:
                    self.state_log.append((f"{point.id}/{state.id}", []))
                continue
            ch = state.choices
            mkey = tuple(ch[gi] for gi in meta_g)
            t2 = time.perf_counter()
            stats.t_image += t2 - t1
            here = _Here(point, state, op_text, op_kind, expect)
            if opts.log_states:
                self.state_log.append((f"{point.id}/{state.id}", []))
            hit = mounts.get(mkey)
            if hit is None:
                m_over = {ln: b for gi in meta_g for ln, b in point.group_lines(gi, ch[gi])}
                mpm = PMem.from_image(CrashImage(point.base_pages(), m_over, 0), opts.domain, record=False)
                try:
                    rfs: MountedFS = guarded_mount(target, mpm, opts.op_timeout, "recovery (mount)")
                except (Exception, TargetHang) as e:
                    tb = target_traceback(e) or ""
                    # A finding's message is one line: the rest of a many-line failure goes with the traceback.
                    msg, nl, more = f"recovery failed: {failure(e)}".partition("\n")
                    hit = (msg, f"{more}\n{tb}" if nl else tb, self._meta_store(point, state, meta_g))
                    point_hung = point_hung or isinstance(e, TargetHang)
                else:
                    stats.mounts += 1
                    hit = Mounted(rfs, mpm, point, data_g)
                    hit.verdicts.beside = beside
                    hit.map_blocks(opts.op_timeout)
                    meta_ctx = CrashContext(hit.fs, expect)
                    for o in self.meta_oracles:
                        hit.meta_findings += _run_oracle(o, meta_ctx, opts.op_timeout, target.name)
                    if hit.meta_findings:
                        hit.meta_store = self._meta_store(point, state, meta_g)
                if meta is not None:
                    if len(mounts) >= 64:
                        mounts.pop(next(iter(mounts)))
                    mounts[mkey] = hit
            t3 = time.perf_counter()
            stats.t_mount += t3 - t2
            if isinstance(hit, tuple):
                all_clean = False
                self.add_crash(here, (OracleName.MOUNT, hit[0], (), hit[1]), meta_known(OracleName.MOUNT, hit[2]))
                if point_hung:
                    return True  # each further state would wait out the timeout again
                continue
            for v in hit.meta_findings:
                self.add_crash(here, v, None if v[2] else meta_known(v[0], hit.meta_store))
                point_hung = point_hung or isinstance(v, _Hung)
            if hit.meta_store is not None and hit.meta_store[0] is How.REORDERED:
                # The recovered metadata breaks a rule because the crash reordered its stores (a
                # commit kept over its records): what the files read follows from the garbage the
                # replay made, so their data is not judged. A rule broken without a reordering
                # (in place, durable) does not stop the data oracles: it may sit beside a data bug.
                all_clean = False
                stats.t_oracles += time.perf_counter() - t3
                if point_hung:
                    return True
                continue
            vkey = hit.visible_key(state)
            known = hit.judged.get(vkey) if vkey is not None else None
            if known is not None:
                stats.shared += 1
                if known:
                    hit.patch(state)
                    here.fs = hit.fs
                for v in known:
                    self.add_crash(here, v)
                clean = not known and not hit.meta_findings
            else:
                hit.patch(state)
                here.fs = hit.fs
                hung, found = self._data_oracles(here, CrashContext(hit.fs, expect, verdicts=hit.verdicts))
                hit.verdicts.first = False
                if vkey is not None and not hung:
                    hit.judged[vkey] = found
                point_hung = point_hung or hung
                clean = not found and not hung and not hit.meta_findings
            if clean and rkey is not None and recall is not None:
                recall.add(rkey)
            all_clean = all_clean and clean
            stats.t_oracles += time.perf_counter() - t3
            if point_hung:
                return True
        if pkey is not None and mine is not None and all_clean and recall is not None:
            recall.add_point(pkey, PointRecall(len(mine), b"".join(mine), None if ids is None else tuple(ids)))
        return False

    def _point_key(self, point: CrashPoint, wkey: int) -> bytes | None:
        """A crash point's key for `Recall.point`. Before any parallel group the ops up to the point
        decide it; after one (or at the end) its contents do: the media as of the point and the
        groups in flight, the same in every schedule that reaches it alike."""
        if self._ops is None:
            return None
        if point.kind is not PointKind.END and 0 <= point.op < self._serial_until:
            return point_key(wkey, self._ops[point.op], point.id, self.opts)
        if point.spec.width > _CONTENT_WIDTH:
            return None
        # A sampled point draws by its id, and a logged state's id names its point.
        named = self.opts.strategy is StateChoice.SAMPLE or self.opts.log_states
        return point_key(wkey, b"content" + point.content(), point.id if named else "", self.opts)

    def _recalled_point(self, point: CrashPoint, known: PointRecall, completed: int, upper: int) -> None:
        """Count a crash point every state of which an earlier run judged clean, as judging it would."""
        stats, seen, log = self.stats, self.seen, self.opts.log_states
        stats.states += known.states
        for k, d in enumerate(known.each()):
            key = (d, completed, upper)
            if key in seen:
                continue
            seen.add(key)
            stats.distinct += 1
            stats.recalled += 1
            if log:
                assert known.ids is not None, "a point recalled by a judge that logs states was kept with its ids"
                self.state_log.append((f"{point.id}/{known.ids[k]}", []))

    def _data_oracles(self, here: _Here, ctx: CrashContext) -> tuple[bool, list[_V]]:
        """Every data oracle on one crash state, under one deadline (arming a timer per oracle cost
        more than most checks): whether the target hung, and the violations found."""
        target = self.run.target.name
        guard = deadline(self.opts.op_timeout, "the oracles", target=target)
        found: list[_V] = []
        judged: list[_Judged] = []
        hung = False
        try:
            with guard:
                for o in self.data_oracles:
                    guard.what = f"oracle {getattr(o.name, 'value', o.name)}"
                    vs = _run_oracle(o, ctx)
                    found += vs
                    hung = any(isinstance(v, _Hung) for v in vs)
                    for v in vs:
                        judged.append((v, self._cause(here, v) if not hung and self._kept(here, v) else None))
                    if hung:
                        break
        except TargetHang as e:  # fired between two oracles, or in a finding's cause
            self._add_state(here, judged)
            self.add_crash(here, _Hung((OracleName.MOUNT, f"reading the recovered image: {e}", (), None)))
            return True, found
        self._add_state(here, judged)
        return hung, found


class _Here:
    """Where the judge is: builds findings with their crash site (outcomes computed only when needed)."""

    __slots__ = ("expect", "fs", "op_kind", "op_text", "point", "state")

    def __init__(
        self, point: CrashPoint, state: CrashState, op_text: str, op_kind: str, expect: Expectation | None = None
    ) -> None:
        self.point, self.state, self.op_text, self.op_kind = point, state, op_text, op_kind
        self.expect = expect
        self.fs: MountedFS | None = None
        """The recovered file system with this state's data, once the data oracles read it."""

    def signature(self, oracle: OracleName) -> Signature:
        if self.point.kind is PointKind.END:
            return Signature(oracle, "end", "")
        return Signature(oracle, self.op_kind, top_site(self.point.site))

    def site(self) -> CrashSite:
        p, s = self.point, self.state
        ev = p.event
        return CrashSite(
            p.id,
            s.state_id,
            p.op,
            self.op_text,
            ev.kind.value if ev else "end",
            p.site,
            tuple(s.outcomes()),
            s.deviations,
        )

    def finding(self, oracle: OracleName, message: str, evidence: tuple = (), tb: str | None = None) -> Finding:
        return Finding(
            oracle, message, evidence, self.point.op, self.op_text, self.op_kind, self.point.site, self.site(), tb
        )


def _held_by(expect: Expectation, name: str) -> Callable[[int, bytes], bool]:
    """Whether file `name` (any incarnation it may recover as) held these 8 bytes at this offset at
    some op boundary: its own data, whatever file its words name (a reflink's, a copy's)."""
    incs = expect.incarnations(name)
    return lambda off, raw: held_in(expect.h.by_ino, incs, off, raw)


_V = tuple  # (oracle, message, evidence, traceback): a violation before it becomes a finding
_Judged = tuple  # (violation, (cause, what it blames) if it is to be kept, else None)

_CONTENT_WIDTH = 1024
"""Groups in flight past which a crash point is not keyed by its contents: a 2 MiB zeroing's 32,768
groups cost more to digest at every point than recalling such a rare point whole saves."""

_CAUSE_TRIES = 16
"""Violations per signature and run past its first whose cause is worked out: a second bug's cause
behind one crash site shows, a bug met at thousands of states costs a bounded number."""


class _Hung(tuple):
    """A violation saying the target hung reading a recovered image: its crash point's other states are skipped."""


def _run_oracle(o: CrashOracle, ctx: CrashContext, limit: float | None = None, target: str | None = None) -> list[_V]:
    try:
        with deadline(limit, f"oracle {getattr(o.name, 'value', o.name)}", target=target):
            vs: list[Violation] = o.check(ctx)
    except TargetNonsense as e:
        return [(OracleName.TARGET_ERROR, f"reading the recovered image: {e}", (), None)]
    except (Exception, TargetHang) as e:
        tb = target_traceback(e)
        if isinstance(e, TargetHang):
            return [_Hung((OracleName.MOUNT, f"reading the recovered image: {e}", (), tb))]
        return [(OracleName.MOUNT, f"reading the recovered image raised {type(e).__name__}: {e}", (), tb)]
    return [(v.oracle, v.message, v.evidence, None) for v in vs]


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
