"""`pmfuzz run`: a fuzzing campaign that keeps going, deduplicates, minimizes and writes reproducers.

Work goes out in batches, and a batch is a pure function of the seed, its
index and the corpus the driver held `window - 1` batches earlier
(`run_batch`): fresh workloads from the hypothesis strategies driven by a
seeded PRNG, and mutations of corpus entries, each judged by the engine on one
of the target's variants. So the findings do not depend on where or when a
batch ran: in this process, in `--workers N` local processes or on a cluster
(`pmfuzz.fuzzing.distributed`), and a batch lost with its worker is simply run again.
The `Driver` merges results in batch order and alone deduplicates, grows the
corpus, minimizes each new finding and writes; the same seed and settings with
`--max-execs` give the same findings whatever the number of workers.
The atheris engine feeds the same `Driver` one input at a time.
"""

from __future__ import annotations

import random
import signal
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from functools import cache, lru_cache, partial
from typing import Any, Protocol

from ..errors import PmfuzzError
from ..gen.drawing import Drawer
from ..gen.forms import ALL_FORMS, workload_forms
from ..gen.mutate import mutate
from ..gen.strategies import DEFAULT_SHAPE, Shape, ops, workloads
from ..judging.engine import Finding, Options, check
from ..judging.recall import Recall
from ..lang.falloc import falloc_words
from ..lang.workload import Op, OpKind, Workload, format_workload, parse
from ..target import (
    Target,
    TargetSpec,
    admit,
    make_target,
    supported_falloc_modes,
    supported_ops,
    target_variants,
)
from ..verdict import filed
from .campaign_config import CampaignConfig
from .corpus import CorpusDir, CrashDir
from .memory import freeze_startup_objects, give_back_memory, keep_freed_memory_until_trimmed
from .preflight import preflight
from .progress import Progress, Summary, summary_text
from .recycling import recycling_pool
from .reporting import campaign_options as _options
from .reporting import report_finding as _report_finding
from .reporting import resume_unminimized

__all__ = [
    "BatchResult",
    "BatchRunner",
    "CampaignConfig",
    "Driver",
    "ExecResult",
    "Summary",
    "batch_workloads",
    "judge",
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
    forms: tuple[str, ...] = ()
    """The op forms the workload reached (`pmfuzz.gen.forms`), as text."""
    found: tuple[tuple[str, str, tuple[str, ...]], ...] = ()
    """Every finding's (root cause, signature, causes linked to it), in the engine's order; campaigns
    group by the cause, and file a cause linked to a known one under it (`Finding.also`)."""
    firsts: tuple[Finding, ...] = ()
    """The findings whose cause is new to the batch: all a driver needs to minimize."""


@dataclass(frozen=True)
class BatchResult:
    index: int
    execs: tuple[ExecResult, ...]


class BatchRunner(Protocol):
    """Where batches run: in this process, or a cluster (`fuzzing.distributed`); any `concurrent.futures.Executor`."""

    def submit(self, fn: Callable[..., Any], /, *args: Any) -> Future: ...


class _Inline:
    """Runs a batch at once in this process; its exceptions propagate as in a plain loop."""

    def submit(self, fn: Callable[..., Any], /, *args: Any) -> Future:
        fut: Future = Future()
        fut.set_result(fn(*args))
        return fut


@cache
def _generators(spec: TargetSpec, max_ops: int) -> tuple[list[dict[str, str]], Drawer, Drawer, frozenset[str]]:
    """Once per process: building the strategies costs more than drawing a batch. Last: the op forms
    the target's ops and fallocate modes can reach."""
    base = make_target(spec)
    kinds, modes = supported_ops(base), supported_falloc_modes(base)
    shape: Shape = DEFAULT_SHAPE.only(kinds, modes)
    words = {tuple(falloc_words(m)) for m in shape.falloc_modes}
    reachable = frozenset(
        str(f) for f in ALL_FORMS if f.kind in kinds and (f.kind is not OpKind.FALLOCATE or f.flags in words)
    )
    return _variants(base, spec), Drawer(workloads(max_ops=max_ops, shape=shape)), Drawer(ops(shape)), reachable


_SCREEN = 8
"""Fresh draws screened per fresh slot while op forms are missing (a draw costs ~3 ms, a run ~300 ms)."""


def batch_workloads(
    cfg: CampaignConfig,
    index: int,
    corpus: Sequence[str],
    todo: Sequence[str] = (),
    reached: frozenset[str] | None = None,
) -> list[tuple[Workload, dict[str, str]]]:
    """The workloads (and target variants) of batch `index`: `todo` first, then mutants of `corpus` and fresh draws.

    `reached`: the op forms the campaign has reached; while some are missing, a fresh slot takes the
    first of up to `_SCREEN` draws that reaches one (cheap on the reference, no crash states), so a
    young campaign covers the language in a fraction of the runs blind draws need. A pure function
    of its arguments, whichever process calls it and whatever it ran before.
    """
    rng = random.Random(f"{cfg.seed}/batch/{index}")
    variants, draw_w, draw_op, reachable = _generators(cfg.target, cfg.max_ops)
    want = set() if reached is None else set(reachable - reached)
    queue = [parse(t) for t in todo]
    out: list[tuple[Workload, dict[str, str]]] = []
    misses = 0
    while len(out) < cfg.batch and misses < 100 * cfg.batch:
        if queue:
            w: Workload | None = queue.pop(0)
        elif corpus and rng.random() < 0.7:
            donors = [parse(t) for t in rng.sample(list(corpus), min(3, len(corpus)))]
            fresh = [o for o in (draw_op(rng.randbytes(64)) for _ in range(2)) if o is not None]
            scenario = partial(_scenario_ops, draw_w, rng)
            w = mutate(rng, parse(rng.choice(corpus)), donors, fresh, scenario)
        else:
            w = _fresh(draw_w, rng, want)
        if w is None or not w.ops:
            misses += 1
            continue
        out.append((w, rng.choice(variants)))
    return out


def _scenario_ops(draw_w: Drawer, rng: random.Random) -> tuple[Op, ...]:
    """A short fresh draw's ops, for a mutation to splice into a corpus entry."""
    w = draw_w(rng.randbytes(512))
    return () if w is None else w.ops


def _fresh(draw_w: Drawer, rng: random.Random, want: set[str]) -> Workload | None:
    """A fresh draw; while `want` (op forms still missing) is not empty, the first of `_SCREEN` draws
    that reaches one of them, which then leave `want`."""
    first = None
    for _ in range(_SCREEN if want else 1):
        w = draw_w(rng.randbytes(rng.choice((512, 2048, 8192))))
        if w is None or not w.ops or not want:
            return w
        forms = _form_texts(w)
        if want.intersection(forms):
            want.difference_update(forms)
            return w
        first = first or w
    return first


_RECALL = Recall()
"""The clean crash states this process judged, over every workload it ran: a mutation keeps its
parent's first ops, whose crash states are recalled, not judged again (bounded: `recall.CAP`)."""


def judge(
    cfg: CampaignConfig,
    w: Workload,
    variant: dict[str, str],
    opts: Options,
    seen_features: set[str] | None = None,
    seen_causes: set[str] | None = None,
) -> ExecResult:
    """Run one workload through the engine: what every engine does with a workload, whoever drew it.

    `seen_features` and `seen_causes` (updated here) are what the caller already holds: features and
    findings already reached are not shipped again.
    """
    text, var = format_workload(w), tuple(sorted(variant.items()))
    try:
        v = check(make_target(cfg.target, **variant), w, opts, recall=_RECALL)
    except PmfuzzError:  # other exceptions reaching here are bugs of pmfuzz: they propagate
        return ExecResult(text, var, rejected=True)
    seen_features = set() if seen_features is None else seen_features
    seen_causes = set() if seen_causes is None else seen_causes
    firsts = []
    findings = filed(v.findings)
    for f in findings:
        if str(f.root_cause) not in seen_causes:
            seen_causes.add(str(f.root_cause))
            firsts.append(f)
    forms = _form_texts(w)
    feats = v.features | {f"form:{f}" for f in forms}
    ex = ExecResult(
        text,
        var,
        distinct=v.stats.distinct,
        features=frozenset(feats - seen_features),
        forms=forms,
        found=tuple((str(f.root_cause), f.signature_text, tuple(map(str, f.also))) for f in findings),
        firsts=tuple(firsts),
    )
    seen_features |= feats
    return ex


def run_batch(
    cfg: CampaignConfig,
    index: int,
    corpus: Sequence[str],
    todo: Sequence[str] = (),
    reached: frozenset[str] | None = None,
) -> BatchResult:
    """Generate batch `index` and judge every workload: what a worker of any runner runs (pure)."""
    if ":" in cfg.target.name:
        admit(cfg.target.name)  # a cluster worker is another process: the campaign's own target, admitted again
    opts = _options(cfg)
    seen_features: set[str] = set()
    seen_causes: set[str] = set()
    drawn = batch_workloads(cfg, index, corpus, todo, reached)
    execs = [judge(cfg, w, v, opts, seen_features, seen_causes) for w, v in drawn]
    give_back_memory()
    return BatchResult(index, tuple(execs))


# -- the main process ----------------------------------------------------------------------------


class Driver:
    """The one process that owns a campaign's results, whichever engine draws the workloads.

    It alone deduplicates, grows the corpus, minimizes and writes (through `Progress`), so the
    native engine (batches on any runner) and atheris (one input at a time) count, report and sum
    up a campaign the same way.
    """

    def __init__(self, cfg: CampaignConfig, crashes: CrashDir, out: Any = sys.stderr) -> None:
        self.cfg = cfg
        self.crashes = crashes
        sources = [p for p in (cfg.corpus,) if p is not None]
        self.corpus = CorpusDir.load(cfg.crashes / "corpus", *sources)
        self.prog = Progress(cfg, crashes, self.corpus, out)
        self.opts = _options(cfg)
        self.known = set(crashes.counts)
        self.resumed = frozenset(self.known)
        """Causes known when the campaign started: their repeats in the corpus replay were counted before."""
        self.execs = 0
        self.why = ""
        self.failure: str | None = None
        """Why the campaign cannot go on though nothing of pmfuzz failed (a worker process killed twice)."""
        self._deadline = None if cfg.seconds is None else time.monotonic() + cfg.seconds

    def should_stop(self) -> bool:
        if self._deadline is not None and time.monotonic() >= self._deadline:
            self.why = self.why or "time"
        if self.prog.done:
            self.why = self.why or f"found {self.cfg.stop_on}"
        if self.prog.error:
            self.why = self.why or "write error"
        if self.failure:
            self.why = self.why or "worker lost"
        if self.cfg.max_execs is not None and self.execs >= self.cfg.max_execs:
            self.why = self.why or "max-execs"
        return bool(self.why)

    def on_signal(self, signum: int, _frame: Any = None) -> None:
        self.why = self.why or signal.Signals(signum).name

    def resume(self) -> None:
        """Minimize what an earlier run of this campaign left unminimized."""
        resume_unminimized(self.cfg, self.opts, self.prog.handle, self.should_stop)

    def merge(self, ex: ExecResult, replay: bool = False) -> None:
        """Count one judged workload, keep it if it reached new coverage, and report its new findings.

        `replay`: the workload is a corpus entry run again at the start of a resumed campaign.
        """
        if ex.rejected:
            return
        prog = self.prog
        self.execs += 1
        new = ex.features - prog.features
        if new:
            prog.handle("corpus", (ex.workload, sorted(new)))
        w = parse(ex.workload)
        prog.handle("exec", (ex.distinct, ex.forms))
        firsts = {str(f.root_cause): f for f in ex.firsts}
        for cause, sig, also in ex.found:
            key = cause if cause in self.known or sig not in self.known else sig  # sig: an index of old versions
            also = also if key == cause else ()  # an index of old versions files by signature: no links
            group = self.crashes.group_of(key, also, self.known)
            if group is not None:
                if not (replay and group in self.resumed):
                    prog.handle("repeat", (group, sig, key))
                if key == cause:
                    self.crashes.link(group, (key, *also), self.known)
            else:
                self.known.add(key)
                _report_finding(self.cfg, firsts[key], w, dict(ex.variant), self.opts, prog.handle, self.should_stop)
                self.crashes.link(key, also, self.known)

    def finish(self) -> Summary:
        """Write the last statistics and the findings' index; the campaign's summary."""
        prog = self.prog
        prog.tick(force=True)
        if prog.error is None:
            try:
                self.crashes.flush()
            except OSError as e:
                prog.error = prog.s.error = f"cannot write findings.json: {e.strerror or e}"
        s = prog.s
        self.should_stop()
        s.stopped = self.why or ("write error" if prog.error else "max-execs")
        if prog.tty:
            print(file=prog.out)
        s.elapsed = prog.elapsed()
        s.corpus = len(self.corpus.entries)
        s.coverage = len(prog.features)
        s.findings = dict(self.crashes.counts)
        s.error = s.error or self.failure
        return s


def run_campaign(cfg: CampaignConfig, *, out=sys.stderr, runner: BatchRunner | None = None) -> Summary:
    """Run until the time or exec budget is spent, SIGINT/SIGTERM, or a write fails; return the summary.

    Batches run on `runner` (a cluster, see `pmfuzz.fuzzing.distributed`), else on `cfg.workers` local
    processes, each replaced by a fresh one after `cfg.recycle_after` batches (with 0: never, and one
    worker judges in this process); the findings are the same on each.
    Before anything runs: the target is built and formats the device, and the crashes directory is
    writable and not in use by another campaign (each a one-line error otherwise). Findings an earlier
    run left unminimized are minimized first.
    """
    if ":" in cfg.target.name:
        admit(cfg.target.name)  # the configuration is the command line's (or the API caller's) choice
    preflight(make_target(cfg.target), cfg.device_size, cfg.op_timeout)
    keep_freed_memory_until_trimmed()
    freeze_startup_objects()
    crashes = CrashDir.open(cfg.crashes)
    try:
        if runner is not None or (cfg.workers <= 1 and cfg.recycle_after == 0):
            return _campaign(cfg, crashes, out, runner or _Inline())
        with recycling_pool(cfg.workers, cfg.recycle_after or None) as pool:
            return _campaign(cfg, crashes, out, pool)
    finally:
        crashes.close()


def _campaign(cfg: CampaignConfig, crashes: CrashDir, out: Any, runner: BatchRunner) -> Summary:
    d = Driver(cfg, crashes, out)
    old = {s: signal.signal(s, d.on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        d.resume()
        if not d.should_stop():
            _run_batched(d, runner)
    finally:
        for s, h in old.items():
            signal.signal(s, h)
    return d.finish()


def _run_batched(d: Driver, runner: BatchRunner) -> None:
    """Keep up to `cfg.window` batches in flight and merge their results strictly in batch order.

    A batch whose process died (killed, out of memory) runs again, once: the same batch, so the
    same findings; a second loss stops the campaign with what it found kept."""
    cfg = d.cfg
    size, window = cfg.batch, cfg.window
    initial = [format_workload(w) for w in d.corpus.entries]
    d.prog.s.seeds_left = len(initial)
    texts = list(initial)
    # Per k merged batches, the corpus length and the op forms reached: batch b mutates
    # texts[: sizes[b - window + 1]]. Older entries are never read again and are dropped (kept,
    # one set of forms per batch grew a long campaign's memory without end).
    sizes = {0: len(texts)}
    reached = {0: frozenset(d.prog.s.forms)}
    pending: dict[int, Future] = {}
    sent: dict[int, tuple] = {}
    retried: set[int] = set()
    results: dict[int, BatchResult] = {}
    submitted = merged = 0

    def merge(res: BatchResult) -> bool:
        replays = len(initial[res.index * size : (res.index + 1) * size])
        for k, ex in enumerate(res.execs):
            if d.should_stop():
                return False
            d.prog.s.seeds_left = max(0, len(initial) - res.index * size - k - 1)
            d.merge(ex, replay=k < replays)
            texts.extend(format_workload(w) for w in d.corpus.entries[len(texts) :])
        return not d.should_stop()

    try:
        while not d.should_stop():
            for b in [b for b, fut in pending.items() if fut.done()]:
                fut = pending.pop(b)
                err = fut.exception()
                if err is not None:
                    if d.should_stop():
                        return
                    if isinstance(err, BrokenProcessPool):
                        if b in retried:
                            d.failure = f"a judging process died twice running batch {b} ({err})"
                            return
                        retried.add(b)  # lost with its process (killed, out of memory): run it again
                        pending[b] = runner.submit(run_batch, *sent[b])
                        continue
                    raise RuntimeError(f"batch {b} failed (a bug in pmfuzz, or the cluster is gone)") from err
                results[b] = fut.result()
                del sent[b]
            if merged in results:
                if not merge(results.pop(merged)):
                    return
                merged += 1
                sizes[merged] = len(texts)
                forms = d.prog.s.forms
                reached[merged] = reached[merged - 1] if len(forms) == len(reached[merged - 1]) else frozenset(forms)
                continue
            left = None if cfg.max_execs is None else cfg.max_execs - d.execs
            if submitted - merged < window and (left is None or (submitted - merged) * size < left):
                todo = tuple(initial[submitted * size : (submitted + 1) * size])
                before = max(0, submitted - window + 1)
                snapshot = tuple(texts[: sizes[before]])
                sent[submitted] = (cfg, submitted, snapshot, todo, reached[before])
                pending[submitted] = runner.submit(run_batch, *sent[submitted])
                submitted += 1
                for k in [k for k in sizes if k < before]:
                    del sizes[k], reached[k]
                continue
            wait(list(pending.values()), timeout=0.5, return_when=FIRST_COMPLETED)
            d.prog.tick()
    finally:
        for fut in pending.values():
            fut.cancel()


@lru_cache(maxsize=64)
def _form_texts(w: Workload) -> tuple[str, ...]:
    """Remembered: a screened fresh draw's forms are named before it runs and again by `judge`."""
    return tuple(sorted(str(f) for f in workload_forms(w)))
