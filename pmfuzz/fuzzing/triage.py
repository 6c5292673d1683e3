"""`pmfuzz triage CRASHES`: one line per root cause of a campaign's findings, not one per crash site.

A campaign files each finding under its root cause (`Finding.root_cause`) and counts its
sightings in findings.json. Triage reads that index and the reproducers beside it; a reproducer
written by an older version names only its signature, so it is replayed (its one crash state,
on its own target) to learn its cause. Findings of one cause are one group: its count, when it
was first and last seen, the shortest reproducer, and the crash sites it was seen at.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..errors import PmfuzzError
from ..judging.repro import Reproducer
from ..signature import oracle_of
from ..verdict import DEFAULT_OP_TIMEOUT
from .replaying import load_reproducer, run_reproducer

__all__ = ["Group", "triage", "format_triage", "triage_json"]


@dataclass(frozen=True)
class Group:
    """One root cause and every finding filed under it."""

    cause: str
    oracle: str
    count: int
    first_seconds: float | None
    first_exec: int | None
    last_seconds: float | None
    last_exec: int | None
    reproducer: str
    """The shortest reproducer of the group (fewest ops), a file name in the directory."""
    ops: int
    files: tuple[str, ...]
    signatures: tuple[str, ...]
    """The crash sites (`oracle:op:site`) the cause was seen at."""
    also: tuple[str, ...] = ()
    """Causes filed under this one: other oracles' view of the same store or word (`Finding.also`)."""


@dataclass
class _Acc:
    count: int = 0
    first: tuple[float, int] | None = None
    last: tuple[float, int] | None = None
    best: tuple[int, str] | None = None
    files: list[str] = field(default_factory=list)
    sigs: set[str] = field(default_factory=set)
    also: set[str] = field(default_factory=set)


def _index(directory: Path, notes: list[str]) -> dict[str, dict]:
    path = directory / "findings.json"
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError, OSError) as e:
        notes.append(f"findings.json not read ({type(e).__name__}): counts are one per reproducer")
        return {}
    if not isinstance(data, dict):
        notes.append("findings.json is not an object: counts are one per reproducer")
        return {}
    return {k: v for k, v in data.items() if isinstance(k, str) and isinstance(v, dict)}


def _when(entry: dict, which: str) -> tuple[float, int] | None:
    """(seconds, exec) of an index entry's first or last sighting; None if the index does not say."""
    s, x = entry.get(f"{which}_seconds"), entry.get(f"{which}_exec")
    if not isinstance(s, (int, float)) or isinstance(s, bool):
        return None
    return float(s), x if isinstance(x, int) else -1


def _cause_by_replay(r: Reproducer, op_timeout: float | None) -> str | None:
    """The cause of an older reproducer's finding: its one crash state replayed on its own target."""
    v = run_reproducer(r, op_timeout=op_timeout)
    for f in v.findings:
        if r.signature is None or f.signature == r.signature:
            return str(f.root_cause)
    return None


def triage(
    directory: Path, *, replay: bool = True, op_timeout: float | None = DEFAULT_OP_TIMEOUT
) -> tuple[list[Group], list[str]]:
    """The root causes of the findings in a crashes directory, first seen first; and notes on what was skipped."""
    if not directory.is_dir():
        raise PmfuzzError(f"not a directory: {directory}")
    notes: list[str] = []
    index = _index(directory, notes)
    by_file = {str(e.get("file")): (k, e) for k, e in index.items() if e.get("file")}
    groups: dict[str, _Acc] = {}
    for path in sorted(directory.glob("*.pmfuzz")):
        try:
            r = load_reproducer(str(path))
        except PmfuzzError as e:
            notes.append(f"{path.name}: skipped, {e}")
            continue
        key_in_index, entry = by_file.get(path.name, ("", {}))
        cause = str(r.cause) if r.cause else None
        if cause is None and replay:
            try:
                cause = _cause_by_replay(r, op_timeout)
                if cause is None:
                    notes.append(f"{path.name}: its finding did not reproduce; grouped by its signature")
            except PmfuzzError as e:
                notes.append(f"{path.name}: not replayed ({e}); grouped by its signature")
        cause = cause or (str(r.signature) if r.signature else key_in_index or path.stem)
        acc = groups.setdefault(cause, _Acc())
        count = entry.get("count", 1)
        acc.count += count if isinstance(count, int) and count > 0 else 1
        first = _when(entry, "first")
        last = _when(entry, "last") or first
        if first is not None:
            acc.first = min(acc.first or first, first)
        if last is not None:
            acc.last = max(acc.last or last, last)
        cand = (len(r.workload), path.name)
        acc.best = min(acc.best or cand, cand)
        acc.files.append(path.name)
        acc.sigs.update(s for s in entry.get("signatures", ()) if isinstance(s, str))
        if r.signature is not None:
            acc.sigs.add(str(r.signature))
        linked = entry.get("also")
        if isinstance(linked, list):
            acc.also.update(c for c in linked if isinstance(c, str))
    out = []
    for cause, a in groups.items():
        assert a.best is not None
        out.append(
            Group(
                cause,
                oracle_of(cause),
                a.count,
                a.first[0] if a.first else None,
                a.first[1] if a.first and a.first[1] >= 0 else None,
                a.last[0] if a.last else None,
                a.last[1] if a.last and a.last[1] >= 0 else None,
                a.best[1],
                a.best[0],
                tuple(a.files),
                tuple(sorted(a.sigs)),
                tuple(sorted(a.also - {cause})),
            )
        )
    out.sort(key=lambda g: (g.first_seconds is None, g.first_seconds or 0.0, g.cause))
    return out, notes


def _secs(x: float | None) -> str:
    return "-" if x is None else f"{x:.1f}"


def format_triage(groups: list[Group], notes: list[str], directory: Path) -> str:
    files = sum(len(g.files) for g in groups)
    lines = [f"{len(groups)} root cause(s) in {directory}/ ({files} reproducer(s))"]
    if groups:
        width = max(len(g.cause) for g in groups)
        lines.append(
            f"{'cause':<{width}}  {'oracle':<15} {'count':>6} {'first s':>8} {'last s':>8} {'ops':>4}  shortest"
        )
        for g in groups:
            lines.append(
                f"{g.cause:<{width}}  {g.oracle:<15} {g.count:>6} {_secs(g.first_seconds):>8} "
                f"{_secs(g.last_seconds):>8} {g.ops:>4}  {g.reproducer}"
                + (f"  ({len(g.signatures)} crash sites)" if len(g.signatures) > 1 else "")
                + (f"  (also seen as {', '.join(g.also)})" if g.also else "")
            )
    lines += [f"note: {n}" for n in notes]
    return "\n".join(lines) + "\n"


def triage_json(groups: list[Group], notes: list[str]) -> str:
    return json.dumps({"causes": [asdict(g) for g in groups], "notes": notes}, indent=1) + "\n"
