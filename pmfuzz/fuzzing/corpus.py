"""The campaign's directories: the corpus of interesting workloads, and the unique findings.

    crashes/
      <signature>.pmfuzz     minimized reproducer (with its `expect:` line)
      <signature>.txt        human report
      findings.json          per root cause: count, first and last seen (seconds, exec), signatures
      stats.jsonl            one line of campaign statistics every few seconds
      corpus/                workloads that reached new coverage (reloaded on resume)

Every file is written atomically (a temporary file, fsync, rename, fsync of
the directory), so a hard kill or a power cut never leaves a half-written
reproducer and never loses one already written. A campaign holds a lock on
its crashes directory (`.lock`, flock) so that two campaigns never race on
findings.json, and checks at start that it can write there.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import tempfile
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import PmfuzzError, clip, shown_path
from ..judging.repro import parse_reproducer
from ..lang.limits import MAX_REPRODUCER_BYTES, read_input
from ..lang.workload import Workload, format_workload

__all__ = ["atomic_write", "CrashDir", "CorpusDir", "slug", "writable_dir"]


def atomic_write(path: Path, text: str) -> None:
    """Write `text` to `path` all or nothing, durably: temp file, fsync, rename, then fsync the directory.

    Why the directory: the rename lives in the directory's entries; until they are synced, a
    power cut may bring back the old file (or none) although the new one's data is on disk.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as e:
        raise OSError(e.errno, e.strerror, str(path)) from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)
        raise OSError(e.errno, e.strerror, str(path)) from None  # name the file the user knows, not the temp
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _fsync_dir(path: Path) -> None:
    try:
        dfd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return  # a platform whose directories cannot be opened: nothing more to sync
    try:
        os.fsync(dfd)
    except OSError as e:
        if e.errno not in (errno.EINVAL, errno.ENOTSUP):  # file systems that cannot sync a directory
            raise
    finally:
        os.close(dfd)


def writable_dir(path: Path, what: str) -> None:
    """Create `path` if needed and prove it writable now, or one clear error.

    Why at start: a read-only or missing crashes directory was found only when the first finding
    was written, after the whole budget could be spent.
    """
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path, prefix=".probe-")
        try:
            os.write(fd, b"probe")
            os.fsync(fd)
        finally:
            os.close(fd)
            os.unlink(tmp)
    except OSError as e:
        raise PmfuzzError(f"{what} {shown_path(path)} is not writable: {e.strerror or e}") from None
    if not path.is_dir():
        raise PmfuzzError(f"{what} {shown_path(path)} exists and is not a directory")


def slug(signature: str) -> str:
    """A file name for a signature: readable, and unique by a short hash."""
    base = re.sub(r"[^A-Za-z0-9_.-]+", "_", signature).strip("_")[:80]
    return f"{base}-{hashlib.sha1(signature.encode()).hexdigest()[:8]}"


@dataclass
class CrashDir:
    path: Path
    counts: dict[str, dict] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    """Things found while opening that the campaign should say (a corrupt findings.json set aside)."""
    _dirty: bool = False
    _lock: int | None = None
    _link_map: dict[str, str] | None = None

    @classmethod
    def open(cls, path: Path, *, lock: bool = True) -> CrashDir:
        """Open (create) a campaign's crashes directory: writable, locked, its index read back.

        With `lock`, a second campaign on the same directory is refused (they would race on findings.json).
        """
        if path.exists() and not path.is_dir():
            raise PmfuzzError(f"crashes directory {shown_path(path)} exists and is not a directory")
        writable_dir(path, "crashes directory")
        d = cls(path)
        if lock:
            d._lock = _take_lock(path)
        idx = path / "findings.json"
        if idx.exists():
            d.counts = d._read_index(idx)
        for f in path.glob("*.pmfuzz"):
            try:
                r = parse_reproducer(read_input(str(f), MAX_REPRODUCER_BYTES, "reproducer"), source=str(f))
            except PmfuzzError:
                continue
            key = r.cause or r.signature
            if key and str(key) not in d.counts:
                d.counts[str(key)] = {"count": 1, "file": f.name}
                d._dirty = True
        return d

    def _read_index(self, idx: Path) -> dict[str, dict]:
        """findings.json, or, if it is damaged, nothing: it is set aside (never silently reset) and rebuilt."""
        try:
            data = json.loads(idx.read_text(encoding="utf-8"))
            if isinstance(data, dict) and all(
                isinstance(k, str) and isinstance(v, dict) and isinstance(v.get("count", 0), int)
                for k, v in data.items()
            ):
                return data
            why = "not an object of signature -> entry"
        except (ValueError, UnicodeDecodeError, RecursionError) as e:
            why = f"not JSON: {clip(str(e))}"
        n = 1
        while (aside := idx.with_name(f"findings.json.corrupt-{n}")).exists():
            n += 1
        os.replace(idx, aside)
        self.warnings.append(
            f"{idx} was damaged ({why}); kept as {aside.name}, counts rebuilt from the reproducers (repeats lost)"
        )
        self._dirty = True
        return {}

    def known(self, key: str) -> bool:
        return key in self.counts

    def group_of(self, key: str, also: Sequence[str], known: Collection[str]) -> str | None:
        """The group a finding is filed under: its own key's, else that of a cause it is linked to
        (one store faulted for several oracles; an entry's `also`); None: a new group."""
        links = self._links()
        for k in (key, *also):
            if k in known:
                return k
            g = links.get(k)
            if g is not None:
                return g
        return None

    def link(self, group: str, causes: Sequence[str], known: Collection[str]) -> None:
        """File these causes under `group` from now on (kept in findings.json as the entry's `also`);
        a cause that is a group of its own stays one."""
        links = self._links()
        entry = self.counts.get(group)
        for c in causes:
            if c == group or c in known or c in links:
                continue
            links[c] = group
            if entry is not None and isinstance(entry.setdefault("also", []), list):
                entry["also"].append(c)
                self._dirty = True

    def _links(self) -> dict[str, str]:
        if self._link_map is None:
            self._link_map = {
                c: g
                for g, e in self.counts.items()
                if isinstance(e.get("also"), list)
                for c in e["also"]
                if isinstance(c, str) and c not in self.counts
            }
        return self._link_map

    def record(
        self, key: str, reproducer: str, report: str, *, elapsed: float, execs: int, signature: str = ""
    ) -> Path:
        """Write a finding under its key (a root cause; an index of older versions has signatures)."""
        name = slug(key)
        atomic_write(self.path / f"{name}.pmfuzz", reproducer)
        atomic_write(self.path / f"{name}.txt", report)
        seen = {"first_seconds": round(elapsed, 2), "first_exec": execs}
        entry = self.counts.setdefault(key, {"count": 0, "file": f"{name}.pmfuzz", **seen})
        entry.setdefault("last_seconds", seen["first_seconds"])
        entry.setdefault("last_exec", execs)
        entry["count"] = max(1, entry["count"])
        self._add_signature(entry, key, signature)
        self._save()
        return self.path / f"{name}.pmfuzz"

    def bump(self, key: str, signature: str = "", *, elapsed: float | None = None, execs: int | None = None) -> None:
        """One more sighting of a known finding: counted, when, and under which signature (the crash's place)."""
        entry = self.counts.setdefault(key, {"count": 0})
        entry["count"] += 1
        if elapsed is not None:
            entry["last_seconds"] = round(elapsed, 2)
        if execs is not None:
            entry["last_exec"] = execs
        self._add_signature(entry, key, signature)
        self._dirty = True

    @staticmethod
    def _add_signature(entry: dict, key: str, signature: str) -> None:
        if signature and signature != key:
            sigs = entry.setdefault("signatures", [])
            if signature not in sigs and len(sigs) < 64:
                sigs.append(signature)
                sigs.sort()

    def _save(self) -> None:
        atomic_write(self.path / "findings.json", json.dumps(self.counts, indent=1, sort_keys=True) + "\n")
        self._dirty = False

    def flush(self) -> None:
        self._save()

    def flush_if_changed(self) -> None:
        """Write findings.json if repeat counts changed since it was last written (called every few seconds)."""
        if self._dirty:
            self._save()

    def close(self) -> None:
        if self._lock is not None:
            os.close(self._lock)
            self._lock = None


def _take_lock(path: Path) -> int:
    """An exclusive flock on DIR/.lock, held until `close` or the process ends (a kill -9 releases it)."""
    import fcntl

    fd = os.open(path / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
        os.close(fd)
        if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            by = f" (pid {holder})" if holder.isdigit() else ""
            raise PmfuzzError(
                f"crashes directory {shown_path(path)} is in use by another campaign{by}: give another --crashes"
            ) from None
        raise
    os.ftruncate(fd, 0)
    os.pwrite(fd, str(os.getpid()).encode(), 0)
    return fd


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
                    text = read_input(str(f), MAX_REPRODUCER_BYTES, "corpus")
                    w = parse_reproducer(text, source=str(f)).workload
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
