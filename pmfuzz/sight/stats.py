"""A campaign's history, read back from `stats.jsonl` and `findings.json` (no matplotlib needed).

`pmfuzz run` appends one JSON line of cumulative statistics every few
seconds; a resumed campaign appends to the same file with its clock
restarted, so the lines are split into sessions and laid end to end. The
per-finding times come from the crash directory's `findings.json`.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from ..errors import ParseError, PmfuzzError, clip
from ..signature import oracle_of

__all__ = ["StatsRecord", "FindingEvent", "Campaign", "load_campaign", "STATS_FIELDS"]

STATS_FIELDS = ("seconds", "execs", "states", "corpus", "coverage", "findings")
"""The fields every stats line must carry (numbers); `oracles` and `signatures` are optional lists."""


@dataclass(frozen=True)
class StatsRecord:
    """One stats line, with its time on the campaign's clock (sessions laid end to end)."""

    seconds: float
    execs: int
    states: int
    corpus: int
    coverage: int
    findings: int
    oracles: tuple[str, ...]
    session: int
    time: float
    signatures: tuple[str, ...] | None = None
    seeds_left: int | None = None
    """Corpus entries not yet replayed at this line (None: written before campaigns said so)."""
    rss_mib: float | None = None
    """The campaign process's resident memory at this line (None: not recorded)."""


@dataclass(frozen=True)
class FindingEvent:
    """A unique finding's first sighting, on the campaign's clock."""

    time: float
    signature: str
    oracle: str


@dataclass(frozen=True)
class Campaign:
    source: Path
    records: tuple[StatsRecord, ...]
    findings: tuple[FindingEvent, ...]
    session_starts: tuple[float, ...]

    @property
    def duration(self) -> float:
        return self.records[-1].time

    def rates(self) -> tuple[list[float], list[float]]:
        """Execs/s and crash states/s over each interval between stats lines (within its session)."""
        eps, sps = [], []
        prev: StatsRecord | None = None
        for r in self.records:
            if prev is None or prev.session != r.session:
                dt, de, ds = r.seconds, r.execs, r.states
            else:
                dt, de, ds = r.seconds - prev.seconds, r.execs - prev.execs, r.states - prev.states
            eps.append(de / dt if dt > 0 else 0.0)
            sps.append(ds / dt if dt > 0 else 0.0)
            prev = r
        return eps, sps


def _number(rec: dict, key: str, lineno: int, source: str) -> float:
    v = rec.get(key)
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) or v < 0:
        got = "missing" if key not in rec else repr(v)
        raise ParseError(f"stats field {key!r} must be a non-negative number, got {got}", line=lineno, source=source)
    return v


def _strings(rec: dict, key: str, lineno: int, source: str) -> tuple[str, ...] | None:
    v = rec.get(key)
    if v is None:
        return None
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise ParseError(f"stats field {key!r} must be a list of strings, got {clip(v)}", line=lineno, source=source)
    return tuple(v)


def _read_records(path: Path) -> list[StatsRecord]:
    src = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise PmfuzzError(f"cannot read stats file {path}: {e.strerror}") from None
    except UnicodeDecodeError:
        raise PmfuzzError(f"{path} is not a text file (expected the JSON lines `pmfuzz run` writes)") from None
    out: list[StatsRecord] = []
    session, offset, last = 0, 0.0, None
    lines = text.splitlines()
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except (ValueError, RecursionError) as e:
            if lineno == len(lines) and not text.endswith("\n"):
                break  # the last line torn by a kill in mid-write: everything before it stands
            col = e.colno if isinstance(e, json.JSONDecodeError) else None
            why = e.msg if isinstance(e, json.JSONDecodeError) else type(e).__name__
            raise ParseError(f"not JSON: {why}", line=lineno, column=col, source=src) from None
        if not isinstance(rec, dict):
            raise ParseError(f"expected a JSON object, got {type(rec).__name__}", line=lineno, source=src)
        nums = {k: _number(rec, k, lineno, src) for k in STATS_FIELDS}
        if last is not None and nums["seconds"] < last.seconds:
            session += 1
            offset = last.time
        r = StatsRecord(
            seconds=float(nums["seconds"]),
            execs=int(nums["execs"]),
            states=int(nums["states"]),
            corpus=int(nums["corpus"]),
            coverage=int(nums["coverage"]),
            findings=int(nums["findings"]),
            oracles=_strings(rec, "oracles", lineno, src) or (),
            session=session,
            time=offset + float(nums["seconds"]),
            signatures=_strings(rec, "signatures", lineno, src),
            seeds_left=int(_number(rec, "seeds_left", lineno, src)) if "seeds_left" in rec else None,
            rss_mib=float(_number(rec, "rss_mib", lineno, src)) if "rss_mib" in rec else None,
        )
        out.append(r)
        last = r
    if not out:
        raise PmfuzzError(f"stats file {path} has no statistics lines (is the campaign still starting?)")
    return out


def _read_index(path: Path) -> dict[str, dict]:
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise PmfuzzError(f"cannot read the findings index {path}: {e}") from None
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise PmfuzzError(f"{path} is not a findings index (expected an object of root cause -> entry)")
    return data


def _events(records: list[StatsRecord], index: dict[str, dict]) -> list[FindingEvent]:
    """Each finding's first sighting: exact from the index in a single-session campaign or when stats
    lines list signatures; otherwise placed by the session in which the findings count rose."""
    starts = _session_starts(records)
    ends = [max(r.seconds for r in records if r.session == s) for s in range(len(starts))]
    seen_in: dict[str, int] = {}
    for r in records:
        for sig in r.signatures or ():
            seen_in.setdefault(sig, r.session)
    before = [0] * len(starts)
    for s in range(1, len(starts)):
        before[s] = max(r.findings for r in records if r.session == s - 1)
    quota = [max(0, max(r.findings for r in records if r.session == s) - before[s]) for s in range(len(starts))]
    pending = sorted(
        (e.get("first_seconds", 0.0), sig)
        for sig, e in index.items()
        if isinstance(e.get("first_seconds"), int | float)
    )
    out = []
    for first, sig in pending:
        sess = seen_in.get(sig)
        if sess is None:
            sess = next((k for k in range(len(starts)) if quota[k] > 0 and first <= ends[k] + 1), len(starts) - 1)
            quota[sess] = max(0, quota[sess] - 1)
        out.append(FindingEvent(starts[sess] + min(float(first), ends[sess]), sig, oracle_of(sig)))
    if not index:
        prev_count = 0
        prev_oracles: set[str] = set()
        for r in records:
            if r.findings > prev_count:
                fresh = sorted(set(r.oracles) - prev_oracles) or sorted(r.oracles)[-1:] or ["?"]
                for k in range(r.findings - prev_count):
                    oracle = fresh[min(k, len(fresh) - 1)]
                    out.append(FindingEvent(r.time, f"{oracle} (#{prev_count + k + 1})", oracle))
            prev_count, prev_oracles = r.findings, set(r.oracles)
    return sorted(out, key=lambda e: (e.time, e.signature))


def _session_starts(records: list[StatsRecord]) -> list[float]:
    starts: dict[int, float] = {}
    for r in records:
        starts.setdefault(r.session, r.time - r.seconds)
    return [starts[s] for s in sorted(starts)]


def load_campaign(path: str | Path) -> Campaign:
    """Read a campaign's stats (a `stats.jsonl`, or the crash directory holding it) and its findings index."""
    p = Path(path)
    if p.is_dir():
        p = p / "stats.jsonl"
    if not p.exists():
        raise PmfuzzError(f"no stats file at {p} (`pmfuzz run --crashes DIR` writes DIR/stats.jsonl)")
    records = _read_records(p)
    index = _read_index(p.parent / "findings.json")
    return Campaign(p, tuple(records), tuple(_events(records, index)), tuple(_session_starts(records)))
