"""Oracles: each judges one guarantee, behind one small protocol.

An oracle has a name, the guarantee it checks, and the phase it runs in:
`RUN` oracles see the live target after every op (crash-free); `CRASH`
oracles see a recovered image and the reference model's expectation for that
crash. They return `Violation`s with evidence. To add an oracle, implement
the protocol and pass it to the engine (or `register` it).
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol, TypeGuard, TypeVar, runtime_checkable

import numpy as np

from pmfuzz.errors import PmfuzzError
from pmfuzz.lang.workload import Op
from pmfuzz.reference.expect import Expectation, WordVerdict
from pmfuzz.reference.model import Reference
from pmfuzz.target import Guarantee, MountedFS, Result

__all__ = [
    "OracleName",
    "Phase",
    "Evidence",
    "Violation",
    "WrongRead",
    "ELSEWHERE",
    "GARBAGE",
    "OTHER_DATA",
    "DATA_FOR_ZERO",
    "RunContext",
    "CrashContext",
    "VerdictCache",
    "Oracle",
    "RunOracle",
    "CrashOracle",
    "AnyOracle",
    "is_run_oracle",
    "read_cause",
    "is_crash_oracle",
    "register",
    "default_oracles",
]


class OracleName(enum.StrEnum):
    FUNCTIONAL = "functional"
    MOUNT = "mount"
    STALE_EXPOSURE = "stale-exposure"
    COW_ATOMICITY = "cow-atomicity"
    DURABILITY = "durability"
    ATOMIC_OPS = "atomic-ops"
    TARGET_ERROR = "target-error"
    """The target raised an exception while executing an op (a finding, with its traceback)."""
    MMAP_COHERENCY = "mmap-coherency"
    LAYOUT = "layout"
    DEADLOCK = "deadlock"
    """Every thread of a parallel group blocked on a lock (a finding, with the wait-for cycle)."""


class Phase(enum.StrEnum):
    RUN = "run"
    CRASH = "crash"


@dataclass(frozen=True, slots=True)
class Evidence:
    """Where an oracle saw something wrong: a file range, what was allowed, what was found."""

    file: str
    start: int
    end: int
    found: str
    allowed: str = ""

    def __str__(self) -> str:
        s = f"{self.file}[{self.start}:{self.end}]: {self.found}"
        return s + (f" (allowed: {self.allowed})" if self.allowed else "")


@dataclass(frozen=True, slots=True)
class Violation:
    oracle: OracleName
    message: str
    evidence: tuple[Evidence, ...] = ()
    cause: str = ""
    """What went wrong, in words that do not depend on where or when it showed (`poison for zero`):
    the finding's root cause, when the oracle can tell it from its evidence; empty otherwise."""
    read: WrongRead | None = None
    """For a crash-free read that went wrong: its first wrong word, so that whoever ran the op can
    tell from the device whether the op's stores put it there (an op on another file)."""
    page: tuple[str, int] | None = None
    """For a page-table entry that reaches a block its file no longer has there: the mapping and
    the page's offset in it, so that the run can tell how the entry went stale."""


ELSEWHERE = "an op on another file changed it"
"""The cause of a crash-free wrong read when an op's stores changed a file the op does not name."""

DATA_FOR_ZERO = "data for zero"
"""A crash-free read saw data where zeroes were due."""

OTHER_DATA = "data of another file or offset"
"""A crash-free read saw data written for another file or offset: a block's content from before it was this word's."""

GARBAGE = "garbage"
"""A crash-free read saw poison, an undecodable word or a nonzero partial word at EOF, whatever was due."""


@dataclass(frozen=True, slots=True)
class WrongRead:
    """The first wrong word a crash-free read saw: the file, its offset, what it read and what was due."""

    file: str
    offset: int
    got: bytes
    want: bytes
    via: tuple[str, int] | None = None
    """For a load through a mapping: the mapping and the offset in it. The bytes are the block its
    page maps, which may not be the file's block at that offset (a stale page)."""


@dataclass
class RunContext:
    """After op `index` ran on both the target and the reference, crash-free."""

    index: int
    op: Op
    got: Result
    want: Result
    target: MountedFS
    ref: Reference
    first: int | None = None
    """The first op index this quiescent point follows (a parallel group's first op); None: `index`."""
    memo: dict | None = None
    """What the run oracles keep between the checks of one run (one entry per oracle name); None:
    nothing is kept (a check on its own)."""


class VerdictCache:
    """Per mounted metadata state: each file's words and verdict as first seen.

    Crash states that share metadata differ only in data lines, so a file's verdict is recomputed
    only for the words that differ from the first one; and when the mount can say which words its
    data lines may have moved since its first state (`moved`), only those words are read.
    """

    def __init__(self) -> None:
        self.base: dict[str, tuple[np.ndarray, int, WordVerdict, bool]] = {}
        """Per file: its words, size and verdict as first seen, and whether at the mount's first state."""
        self.first = True
        """The mount's first judged state is being judged (the judge clears it after)."""
        self.moved: Callable[[str, int], np.ndarray | None] | None = None
        """(file, words) -> sorted indices of the words that may differ from the mount's first judged
        state, None when it cannot tell; None: no such knowledge at all."""
        self.beside: dict[str, tuple[np.ndarray, int, WordVerdict]] = {}
        """Per file, its words, size and verdict as another mount judged them against the same
        expectation (the crash point's other metadata states, and earlier points of the same window):
        a file first seen by this mount is judged only where it differs from there, not whole (a 4 MiB
        file costs 50 ms whole)."""


@dataclass
class CrashContext:
    """A recovered image, and what the reference allows for a crash at this point."""

    fs: MountedFS
    expect: Expectation
    cache: dict[str, np.ndarray] = field(default_factory=dict)
    verdicts: VerdictCache | None = None
    _v: dict[str, WordVerdict] = field(default_factory=dict)
    _read_only: dict[str, np.ndarray] = field(default_factory=dict)
    """Per file read in pieces: the only words that may differ from its base."""

    def verdict(self, name: str) -> WordVerdict:
        """Every word of the recovered file `name`, judged against its window (see Expectation.classify)."""
        hit = self._v.get(name)
        if hit is not None:
            return hit
        words = self.words(name)
        size = self.fs.size(name) or 0
        vc = self.verdicts
        base: tuple[np.ndarray, int, WordVerdict, bool] | tuple[np.ndarray, int, WordVerdict] | None = None
        if vc is not None:
            base = vc.base.get(name)
            if base is None and name in vc.beside and vc.beside[name][1] == size:
                base = vc.beside[name]
        if base is not None and base[1] == size and len(base[0]) == len(words):
            some = self._read_only.get(name)
            changed = np.flatnonzero(base[0] != words) if some is None else some[base[0][some] != words[some]]
            if len(changed) == 0:
                hit = base[2]
            else:
                part = self.expect.classify(name, changed, words[changed], size)
                b = base[2]
                if (
                    np.array_equal(part.ok, b.ok[changed])
                    and np.array_equal(part.older, b.older[changed])
                    and np.array_equal(part.stale, b.stale[changed])
                    and np.array_equal(part.lost, b.lost[changed])
                ):
                    hit = b  # other words, the same judgement of each: the oracles' findings are the base's
                else:
                    ok, older, stale, lost = b.ok.copy(), b.older.copy(), b.stale.copy(), b.lost.copy()
                    ok[changed], older[changed], stale[changed], lost[changed] = (
                        part.ok,
                        part.older,
                        part.stale,
                        part.lost,
                    )
                    hit = WordVerdict(ok, older, stale, lost)
            if vc is not None and name not in vc.base:
                if len(changed) == 0:
                    words = base[0]  # the same content: one shared copy, not one per mount
                words.setflags(write=False)
                vc.base[name] = (words, size, hit, vc.first)
                vc.beside[name] = (words, size, hit)
        else:
            hit, kept = self.expect.classify_file(name, words, size)
            if vc is not None:
                vc.base[name] = (kept, size, hit, vc.first)
                vc.beside[name] = (kept, size, hit)
        self._v[name] = hit
        return hit

    def words(self, name: str) -> np.ndarray:
        """The recovered file's bytes as uint64 words (zero-padded), read once per context."""
        hit = self.cache.get(name)
        if hit is None:
            size = self.fs.size(name) or 0
            hit = self._words_moved(name, size)
            if hit is None:
                hit = _as_words(self.fs.read(name, 0, size))
            self.cache[name] = hit
        return hit

    def _words_moved(self, name: str, size: int) -> np.ndarray | None:
        """The file's words as at the mount's first judged state, with only the words the mount says
        may have moved since read again through the file system; None when that is not known, or
        not cheaper (past a quarter of the file, reading it whole costs less)."""
        vc = self.verdicts
        if vc is None or vc.moved is None:
            return None
        base = vc.base.get(name)
        if base is None or not base[3] or base[1] != size:
            return None
        n = len(base[0])
        some = vc.moved(name, n)
        if some is None or len(some) * 4 > n:
            return None
        kept = base[0]
        parts = []
        for run in np.split(some, np.flatnonzero(np.diff(some) != 1) + 1) if len(some) else ():
            lo, hi = int(run[0]), int(run[-1]) + 1
            part = _as_words(self.fs.read(name, lo * 8, min(hi * 8, size) - lo * 8))
            parts.append(part if len(part) == hi - lo else np.pad(part, (0, hi - lo - len(part))))
        new = np.concatenate(parts) if parts else kept[:0]
        differ = new != kept[some]
        self._read_only[name] = some[differ]
        if not differ.any():
            return kept  # read-only to the oracles: shared, not copied
        words = kept.copy()
        words[some] = new
        return words


def _as_words(raw: bytes) -> np.ndarray:
    """Bytes as uint64 words, the last one zero-padded; read-only (a view of `raw` when whole words)."""
    if len(raw) % 8 == 0:
        return np.frombuffer(raw, dtype="<u8")
    buf = np.zeros(-(-len(raw) // 8) * 8, dtype=np.uint8)
    buf[: len(raw)] = np.frombuffer(raw, dtype=np.uint8)
    buf.setflags(write=False)
    return buf.view("<u8")


Ctx = TypeVar("Ctx", contravariant=True)


@runtime_checkable
class Oracle(Protocol[Ctx]):
    """One check over a run (`Phase.RUN`, given a `RunContext`) or a recovered crash state (`Phase.CRASH`,
    given a `CrashContext`).

    `metadata_only` says the check reads only names, sizes and fsck, never file data: the judge then
    runs it once per metadata state and shares its verdict with the states that differ only in data.
    """

    name: OracleName
    guarantee: Guarantee
    phase: Phase
    metadata_only: bool

    def check(self, ctx: Ctx) -> list[Violation]: ...


RunOracle = Oracle[RunContext]
CrashOracle = Oracle[CrashContext]
AnyOracle = RunOracle | CrashOracle


def is_run_oracle(o: AnyOracle) -> TypeGuard[RunOracle]:
    """Its `phase` says which context an oracle takes; a type checker sees that only through this guard."""
    return o.phase is Phase.RUN


def is_crash_oracle(o: AnyOracle) -> TypeGuard[CrashOracle]:
    """Its `phase` says which context an oracle takes; a type checker sees that only through this guard."""
    return o.phase is Phase.CRASH


_EXTRA: list[AnyOracle] = []


def register(oracle: AnyOracle) -> None:
    """Add an oracle to every run from now on."""
    if not isinstance(oracle, Oracle):
        raise PmfuzzError(f"not an oracle (needs name, guarantee, phase, metadata_only and check): {oracle!r}")
    _EXTRA.append(oracle)


def default_oracles() -> Sequence[AnyOracle]:
    from .atomic_ops import AtomicOps
    from .cow_atomicity import CowAtomicity
    from .durability import Durability
    from .functional import Functional
    from .layout import Layout
    from .mmap_coherency import MmapCoherency
    from .mount import Mount
    from .stale_exposure import StaleExposure

    return [
        Functional(),
        MmapCoherency(),
        Layout(),
        Mount(),
        StaleExposure(),
        CowAtomicity(),
        Durability(),
        AtomicOps(),
        *_EXTRA,
    ]


def read_cause(read: WrongRead, by: Sequence[Op], ref: Reference) -> str:
    """The cause of a wrong crash-free read: the first of `by` (the ops whose stores reached the
    file's blocks, latest first) that does not name the file changed another file, named by the
    kernel path it took; else what was read for what was due."""
    from ._words import content_cause, elsewhere_cause

    for op in by:
        text = elsewhere_cause(op, ref, read.file)
        if text:
            return text
    return content_cause(read.got, read.want)
