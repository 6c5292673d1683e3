"""Scale a campaign, or a regression run, out on a Dask cluster.

`pmfuzz run --scheduler tcp://HOST:8786` (or `local:N`: a `LocalCluster` of N
one-thread worker processes on loopback) ships batches of workloads
(`campaign.run_batch`) to the cluster's workers, while this process stays the
driver: it holds the corpus, merges batches in order, deduplicates, minimizes
and writes reproducers exactly as a run without a scheduler does. A batch is a
pure function of its arguments, so Dask may run it again when its worker dies,
and the findings do not depend on which worker ran what.

The cluster's workers need the same pmfuzz (and hypothesis) as the driver: the
same seed then gives the same workloads everywhere. `distributed` is an
optional dependency (`pmfuzz[dask]`), imported only when a scheduler is asked for.
"""

from __future__ import annotations

import enum
import logging
import re
import warnings
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import PmfuzzError
from ..judging.repro import Reproducer
from ..verdict import DEFAULT_OP_TIMEOUT

if TYPE_CHECKING:
    from .replaying import Outcome

__all__ = [
    "INSTALL_HINT",
    "DaskRunner",
    "SchedulerKind",
    "SchedulerSpec",
    "open_scheduler",
    "parse_scheduler",
    "replay_outcome",
    "replay_outcomes",
]

INSTALL_HINT = "--scheduler needs Dask's distributed package: pip install 'pmfuzz[dask]'"


class SchedulerKind(enum.StrEnum):
    LOCAL = "local"
    """A LocalCluster this process starts and stops."""
    REMOTE = "remote"
    """A running scheduler at an address."""


@dataclass(frozen=True)
class SchedulerSpec:
    kind: SchedulerKind
    workers: int = 0
    address: str = ""

    def __str__(self) -> str:
        return f"local:{self.workers}" if self.kind is SchedulerKind.LOCAL else self.address


_ADDRESS = re.compile(r"^[a-z][a-z0-9+.-]*://\S+$")


def parse_scheduler(text: str) -> SchedulerSpec:
    """`local:N` or a scheduler address such as `tcp://HOST:8786`."""
    t = text.strip()
    if t.startswith("local:"):
        n = t.removeprefix("local:")
        if not n.isdigit() or int(n) < 1:
            raise PmfuzzError(f"scheduler {text!r}: local:N needs a number of workers N >= 1")
        return SchedulerSpec(SchedulerKind.LOCAL, workers=int(n))
    if _ADDRESS.match(t):
        return SchedulerSpec(SchedulerKind.REMOTE, address=t)
    raise PmfuzzError(f"scheduler {text!r} is neither local:N nor an address like tcp://HOST:8786")


def _dask() -> Any:
    try:
        import distributed
    except ImportError:
        raise PmfuzzError(INSTALL_HINT) from None
    return distributed


class DaskRunner:
    """A `campaign.BatchRunner` over a Dask client: every submit is one task, never merged with an equal one."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self._executor = client.get_executor(pure=False)

    def submit(self, fn: Callable[..., Any], /, *args: Any) -> Future:
        return self._executor.submit(_on_worker, fn, *args)

    def workers(self) -> int:
        return len(self.client.scheduler_info()["workers"])


def _on_worker(fn: Callable[..., Any], /, *args: Any) -> Any:
    """Run a task quietly: Dask's own threads touch the global `random` while a strategy draws,
    which Hypothesis reports as the strategy's fault (the draws are unaffected: they use their own bytes)."""
    warnings.filterwarnings("ignore", message="Do not use the `random` module inside strategies")
    return fn(*args)


@contextmanager
def open_scheduler(spec: SchedulerSpec | str) -> Iterator[DaskRunner]:
    """Connect to (or, for `local:N`, start) a cluster for the duration of the block.

    A local cluster's workers keep glibc's malloc defaults: Dask sets MALLOC_TRIM_THRESHOLD_, which
    also stops glibc adapting its mmap threshold, so every large array of a crash image would be
    mapped and faulted in afresh. Its scheduler serves no dashboard and takes no fixed port.
    """
    dask = _dask()
    from dask import config as dask_config

    if isinstance(spec, str):
        spec = parse_scheduler(spec)
    cluster = None
    try:
        if spec.kind is SchedulerKind.LOCAL:
            with dask_config.set({"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}):
                cluster = dask.LocalCluster(
                    n_workers=spec.workers,
                    threads_per_worker=1,
                    processes=True,
                    host="127.0.0.1",
                    dashboard_address=None,
                    scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
                    silence_logs=logging.CRITICAL,
                )
            client = dask.Client(cluster)
        else:
            client = dask.Client(spec.address, timeout="10s")
    except (OSError, TimeoutError) as e:
        if cluster is not None:
            cluster.close()
        raise PmfuzzError(f"cannot reach the Dask scheduler {spec}: {e}") from None
    try:
        if cluster is None:
            _check_workers(client, spec)
        yield DaskRunner(client)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def _check_workers(client: Any, spec: SchedulerSpec) -> None:
    """Workers with another pmfuzz or hypothesis would draw other workloads from the same seed: refuse them."""
    from importlib.metadata import version

    for package in ("pmfuzz", "hypothesis"):
        here = version(package)
        there = client.run(version, package, on_error="return")
        wrong = {w: v for w, v in there.items() if v != here}
        if wrong:
            w, v = next(iter(wrong.items()))
            got = f"{type(v).__name__}: {v}" if isinstance(v, BaseException) else v
            raise PmfuzzError(
                f"{len(wrong)} worker(s) of {spec} have no {package} {here} (e.g. {w}: {got}): install it there"
            )


def replay_outcome(
    r: Reproducer, op_timeout: float | None = DEFAULT_OP_TIMEOUT, imports: Sequence[str] = ()
) -> Outcome:
    """What `regress` says of one reproducer (`replaying.replay_outcome`): never raises."""
    from .replaying import replay_outcome as outcome

    return outcome(r, op_timeout, imports)


def _replay_chunk(rs: Sequence[Reproducer], op_timeout: float | None, imports: Sequence[str]) -> list[Outcome]:
    return [replay_outcome(r, op_timeout, imports) for r in rs]


def replay_outcomes(
    runner: DaskRunner | None,
    rs: Sequence[Reproducer],
    op_timeout: float | None = DEFAULT_OP_TIMEOUT,
    chunk: int = 8,
    imports: Sequence[str] = (),
) -> Iterator[Outcome]:
    """`replay_outcome` of every reproducer, in the order given; on a cluster `chunk` to a task."""
    if runner is None:
        yield from (replay_outcome(r, op_timeout, imports) for r in rs)
        return
    futures = [
        runner.submit(_replay_chunk, tuple(rs[i : i + chunk]), op_timeout, tuple(imports))
        for i in range(0, len(rs), chunk)
    ]
    for fut in futures:
        yield from fut.result()
