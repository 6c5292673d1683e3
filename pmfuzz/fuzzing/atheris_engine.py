"""The coverage-guided engine: atheris (libFuzzer) drives the hypothesis workload strategy.

atheris only sees the coverage of instrumented code, so the campaign runs in
a child process that imports the target's modules (the daxfs model and its
recovery, or a user's target module) under `atheris.instrument_imports()`.
Each input's bytes become a workload through Hypothesis' `fuzz_one_input`, and
the native campaign's `Driver` judges it, counts it and writes its findings:
the same options (preemptions, op timeout...), progress lines, statistics and
summary as `--engine native`; a finding never stops the campaign. The child
gets its configuration as JSON (data, never a pickle that could name code to
run), holds the crashes directory's lock, dies with its parent, and hands its
summary back as JSON.
"""

from __future__ import annotations

import atexit
import importlib.util
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import PmfuzzError
from .campaign_config import CampaignConfig, config_from_json, config_to_json
from .corpus import atomic_write, writable_dir
from .progress import Summary, summary_from_json, summary_to_json

__all__ = ["run_atheris"]

_CANNOT_START = 2
"""The child's exit status when its configuration or crashes directory was refused (its error is printed)."""


def run_atheris(cfg: CampaignConfig) -> Summary:
    if importlib.util.find_spec("atheris") is None:
        raise PmfuzzError("the atheris engine needs atheris: pip install 'pmfuzz[atheris]' (or pip install atheris)")
    if cfg.workers != 1:
        raise PmfuzzError(
            "--engine atheris runs one process; use -workers/-jobs of libFuzzer or --engine native "
            f"for {cfg.workers} workers"
        )
    from ..target import make_target
    from .preflight import preflight

    preflight(make_target(cfg.target), cfg.device_size, cfg.op_timeout)
    writable_dir(cfg.crashes, "crashes directory")
    tmp = Path(tempfile.mkdtemp(prefix="pmfuzz-atheris-"))
    try:
        blob, summary = tmp / "config.json", tmp / "summary.json"
        atomic_write(blob, config_to_json(cfg))
        cmd = [sys.executable, "-m", "pmfuzz.fuzzing.atheris_engine", str(blob), str(os.getpid()), str(summary)]
        proc = subprocess.Popen(cmd)
        forward = lambda signum, _frame: proc.send_signal(signum)  # the child stops and sums up
        old = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            proc.wait()
        finally:
            for s, h in old.items():
                signal.signal(s, h)
        if proc.returncode == _CANNOT_START:
            raise PmfuzzError("the atheris campaign could not start (its error is above)")
        try:
            return summary_from_json(summary.read_text(encoding="utf-8"))
        except (OSError, ValueError, TypeError):
            raise PmfuzzError(
                f"the atheris campaign exited with status {proc.returncode} and no summary (see its output above)"
            ) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _child(blob: Path, parent: int, summary: Path) -> None:
    from ..target import admit
    from .procs import die_with_parent

    die_with_parent(parent)
    try:
        cfg = config_from_json(blob.read_text(encoding="utf-8"))
        if ":" in cfg.target.name:
            admit(cfg.target.name)
    except (OSError, PmfuzzError) as e:
        print(f"pmfuzz: error: {e}", file=sys.stderr)
        sys.exit(_CANNOT_START)
    _fuzz(cfg, summary)


def _fuzz(cfg: CampaignConfig, summary_path: Path) -> None:
    import random

    import atheris

    include = ["pmfuzz.fs"]
    if ":" in cfg.target.name:
        include.append(cfg.target.name.split(":", 1)[0])
    with atheris.instrument_imports(include=include):
        import pmfuzz.fs  # noqa: F401

        for mod in include[1:]:
            importlib.import_module(mod)

    from .campaign import Driver, _generators, judge
    from .corpus import CrashDir

    try:
        crashes = CrashDir.open(cfg.crashes)
    except PmfuzzError as e:
        print(f"pmfuzz: error: {e}", file=sys.stderr)
        sys.exit(_CANNOT_START)
    d = Driver(cfg, crashes)
    ended = False

    def end() -> None:
        """Sum up once, whoever ends the campaign: `one_input` on a stop, or libFuzzer's own exit."""
        nonlocal ended
        if ended:
            return
        ended = True
        s = d.finish()
        try:
            atomic_write(summary_path, summary_to_json(s))
        finally:
            crashes.close()

    def stop_now() -> None:
        end()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)  # libFuzzer offers no clean stop from inside an input

    atexit.register(end)
    for s in (signal.SIGINT, signal.SIGTERM):
        signal.signal(s, d.on_signal)  # libFuzzer's own handlers are off (-handle_int=0): the driver stops
    d.resume()
    variants, draw, _, _ = _generators(cfg.target, cfg.max_ops)
    rng = random.Random(cfg.seed)
    for w in list(d.corpus.entries):  # a resumed campaign starts from its corpus, as the native engine does
        if d.should_stop():
            stop_now()
        d.merge(judge(cfg, w, rng.choice(variants), d.opts), replay=True)
        d.prog.tick()
    if d.should_stop():
        stop_now()
    patched = False

    def one_input(data: bytes) -> None:
        nonlocal patched
        if not patched:  # atheris.Fuzz() binds its hooks afresh, so this cannot be done before it
            atheris._trace_cmp = _no_array_results(atheris._trace_cmp)
            patched = True
        w = draw(data)
        if w is not None and w.ops:
            d.merge(judge(cfg, w, rng.choice(variants), d.opts))
        d.prog.tick()
        if d.should_stop():
            stop_now()

    fuzz_dir = cfg.crashes / "atheris-corpus"
    fuzz_dir.mkdir(parents=True, exist_ok=True)
    args = [sys.argv[0], str(fuzz_dir), f"-seed={cfg.seed + 1}", "-print_final_stats=0", "-max_len=16384"]
    args += ["-handle_int=0", "-handle_term=0"]
    if cfg.seconds is not None:  # a backstop: the driver stops on time itself, between two inputs
        args.append(f"-max_total_time={math.ceil(cfg.seconds) + 60}")
    atheris.Setup(args, one_input)
    atheris.Fuzz()


def _no_array_results(native: Callable[..., Any]) -> Callable[..., Any]:
    """atheris' comparison hook, except for numpy arrays, which it would leak.

    atheris 3.0's `_trace_cmp` keeps a reference to every comparison result that is not a bool,
    so each elementwise comparison of the model's numpy arrays (fsck, the device's pages) stayed
    in memory: the child grew by ~25 MB/s. Arrays are compared without the hook, whose value
    feedback serves scalars (ints, bytes, strings) anyway.
    """
    import operator

    import numpy as np

    ops = (operator.lt, operator.le, operator.eq, operator.ne, operator.gt, operator.ge)

    def trace_cmp(left: Any, right: Any, op: int, counter: int, left_is_const: bool) -> Any:
        if (isinstance(left, np.ndarray) or isinstance(right, np.ndarray)) and 0 <= op < len(ops):
            return ops[op](left, right)
        return native(left, right, op, counter, left_is_const)

    return trace_cmp


if __name__ == "__main__":
    _child(Path(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3]))
