"""A campaign's configuration, and its data form for a child process.

The atheris engine runs its campaign in a child process (atheris must
instrument modules before they are imported). The configuration goes to the
child as JSON, a data format: a pickle in the crashes directory would let
whoever can write there run code in pmfuzz (unpickling calls what it names).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from ..errors import PmfuzzError, clip
from ..pmem import Domain, EadrPoints
from ..target import TargetSpec
from ..verdict import DEFAULT_OP_TIMEOUT

__all__ = ["PICTURE_SECONDS", "CampaignConfig", "config_from_json", "config_to_json"]


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
    max_states: int = 256
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
    recycle_after: int = 64
    """Batches a judging process runs before a fresh one, forked from the campaign's process, takes
    over: memory a large workload leaves fragmented goes with its process (`fuzzing.recycling`).
    0: never, and with one worker the campaign's own process judges. Changes no finding."""


_INT = (
    "device_size",
    "seed",
    "workers",
    "max_states",
    "max_ops",
    "minimize_checks",
    "preemption_bound",
    "batch",
    "window",
    "recycle_after",
)
_OPT_INT = ("max_execs",)
_FLOAT = ("minimize_seconds",)
_OPT_FLOAT = ("seconds", "op_timeout")
_BOOL = ("quiet", "pictures")


def config_to_json(cfg: CampaignConfig) -> str:
    out: dict[str, Any] = {}
    for f in fields(cfg):
        v = getattr(cfg, f.name)
        if isinstance(v, TargetSpec):
            v = {"name": v.name, "options": [list(kv) for kv in v.options]}
        elif isinstance(v, Domain | EadrPoints):
            v = v.value
        elif isinstance(v, Path):
            v = str(v)
        out[f.name] = v
    return json.dumps(out, sort_keys=True)


def config_from_json(text: str) -> CampaignConfig:
    """The configuration `config_to_json` wrote; anything else is one clear error, never code run."""
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as e:
        raise PmfuzzError(f"campaign configuration is not JSON: {clip(str(e))}") from None
    if not isinstance(data, dict):
        raise PmfuzzError("campaign configuration is not a JSON object")
    names = {f.name for f in fields(CampaignConfig)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise PmfuzzError(f"campaign configuration has unknown fields: {clip(', '.join(unknown))}")
    kw: dict[str, Any] = {}
    for key, v in data.items():
        kw[key] = _field(key, v)
    return CampaignConfig(**kw)


def _field(key: str, v: Any) -> Any:
    def bad() -> PmfuzzError:
        return PmfuzzError(f"campaign configuration field {key!r} has a bad value {clip(v)}")

    number = isinstance(v, int | float) and not isinstance(v, bool)
    if key == "target":
        if not isinstance(v, dict) or not isinstance(v.get("name"), str) or not isinstance(v.get("options"), list):
            raise bad()
        opts = v["options"]
        if not all(isinstance(kv, list) and len(kv) == 2 and all(isinstance(x, str) for x in kv) for kv in opts):
            raise bad()
        return TargetSpec(v["name"], tuple((k, x) for k, x in opts))
    if key in ("domain", "eadr_points"):
        try:
            return (Domain if key == "domain" else EadrPoints)(v)
        except ValueError:
            raise bad() from None
    if key in ("corpus", "crashes"):
        if v is None and key == "corpus":
            return None
        if not isinstance(v, str):
            raise bad()
        return Path(v)
    if key in _BOOL:
        if not isinstance(v, bool):
            raise bad()
        return v
    if key == "stop_on":
        if v is not None and not isinstance(v, str):
            raise bad()
        return v
    if v is None and key in (*_OPT_INT, *_OPT_FLOAT):
        return None
    if key in (*_INT, *_OPT_INT):
        if not isinstance(v, int) or isinstance(v, bool):
            raise bad()
        return v
    if not number or not math.isfinite(v):
        raise bad()
    return float(v)
