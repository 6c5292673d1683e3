"""What the engine is asked (`Options`) and what it answers (`Verdict` of `Finding`s), shared by execute and judge."""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass, fields, replace

from oracles import AnyOracle, OracleName
from oracles.functional import result_differs

from .pmem import Domain, EadrPoints, GroupOutcome, StateId
from .signature import Cause, How, Signature, rule_of, top_site

__all__ = [
    "first_divergence",
    "filed",
    "link_alike",
    "Options",
    "Finding",
    "CrashSite",
    "Verdict",
    "Stats",
    "StateChoice",
    "Findings",
    "filing_key",
    "found_again",
    "MiB",
    "DEFAULT_OP_TIMEOUT",
]

MiB = 1 << 20


DEFAULT_OP_TIMEOUT = 10.0
"""Seconds a call into a target may take by default (`Options.op_timeout`)."""


class StateChoice(enum.StrEnum):
    """How the engine picks the states of a crash point."""

    AUTO = "auto"
    """Exhaustive where a point has at most `exhaustive_upto` states, else bounded."""
    EXHAUSTIVE = "exhaustive"
    BOUNDED = "bounded"
    SAMPLE = "sample"


@dataclass(frozen=True)
class Options:
    domain: Domain = Domain.ADR
    device_size: int = 8 * MiB
    strategy: StateChoice = StateChoice.AUTO
    exhaustive_upto: int = 256
    max_states: int | None = 2048
    """At most this many states per crash point (None: no limit)."""
    max_inflight: int | None = None
    """Judge every k-th crash point when the points' in-flight groups sum to more than this (None: every
    point). A point costs its groups even before its states: 2 MiB stored through a MAP_SYNC mapping is
    2,555 points over up to 32,000 lines each, an hour of judging for one workload of a campaign."""
    eadr_points: EadrPoints = EadrPoints.STORES
    crash: StateId | str | None = None
    """Judge only this crash state (a state id), as a reproducer names it."""
    seed: int = 0
    oracles: tuple[AnyOracle, ...] | None = None
    first_per_signature: bool = True
    group_by_metadata: bool = True
    """Mount once per distinct metadata state when the target declares its metadata ranges (same verdicts)."""
    log_states: bool = False
    """Record every judged state's violations in `Verdict.state_log` (for tests and debugging)."""
    focus: Signature | tuple[str, str, str] | None = None
    """(oracle, op kind, site): judge only crash points that could give this signature (for minimizing)."""
    features: bool = False
    """Collect coverage features of the run in `Verdict.features` (for the fuzzer)."""
    schedule: str | None = None
    """Run parallel groups under this schedule id only (as a reproducer's `schedule:` names it)."""
    preemption_bound: int = 2
    """Explore every schedule of the parallel groups with at most this many preemptions."""
    max_schedules: int | None = 2000
    """Stop exploring after this many schedules (a note says so); None: no limit."""
    stop_explored: bool = True
    """Stop a schedule at the end of a parallel group when an earlier one left the execution in the
    same state there (the target must digest its memory: `state_fingerprint`): the same distinct
    executions are judged, fewer run. False runs every schedule to its end."""
    recall_clean: bool = True
    """Across the schedules of one workload, a crash state an earlier schedule judged clean (the same
    image, window and history) is not judged again. False judges every schedule's states afresh."""
    op_timeout: float | None = DEFAULT_OP_TIMEOUT
    """Seconds a call into the target (an op, a mount, format, an oracle's reads) may take before it is
    reported as a hang of the target; None: no limit."""


@dataclass(frozen=True)
class CrashSite:
    """Where a crash struck and what it kept."""

    point: str
    state: StateId
    op: int
    op_text: str
    event: str
    site: str
    outcomes: tuple[GroupOutcome, ...]
    deviations: int


@dataclass(frozen=True)
class Finding:
    oracle: OracleName
    message: str
    evidence: tuple = ()
    op: int = -1
    op_text: str = ""
    op_kind: str = ""
    site: str = ""
    crash: CrashSite | None = None
    traceback: str | None = None
    schedule: str | None = None
    """The schedule id of the parallel groups this finding ran under (None: no groups)."""
    cause: Cause | None = None
    """What the judge read off a crash finding's evidence (`judging.cause`); None: the message's rule."""
    also: tuple[Cause, ...] = ()
    """Causes other oracles gave one crash state for the same store (`judging.cause`): one root cause
    seen by several oracles, which a campaign files as one."""
    word: int | None = None
    """For a crash-free wrong read: the device address of its first wrong word, when the target
    tells its blocks (a crash in that op that shows the same word is the same bug)."""

    @property
    def root_cause(self) -> Cause:
        """What groups findings: one per root cause, wherever the crash fell.

        A finding's cause as the judge or the oracle established it; otherwise the rule its message
        states, with numbers, names and the op that revealed it taken out.
        """
        if self.cause is not None:
            return self.cause
        return Cause(self.oracle, How.RULE, rule_of(self.message))

    @property
    def signature(self) -> Signature:
        """What deduplicates findings: (oracle, op kind at the crash, code site).

        The site is the top-level label of the crash point ("xfs_file_fsync" for
        "xfs_file_fsync.commit_record"): one code path, whichever phase of its log push.
        A crash at the end of the run is `end` whatever op came last, so that the
        minimizer may drop trailing ops that played no part.
        """
        if self.crash is not None and self.crash.point == "E":
            return Signature(self.oracle, "end", "")
        return Signature(self.oracle, self.op_kind, top_site(self.site))

    @property
    def signature_text(self) -> str:
        return str(self.signature)


@dataclass
class Stats:
    ops: int = 0
    points: int = 0
    states: int = 0
    distinct: int = 0
    mounts: int = 0
    shared: int = 0
    """Distinct states whose data differ from a judged one of the same metadata only in lines no file
    maps: their verdict is that one's (counted in `distinct`)."""
    recalled: int = 0
    """Distinct states an earlier schedule of the same exploration judged clean with the same image,
    window and history: clean again, not judged (counted in `distinct`)."""
    t_exec: float = 0.0
    t_image: float = 0.0
    t_mount: float = 0.0
    t_oracles: float = 0.0

    def add(self, other: Stats) -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))


@dataclass(frozen=True)
class Verdict:
    findings: tuple[Finding, ...]
    stats: Stats
    notes: tuple[str, ...] = ()
    state_log: tuple[tuple[str, tuple[str, ...]], ...] = ()
    """(state id, sorted messages of its violations) per judged state, with `Options.log_states`."""
    features: frozenset[str] = frozenset()
    """What the run exercised (op results, code-site transitions, crash-point sites), with `Options.features`."""

    @property
    def clean(self) -> bool:
        return not self.findings

    def oracles(self) -> set[str]:
        return {f.oracle.value for f in self.findings}


def filing_key(f: Finding) -> tuple[Signature, Cause | None]:
    """What a run keeps one finding per: its signature, and for a crash its root cause too."""
    return f.signature, (f.root_cause if f.crash is not None else None)


def found_again(findings: Iterable[Finding], signature: Signature | None, cause: Cause | None) -> Finding | None:
    """A reproducer's finding among a re-run's: of its signature, of its own cause when the crash
    site holds several (one per cause), else the signature's first."""
    same = [f for f in findings if f.signature == signature]
    return next((f for f in same if f.root_cause == cause), None) or next(iter(same), None)


class Findings:
    """Findings kept one per signature -- for a crash, one per signature and root cause -- the
    first, or the one whose crash state deviates least. (Per signature alone, a second bug whose
    cause shows at the crash sites of a first one's would not be filed: a copy nothing flushed,
    lost at the fsync where a remap ahead of its copy also shows. A crash-free op's first
    violation per oracle stands for the rest: they follow from it.)"""

    def __init__(self, first_per_signature: bool = True, initial: tuple[Finding, ...] = ()) -> None:
        self.first_per_signature = first_per_signature
        self._by: dict[tuple[Signature, Cause | None], Finding] = {filing_key(f): f for f in initial}

    def add(self, f: Finding) -> None:
        sig = filing_key(f)
        old = self._by.get(sig)
        if (
            old is None
            or (self.first_per_signature is False)
            or (f.crash is not None and old.crash is not None and f.crash.deviations < old.crash.deviations)
        ):
            if old is not None and old.root_cause == f.root_cause:
                f = replace(f, also=_union(f.also, old.also, f.root_cause))
            self._by[sig] = f

    def of(self, sig: Signature) -> list[Finding]:
        """The findings kept under signature `sig`, one per root cause."""
        return [f for (g, _c), f in self._by.items() if g == sig]

    def diverged(self) -> bool:
        """The target already left the reference (a functional finding): later differences follow
        from that first one, so the functional oracle reports only the first diverging op."""
        return any(f.oracle is OracleName.FUNCTIONAL for f in self._by.values())

    def values(self) -> tuple[Finding, ...]:
        return tuple(self._by.values())


def _union(a: tuple[Cause, ...], b: tuple[Cause, ...], own: Cause) -> tuple[Cause, ...]:
    return tuple(sorted({*a, *b} - {own}, key=str))


def first_divergence(findings: tuple[Finding, ...]) -> int | None:
    """The op where a run left the reference (its first crash-free functional finding), if it did:
    crash states after it are judged against a reference the target no longer follows."""
    return min(
        (f.op for f in findings if f.oracle is OracleName.FUNCTIONAL and f.crash is None and f.op >= 0), default=None
    )


def filed(findings: tuple[Finding, ...]) -> tuple[Finding, ...]:
    """The findings a campaign files and a minimizer keeps: none of a crash after the op where the
    run left the reference (a functional finding), nor a mapping incoherence seen after it.

    Those crash states are judged against a reference the target no longer follows, and a mapping
    the diverged target keeps shows what the divergence left: what they show follows from the
    first divergence, which is filed itself (the functional oracle reports only the first
    diverging op for the same reason). Crashes inside the diverging op are kept: they show how it
    went wrong (a torn copy on write whose result is also wrong) -- unless the op returned what
    POSIX does not (a write that should have failed with EFAULT and wrote): the reference has no
    version of what it did to judge them by. `check` still returns them all
    for one schedule: a reproducer, `replay` and `regress` see everything. Each schedule of a
    workload with parallel groups is its own run: its findings follow its own divergence only, so
    `check` exploring schedules keeps of each only what this keeps (merged by signature, its
    divergence may be another schedule's finding)."""
    by_schedule: dict[str | None, list[Finding]] = {}
    for f in findings:
        by_schedule.setdefault(f.schedule, []).append(f)
    diverged = {sid: first_divergence(tuple(fs)) for sid, fs in by_schedule.items()}
    refused = {
        (f.schedule, f.op)
        for f in findings
        if f.oracle is OracleName.FUNCTIONAL and f.crash is None and result_differs(f.message)
    }

    def kept(f: Finding) -> bool:
        at = diverged[f.schedule]
        if at is None:
            return True
        if f.crash is None:
            return f.oracle is not OracleName.MMAP_COHERENCY or f.op <= at
        return f.crash.point != "E" and (f.crash.op < at or (f.crash.op == at and (f.schedule, at) not in refused))

    return tuple(f for f in findings if kept(f))


def link_alike(findings: tuple[Finding, ...]) -> tuple[Finding, ...]:
    """Crash-free findings of different oracles after one op that read the same kind of wrong
    content are one cause seen twice (loads through a mapping and read(2) of one wrong block):
    each names the other's (`Finding.also`), so a campaign files them as one group."""

    def key(f: Finding) -> tuple[int, str] | None:
        c = f.cause
        return (f.op, c.where) if f.crash is None and c is not None and c.how is How.CONTENT else None

    alike: dict[tuple[int, str], set[Cause]] = {}
    for f in findings:
        k = key(f)
        if k is not None and f.cause is not None:
            alike.setdefault(k, set()).add(f.cause)
    out = []
    for f in findings:
        k = key(f)
        if k is not None and f.cause is not None and len(alike[k]) > 1:
            f = replace(f, also=_union(f.also, tuple(alike[k]), f.cause))
        out.append(f)
    return tuple(out)
