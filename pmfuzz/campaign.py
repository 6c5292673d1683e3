"""`pmfuzz run`: a fuzzing campaign that keeps going, deduplicates, minimizes and writes reproducers.

Each worker draws workloads (fresh ones from the hypothesis strategies driven
by a seeded PRNG, or mutations of corpus entries), runs them through the
engine on one of the target's variants, keeps those that reach new coverage,
and minimizes every finding whose signature is new. The main process owns the
crashes directory: it writes each new finding at once (then its minimized
form), counts repeats, prints progress and appends statistics. The same seed
and settings with `--max-execs` give the same findings.

A single-process run and a run on a cluster (`pmfuzz.distributed`) share one
driver: work goes out in batches, and a batch is a pure function of the seed,
its index and the corpus the driver held `window - 1` batches earlier
(`run_batch`), so the findings do not depend on where or when a batch ran, and
a batch lost with its worker is simply run again. The driver merges results in
batch order and alone deduplicates, grows the corpus and minimizes.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import random
import signal
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass, field, replace
from functools import cache
from pathlib import Path
from typing import Any, Protocol

from oracles import OracleName

from .corpus import CorpusDir, CrashDir
from .engine import Finding, Options, check
from .errors import PmfuzzError
from .gen.drawing import Drawer
from .gen.forms import ALL_FORMS, missing, workload_forms
from .gen.mutate import mutate
from .gen.strategies import DEFAULT_SHAPE, Shape, ops, workloads
from .minimize import MinimizeBudget, NotReproduced, minimize
from .pmem import Domain, EadrPoints
from .report import format_report
from .repro import Reproducer, format_reproducer
from .target import Target, TargetSpec, make_target, supported_falloc_modes, supported_ops
from .watchdog import DEFAULT_OP_TIMEOUT, TargetHang, deadline
from .workload import Workload, format_workload, parse

__all__ = [
    "BatchResult",
    "BatchRunner",
    "CampaignConfig",
    "ExecResult",
    "Summary",
    "batch_workloads",
    "run_batch",
    "run_campaign",
]


PICTURE_SECONDS = 120.0
"""How long drawing one finding's picture (a re-run of its reproducer) may take."""


@dataclass(frozen=True)
class CampaignConfig:
    target: TargetSpec = field(default_factory=lambda: TargetSpec("daxfs"))
    domain: Domain = Domain.ADR
    device_size: int = 8 << 20
    eadr_points: EadrPoints = EadrPoints.OPS
    seed: int = 0
    seconds: float | None = None
    max_execs: int | None = None
    workers: int = 1
    corpus: Path | None = Path("corpora/seeds")
    crashes: Path = Path("crashes")
    max_states: int = 48
    max_ops: int = 10
    minimize_checks: int = 300
    minimize_seconds: float = 120.0
    quiet: bool = False
    pictures: bool = True
    """Draw each minimized finding beside its reproducer (when matplotlib is installed)."""
    preemption_bound: int = 1
    """Preemptions per schedule of a parallel group. One finds every race in the zoo at a third of
    the cost of two (iterative context bounding: CHESS runs the small bounds first); replay,
    regress and minimize use the engine's default of two."""
    op_timeout: float | None = DEFAULT_OP_TIMEOUT
    """Seconds a call into the target may take before it is a hang finding (None: no limit)."""
    stop_on: str | None = None
    """Stop after the first finding of this oracle is minimized (for time-to-bug measurements)."""
    batch: int = 8
    """Workloads per batch: big enough that shipping a batch costs little next to running it."""
    window: int = 8
    """Batches in flight; a batch mutates the corpus as it stood `window - 1` batches before it.

    Part of what decides the findings (like the seed), so it must not follow the number of workers."""


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
    first_hit: float | None = None
    """Seconds to the first finding of `stop_on`'s oracle (raw, before minimizing)."""


def _variants(target: Target, spec: TargetSpec) -> list[dict[str, str]]:
    """The target's own variants to explore (e.g. daxfs log-push modes), minus what the spec fixes."""
    fn = getattr(target, "variants", None)
    if fn is None:
        return [{}]
    fixed = dict(spec.options)
    out = [v for v in fn() if all(fixed.get(k, val) == val for k, val in v.items())]
    return out or [{}]


# -- the worker ---------------------------------------------------------------------------------


@dataclass
class _Worker:
    cfg: CampaignConfig
    index: int
    emit: Callable[[str, Any], None]
    known: Any
    stop: Callable[[], bool]
    initial: list[Workload]

    def run(self) -> None:
        cfg = self.cfg
        rng = random.Random(f"{cfg.seed}/{self.index}")
        base = make_target(cfg.target)
        variants = _variants(base, cfg.target)
        shape: Shape = DEFAULT_SHAPE.only(supported_ops(base), supported_falloc_modes(base))
        draw_w = Drawer(workloads(max_ops=cfg.max_ops, shape=shape))
        draw_op = Drawer(ops(shape))
        corpus = list(self.initial)
        todo = [w for i, w in enumerate(self.initial) if i % cfg.workers == self.index]
        features: set[str] = set()
        quota = None if cfg.max_execs is None else (cfg.max_execs + cfg.workers - 1 - self.index) // cfg.workers
        execs = 0
        opts = _options(cfg)
        while not self.stop() and (quota is None or execs < quota):
            if todo:
                w: Workload | None = todo.pop(0)
            elif corpus and rng.random() < 0.7:
                donors = rng.sample(corpus, min(3, len(corpus)))
                fresh = [o for o in (draw_op(rng.randbytes(64)) for _ in range(2)) if o is not None]
                w = mutate(rng, rng.choice(corpus), donors, fresh)
            else:
                w = draw_w(rng.randbytes(rng.choice((512, 2048, 8192))))
            if w is None or not w.ops:
                continue
            variant = rng.choice(variants)
            target = make_target(cfg.target, **variant)
            try:
                v = check(target, w, opts)
            except PmfuzzError:  # other exceptions reaching here are bugs of pmfuzz: they propagate
                continue
            execs += 1
            new = v.features - features
            if new:
                features |= new
                corpus.append(w)
                self.emit("corpus", (format_workload(w), sorted(new)))
            self.emit("exec", (v.stats.distinct, _form_texts(w)))
            for f in v.findings:
                self._finding(f, w, variant, opts)

    def one(self, w: Workload, variant: dict[str, str], opts: Options) -> None:
        """Judge one workload: report coverage, the exec and every finding (for engines that drive input)."""
        v = check(make_target(self.cfg.target, **variant), w, opts)
        self.emit("exec", (v.stats.distinct, _form_texts(w)))
        for f in v.findings:
            self._finding(f, w, variant, opts)

    def _finding(self, f: Finding, w: Workload, variant: dict[str, str], opts: Options) -> None:
        sig = f.signature_text
        if sig in self.known:
            self.emit("repeat", sig)
            return
        self.known[sig] = True
        _report_finding(self.cfg, f, w, variant, opts, self.emit, self.stop)


def _options(cfg: CampaignConfig) -> Options:
    return Options(
        domain=cfg.domain,
        device_size=cfg.device_size,
        max_states=cfg.max_states,
        exhaustive_upto=cfg.max_states,
        eadr_points=cfg.eadr_points,
        features=True,
        op_timeout=cfg.op_timeout,
        preemption_bound=cfg.preemption_bound,
    )


def _report_finding(
    cfg: CampaignConfig,
    f: Finding,
    w: Workload,
    variant: dict[str, str],
    opts: Options,
    emit: Callable[[str, Any], None],
    stop: Callable[[], bool],
) -> None:
    """Emit a new finding at once as found, then minimized: a kill during minimizing still leaves a reproducer."""
    sig = f.signature_text
    target = make_target(cfg.target, **variant)
    spec = TargetSpec(cfg.target.name, tuple(target.options().items()))
    raw = Reproducer(
        w,
        target=spec,
        domain=cfg.domain,
        device_size=cfg.device_size,
        crash=f.crash.state if f.crash else None,
        schedule=f.schedule,
        eadr_points=cfg.eadr_points,
        expect=(f.oracle.value,),
        signature=sig,
        notes=("not minimized yet",),
    )
    emit("finding", (sig, format_reproducer(raw), f"{f.oracle.value}: {f.message}\n", False))
    try:
        m = minimize(
            lambda: make_target(cfg.target, **variant),
            w,
            f.signature,
            opts,
            MinimizeBudget(cfg.minimize_checks, cfg.minimize_seconds, stop),
        )
    except NotReproduced as e:
        emit("warning", f"{sig}: {e}; kept unminimized")
        r = replace(raw, notes=(f"not minimized: {e}",))
        v = check(make_target(cfg.target, **variant), w, replace(opts, crash=raw.crash, schedule=raw.schedule))
        emit("finding", (sig, format_reproducer(r), format_report(v, r), True))
        return
    note = f"minimized from {m.before_ops} to {len(m.workload)} ops in {m.checks} checks" + (
        "" if m.complete else " (budget spent: stopped early)"
    )
    r = replace(raw, workload=m.workload, crash=m.crash, schedule=m.finding.schedule, notes=(note,))
    v = check(
        make_target(cfg.target, **variant),
        m.workload,
        replace(opts, crash=m.crash, schedule=m.finding.schedule, features=False),
    )
    emit("finding", (sig, format_reproducer(r), format_report(v, r), True))


def _worker_main(cfg: CampaignConfig, index: int, q: Any, known: Any, stop_ev: Any, initial: list[str]) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    ws = [parse(t) for t in initial]
    try:
        _Worker(cfg, index, lambda k, v: q.put((k, v)), known, stop_ev.is_set, ws).run()
    except Exception as e:
        import traceback

        q.put(("error", "".join(traceback.format_exception(e))))
    finally:
        q.put(("done", index))


# -- batches: the unit of work a scheduler ships ------------------------------------------------


@dataclass(frozen=True)
class ExecResult:
    """One workload of a batch, as much as the driver needs to grow the corpus, count and minimize."""

    workload: str
    variant: tuple[tuple[str, str], ...]
    rejected: bool = False
    """The target refused the workload (a `PmfuzzError`): not an exec, not counted."""
    distinct: int = 0
    features: frozenset[str] = frozenset()
    """Features of this run not already reached earlier in the batch (the driver has those by then)."""
    signatures: tuple[str, ...] = ()
    """Every finding's signature, in the engine's order."""
    firsts: tuple[Finding, ...] = ()
    """The findings whose signature is new to the batch: all a driver needs to minimize."""


@dataclass(frozen=True)
class BatchResult:
    index: int
    execs: tuple[ExecResult, ...]


class BatchRunner(Protocol):
    """Where batches run: in this process, or a cluster (`pmfuzz.distributed`); any `concurrent.futures.Executor`."""

    def submit(self, fn: Callable[..., Any], /, *args: Any) -> Future: ...


class _Inline:
    """Runs a batch at once in this process; its exceptions propagate as in a plain loop."""

    def submit(self, fn: Callable[..., Any], /, *args: Any) -> Future:
        fut: Future = Future()
        fut.set_result(fn(*args))
        return fut


@cache
def _generators(spec: TargetSpec, max_ops: int) -> tuple[list[dict[str, str]], Drawer, Drawer]:
    """Once per process: building the strategies costs more than drawing a batch."""
    base = make_target(spec)
    shape: Shape = DEFAULT_SHAPE.only(supported_ops(base), supported_falloc_modes(base))
    return _variants(base, spec), Drawer(workloads(max_ops=max_ops, shape=shape)), Drawer(ops(shape))


def batch_workloads(
    cfg: CampaignConfig, index: int, corpus: Sequence[str], todo: Sequence[str] = ()
) -> list[tuple[Workload, dict[str, str]]]:
    """The workloads (and target variants) of batch `index`: `todo` first, then mutants of `corpus` and fresh draws.

    A pure function of its arguments, whichever process calls it and whatever it ran before.
    """
    rng = random.Random(f"{cfg.seed}/batch/{index}")
    variants, draw_w, draw_op = _generators(cfg.target, cfg.max_ops)
    queue = [parse(t) for t in todo]
    out: list[tuple[Workload, dict[str, str]]] = []
    misses = 0
    while len(out) < cfg.batch and misses < 100 * cfg.batch:
        if queue:
            w: Workload | None = queue.pop(0)
        elif corpus and rng.random() < 0.7:
            donors = [parse(t) for t in rng.sample(list(corpus), min(3, len(corpus)))]
            fresh = [o for o in (draw_op(rng.randbytes(64)) for _ in range(2)) if o is not None]
            w = mutate(rng, parse(rng.choice(corpus)), donors, fresh)
        else:
            w = draw_w(rng.randbytes(rng.choice((512, 2048, 8192))))
        if w is None or not w.ops:
            misses += 1
            continue
        out.append((w, rng.choice(variants)))
    return out


def run_batch(cfg: CampaignConfig, index: int, corpus: Sequence[str], todo: Sequence[str] = ()) -> BatchResult:
    """Generate batch `index` and judge every workload: what a worker of any scheduler runs (pure)."""
    opts = _options(cfg)
    seen_features: set[str] = set()
    seen_sigs: set[str] = set()
    execs = []
    for w, variant in batch_workloads(cfg, index, corpus, todo):
        text, var = format_workload(w), tuple(sorted(variant.items()))
        try:
            v = check(make_target(cfg.target, **variant), w, opts)
        except PmfuzzError:
            execs.append(ExecResult(text, var, rejected=True))
            continue
        firsts = []
        for f in v.findings:
            if f.signature_text not in seen_sigs:
                seen_sigs.add(f.signature_text)
                firsts.append(f)
        execs.append(
            ExecResult(
                text,
                var,
                distinct=v.stats.distinct,
                features=frozenset(v.features - seen_features),
                signatures=tuple(f.signature_text for f in v.findings),
                firsts=tuple(firsts),
            )
        )
        seen_features |= v.features
    return BatchResult(index, tuple(execs))


# -- the main process ----------------------------------------------------------------------------


class _Progress:
    def __init__(self, cfg: CampaignConfig, crashes: CrashDir, corpus: CorpusDir, out=sys.stderr) -> None:
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

    def elapsed(self) -> float:
        return time.monotonic() - self.t0

    def handle(self, kind: str, value: Any) -> None:
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
            self.crashes.bump(value)
        elif kind == "finding":
            sig, repro, report, final = value
            fresh = not self.crashes.known(sig)
            path = self.crashes.record(sig, repro, report, elapsed=self.elapsed(), execs=s.execs)
            if self.cfg.stop_on and sig.split(":")[0] == self.cfg.stop_on:
                if s.first_hit is None:
                    s.first_hit = self.elapsed()
                if final:
                    self.done = True
            if fresh:
                s.new.append(sig)
                self._line(f"new finding: {sig}  -> {path}")
            elif final:
                self._line(f"  minimized: {path.name} ({report.splitlines()[0] if report else ''})")
            if final and self.cfg.pictures and not sig.startswith(f"{OracleName.TARGET_ERROR.value}:"):
                self._picture(path)
        elif kind == "warning":
            self._line(f"warning: {value}")
        self.tick()

    def _picture(self, path: Path) -> None:
        """A picture is a convenience: if drawing it fails, say so and keep fuzzing.

        Drawing re-runs the reproducer on the target, so it runs under a deadline too (a finding
        about a target that hangs gets no picture at all)."""
        from .sight.cli import picture_beside

        try:
            with deadline(PICTURE_SECONDS, f"drawing {path.name}", target=self.cfg.target.name):
                picture_beside(path)
        except (Exception, TargetHang) as e:  # reported, not allowed to end the campaign
            self._line(f"warning: no picture for {path.name}: {type(e).__name__}: {e}")

    def tick(self, force: bool = False) -> None:
        now = self.elapsed()
        if force or now - self._last_stats >= 5:
            self._last_stats = now
            self._stats_line()
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
            "findings": len(self.crashes.counts),
            "oracles": sorted({k.split(":")[0] for k in self.crashes.counts}),
        }
        with open(self.stats_path, "a", encoding="utf-8") as f:
            f.write(json.dumps(rec) + "\n")


def run_campaign(cfg: CampaignConfig, *, out=sys.stderr, runner: BatchRunner | None = None) -> Summary:
    """Run until the time or exec budget is spent or SIGINT/SIGTERM; return the summary.

    With a `runner` (or one worker) batches run there and this process drives; else `cfg.workers` processes fuzz.
    """
    make_target(cfg.target)  # bad target or options: one clear error before anything starts
    crashes = CrashDir.open(cfg.crashes)
    sources = [p for p in (cfg.corpus,) if p is not None]
    corpus = CorpusDir.load(cfg.crashes / "corpus", *sources)
    initial = list(corpus.entries)
    prog = _Progress(cfg, crashes, corpus, out)
    stop = {"why": ""}

    def on_signal(signum, _frame) -> None:
        stop["why"] = signal.Signals(signum).name

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    deadline = None if cfg.seconds is None else time.monotonic() + cfg.seconds

    def should_stop() -> bool:
        if deadline is not None and time.monotonic() >= deadline:
            stop["why"] = stop["why"] or "time"
        if prog.done:
            stop["why"] = stop["why"] or f"found {cfg.stop_on}"
        return bool(stop["why"])

    try:
        if runner is not None or cfg.workers <= 1:
            _run_batched(cfg, prog, crashes, corpus, should_stop, runner or _Inline())
        else:
            _run_workers(cfg, prog, crashes, initial, should_stop)
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        crashes.flush()
    prog.s.stopped = stop["why"] or "max-execs"
    prog.tick(force=True)
    if prog.tty:
        print(file=out)
    s = prog.s
    s.elapsed = prog.elapsed()
    s.corpus = len(corpus.entries)
    s.coverage = len(prog.features)
    s.findings = dict(crashes.counts)
    return s


def _run_batched(
    cfg: CampaignConfig,
    prog: _Progress,
    crashes: CrashDir,
    corpus: CorpusDir,
    should_stop: Callable[[], bool],
    runner: BatchRunner,
) -> None:
    """Keep up to `cfg.window` batches in flight and merge their results strictly in batch order."""
    size, window = cfg.batch, cfg.window
    initial = [format_workload(w) for w in corpus.entries]
    texts = list(initial)
    sizes = [len(texts)]  # corpus length after k merged batches: batch b mutates texts[: sizes[b - window + 1]]
    known = set(crashes.counts)
    opts = _options(cfg)
    pending: dict[int, Future] = {}
    results: dict[int, BatchResult] = {}
    submitted = merged = execs = 0

    def merge(res: BatchResult) -> bool:
        nonlocal execs
        for ex in res.execs:
            if should_stop() or (cfg.max_execs is not None and execs >= cfg.max_execs):
                return False
            if ex.rejected:
                continue
            execs += 1
            new = ex.features - prog.features
            if new:
                prog.handle("corpus", (ex.workload, sorted(new)))
                texts.extend(format_workload(w) for w in corpus.entries[len(texts) :])
            prog.handle("exec", (ex.distinct, _form_texts(parse(ex.workload))))
            firsts = {f.signature_text: f for f in ex.firsts}
            for sig in ex.signatures:
                if sig in known:
                    prog.handle("repeat", sig)
                else:
                    known.add(sig)
                    w, variant = parse(ex.workload), dict(ex.variant)
                    _report_finding(cfg, firsts[sig], w, variant, opts, prog.handle, should_stop)
        return cfg.max_execs is None or execs < cfg.max_execs

    try:
        while not should_stop():
            for b in [b for b, fut in pending.items() if fut.done()]:
                fut = pending.pop(b)
                if fut.exception() is not None:
                    if should_stop():
                        return
                    raise RuntimeError(f"batch {b} failed (a bug in pmfuzz, or the cluster is gone)") from (
                        fut.exception()
                    )
                results[b] = fut.result()
            if merged in results:
                if not merge(results.pop(merged)):
                    return
                merged += 1
                sizes.append(len(texts))
                continue
            left = None if cfg.max_execs is None else cfg.max_execs - execs
            if submitted - merged < window and (left is None or (submitted - merged) * size < left):
                todo = tuple(initial[submitted * size : (submitted + 1) * size])
                snapshot = tuple(texts[: sizes[max(0, submitted - window + 1)]])
                pending[submitted] = runner.submit(run_batch, cfg, submitted, snapshot, todo)
                submitted += 1
                continue
            wait(list(pending.values()), timeout=0.5, return_when=FIRST_COMPLETED)
            prog.tick()
    finally:
        for fut in pending.values():
            fut.cancel()


def _run_workers(
    cfg: CampaignConfig, prog: _Progress, crashes: CrashDir, initial: list[Workload], should_stop: Callable[[], bool]
) -> None:
    ctx = mp.get_context("fork" if hasattr(os, "fork") else "spawn")
    with ctx.Manager() as mgr:
        known = mgr.dict(dict.fromkeys(crashes.counts, True))
        q = ctx.Queue()
        stop_ev = ctx.Event()
        texts = [format_workload(w) for w in initial]
        procs = [
            ctx.Process(target=_worker_main, args=(cfg, i, q, known, stop_ev, texts), daemon=True)
            for i in range(cfg.workers)
        ]
        for p in procs:
            p.start()
        alive = len(procs)
        error = None
        while alive:
            if should_stop():
                stop_ev.set()
            try:
                kind, value = q.get(timeout=0.5)
            except Exception:  # queue.Empty
                prog.tick()
                if not any(p.is_alive() for p in procs) and q.empty():
                    break
                continue
            if kind == "done":
                alive -= 1
            elif kind == "error":
                error = value
                stop_ev.set()
            else:
                prog.handle(kind, value)
        for p in procs:
            p.join(timeout=30)
        if error:
            raise RuntimeError(f"a fuzzing worker failed (a bug in pmfuzz):\n{error}")


def summary_text(s: Summary, crashes: Path) -> str:
    eps = s.execs / s.elapsed if s.elapsed else 0.0
    lines = [
        f"stopped ({s.stopped}) after {s.elapsed:.0f} s: {s.execs} execs ({eps:.1f}/s), "
        f"{s.states} crash states judged, corpus {s.corpus}, coverage {s.coverage}",
        _forms_line(s.forms),
        f"findings: {len(s.findings)} unique ({len(s.new)} new this run) in {crashes}/",
    ]
    for sig, info in sorted(s.findings.items()):
        mark = "new " if sig in s.new else "    "
        lines.append(f"  {mark}{sig}  x{info.get('count', 1)}  {info.get('file', '')}")
    return "\n".join(lines)


_ALL_FORM_TEXTS = frozenset(str(f) for f in ALL_FORMS)


def _form_texts(w: Workload) -> tuple[str, ...]:
    return tuple(sorted(str(f) for f in workload_forms(w)))


def _forms_line(reached: set[str]) -> str:
    gaps = missing(reached)
    text = f"op forms: {len(reached & _ALL_FORM_TEXTS)} of {len(_ALL_FORM_TEXTS)} reached"
    if gaps:
        shown = " ".join(str(f) for f in gaps[:12])
        text += f" (missing: {shown}{' ...' if len(gaps) > 12 else ''})"
    return text
