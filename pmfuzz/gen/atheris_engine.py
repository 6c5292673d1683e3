"""The coverage-guided engine: atheris (libFuzzer) drives the hypothesis workload strategy.

atheris only sees the coverage of instrumented code, so the campaign runs in
a child process that imports the target's modules (the daxfs model and its
recovery, or a user's target module) under `atheris.instrument_imports()`.
Each input's bytes become a workload through Hypothesis' `fuzz_one_input`, the
engine judges it, and findings go to the crashes directory exactly as the
native engine writes them; a finding never stops the campaign. The child
gets its configuration as JSON (data, never a pickle that could name code to
run), holds the crashes directory's lock, and dies with its parent.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

from ..campaign_config import CampaignConfig, config_from_json, config_to_json
from ..corpus import atomic_write, writable_dir
from ..errors import PmfuzzError
from ..progress import Summary

__all__ = ["run_atheris"]

_WRITE_ERROR = 3
"""The child's exit status when a write to the crashes directory failed (the campaign stopped there)."""


def run_atheris(cfg: CampaignConfig) -> Summary:
    if importlib.util.find_spec("atheris") is None:
        raise PmfuzzError("the atheris engine needs atheris: pip install 'pmfuzz[atheris]' (or pip install atheris)")
    if cfg.workers != 1:
        raise PmfuzzError(
            "--engine atheris runs one process; use -workers/-jobs of libFuzzer or --engine native "
            f"for {cfg.workers} workers"
        )
    from ..preflight import preflight
    from ..target import make_target

    preflight(make_target(cfg.target), cfg.device_size, cfg.op_timeout)
    writable_dir(cfg.crashes, "crashes directory")
    blob = cfg.crashes / ".atheris-config.json"
    atomic_write(blob, config_to_json(cfg))
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "pmfuzz.gen.atheris_engine", str(blob), str(os.getpid())], check=False
        )
    finally:
        blob.unlink(missing_ok=True)
    if proc.returncode == 2:
        raise PmfuzzError("the atheris campaign could not start (its error is above)")
    if proc.returncode == _WRITE_ERROR:
        s = _summary(cfg)
        s.error = "a write to the crashes directory failed (the line above says which)"
        return s
    if proc.returncode not in (0, 130) and proc.returncode != -2:
        raise PmfuzzError(f"the atheris campaign exited with status {proc.returncode} (see its output above)")
    return _summary(cfg)


def _summary(cfg: CampaignConfig) -> Summary:
    s = Summary(stopped="atheris")
    stats = cfg.crashes / "stats.jsonl"
    try:
        for line in reversed(stats.read_text(encoding="utf-8").splitlines()):
            last = json.loads(line)
            s.elapsed, s.execs, s.states = last["seconds"], last["execs"], last["states"]
            s.corpus, s.coverage = last["corpus"], last["coverage"]
            break
    except (OSError, ValueError, KeyError, TypeError):
        pass  # no statistics (or a torn line): the summary shows zeros, the findings below still count
    try:
        found = json.loads((cfg.crashes / "findings.json").read_text(encoding="utf-8"))
        s.findings = found if isinstance(found, dict) else {}
    except (OSError, ValueError):
        pass
    return s


def _child(blob: Path, parent: int) -> None:
    from ..procs import die_with_parent
    from ..target import admit

    die_with_parent(parent)
    try:
        cfg = config_from_json(blob.read_text(encoding="utf-8"))
        if ":" in cfg.target.name:
            admit(cfg.target.name)
    except (OSError, PmfuzzError) as e:
        print(f"pmfuzz: error: {e}", file=sys.stderr)
        sys.exit(2)
    _fuzz(cfg)


def _fuzz(cfg: CampaignConfig) -> None:
    import atheris

    include = ["pmfuzz.fs"]
    if ":" in cfg.target.name:
        include.append(cfg.target.name.split(":", 1)[0])
    with atheris.instrument_imports(include=include):
        import pmfuzz.fs  # noqa: F401

        for mod in include[1:]:
            importlib.import_module(mod)
    import random

    from ..campaign import _variants, _Worker
    from ..corpus import CorpusDir, CrashDir
    from ..engine import Options
    from ..gen.drawing import Drawer
    from ..gen.strategies import DEFAULT_SHAPE, workloads
    from ..progress import Progress
    from ..reporting import campaign_options, resume_unminimized
    from ..target import make_target, supported_falloc_modes, supported_ops

    base = make_target(cfg.target)
    try:
        crashes = CrashDir.open(cfg.crashes)
    except PmfuzzError as e:
        print(f"pmfuzz: error: {e}", file=sys.stderr)
        sys.exit(2)
    corpus = CorpusDir.load(cfg.crashes / "corpus")
    prog = Progress(cfg, crashes, corpus)
    resume_unminimized(cfg, campaign_options(cfg), prog.handle, lambda: prog.error is not None)
    known = dict.fromkeys(crashes.counts, True)
    worker = _Worker(cfg, 0, prog.handle, known, lambda: False, [])
    variants = _variants(base, cfg.target)
    shape = DEFAULT_SHAPE.only(supported_ops(base), supported_falloc_modes(base))
    draw = Drawer(workloads(max_ops=cfg.max_ops, shape=shape))
    opts = Options(
        domain=cfg.domain,
        device_size=cfg.device_size,
        max_states=cfg.max_states,
        exhaustive_upto=cfg.max_states,
        eadr_points=cfg.eadr_points,
    )
    rng = random.Random(cfg.seed)

    def one_input(data: bytes) -> None:
        if prog.error is not None:
            print(f"pmfuzz: error: {prog.error}", file=sys.stderr)
            os._exit(_WRITE_ERROR)  # libFuzzer offers no clean stop from inside an input
        w = draw(data)
        if w is None or not w.ops:
            return
        worker.one(w, rng.choice(variants), opts)
        prog.tick()

    fuzz_dir = cfg.crashes / "atheris-corpus"
    fuzz_dir.mkdir(parents=True, exist_ok=True)
    args = [sys.argv[0], str(fuzz_dir), f"-seed={cfg.seed + 1}", "-print_final_stats=0", "-max_len=16384"]
    if cfg.max_execs is not None:
        args.append(f"-runs={cfg.max_execs}")
    if cfg.seconds is not None:
        args.append(f"-max_total_time={max(1, int(cfg.seconds))}")
    atheris.Setup(args, one_input)
    try:
        atheris.Fuzz()
    finally:
        prog.tick(force=True)
        if prog.error is None:
            crashes.flush()


if __name__ == "__main__":
    _child(Path(sys.argv[1]), int(sys.argv[2]))
