"""Execute a workload on a fresh device beside the reference, judging each op crash-free: a `Run`.

    run = execute(target, workload, options)          # serial ops
    run = execute(target, workload, options, chooser) # one schedule of its parallel groups

Exceptions raised by the target's code are findings (`target-error`), kept with their
traceback; exceptions of pmfuzz itself propagate.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import replace
from functools import partial

from oracles import (
    DATA_FOR_ZERO,
    ELSEWHERE,
    OTHER_DATA,
    OracleName,
    RunContext,
    RunOracle,
    Violation,
    WrongRead,
    default_oracles,
    is_run_oracle,
    read_cause,
)

from ..errors import PmfuzzError
from ..lang.data import WordKind, decode
from ..lang.workload import BLOCK_SIZE, Fallocate, Op, Parallel, Workload, flatten, groups
from ..pmem import Pages, PMem, last_store, never_stored
from ..reference import History, Reference
from ..signature import Cause, How, signal_rule
from ..target import (
    Errno,
    Result,
    Target,
    byte_address,
    check_supported,
    mapping_blocks_hook,
    min_op_timeout,
    scheduler_hook,
    shared_elsewhere,
)
from ..verdict import Finding, Findings, Options, link_alike
from .blame import failure, oracle_fault, target_traceback, what_failed
from .digest import run_digest as _run_digest
from .guarded import guarded_mount
from .opfacts import slices, stored_into, unshares, write_faults
from .pages import PageFrame, PageLog, Stale, entry_cause, view
from .quiescent import TraceDigest, state_key
from .reach import BlockMapLog, Reached, Snapshot, snapshot
from .reach import changes as map_changes
from .run import Run, ScheduleStep
from .serial import SerialOrder, Unexplained, serial_order
from .watchdog import TargetHang, TargetNonsense, deadline

__all__ = ["execute", "formatted", "effective_options"]

_PREFIX_CLEAN = ("prefix clean",)
"""Key in a workload's shared schedule memo: True once a schedule ran every op before the first
parallel group with no finding. Those ops run alike in every schedule, so the others skip the
run-phase oracles there (what they would find is what the first found: nothing)."""

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


def effective_options(target: Target, opts: Options) -> Options:
    """The options as run: a target that boots a guest needs a longer op timeout than a model."""
    floor = min_op_timeout(target)
    if floor is not None and opts.op_timeout is not None and opts.op_timeout < floor:
        return replace(opts, op_timeout=floor)
    return opts


def execute(
    target: Target,
    workload: Workload | Sequence[Op],
    opts: Options,
    chooser=None,
    *,
    digest: bool = False,
    orders: dict | None = None,
) -> Run:
    """Run the ops on a fresh device and the reference side by side; run-phase oracles judge each op.

    A workload with parallel groups runs them under `chooser` (an `interleave.Chooser`; the
    default schedule when None). `digest` also computes `Run.digest`, for exploring schedules;
    `orders` keeps the runs of the groups' serial orders for the workload's other schedules.
    """
    top = workload.ops if isinstance(workload, Workload) else tuple(workload)
    grps = groups(top)
    ops = flatten(top) if grps else top
    if grps and chooser is None:
        from .interleave import Chooser

        chooser = Chooser()
    check_supported(target, ops)
    opts = effective_options(target, opts)
    return _Execution(target, ops, opts, grps, chooser, orders).run(digest)


class _Execution:
    """The state of one execution while it runs; `run` returns it as a `Run`."""

    def __init__(self, target: Target, ops: tuple[Op, ...], opts: Options, grps, chooser, orders=None) -> None:
        self.target, self.ops, self.opts, self.grps, self.chooser = target, ops, opts, grps, chooser
        self.memo: dict | None = orders
        """Serial orders' runs per group (and orders of the groups before it), shared by the workload's
        schedules; None once a group left the reference in a state the ops alone do not decide."""
        self.shared: dict = {} if orders is None else orders
        self.prefix = min((start for _g, start, _n in grps), default=len(ops))
        """Ops before the first parallel group: the same in every schedule of the workload."""
        oracles = default_oracles() if opts.oracles is None else opts.oracles
        self.run_oracles: list[RunOracle] = [
            o for o in oracles if is_run_oracle(o) and o.guarantee in target.guarantees
        ]
        self.findings = Findings(opts.first_per_signature)
        self.notes: list[str] = []
        self.orders: list[tuple[int, ...]] = []
        self.steps: list[ScheduleStep] = []
        self.op_start = 0
        """Events recorded before the op (or parallel group) being judged began."""
        self.spans = {start + k: (start, start + n) for _g, start, n in grps for k in range(n)}
        self.oracle_memo: dict = {}  # what the run oracles keep between ops (`RunContext.memo`)
        self.trace = TraceDigest()

    def _unrun(self) -> Run:
        """Formatting or the first mount failed: a run with nothing on its device."""
        return Run(
            self.target, self.ops, self.opts, None, None, 0, 0, self.spans, self.grps,
            self.findings.values(), (), (), True, 0.0,
        )  # fmt: skip

    def run(self, want_digest: bool) -> Run:
        target, ops, opts = self.target, self.ops, self.opts
        add = self.findings.add
        t0 = time.perf_counter()
        try:
            with deadline(opts.op_timeout, "format", target=target.name):
                blank = formatted(target, opts.device_size)
        except (Exception, TargetHang) as e:
            tb = target_traceback(e)
            add(Finding(OracleName.TARGET_ERROR, f"formatting a fresh device failed: {failure(e)}", traceback=tb))
            return self._unrun()
        pm = PMem.from_image(blank, opts.domain)
        try:
            fs = guarded_mount(target, pm, opts.op_timeout, "mount")
        except (Exception, TargetHang) as e:
            tb = target_traceback(e)
            add(Finding(OracleName.MOUNT, f"the freshly formatted device does not mount: {e}", traceback=tb))
            return self._unrun()
        pm.quiesce()
        self.pm, self.fs = pm, fs
        self.ref = ref = Reference.for_target(target)
        self.hist = hist = History(ref)
        self.maps = self._first_maps()
        self.reached: list[Reached] = []
        self.map_spans: list[tuple[int, int, int, Snapshot]] = []
        self.pages: list[PageFrame] | None = [] if mapping_blocks_hook(fs) is not None else None
        executed = returned = 0
        results: list[str] = []
        starts = {start: (g, n) for g, start, n in self.grps}
        crashes_sound, stopped = True, False
        i = 0
        quiet_prefix = self.shared.get(_PREFIX_CLEAN, False)
        while i < len(ops):
            op = ops[i]
            if i == self.prefix and self.grps:
                self.shared.setdefault(_PREFIX_CLEAN, not self.findings.values())
            if i in starts:
                g, n = starts[i]
                try:
                    after, texts = self._group(i, g, n)
                except (Exception, TargetHang) as e:  # the target's view failed while the group was judged
                    if oracle_fault(e):
                        raise
                    tb = target_traceback(e)
                    msg = f"after the parallel group at op {i}, reading the target's files: {failure(e)}"
                    add(Finding(OracleName.TARGET_ERROR, msg, op=i, op_text=str(op), op_kind="parallel", traceback=tb))
                    self.notes.append(f"stopped at op {i}: reading the target's files failed")
                    executed = i
                    crashes_sound = False
                    break
                if opts.features:
                    results += [f"parallel:{r}" for r in texts]
                if after is None:
                    executed = i
                    crashes_sound = False
                    break
                executed = returned = after
                i += n
                if self._explored_on(i, results):
                    stopped = True
                    break
                continue
            payload = ref.payload(i, op)
            want = ref.apply(i, op)
            self.op_start = pm.events_recorded
            try:
                got = fs.execute(i, op, payload)
            except (Exception, TargetHang) as e:
                tb = target_traceback(e)
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
                self.notes.append(f"stopped at op {i}: the target {what_failed(e)}")
                break
            hist.record()
            executed = returned = i + 1
            if opts.features:
                results.append(f"{op.kind.value}:{got}" if not got.ok else f"{op.kind.value}:ok")
            if got.errno is Errno.ENOSPC and want.errno is not Errno.ENOSPC:
                self.notes.append(f"stopped at op {i}: the target ran out of space (ENOSPC); later ops not run")
                executed = i
                break
            ctx = RunContext(i, op, got, want, fs, ref, memo=self.oracle_memo)
            try:
                with deadline(opts.op_timeout, "the view", target=target.name, named_by_calls=True):
                    if self._note_maps(i, self.op_start) or getattr(op, "map", None) is not None:
                        self._note_pages(i)
                    for o in () if quiet_prefix and i < self.prefix else self.run_oracles:
                        if o.name is OracleName.FUNCTIONAL and self.findings.diverged():
                            continue
                        for v in o.check(ctx):
                            cause = self._read_cause(v, [op], i)
                            add(
                                Finding(
                                    v.oracle, v.message, v.evidence, i, str(op), op.kind.value, "",
                                    cause=cause, word=self._word_of(v),
                                )
                            )  # fmt: skip
            except (Exception, TargetHang) as e:
                if oracle_fault(e):
                    raise
                tb = target_traceback(e)
                msg = f"after op {i} `{op}`, reading the target's files: {failure(e)}"
                add(Finding(OracleName.TARGET_ERROR, msg, op=i, op_text=str(op), op_kind=op.kind.value, traceback=tb))
                self.notes.append(f"stopped after op {i}: reading the target's files failed")
                break
            i += 1
        t_exec = time.perf_counter() - t0
        key = None
        if want_digest and self.chooser and not stopped:
            key = _run_digest(self.trace, pm, results, self.orders, fs, ref, self.findings)
        sid = str(self.chooser.schedule()) if self.chooser is not None else None
        return Run(
            target, ops, opts, pm, hist, executed, returned, self.spans, self.grps, link_alike(self.findings.values()),
            tuple(self.notes), tuple(results), crashes_sound, t_exec, sid, tuple(self.steps), key,
            self._log(), stopped,
        )  # fmt: skip

    def _explored_on(self, at: int, results: list[str]) -> bool:
        """At the end of a group with another after it: whether an earlier schedule reached this
        state (the explorer's call). After the last group no decision is left to branch on, and
        the ops left cost less than the state's digest."""
        if self.chooser is None or all(start < at for _g, start, _n in self.grps):
            return False
        record = (self.notes, self.orders, results, self.reached, self.map_spans, self.pages, self.maps)
        return self.chooser.stop_here(
            lambda: state_key(at, self.trace, self.pm, self.fs, self.hist, self.findings, record)
        )

    def _log(self) -> BlockMapLog:
        return BlockMapLog(tuple(self.reached), tuple(self.map_spans))

    def _first_maps(self) -> Snapshot | None:
        """The block maps before the first op; None (no log kept) when the view fails on the fresh
        mount -- the first op's checks then report it."""
        try:
            with deadline(self.opts.op_timeout, "the view", target=self.target.name, named_by_calls=True):
                return snapshot(self.fs)
        except (Exception, TargetHang) as e:
            if oracle_fault(e):
                raise
            return None

    def _note_maps(self, op: int, start: int) -> bool:
        """Keep what the op (or parallel group) whose events began at trace index `start` changed in
        the files' block maps, for the causes of what it exposed; whether they changed (True when
        not known)."""
        if self.maps is None:
            return True
        after = snapshot(self.fs)
        if after is not None:
            lo, hi = self.spans.get(op, (op, op + 1))
            unshared = partial(unshares, [o for o in self.ops[lo:hi] if isinstance(o, Fallocate)])
            self.reached += map_changes(self.maps, after, op, start, self.pm.events_recorded, unshared)
            self.map_spans.append((op, start, self.pm.events_recorded, self.maps))
        changed = after != self.maps
        self.maps = after
        return changed

    def _note_pages(self, op: int) -> None:
        """Keep what the live mappings' pages reach after op `op` (or a step of its thread in a
        parallel group), for the cause of a page-table entry that went stale."""
        if self.pages is None or not self.ref.maps:
            return
        try:
            now = view(self.fs, self.ref)
        except Exception as e:
            if oracle_fault(e):
                raise
            self.pages = None  # the oracles' own call to the view reports it
            return
        if now is not None and (not self.pages or self.pages[-1].pages != now):
            self.pages.append(PageFrame(op, now))

    def _pages(self, upto: int) -> PageLog:
        """The page log up to op `upto` (no frames when the target does not tell its pages)."""
        first = {op: self.spans.get(op, (op, op + 1))[0] for op in range(len(self.ops))}
        return PageLog(tuple(self.pages or ()), self.ops, first, self._log(), self.maps, upto)

    def _read_cause(self, v: Violation, group: list[Op], start: int) -> Cause | None:
        """A crash-free finding's cause: for a wrong read, whether an op of `group` (ops `start`...)
        stored into the file's blocks decides if it changed another file (`read_cause`)."""
        via = v.read.via if v.read is not None else v.page
        stale = entry_cause(self._pages(start + len(group) - 1), self.ref, *via) if via is not None else None
        if stale == Stale.WRITABLE_SHARED:
            return Cause(OracleName.FUNCTIONAL, How.CONTENT, ELSEWHERE)
        if stale is not None:
            return Cause(OracleName.MMAP_COHERENCY, How.PAGE_TABLE, stale)
        if v.read is None:
            return Cause(v.oracle, How.CONTENT, v.cause) if v.cause else None
        events = self.pm.trace_since(self.op_start)
        by = [group[j - start] for j in stored_into(events, self.fs, v.read.file, start, start + len(group))]
        text = read_cause(v.read, by, self.ref)
        media = self._media(v.read) if text != ELSEWHERE else None
        if media is not None:
            return media
        if text in (OTHER_DATA, DATA_FOR_ZERO):
            text = self._whose(v.read)
        if text == OTHER_DATA:
            a = byte_address(self.fs, v.read.file, v.read.offset)
            if a is not None and shared_elsewhere(self.fs, v.read.file, a):
                return Cause(v.oracle, How.CONTENT, ELSEWHERE)  # a write to the file sharing it, in place
            if a is not None and self._left_over(a, v.read):
                return Cause(OracleName.STALE_EXPOSURE, How.NEVER_WRITTEN, self._reach_of(a))
        return Cause(v.oracle, How.CONTENT, text)

    def _media(self, read: WrongRead) -> Cause | None:
        """A wrong read of a block's content from before it was the file's (`BlockMapLog.stale`), or of
        media no store wrote: stale exposure, named by how the block became the file's when known."""
        a = self._address(read)
        if a is None or a % 8:
            return None
        trace = self.pm.trace_since(0)
        how = self._log().stale(trace, read.file, read.offset, a, read.got, len(trace))
        if how is not None:
            return Cause(OracleName.STALE_EXPOSURE, How.NEVER_WRITTEN, how.value)
        if self._never_written(read, a):
            d = decode(int.from_bytes(self.pm.load(a, 8), "little"))  # the whole word, past EOF too
            origin = d.offset if d.kind is WordKind.POISON else a  # poison says where it began
            return Cause(OracleName.STALE_EXPOSURE, How.NEVER_WRITTEN, self._reach_of(origin))
        return None

    def _address(self, read: WrongRead) -> int | None:
        """The device address a wrong read's bytes came from: for a load through a mapping, the
        block its page maps (a stale page maps a block the file no longer has there)."""
        hook = mapping_blocks_hook(self.fs)
        if hook is not None and read.via is not None:
            name, moff = read.via
            mapped, _owned = hook(name).get(moff // BLOCK_SIZE, (None, None))
            if mapped is not None:
                return mapped * BLOCK_SIZE + moff % BLOCK_SIZE
        return byte_address(self.fs, read.file, read.offset)

    def _reach_of(self, addr: int) -> str:
        """How the block at device address `addr` first became a file's, as a cause detail ("" if not known)."""
        r = self._log().origin(addr, None)
        return "" if r is None else r.how.value

    def _whose(self, read: WrongRead) -> str:
        """Data where it does not belong: the file's own word from an earlier version (`data for
        zero`, `older data for data`: a tail a truncate left), else data this file never held
        there (`OTHER_DATA`), whatever file or offset its words name (a reflinked file holds
        words its source wrote)."""
        got, want = read.got, read.want
        due = "data" if any(want[i] for i in range(min(len(got), len(want))) if got[i] != want[i]) else "zero"
        f = self.ref.names.get(read.file)
        if len(read.got) == 8 and f is not None and self.hist.held(f.ino, read.offset, read.got):
            return "older data for data" if due == "data" else DATA_FOR_ZERO
        return OTHER_DATA

    def _left_over(self, addr: int, read: WrongRead) -> bool:
        """Whether the data word at `addr` is still where the op whose data it is wrote it (no copy
        put it there since): a reused block's old content, which nothing wrote for this file. Only
        without a block-map log: with one, `_media` already asked whether the word is older than
        the block's being the file's, and a word written after it is that store's."""
        got = read.got
        if len(got) != 8 or addr % 8 or self._log().origin(addr, None, read.file, read.offset):
            return False
        d = decode(int.from_bytes(got, "little"))
        last = last_store(self.pm.trace_since(0), addr)
        return d.kind is WordKind.DATA and last is not None and last.op == d.op

    def _never_written(self, read: WrongRead, a: int) -> bool:
        """Whether bytes a read got wrong (from device address `a`) are media no store of the run
        wrote: then it read a block exposed before anything initialised it -- the stale exposure a
        crash shows as media nobody wrote, and one cause with it, whether a read, a mapping or a
        crash met the block."""
        gone = set(never_stored(self.pm.trace_since(0), a, 8))
        return any(g != w and i in gone for i, (g, w) in enumerate(zip(read.got, read.want, strict=False)))

    def _word_of(self, v: Violation) -> int | None:
        """The device address of a wrong read's first wrong word, if the target tells its blocks."""
        if v.read is None:
            return None
        return byte_address(self.fs, v.read.file, v.read.offset - v.read.offset % 8)

    def _race_cause(self, found: Unexplained, group: list[Op], start: int) -> Cause | None:
        """A race finding's cause, when bytes no serial order leaves say it, or a signal every order
        wanted that an op did not get (the rule a single op gets for it); else its rule."""
        if found.signal:
            return Cause(OracleName.FUNCTIONAL, How.RULE, signal_rule(found.signal))
        if found.read is None:
            return None
        return self._read_cause(Violation(OracleName.FUNCTIONAL, "", read=found.read), group, start)

    def _group(self, start: int, g: int, n: int) -> tuple[int | None, list[str]]:
        """Run one parallel group under the chooser; apply it to the reference in a serial order that explains it.

        Returns (ops executed after it, or None if the run cannot go on; result texts).
        """
        from .interleave import Scheduler

        target, fs, pm, ref, hist, ops = self.target, self.fs, self.pm, self.ref, self.hist, self.ops
        add, notes = self.findings.add, self.notes
        self.op_start = pm.events_recorded
        hook = scheduler_hook(fs)
        if hook is None:
            raise PmfuzzError(
                f"target {target.name!r} cannot run parallel groups (its mounted fs has no set_scheduler)"
            )
        idx = list(range(start, start + n))
        texts = [str(ops[j]) for j in idx]
        group_text = str(Parallel(tuple(ops[j] for j in idx)))
        payloads = {j: ref.payload(j, ops[j]) for j in idx}
        sched = Scheduler(
            self.chooser, (pm.labels, pm.set_labels, lambda: (-1, [])), lambda t: self._note_pages(idx[t])
        )
        hook(sched)
        try:
            run = sched.run_group(g, [partial(fs.execute, j, ops[j], payloads[j]) for j in idx], texts)
        finally:
            hook(None)
        self.steps += slices(texts, run.steps)
        if run.deadlock is not None and not run.deadlock.cycle:
            notes.append(
                f"stopped at op {start}: the parallel group hangs without a lock cycle "
                f"(the workload never releases what it waits for: {run.deadlock})"
            )
            return None, []
        if run.deadlock is not None:
            waits = "+".join(sorted({w[2].split("[", 1)[0] for w in run.deadlock.waits}))
            msg = f"the parallel group at op {start} deadlocks: {run.deadlock}"
            add(Finding(OracleName.DEADLOCK, msg, (), start, group_text, "parallel", waits))
            notes.append(f"stopped at op {start}: the parallel group deadlocked")
            return None, []
        for k, e in enumerate(run.errors):
            if e is not None:
                tb = target_traceback(e)
                add(
                    Finding(
                        OracleName.TARGET_ERROR,
                        f"op {idx[k]} `{texts[k]}` (thread t{k} of a parallel group) "
                        + (
                            str(e) if isinstance(e, (TargetHang, TargetNonsense)) else f"raised {type(e).__name__}: {e}"
                        ),
                        op=idx[k],
                        op_text=texts[k],
                        op_kind=ops[idx[k]].kind.value,
                        traceback=tb,
                    )
                )
                notes.append(f"stopped at op {start}: the target {what_failed(e)} in a parallel group")
                return None, []
        got = {j: run.results[j - start] for j in idx}
        self._note_maps(start, self.op_start)
        out = [f"{ops[j].kind.value}:{got[j]}" if not got[j].ok else f"{ops[j].kind.value}:ok" for j in idx]
        if any(got[j].errno is Errno.ENOSPC for j in idx):
            notes.append(f"stopped at op {start}: the target ran out of space (ENOSPC) in a parallel group")
            return None, out
        last: dict[int, int] = {}
        for ev in pm.trace:
            if start <= ev.op < start + n:
                last[ev.op] = ev.seq
        finished = {t: k for k, t in enumerate(run.finish_order)}
        # The order the ops last changed the device in is the order lock-serialized ops really ran in,
        # and it credits a copy-on-write to the op whose remap or copy finished it: a write(2) that
        # staged a block and copied its data after a racing write fault remapped that block wrote in
        # place, not copied on write.
        prefer = tuple(sorted(range(n), key=lambda t: (last.get(start + t, 1 << 62), finished.get(t, n))))
        hist.note_group(start, n)
        memo = None if self.memo is None else self.memo.setdefault((start, *self.orders), {})
        found = serial_order(ref, hist, ops, start, n, got, fs, prefer, memo)
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
                    cause=self._race_cause(found, [ops[k] for k in idx], start),
                )
            )
            order = tuple(start + t for t in run.finish_order)
        self.orders.append(order)
        if mixed or split is not None:
            self.memo = None  # the reference after the group holds what the target did
        faults = write_faults([ops[j] for j in idx])
        if split is not None:
            # Only the ops' steps interleaved explain the run: take over the state they leave. What
            # the ops made durable is not credited, and no COW is held to atomicity (permissive).
            ref.become(split)
        want: Result | None = None
        for k, j in enumerate(order):
            want = ref.apply(j, ops[j]) if split is None else got[j]
            if faults:
                ref.forget_cows()
            if k == len(order) - 1:
                for f, data in mixed.items():
                    ref.names[f].put(0, data)
            hist.record()
        # Results were matched (or reported) by the serial-order search; the state after the group is
        # judged here, so that a difference it left is blamed on the group, not on the op after it.
        assert want is not None, "a parallel group has at least one op"
        ctx = RunContext(
            start + n - 1, Parallel(tuple(ops[k] for k in idx)), want, want, fs, ref, first=start, memo=self.oracle_memo
        )
        for o in self.run_oracles:
            if o.name is OracleName.FUNCTIONAL and self.findings.diverged():
                continue
            for v in o.check(ctx):
                cause = self._read_cause(v, [ops[k] for k in idx], start)
                word = self._word_of(v)
                add(Finding(v.oracle, v.message, v.evidence, start, group_text, "parallel", "", cause=cause, word=word))
        return start + n, out
