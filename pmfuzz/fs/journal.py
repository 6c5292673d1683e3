"""The metadata journal: transactions, the CIL, log pushes and log recovery.

Transactions commit into the in-memory log (XFS's CIL): their items are
formatted into a shadow of the metadata area and the lines they touch are
remembered. A push writes every dirty line as one checkpoint: a fence (the
log bio's REQ_PREFLUSH, which also orders all data written before it), the
header and records, a fence, the commit record, a fence; then the records are
written to their homes and the superblock's log tail is advanced. Recovery
replays the checkpoint whose commit record is valid and newer than the tail.

The commit record carries no checksum, like a jbd2 journal without
journal_checksum: ordering alone protects it, which is what
`journal-commit-no-fence` breaks.
"""

from __future__ import annotations

import inspect
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from ..pmem import LINE, PMem
from .config import Bug, CilMode, Config
from .layout import COMMIT_FMT, LOG_HDR_FMT, LOG_MAGIC, LOG_REC_FMT, Geometry
from .pmemops import memcpy_flushcache, nvdimm_flush

__all__ = ["Journal", "Trans", "LogCorrupt", "recover_log", "find_checkpoint"]

_COMMIT_MAGIC = 0x54494D43


class LogCorrupt(Exception):
    """Log recovery found a committed checkpoint it cannot replay (a mount failure of the target)."""


@dataclass
class Trans:
    """One transaction: items to format at commit, blocks it frees, a label for reports."""

    label: str
    items: list[Callable[[], tuple[int, bytes]]] = field(default_factory=list)
    freed: list[tuple[int, int]] = field(default_factory=list)
    unshared: list[tuple[int, int]] = field(default_factory=list)
    inodes: set[int] = field(default_factory=set)

    def log(self, fmt: Callable[[], tuple[int, bytes]]) -> None:
        self.items.append(fmt)


class Journal:
    def __init__(
        self,
        pm: PMem,
        geo: Geometry,
        cfg: Config,
        shadow: bytearray | None,
        tail: int,
        on_push: Callable[[list[tuple[int, int]], list[tuple[int, int]], set[int]], None],
    ) -> None:
        self.pm = pm
        self.geo = geo
        self.cfg = cfg
        self._shadow = shadow
        self.tail = tail
        self.dirty: set[int] = set()
        self.busy: list[tuple[int, int]] = []
        self.unshared: list[tuple[int, int]] = []
        self.inodes: set[int] = set()
        # Held weakly when it is the file system's method: the file system owns its journal, and a
        # strong reference back made every mount a reference cycle that only the cyclic collector
        # frees (a campaign mounts a recovered image for every other crash state it judges).
        if inspect.ismethod(on_push):
            owner, fn = weakref.ref(on_push.__self__), on_push.__func__
            self._on_push = lambda: None if (o := owner()) is None else fn.__get__(o)
        else:
            self._on_push = lambda: on_push
        self.open: Trans | None = None

    @property
    def shadow(self) -> bytearray:
        """The committed metadata, as the log will write it: loaded from the device on first use.

        Mount reads only what it parses; a mounted image that never commits never loads this.
        """
        if self._shadow is None:
            self._shadow = bytearray(self.pm.load(0, self.geo.meta_bytes))
        return self._shadow

    @contextmanager
    def trans(self, label: str) -> Iterator[Trans]:
        """xfs_trans_alloc .. xfs_trans_commit."""
        if self.open is not None:
            raise AssertionError(f"transaction {label} opened inside {self.open.label}")
        tp = Trans(label)
        self.open = tp
        try:
            yield tp
        finally:
            self.open = None
        self.commit(tp)

    def commit(self, tp: Trans) -> None:
        for fmt in tp.items:
            addr, data = fmt()
            self.shadow[addr : addr + len(data)] = data
            self.dirty.update(range(addr // LINE, (addr + len(data) - 1) // LINE + 1))
        self.busy.extend(tp.freed)
        self.unshared.extend(tp.unshared)
        self.inodes |= tp.inodes
        if self.cfg.cil is CilMode.EAGER or len(self.dirty) * LINE > self.geo.log_bytes // 4:
            self.push(f"{tp.label}.cil_push")

    def force(self, why: str = "log_force") -> None:
        """xfs_log_force: make every committed transaction durable."""
        if self.dirty:
            self.push(why)
        else:
            with self.pm.site(f"{why}.flush"):
                nvdimm_flush(self.pm)

    def _records(self) -> list[tuple[int, bytes]]:
        runs: list[tuple[int, int]] = []
        for line in sorted(self.dirty):
            if runs and runs[-1][1] == line:
                runs[-1] = (runs[-1][0], line + 1)
            else:
                runs.append((line, line + 1))
        return [(a * LINE, bytes(self.shadow[a * LINE : b * LINE])) for a, b in runs]

    def push(self, why: str) -> None:
        """xlog_cil_push_work: write the CIL as one checkpoint, then write it back in place."""
        pm, geo = self.pm, self.geo
        recs = self._records()
        body = b"".join(LOG_REC_FMT.pack(home, len(d), 0) + d for home, d in recs)
        seq = self.tail + 1
        head = LOG_HDR_FMT.pack(LOG_MAGIC, 0, seq, len(recs), len(body)).ljust(LINE, b"\0")
        commit_at = geo.log_addr + -(-(len(head) + len(body)) // LINE) * LINE
        if commit_at + LINE > geo.log_addr + geo.log_bytes:
            raise AssertionError(f"checkpoint of {len(body)} bytes does not fit the log")
        with pm.site(f"{why}.log_write"):
            nvdimm_flush(pm)
            memcpy_flushcache(pm, geo.log_addr, head + body)
            if not self.cfg.has(Bug.JOURNAL_COMMIT_NO_FENCE):
                nvdimm_flush(pm)
        with pm.site(f"{why}.commit_record"):
            memcpy_flushcache(pm, commit_at, COMMIT_FMT.pack(_COMMIT_MAGIC, 0, seq, len(recs), len(body)))
            nvdimm_flush(pm)
        with pm.site(f"{why}.checkpoint"):
            for home, d in recs:
                memcpy_flushcache(pm, home, d)
            nvdimm_flush(pm)
        with pm.site(f"{why}.log_tail"):
            memcpy_flushcache(pm, 0, geo.pack_sb(seq)[:LINE])
            nvdimm_flush(pm)
        self.tail = seq
        self.dirty.clear()
        busy, self.busy = self.busy, []
        unshared, self.unshared = self.unshared, []
        inodes, self.inodes = self.inodes, set()
        on_push = self._on_push()
        if on_push is not None:
            on_push(busy, unshared, inodes)


def find_checkpoint(pm: PMem, geo: Geometry, tail: int) -> tuple[int, list[tuple[int, bytes]]] | None:
    """The committed checkpoint after `tail` that recovery must replay, if the log holds one."""
    head = pm.load(geo.log_addr, LOG_HDR_FMT.size)
    magic, _, seq, nrec, nbytes = LOG_HDR_FMT.unpack(head)
    if magic != LOG_MAGIC or seq != tail + 1:
        return None
    if nbytes > geo.log_bytes:
        raise LogCorrupt(f"log header {seq} claims {nbytes} record bytes")
    commit_at = geo.log_addr + -(-(LINE + nbytes) // LINE) * LINE
    if commit_at + LINE > geo.log_addr + geo.log_bytes:
        return None
    cmagic, _, cseq, cnrec, cbytes = COMMIT_FMT.unpack(pm.load(commit_at, COMMIT_FMT.size))
    if cmagic != _COMMIT_MAGIC or cseq != seq or cnrec != nrec or cbytes != nbytes:
        return None
    body = pm.load(geo.log_addr + LINE, nbytes) if nbytes else b""
    pos = 0
    recs = []
    for i in range(nrec):
        if pos + LOG_REC_FMT.size > len(body):
            raise LogCorrupt(f"checkpoint {seq}: record {i} runs past the record area")
        home, ln, _ = LOG_REC_FMT.unpack_from(body, pos)
        pos += LOG_REC_FMT.size
        if ln == 0 or home < LINE or home + ln > geo.meta_bytes or pos + ln > len(body):
            raise LogCorrupt(f"checkpoint {seq}: record {i} has bad home {home:#x}+{ln}")
        recs.append((home, body[pos : pos + ln]))
        pos += ln
    return seq, recs


def recover_log(pm: PMem, geo: Geometry, tail: int) -> int:
    """xlog_recover: replay the checkpoint after `tail` if its commit record is valid; return the new tail."""
    found = find_checkpoint(pm, geo, tail)
    if found is None:
        return tail
    seq, recs = found
    with pm.site("xlog_recover.replay"):
        for home, d in recs:
            memcpy_flushcache(pm, home, d)
        nvdimm_flush(pm)
    with pm.site("xlog_recover.log_tail"):
        memcpy_flushcache(pm, 0, geo.pack_sb(seq)[:LINE])
        nvdimm_flush(pm)
    return seq
