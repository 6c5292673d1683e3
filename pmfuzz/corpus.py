"""The campaign's directories: the corpus of interesting workloads, and the unique findings.

    crashes/
      <signature>.pmfuzz     minimized reproducer (with its `expect:` line)
      <signature>.txt        human report
      findings.json          per signature: count, first seen (seconds, exec)
      stats.jsonl            one line of campaign statistics every few seconds
      corpus/                workloads that reached new coverage (reloaded on resume)

Every file is written atomically (a temporary file, then rename), so a hard
kill never leaves a half-written reproducer and never loses one already written.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from .errors import PmfuzzError
from .repro import parse_reproducer
from .workload import Workload, format_workload

__all__ = ["atomic_write", "CrashDir", "CorpusDir", "slug"]


def atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def slug(signature: str) -> str:
    """A file name for a signature: readable, and unique by a short hash."""
    base = re.sub(r"[^A-Za-z0-9_.-]+", "_", signature).strip("_")[:80]
    return f"{base}-{hashlib.sha1(signature.encode()).hexdigest()[:8]}"


@dataclass
class CrashDir:
    path: Path
    counts: dict[str, dict] = field(default_factory=dict)

    @classmethod
    def open(cls, path: Path) -> CrashDir:
        if path.exists() and not path.is_dir():
            raise PmfuzzError(f"crashes directory {path} exists and is not a directory")
        path.mkdir(parents=True, exist_ok=True)
        d = cls(path)
        idx = path / "findings.json"
        if idx.exists():
            try:
                d.counts = json.loads(idx.read_text())
            except (ValueError, OSError):
                d.counts = {}
        for f in path.glob("*.pmfuzz"):
            try:
                r = parse_reproducer(f.read_text(), source=str(f))
            except PmfuzzError:
                continue
            if r.signature and r.signature not in d.counts:
                d.counts[r.signature] = {"count": 1, "file": f.name}
        return d

    def known(self, signature: str) -> bool:
        return signature in self.counts

    def record(self, signature: str, reproducer: str, report: str, *, elapsed: float, execs: int) -> Path:
        name = slug(signature)
        atomic_write(self.path / f"{name}.pmfuzz", reproducer)
        atomic_write(self.path / f"{name}.txt", report)
        entry = self.counts.setdefault(
            signature, {"count": 0, "file": f"{name}.pmfuzz", "first_seconds": round(elapsed, 2), "first_exec": execs}
        )
        entry["count"] = max(1, entry["count"])
        self._save()
        return self.path / f"{name}.pmfuzz"

    def bump(self, signature: str) -> None:
        self.counts.setdefault(signature, {"count": 0})["count"] += 1

    def _save(self) -> None:
        atomic_write(self.path / "findings.json", json.dumps(self.counts, indent=1, sort_keys=True) + "\n")

    def flush(self) -> None:
        self._save()


@dataclass
class CorpusDir:
    """Workloads to start from (read-only seeds and earlier corpora) and where new ones go."""

    save_to: Path
    entries: list[Workload] = field(default_factory=list)
    _seen: set[str] = field(default_factory=set)

    @classmethod
    def load(cls, save_to: Path, *sources: Path) -> CorpusDir:
        c = cls(save_to)
        for src in (*sources, save_to):
            if not src.exists():
                continue
            if not src.is_dir():
                raise PmfuzzError(f"corpus {src} is not a directory")
            for f in sorted(src.glob("*.pmfuzz")):
                try:
                    w = parse_reproducer(f.read_text(), source=str(f)).workload
                except PmfuzzError:
                    continue
                c.add(w, save=False)
        return c

    def add(self, w: Workload, *, save: bool = True) -> bool:
        text = format_workload(w)
        if not w.ops or text in self._seen:
            return False
        self._seen.add(text)
        self.entries.append(w)
        if save:
            h = hashlib.sha1(text.encode()).hexdigest()[:16]
            atomic_write(self.save_to / f"{h}.pmfuzz", "# corpus entry\n" + text)
        return True
