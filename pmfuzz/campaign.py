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

import multiprocessing as mp
import os
import random
import signal
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass
from functools import cache
from typing import Any, Protocol

from .campaign_config import CampaignConfig
from .corpus import CorpusDir, CrashDir
from .engine import Finding, Options, check
from .errors import PmfuzzError
from .gen.drawing import Drawer
from .gen.forms import workload_forms
from .gen.mutate import mutate
from .gen.strategies import DEFAULT_SHAPE, Shape, ops, workloads
from .preflight import preflight
from .procs import die_with_parent
from .progress import Progress, Summary, summary_text
from .reporting import campaign_options as _options
from .reporting import report_finding as _report_finding
from .reporting import resume_unminimized
from .target import (
    Target,
    TargetSpec,
    admit,
    make_target,
    supported_falloc_modes,
    supported_ops,
    target_variants,
)
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
    "summary_text",
]


def _variants(target: Target, spec: TargetSpec) -> list[dict[str, str]]:
    """The target's own variants to explore (e.g. daxfs log-push modes), minus what the spec fixes."""
    variants = target_variants(target)
    if variants is None:
        return [{}]
    fixed = dict(spec.options)
    out = [v for v in variants if all(fixed.get(k, val) == val for k, val in v.items())]
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
    resumed: frozenset[str] = frozenset()
    """Signatures known when the campaign started: their repeats in the corpus replay were counted before."""

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
            replay = bool(todo)
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
                self._finding(f, w, variant, opts, replay)

    def one(self, w: Workload, variant: dict[str, str], opts: Options) -> None:
        """Judge one workload: report coverage, the exec and every finding (for engines that drive input)."""
        v = check(make_target(self.cfg.target, **variant), w, opts)
        self.emit("exec", (v.stats.distinct, _form_texts(w)))
        for f in v.findings:
            self._finding(f, w, variant, opts)

    def _finding(self, f: Finding, w: Workload, variant: dict[str, str], opts: Options, replay: bool = False) -> None:
        sig = f.signature_text
        if sig in self.known:
            if not (replay and sig in self.resumed):
                self.emit("repeat", sig)
            return
        self.known[sig] = True
        _report_finding(self.cfg, f, w, variant, opts, self.emit, self.stop)


def _worker_main(
    cfg: CampaignConfig, index: int, q: Any, known: Any, stop_ev: Any, initial: list[str], parent: int
) -> None:
    die_with_parent(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    ws = [parse(t) for t in initial]
    try:
        _Worker(cfg, index, lambda k, v: q.put((k, v)), known, stop_ev.is_set, ws, frozenset(known.keys())).run()
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
    if ":" in cfg.target.name:
        admit(cfg.target.name)  # a cluster worker is another process: the campaign's own target, admitted again
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


def run_campaign(cfg: CampaignConfig, *, out=sys.stderr, runner: BatchRunner | None = None) -> Summary:
    """Run until the time or exec budget is spent, SIGINT/SIGTERM, or a write fails; return the summary.

    With a `runner` (or one worker) batches run there and this process drives; else `cfg.workers` processes fuzz.
    Before anything runs: the target is built and formats the device, and the crashes directory is
    writable and not in use by another campaign (each a one-line error otherwise). Findings an earlier
    run left unminimized are minimized first.
    """
    if ":" in cfg.target.name:
        admit(cfg.target.name)  # the configuration is the command line's (or the API caller's) choice
    preflight(make_target(cfg.target), cfg.device_size, cfg.op_timeout)
    crashes = CrashDir.open(cfg.crashes)
    try:
        return _campaign(cfg, crashes, out, runner)
    finally:
        crashes.close()


def _campaign(cfg: CampaignConfig, crashes: CrashDir, out: Any, runner: BatchRunner | None) -> Summary:
    sources = [p for p in (cfg.corpus,) if p is not None]
    corpus = CorpusDir.load(cfg.crashes / "corpus", *sources)
    initial = list(corpus.entries)
    prog = Progress(cfg, crashes, corpus, out)
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
        if prog.error:
            stop["why"] = stop["why"] or "write error"
        return bool(stop["why"])

    try:
        resume_unminimized(cfg, _options(cfg), prog.handle, should_stop)
        if should_stop():
            pass
        elif runner is not None or cfg.workers <= 1:
            _run_batched(cfg, prog, crashes, corpus, should_stop, runner or _Inline())
        else:
            _run_workers(cfg, prog, crashes, initial, should_stop)
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        prog.tick(force=True)
        if prog.error is None:
            try:
                crashes.flush()
            except OSError as e:
                prog.error = prog.s.error = f"cannot write findings.json: {e.strerror or e}"
    prog.s.stopped = stop["why"] or "max-execs"
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
    prog: Progress,
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

    resumed = frozenset(known)  # on a resume, the corpus replay's repeats of these were counted by the earlier run

    def merge(res: BatchResult) -> bool:
        nonlocal execs
        replays = len(initial[res.index * size : (res.index + 1) * size])
        for k, ex in enumerate(res.execs):
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
                    if not (k < replays and sig in resumed):
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
    cfg: CampaignConfig, prog: Progress, crashes: CrashDir, initial: list[Workload], should_stop: Callable[[], bool]
) -> None:
    """Fuzz in `cfg.workers` processes; they, and the manager process, die with this one (even on kill -9)."""
    from multiprocessing.managers import SyncManager

    ctx = mp.get_context("fork" if hasattr(os, "fork") else "spawn")
    mgr = SyncManager(ctx=ctx)
    mgr.start(die_with_parent, (os.getpid(),))
    try:
        known = mgr.dict(dict.fromkeys(crashes.counts, True))
        q = ctx.Queue()
        stop_ev = ctx.Event()
        texts = [format_workload(w) for w in initial]
        procs = [
            ctx.Process(target=_worker_main, args=(cfg, i, q, known, stop_ev, texts, os.getpid()), daemon=True)
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
    finally:
        mgr.shutdown()


def _form_texts(w: Workload) -> tuple[str, ...]:
    return tuple(sorted(str(f) for f in workload_forms(w)))
