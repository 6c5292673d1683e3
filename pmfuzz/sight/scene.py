"""What a finding's picture shows, computed without matplotlib: device regions, lines in flight, bad words.

A finding carries its crash state's id and its oracles' evidence (file
ranges), but not the recovered image nor where the file's blocks live on the
device. So the scene re-runs the reproducer's workload, rebuilds that one
crash state (as `pmfuzz replay` does), mounts it, and reads back the words the
oracles flagged; every word is then classified from its self-describing value.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from oracles import CrashContext, Evidence, OracleName

from ..errors import PMemError, PmfuzzError
from ..execution.run import Run
from ..judging.engine import Finding, Options, Verdict, check, execute
from ..judging.repro import Reproducer
from ..lang.data import WordKind, decode, decode_words, describe
from ..pmem import LINE, CrashState, PMem
from ..target import MountedFS, Target, declared_regions, file_blocks, make_target, metadata_ranges

__all__ = [
    "LineFate",
    "BadKind",
    "Region",
    "InFlightLine",
    "BadRun",
    "FileBlock",
    "FileView",
    "Scene",
    "build_scene",
    "pick_finding",
    "device_regions",
]

BLOCK = 4096
MAX_FILES = 6
NO_CRASH = "-"


class LineFate(enum.StrEnum):
    """What a crash did with one cache line's in-flight stores."""

    KEPT = "kept"
    DROPPED = "dropped"
    PARTIAL = "partial"


class BadKind(enum.StrEnum):
    """What was found in words that broke an oracle, from their self-describing values."""

    POISON = "poison"
    """Formatted media nobody wrote (stale exposure)."""
    FOREIGN = "foreign"
    """Another file's data (stale exposure)."""
    MISPLACED = "misplaced"
    """This file's data, from another offset (stale exposure)."""
    NEVER_HELD = "never-held"
    """A value this file never held here, not otherwise recognised."""
    OLDER = "older"
    """An older value than the one made durable (durability)."""
    LOST = "lost"
    """Zero where durable data was (durability)."""
    MIXED_COW = "mixed-cow"
    """A copy-on-write block that is neither its before- nor its after-version (COW atomicity)."""

    @property
    def label(self) -> str:
        return _BAD_LABELS[self]


_BAD_LABELS = {
    BadKind.POISON: "poison (never-written media)",
    BadKind.FOREIGN: "another file's data",
    BadKind.MISPLACED: "this file's data from another offset",
    BadKind.NEVER_HELD: "a value it never held",
    BadKind.OLDER: "older value than durable",
    BadKind.LOST: "zero where durable data was",
    BadKind.MIXED_COW: "mixed COW block",
}


@dataclass(frozen=True)
class Region:
    """A named byte range of the device (superblock, log, data blocks...)."""

    name: str
    start: int
    end: int


@dataclass(frozen=True)
class InFlightLine:
    """One cache line with stores in flight at the crash point, and what the crash kept of them."""

    line: int
    group: str
    fate: LineFate
    kept: int
    total: int
    sites: tuple[str, ...]
    ops: tuple[int, ...]

    @property
    def addr(self) -> int:
        return self.line * LINE


@dataclass(frozen=True)
class BadRun:
    """Consecutive words of one file that broke an oracle the same way."""

    file: str
    start: int
    end: int
    kind: BadKind
    oracle: OracleName
    found: str
    device: tuple[tuple[int, int], ...] = ()
    """Device byte ranges [start, end) that back the run, where the target's block map is known."""


@dataclass(frozen=True)
class FileBlock:
    """One file block's place on the device (None: a hole)."""

    offset: int
    device: int | None
    unwritten: bool = False


@dataclass(frozen=True)
class FileView:
    name: str
    size: int
    blocks: tuple[FileBlock, ...]


@dataclass(frozen=True)
class Scene:
    """Everything a finding's picture draws."""

    oracle: OracleName
    signature: str
    message: str
    state: str
    cause: str
    """The finding's root cause (`oracle/how/where`): what the headline names."""
    crash_text: str
    target: str
    device_size: int
    regions: tuple[Region, ...]
    lines: tuple[InFlightLine, ...]
    bad: tuple[BadRun, ...]
    files: tuple[FileView, ...]
    fsck_blocks: tuple[int, ...]
    notes: tuple[str, ...]
    """One line per finding of the state: `[oracle] message`, then its evidence."""
    ops: tuple[str, ...] = ()
    """The workload's ops as text, by index: the headline quotes the op of the store that matters."""

    @property
    def culprit(self) -> int | None:
        """The in-flight line the finding hinges on: the first line the crash did not keep in full that
        backs a wrong word (its lost store is what the cause names); None if no such line is known."""
        for ln in sorted(self.lines, key=lambda x: x.line):
            if ln.fate is LineFate.KEPT:
                continue
            a, e = ln.addr, ln.addr + LINE
            if any(lo < e and a < hi for run in self.bad for lo, hi in run.device):
                return ln.line
        return None

    @property
    def crashed(self) -> bool:
        """False for findings made while the ops ran (functional, target errors): no crash state to draw."""
        return self.state != NO_CRASH

    def bad_kinds(self) -> list[BadKind]:
        return sorted({b.kind for b in self.bad}, key=list(BadKind).index)


def device_regions(target: Target, size: int) -> tuple[Region, ...]:
    """The device's named regions: a target's own `regions(size)` (`HasRegions`), or metadata vs data."""
    own = declared_regions(target, size)
    if own is not None:
        return tuple(Region(n, a, b) for n, a, b in own)
    meta = metadata_ranges(target, size)
    if not meta:
        return (Region("device", 0, size),)
    out: list[Region] = []
    pos = 0
    for a, b in sorted(meta):
        if a > pos:
            out.append(Region("data", pos, a))
        out.append(Region("metadata", a, b))
        pos = b
    if pos < size:
        out.append(Region("data", pos, size))
    return tuple(out)


def pick_finding(v: Verdict, r: Reproducer | None = None) -> Finding:
    """The finding a reproducer is about: its signature, else its expected oracle, else the first."""
    if v.clean:
        raise PmfuzzError("the reproducer gives no finding: there is nothing to picture")
    fs = sorted(v.findings, key=lambda f: f.signature)
    if r is not None and r.signature:
        want = r.signature.with_top_site()
        for f in fs:
            if f.signature == want:
                return f
    if r is not None and r.expect:
        for f in fs:
            if f.oracle.value in r.expect:
                return f
    return fs[0]


def _execute(r: Reproducer, f: Finding) -> Run:
    """The reproducer's workload executed as the engine executes it (under the finding's schedule, if any)."""
    opts = Options(domain=r.domain, device_size=r.device_size, eadr_points=r.eadr_points)
    chooser = None
    schedule = f.schedule or r.schedule
    if schedule is not None:
        from ..execution.interleave import Chooser, Schedule

        chooser = Chooser(Schedule.parse(schedule))
    return execute(make_target(r.target), r.workload, opts, chooser)


def _lines(state: CrashState) -> tuple[InFlightLine, ...]:
    events = state.point.timeline.events
    out = []
    for g, c in zip(state.point.groups, state.choices, strict=True):
        kept = set(g.kept(c))
        per: dict[int, list[bool]] = {}
        for i, u in enumerate(g.units):
            per.setdefault(u.addr // LINE, []).append(i in kept)
        for ln in g.lines:
            flags = per.get(ln, [])
            seqs = sorted({p.seq for p in g.spec.pieces if p.line == ln})
            sites = tuple(dict.fromkeys(events[s].site or "-" for s in seqs))
            ops = tuple(sorted({events[s].op for s in seqs}))
            k = sum(flags)
            fate = LineFate.KEPT if k == len(flags) else LineFate.DROPPED if k == 0 else LineFate.PARTIAL
            out.append(InFlightLine(ln, g.name, fate, k, len(flags), sites, ops))
    return tuple(sorted(out, key=lambda x: x.line))


def _file_view(rfs: MountedFS, name: str, size: int) -> FileView:
    """Where each file block lives (`MapsFileBlocks`); empty for targets that do not say."""
    blocks = [FileBlock(off, dev, unwritten) for off, dev, unwritten in file_blocks(rfs, name, size) or ()]
    return FileView(name, size, tuple(blocks))


def _device_ranges(view: FileView, words: np.ndarray, start: int, end: int) -> tuple[tuple[int, int], ...]:
    """The device bytes behind file bytes [start, end): from the block map, else from poison's own address."""
    out: list[tuple[int, int]] = []
    if view.blocks:
        by_off = {b.offset: b for b in view.blocks}
        pos = start
        while pos < end:
            blk = pos - pos % BLOCK
            stop = min(end, blk + BLOCK)
            b = by_off.get(blk)
            if b is not None and b.device is not None:
                out.append((b.device + pos - blk, b.device + stop - blk))
            pos = stop
    else:
        d = decode(int(words[start // 8])) if start // 8 < len(words) else None
        if d is not None and d.kind is WordKind.POISON:
            out.append((d.offset, d.offset + end - start))
    merged: list[tuple[int, int]] = []
    for lo, hi in out:
        if merged and merged[-1][1] == lo:
            merged[-1] = (merged[-1][0], hi)
        else:
            merged.append((lo, hi))
    return tuple(merged)


def _stale_kinds(words: np.ndarray, idx: np.ndarray, incarnation: int | None) -> np.ndarray:
    """What each stale word (found at word index `idx`) shows, as an index into BadKind."""
    kinds = list(BadKind)
    kind = decode_words(words)
    out = np.full(len(words), kinds.index(BadKind.NEVER_HELD), dtype=np.int8)
    out[kind == 2] = kinds.index(BadKind.POISON)
    data = kind == 1
    file_id = (words >> np.uint64(40)) & np.uint64(0xFFF)
    offset_word = words & np.uint64((1 << 28) - 1)
    here = idx.astype(np.uint64)
    other = data if incarnation is None else data & (file_id != np.uint64(incarnation))
    out[other] = kinds.index(BadKind.FOREIGN)
    out[data & ~other & (offset_word != here)] = kinds.index(BadKind.MISPLACED)
    return out


def _runs(codes: np.ndarray) -> list[tuple[int, int, int]]:
    """(start, end, code) runs of equal codes."""
    if len(codes) == 0:
        return []
    brk = np.flatnonzero(np.diff(codes)) + 1
    starts = [0, *brk.tolist()]
    ends = [*brk.tolist(), len(codes)]
    return [(a, b, int(codes[a])) for a, b in zip(starts, ends, strict=True)]


def _crash_text(f: Finding) -> str:
    c = f.crash
    if c is None:
        return f"no crash: during op {f.op} `{f.op_text}`" if f.op >= 0 else "no crash"
    op = f"op {c.op} `{c.op_text}`" if c.op >= 0 else "before the first op"
    if c.point == "E":
        return f"crash at the end of the run, after {op}"
    return f"crash just before {c.event} ({c.point}) in {op}, at {c.site or '-'}"


def build_scene(r: Reproducer, verdict: Verdict | None = None, finding: Finding | None = None) -> Scene:
    """The picture's content for a reproducer's finding (re-running its crash state when needed).

    `verdict` is what `pmfuzz replay` computed (computed here if None); `finding` is the one the
    title names (by default the reproducer's own, see `pick_finding`). Every finding of the same
    crash state contributes its flagged words.
    """
    if verdict is None:
        opts = Options(
            domain=r.domain, device_size=r.device_size, crash=r.crash, eadr_points=r.eadr_points, schedule=r.schedule
        )
        verdict = check(make_target(r.target), r.workload, opts)
    f = finding or pick_finding(verdict, r)
    state_id = f.crash.state if f.crash is not None else None
    same = [g for g in verdict.findings if (g.crash.state if g.crash else None) == state_id]
    run = _execute(r, f)
    lines: tuple[InFlightLine, ...] = ()
    ctx: CrashContext | None = None
    unbuilt: list[str] = []
    state: CrashState | None = None
    if state_id is not None:
        try:
            state = run.crash_state(state_id) if run.ran else None
        except PMemError:
            state = None
        if state is None:
            unbuilt.append(
                f"(crash state {state_id} could not be rebuilt by a run of the ops: its lines and words are not drawn)"
            )
    if state is not None:
        lines = _lines(state)
        try:
            rfs = run.target.mount(PMem.from_image(state.image(), r.domain, record=False))
        except Exception:  # the image does not mount (a `mount` finding): no file words to show
            pass
        else:
            ctx = CrashContext(rfs, run.expect(state.point))
    op = f.crash.op if f.crash is not None else f.op
    inc = run.incarnations(op) if run.ran else {}
    bad: list[BadRun] = []
    views: dict[str, FileView] = {}
    fsck_blocks: set[int] = set()
    notes: list[str] = []
    for g in sorted(same, key=lambda g: (g is not f, g.signature)):
        notes.append(f"[{g.oracle.value}] {g.message}")
        notes += [f"    {e}" for e in g.evidence]
        if g.oracle is OracleName.MOUNT:
            fsck_blocks.update(int(m) for m in re.findall(r"\bblock (\d+)", g.message))
        if ctx is None:
            continue
        present = set(ctx.fs.files())
        for name in dict.fromkeys(e.file for e in g.evidence if isinstance(e, Evidence) and e.file in present):
            view = views.get(name)
            if view is None:
                view = views[name] = _file_view(ctx.fs, name, ctx.fs.size(name) or 0)
            ev = [e for e in g.evidence if e.file == name]
            bad += _bad_runs(ctx, name, g.oracle, ev, inc.get(name), view)
    return Scene(
        oracle=f.oracle,
        signature=f.signature_text,
        cause=str(f.root_cause),
        message=f.message,
        state=str(state_id) if state_id is not None else NO_CRASH,
        crash_text=_crash_text(f),
        target=str(r.target),
        device_size=r.device_size,
        regions=device_regions(run.target, r.device_size),
        lines=lines,
        bad=tuple(bad),
        files=_files(ctx, views, bad),
        fsck_blocks=tuple(sorted(fsck_blocks)),
        notes=(*notes, *unbuilt),
        ops=tuple(map(str, run.ops)),
    )


def _files(ctx: CrashContext | None, views: dict[str, FileView], bad: list[BadRun]) -> tuple[FileView, ...]:
    """The recovered files to draw: those with bad words first, then the others, at most `MAX_FILES`."""
    if ctx is None:
        return ()
    flagged = {b.file for b in bad}
    names = sorted(ctx.fs.files(), key=lambda n: (n not in flagged, n))[:MAX_FILES]
    out = []
    for n in names:
        view = views.get(n)
        out.append(view if view is not None else _file_view(ctx.fs, n, ctx.fs.size(n) or 0))
    return tuple(out)


def _bad_runs(
    ctx: CrashContext,
    name: str,
    oracle: OracleName,
    evidence: Sequence[Evidence],
    incarnation: int | None,
    view: FileView,
) -> list[BadRun]:
    """The words of `name` that broke `oracle`, in runs of one kind (all of them, not only the first evidence)."""
    words = ctx.words(name)
    kinds = list(BadKind)
    codes = np.full(len(words), -1, dtype=np.int8)
    if oracle is OracleName.COW_ATOMICITY:
        for e in evidence:
            codes[e.start // 8 : -(-e.end // 8)] = kinds.index(BadKind.MIXED_COW)
    else:
        v = ctx.verdict(name)
        if oracle is OracleName.STALE_EXPOSURE:
            idx = np.flatnonzero(v.stale)
            if len(idx):
                codes[idx] = _stale_kinds(words[idx], idx, incarnation)
        elif oracle is OracleName.DURABILITY:
            codes[v.older] = kinds.index(BadKind.OLDER)
            codes[v.lost] = kinds.index(BadKind.LOST)
    size = ctx.fs.size(name) or 0
    out = []
    for a, b, code in _runs(codes):
        if code < 0:
            continue
        start, end = a * 8, min(b * 8, size)
        raw = words[a:b].astype("<u8").tobytes()[: end - start]
        out.append(
            BadRun(
                name,
                start,
                end,
                kinds[code],
                oracle,
                describe(raw, base=start),
                _device_ranges(view, words, start, end),
            )
        )
    return out
