"""`pmfuzz run`: a fuzzing campaign that keeps going, deduplicates, minimizes and writes reproducers.

Each worker draws workloads (fresh ones from the hypothesis strategies driven
by a seeded PRNG, or mutations of corpus entries), runs them through the
engine on one of the target's variants, keeps those that reach new coverage,
and minimizes every finding whose signature is new. The main process owns the
crashes directory: it writes each new finding at once (then its minimized
form), counts repeats, prints progress and appends statistics. The same seed
and settings with `--max-execs` give the same findings.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import random
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .corpus import CorpusDir, CrashDir
from .engine import Finding, Options, check
from .gen.drawing import Drawer
from .gen.mutate import mutate
from .gen.strategies import DEFAULT_SHAPE, Shape, ops, workloads
from .minimize import MinimizeBudget, minimize
from .pmem import Domain, EadrPoints
from .report import format_report
from .repro import Reproducer, format_reproducer
from .target import Target, TargetSpec, make_target, supported_ops
from .workload import Workload, format_workload

__all__ = ["CampaignConfig", "run_campaign", "Summary"]


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
    stop_on: str | None = None
    """Stop after the first finding of this oracle is minimized (for time-to-bug measurements)."""


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
        shape: Shape = DEFAULT_SHAPE.only(supported_ops(base))
        draw_w = Drawer(workloads(max_ops=cfg.max_ops, shape=shape))
        draw_op = Drawer(ops(shape))
        corpus = list(self.initial)
        todo = [w for i, w in enumerate(self.initial) if i % cfg.workers == self.index]
        features: set[str] = set()
        quota = None if cfg.max_execs is None else (cfg.max_execs + cfg.workers - 1 - self.index) // cfg.workers
        execs = 0
        opts = Options(
            domain=cfg.domain,
            device_size=cfg.device_size,
            max_states=cfg.max_states,
            exhaustive_upto=cfg.max_states,
            eadr_points=cfg.eadr_points,
            features=True,
        )
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
            except Exception as e:  # only pmfuzz errors reach here: a bug of pmfuzz, reported loudly
                from .errors import PmfuzzError

                if isinstance(e, PmfuzzError):
                    continue
                raise
            execs += 1
            new = v.features - features
            if new:
                features |= new
                corpus.append(w)
                self.emit("corpus", (format_workload(w), sorted(new)))
            self.emit("exec", v.stats.distinct)
            for f in v.findings:
                self._finding(f, w, variant, opts)

    def one(self, w: Workload, variant: dict[str, str], opts: Options) -> None:
        """Judge one workload: report coverage, the exec and every finding (for engines that drive input)."""
        v = check(make_target(self.cfg.target, **variant), w, opts)
        self.emit("exec", v.stats.distinct)
        for f in v.findings:
            self._finding(f, w, variant, opts)

    def _finding(self, f: Finding, w: Workload, variant: dict[str, str], opts: Options) -> None:
        sig = f.signature_text
        if sig in self.known:
            self.emit("repeat", sig)
            return
        self.known[sig] = True
        cfg = self.cfg
        target = make_target(cfg.target, **variant)
        spec = TargetSpec(cfg.target.name, tuple(target.options().items()))
        raw = Reproducer(
            w,
            spec,
            cfg.domain,
            cfg.device_size,
            f.crash.state if f.crash else None,
            cfg.eadr_points,
            (f.oracle.value,),
            sig,
            ("not minimized yet",),
        )
        self.emit("finding", (sig, format_reproducer(raw), f"{f.oracle.value}: {f.message}\n", False))
        m = minimize(
            lambda: make_target(cfg.target, **variant),
            w,
            f.signature,
            opts,
            MinimizeBudget(cfg.minimize_checks, cfg.minimize_seconds, self.stop),
        )
        note = f"minimized from {m.before_ops} to {len(m.workload)} ops in {m.checks} checks" + (
            "" if m.complete else " (budget spent: stopped early)"
        )
        r = Reproducer(
            m.workload, spec, cfg.domain, cfg.device_size, m.crash, cfg.eadr_points, (f.oracle.value,), sig, (note,)
        )
        v = check(make_target(cfg.target, **variant), m.workload, replace(opts, crash=m.crash, features=False))
        self.emit("finding", (sig, format_reproducer(r), format_report(v, r), True))


def _worker_main(cfg: CampaignConfig, index: int, q: Any, known: Any, stop_ev: Any, initial: list[str]) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from .workload import parse

    ws = [parse(t) for t in initial]
    try:
        _Worker(cfg, index, lambda k, v: q.put((k, v)), known, stop_ev.is_set, ws).run()
    except Exception as e:
        import traceback

        q.put(("error", "".join(traceback.format_exception(e))))
    finally:
        q.put(("done", index))


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
            s.execs += 1
            s.states += value
        elif kind == "corpus":
            text, feats = value
            from .workload import parse

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
        self.tick()

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
            "findings": len(self.crashes.counts),
            "oracles": sorted({k.split(":")[0] for k in self.crashes.counts}),
        }
        with open(self.stats_path, "a", encoding="utf-8") as f:
            f.write(json.dumps(rec) + "\n")


def run_campaign(cfg: CampaignConfig, *, out=sys.stderr) -> Summary:
    """Run until the time or exec budget is spent or SIGINT/SIGTERM; return the summary."""
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
        if cfg.workers <= 1:
            known = dict.fromkeys(crashes.counts, True)
            _Worker(cfg, 0, prog.handle, known, should_stop, initial).run()
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
        f"findings: {len(s.findings)} unique ({len(s.new)} new this run) in {crashes}/",
    ]
    for sig, info in sorted(s.findings.items()):
        mark = "new " if sig in s.new else "    "
        lines.append(f"  {mark}{sig}  x{info.get('count', 1)}  {info.get('file', '')}")
    return "\n".join(lines)
