"""The coverage-guided engine: atheris (libFuzzer) drives the hypothesis workload strategy.

atheris only sees the coverage of instrumented code, so the campaign runs in
a child process that imports the target's modules (the daxfs model and its
recovery, or a user's target module) under `atheris.instrument_imports()`.
Each input's bytes become a workload through Hypothesis' `fuzz_one_input`, the
engine judges it, and findings go to the crashes directory exactly as the
native engine writes them; a finding never stops the campaign.
"""

from __future__ import annotations

import importlib.util
import json
import pickle
import subprocess
import sys
from pathlib import Path

from ..campaign import CampaignConfig, Summary
from ..errors import PmfuzzError

__all__ = ["run_atheris"]


def run_atheris(cfg: CampaignConfig) -> Summary:
    if importlib.util.find_spec("atheris") is None:
        raise PmfuzzError("the atheris engine needs atheris: pip install 'pmfuzz[atheris]' (or pip install atheris)")
    if cfg.workers != 1:
        raise PmfuzzError(
            "--engine atheris runs one process; use -workers/-jobs of libFuzzer or --engine native "
            f"for {cfg.workers} workers"
        )
    cfg.crashes.mkdir(parents=True, exist_ok=True)
    blob = cfg.crashes / ".atheris-config.pickle"
    blob.write_bytes(pickle.dumps(cfg))
    proc = subprocess.run([sys.executable, "-m", "pmfuzz.gen.atheris_engine", str(blob)], check=False)
    blob.unlink(missing_ok=True)
    if proc.returncode not in (0, 130) and proc.returncode != -2:
        raise PmfuzzError(f"the atheris campaign exited with status {proc.returncode} (see its output above)")
    return _summary(cfg)


def _summary(cfg: CampaignConfig) -> Summary:
    s = Summary(stopped="atheris")
    stats = cfg.crashes / "stats.jsonl"
    if stats.exists():
        lines = stats.read_text().splitlines()
        if lines:
            last = json.loads(lines[-1])
            s.elapsed, s.execs, s.states = last["seconds"], last["execs"], last["states"]
            s.corpus, s.coverage = last["corpus"], last["coverage"]
    idx = cfg.crashes / "findings.json"
    if idx.exists():
        s.findings = json.loads(idx.read_text())
    return s


def _child(blob: Path) -> None:
    import atheris

    cfg: CampaignConfig = pickle.loads(blob.read_bytes())
    include = ["pmfuzz.fs"]
    if ":" in cfg.target.name:
        include.append(cfg.target.name.split(":", 1)[0])
    with atheris.instrument_imports(include=include):
        import pmfuzz.fs  # noqa: F401

        for mod in include[1:]:
            importlib.import_module(mod)
    import random

    from ..campaign import _Progress, _variants, _Worker
    from ..corpus import CorpusDir, CrashDir
    from ..engine import Options
    from ..gen.drawing import Drawer
    from ..gen.strategies import DEFAULT_SHAPE, workloads
    from ..target import make_target, supported_falloc_modes, supported_ops

    base = make_target(cfg.target)
    crashes = CrashDir.open(cfg.crashes)
    corpus = CorpusDir.load(cfg.crashes / "corpus")
    prog = _Progress(cfg, crashes, corpus)
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
        w = draw(data)
        if w is None or not w.ops:
            return
        worker.one(w, rng.choice(variants), opts)
        if prog.s.execs % 20 == 0:
            crashes.flush()

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
        crashes.flush()
        prog.tick(force=True)


if __name__ == "__main__":
    _child(Path(sys.argv[1]))
