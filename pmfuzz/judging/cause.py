"""A crash finding's cause, read off its evidence: which store the crash lost, or which store wrote the wrong word.

A signature says where the crash fell, and one bug shows at every crash point that reveals it
(a zeroing made durable too late shows at the write, the fault, the fsync and the persist after
it). The cause follows the first wrong word instead: its device address (from the recovered
file system's block map, or from the poison it reads, which encodes its own address), then
the first store to that word the image does not hold -- dropped in flight, or issued later in
the same op -- and that store's code site. One bug, one cause, wherever the crash fell.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence

import numpy as np

from oracles import ELSEWHERE, Evidence, OracleName
from oracles.durability import metadata_lost

from ..execution.reach import BlockMapLog, Reach, Reached
from ..lang.data import WordKind, decode, decode_words
from ..lang.workload import BLOCK_SIZE
from ..pmem import CrashPoint, CrashState, Event, EventKind, writers_of
from ..signature import Cause, How, rule_of, top_site
from ..target import MountedFS, byte_address, file_blocks, mapped_blocks, shared_elsewhere

__all__ = ["crash_cause_store", "code_of", "reordered_store", "UNEXPLAINED_MEDIA"]

_LOG_PHASES = frozenset({"log_write", "log_tail", "flush", "commit_record", "checkpoint"})
"""Phases of a log push: the site names its caller first (`xfs_file_fsync.flush`), the code is the log's."""

_UNKNOWN = -1

_METADATA = Cause(OracleName.DURABILITY, How.METADATA, "")
"""A durable file, removal, size or block map the recovered image lacks: one durability point
broken, whether the crash then shows a missing file, an old size or a hole under durable data."""

UNEXPLAINED_MEDIA = Cause(OracleName.STALE_EXPOSURE, How.NEVER_WRITTEN, "")
"""A word nobody wrote for this file, whichever oracle read it (a torn copy on write, a durability
check, a stale exposure), in a block no op's block-map change made readable there (or without a
block-map log): a block exposed before anything initialised it, one cause."""


def code_of(site: str) -> str:
    """The code a store's site names, without the caller a log push carries in front of its phase."""
    head, _, phase = site.rpartition(".")
    if head and phase in _LOG_PHASES:
        return f"xlog.{phase}"
    return site


def crash_cause_store(
    oracle: OracleName,
    message: str,
    evidence: tuple,
    point: CrashPoint,
    state: CrashState,
    fs: MountedFS,
    trace: Sequence[Event],
    held: Callable[[int, bytes], bool] | None = None,
    reached: BlockMapLog | None = None,
) -> tuple[Cause, tuple[str, int] | None]:
    """The cause of one crash violation, as far as its first wrong word and the trace tell; and what
    it blames: the store it names (lost, or written) by its trace index,
    else the wrong word by its device address; None if neither is known. Two oracles that fault
    one crash state for one store, or one word no store explains, see one cause (a torn copy on
    write is both a `cow-atomicity` and a `stale-exposure` violation). `held`: whether the file
    held these bytes at this offset at some op boundary (its own data, whatever file its words name);
    `reached`: how the run's ops changed the block maps, to name media by what exposed it."""
    ev = next((e for e in evidence if isinstance(e, Evidence)), None)
    if oracle is OracleName.DURABILITY and ev is None and metadata_lost(message):
        return _METADATA, None
    if ev is None:
        return Cause(oracle, How.RULE, rule_of(message)), None
    off = ev.start - ev.start % 8
    if oracle is OracleName.COW_ATOMICITY:
        off = _first_dropped_word(fs, ev.file, off, ev.end, point, state)
    addr = _device_address(fs, ev.file, off)
    if addr is None:
        return (_METADATA if oracle is OracleName.DURABILITY else Cause(oracle, How.UNMAPPED, "")), None
    if addr == _UNKNOWN:
        dropped = _dropped_site(point, state, trace)
        if dropped:
            return Cause(oracle, How.DROPPED, code_of(dropped)), None
        return Cause(oracle, How.AT, "end" if point.spec.seq is None else top_site(point.site)), None
    end = len(trace) if point.spec.seq is None else point.spec.seq
    if oracle is OracleName.DURABILITY and _moved(reached, ev.file, off, addr, end):
        return _METADATA, ("word", addr)
    r = (
        None
        if reached is None
        else reached.origin(addr, end, ev.file, off) or reached.transient(ev.file, off, addr, end)
    )
    copied = r if r is not None and r.how in _COPIED else None  # a remap the crash's racing truncate undid too
    at = point.spec.seq
    inside = copied is not None and at is not None and copied.start < at <= copied.end  # the crash fell in the copy
    lost, copy_what = _owed_store(
        oracle, addr, point, state, trace, copied, copied.end if copied is not None and inside else None
    )
    if lost is not None:
        if copy_what is not None and not _zeroing(lost):
            what = copy_what
        else:
            what = _what_it_wrote(lost, addr, _codes_of(point)[0], lost=True)
        return Cause(oracle, How.LOST, what), ("store", lost.seq)
    raw = bytes(fs.read(ev.file, off, 8))
    if raw:
        word = int.from_bytes(raw, "little")
        if len(raw) == 8 and decode(word).kind is WordKind.POISON:
            at = decode(word).offset  # here or where a copy took it from
            here = at // BLOCK_SIZE == addr // BLOCK_SIZE
            return _media(reached, at, end, ev.file if here else None, off), ("word", addr)
        data = len(raw) == 8 and decode(word).kind is WordKind.DATA
        writer = _writer(addr, word, point, trace) if data else _last_writer(addr, raw, point, trace)
        foreign = _foreign(oracle, data and not (held is not None and held(off, raw)))
        mixed = writer or (_last_writer(addr, raw, point, trace) if data else None)  # a word two stores tore
        if mixed is not None and foreign and shared_elsewhere(fs, ev.file, addr, _blocks_of(fs)):
            return Cause(OracleName.FUNCTIONAL, How.CONTENT, ELSEWHERE), ("store", mixed.seq)
        how = None if reached is None else reached.stale(trace, ev.file, off, addr, raw, end)
        if how is not None:
            return Cause(OracleName.STALE_EXPOSURE, How.NEVER_WRITTEN, how.value), ("word", addr)
        if writer is not None and foreign and data and decode(word).op == writer.op and r is None:
            return UNEXPLAINED_MEDIA, ("word", addr)  # without a block-map log: left over from before, as likely as not
        if writer is not None:
            return Cause(oracle, How.WRITTEN, _what_it_wrote(writer, addr, _codes_of(point)[0])), ("store", writer.seq)
    return _media(reached, addr, end, ev.file, off), ("word", addr)


def _zeroing(e: Event) -> bool:
    """Whether a store is a zeroing by its code (`xfs_zero_extent`, `iomap_dio_zero`, the fault's
    `zero_block`: the kernel names its zeroing so): a zeroing of a copy on write's new block (a
    zero-range over a shared extent) issued after the remap is a zeroing's bug, not the copy's."""
    return "zero" in code_of(e.site)


def _moved(reached: BlockMapLog | None, name: str, off: int, addr: int, end: int) -> bool:
    """Whether the block the crash shows at file `name` offset `off` is not the one a copy on write
    put there by then (the latest change whose op ended by `end` was its remap): data made durable
    read from the block it replaced -- the remap, metadata, did not hold. (Only a remap: a name's
    blocks also change when the file is unlinked and made again, and an old incarnation may
    recover. Only a finished op's: a crash inside the remapping op may rightly find the old block.)"""
    if reached is None:
        return False
    base, blk = off - off % BLOCK_SIZE, addr - addr % BLOCK_SIZE
    last = next((r for r in reversed(reached.entries) if r.name == name and r.off == base and r.end <= end), None)
    return last is not None and last.how in _COPIED and last.dev != blk


def _copy_lost(lost: Event, remap: Reached, trace: Sequence[Event], addr: int, at: int | None) -> str:
    """A lost store of the copy on write that remapped its block, as a cause. Nothing else
    initialises the new block, so the copy (and a write's data) must be durable before the remap:
    `data` when its op flushed it later, or, for the copy's own stores, when it was not yet
    issued at the crash (trace index `at`; None for a store of its op's own data, which a crash may
    lose): the remap came first, the order is the bug, whichever store of the copy or the write
    the crash took and whether or not a flush would have followed; else
    the copy that was never flushed, by its code (`unflushed dax_iomap_copy_around`,
    `unflushed dax_unshare_iter`): a flush missing from one copy path, which the order alone
    does not show. Only its own op's flush of the line the crash lost (at device address `addr`)
    counts: a write's own flushed bytes share a line with one end of the edge it left unflushed,
    and a racing write may flush a line a fault's copy left unflushed."""
    if lost.kind is EventKind.NTSTORE or (at is not None and lost.seq > at):
        return "data"
    line = addr // 64
    for e in trace[lost.seq + 1 : remap.end]:
        if e.kind.is_flush and e.op == lost.op and e.addr // 64 <= line <= (e.addr + max(e.size, 1) - 1) // 64:
            return "data"
    return "unflushed " + code_of(lost.site).split(".", 1)[0]


_COPIED = frozenset({Reach.REMAPPED, Reach.UNSHARED})


def _media(reached: BlockMapLog | None, addr: int, end: int, name: str | None = None, off: int = 0) -> Cause:
    """Media nobody wrote at device address `addr`, named by how its block became a file's, when the
    run knows (at file `name` offset `off`, when that is where the crash shows it)."""
    r = None if reached is None else reached.origin(addr, end)
    if r is None and reached is not None and name is not None:
        r = reached.transient(name, off, addr, end)
    return UNEXPLAINED_MEDIA if r is None else Cause(OracleName.STALE_EXPOSURE, How.NEVER_WRITTEN, r.how.value)


_BLOCKS: weakref.WeakKeyDictionary[object, dict[int, set[str]]] = weakref.WeakKeyDictionary()
"""Per recovered mount (read-only), its `mapped_blocks`: every violation of its states asks."""


def _blocks_of(fs: MountedFS) -> dict[int, set[str]] | None:
    try:
        hit = _BLOCKS.get(fs)
        if hit is None:
            hit = _BLOCKS[fs] = mapped_blocks(fs)
        return hit
    except TypeError:  # a mount that cannot be weakly referenced: asked afresh
        return None


def _foreign(oracle: OracleName, foreign_data: bool) -> bool:
    """Whether the wrong word is one the file never held: data it never held at this offset (what
    a stale-exposure, torn-COW or durability violation may read), or, for stale exposure, any word.

    In a block another file maps, a write to that file changed it in place: the cause a crash-free
    read of it has. A word of data in a block no other file maps, last written by the op whose data
    it is (not a copy of it), is what the block held before it was this file's: nothing wrote it
    for this file, one cause with media nobody wrote."""
    return oracle is OracleName.STALE_EXPOSURE or (foreign_data and oracle in _WORD_ORACLES)


_WORD_ORACLES = frozenset({OracleName.STALE_EXPOSURE, OracleName.COW_ATOMICITY, OracleName.DURABILITY})


def _own_data(e: Event, point: CrashPoint) -> bool:
    """Whether a store wrote its own op's data (or the data path's zeroing of a new
    block around it). Losing that is no stale exposure -- a crash may lose a write, and the word
    is then due what it held before -- so when such a word shows media, what exposed the media
    is the cause, not the lost data: a block made reachable before anything initialised it.

    A store's code says it (`_data_codes`, its second set: codes that store their own op's data
    somewhere in the trace), so a write(2) from a mapping, whose words are another op's, is its
    op's payload too; a copy on write's code never stores its op's own."""
    code = code_of(e.site)
    if code in _NEW_BLOCK_ZEROING or code in _codes_of(point)[1]:
        return True
    return e.data is not None and 0 < len(e.data) < 8  # less than a word: only a workload's own bytes are that small


def _first_dropped_word(fs: MountedFS, name: str, start: int, end: int, point: CrashPoint, state: CrashState) -> int:
    """For evidence that spans a whole block (a copy on write that is neither version): the first
    word of it whose in-flight store the state dropped, else its first word nobody wrote (poison,
    or not a word any op writes), else its first word. Its first word may be one the copy got
    right; the lost store, or the media the copy never covered, is what tore the block."""
    at = byte_address(fs, name, start)
    if at is None:
        return start
    lo, hi = at // 8, (at + min(end, start - start % BLOCK_SIZE + BLOCK_SIZE) - start + 7) // 8
    first: int | None = None
    for gi in state.deviation_groups:
        g = point.groups[gi]
        kept = set(g.kept(state.choices[gi]))
        for j, u in enumerate(g.units):
            if j not in kept and lo <= u.word < hi and (first is None or u.word < first):
                first = u.word
    if first is not None:
        return start + first * 8 - at
    raw = bytes(fs.read(name, start, end - start))
    words = np.frombuffer(raw, dtype="<u8", count=len(raw) // 8)
    junk = np.flatnonzero((words != 0) & ~(decode_words(words) == 1))
    return start + 8 * int(junk[0]) if len(junk) else start


def _what_it_wrote(e: Event, addr: int, data_codes: frozenset[str], *, lost: bool = False) -> str:
    """A store as a cause: `data` when it moved a workload's data (through write(2), a mapping, a
    copy: one cause however the data came), else its code site (a zeroing, a log write).

    A store moves data when the word it wrote is a workload's, or when its code stores workload
    data elsewhere in the trace: a write(2) or a copy on write of a hole's zeroes is still the
    data path, and one bug's lost data is one cause whatever the bytes were. (So the cause depends
    on the rest of the trace: a minimized reproducer may lose the store that showed the code moves
    data, and replay then names the code site.)"""
    data = e.data
    code = code_of(e.site)
    if lost and code in _NEW_BLOCK_ZEROING:
        return "data"
    if data is None:
        return code
    at = addr if e.addr <= addr and addr + 8 <= e.addr + e.size else -(-e.addr // 8) * 8
    if at + 8 <= e.addr + e.size:
        word = int.from_bytes(data[at - e.addr : at - e.addr + 8], "little")
        if decode(word).kind is WordKind.DATA:
            return "data"
    elif any(data):
        return "data"  # less than a word: only a workload's own bytes are that small
    return "data" if code in data_codes else code


_NEW_BLOCK_ZEROING = frozenset({"iomap_dio_zero", "dax_fault.zero_block"})
"""Zeroing the data path itself does for a block iomap_begin returned IOMAP_F_NEW: the parts of
it a write(2) does not cover (fs/iomap's iomap_dio_zero), the page a fault maps (the DAX fault's
zeroing of a new block). They are the data op's own stores, so their loss is `data` like the
data's: one bug's lost initialisation is one cause whichever op met the new block. (Only when
lost: a zeroing that wrote a wrong value over data is named by its own site.)"""

_DATA_CODES: weakref.WeakKeyDictionary[object, tuple[frozenset[str], frozenset[str]]] = weakref.WeakKeyDictionary()
"""Per crash timeline (a trace), its `_data_codes`: worked out once, gone with the timeline."""


def _codes_of(point: CrashPoint) -> tuple[frozenset[str], frozenset[str]]:
    hit = _DATA_CODES.get(point.timeline)
    if hit is None:
        hit = _DATA_CODES[point.timeline] = _data_codes(point.timeline.events)
    return hit


def _data_codes(trace: Sequence[Event]) -> tuple[frozenset[str], frozenset[str]]:
    """The code sites that store a workload's data somewhere in this trace, and those that store
    data of their own op somewhere (a write's copy-in, a store through a mapping: not a copy)."""
    found: set[str] = set()
    own: set[str] = set()
    for e in trace:
        if not e.kind.is_store or e.data is None or len(e.data) < 8:
            continue
        code = code_of(e.site)
        if code in own:
            continue
        words = _words_of(e)
        data = decode_words(words) == 1
        if data.any():
            found.add(code)
            if ((words[data] >> np.uint64(28)) & np.uint64(0xFFF) == np.uint64(e.op)).any():
                own.add(code)
    return frozenset(found), frozenset(own)


def _words_of(e: Event) -> np.ndarray:
    """The whole words a store wrote, as uint64 (by the device address's alignment)."""
    data = e.data or b""
    skip = -e.addr % 8
    n = (len(data) - skip) // 8
    return np.frombuffer(data, dtype="<u8", count=n, offset=skip) if n > 0 else np.zeros(0, np.uint64)


def _read_word(fs: MountedFS, name: str, off: int) -> int | None:
    raw = bytes(fs.read(name, off, 8))
    if len(raw) < 8:
        return None
    return int.from_bytes(raw, "little")


def _device_address(fs: MountedFS, name: str, off: int) -> int | None:
    """The word's device address; None if it reads as a hole (or unwritten), `_UNKNOWN` if the target does not say."""
    blocks = file_blocks(fs, name, off + 8)
    if blocks is not None:
        base = off - off % BLOCK_SIZE
        for foff, dev, unwritten in blocks:
            if foff == base:
                return None if dev is None or unwritten else dev + off - base
        return None
    word = _read_word(fs, name, off)
    if word is not None:
        d = decode(word)
        if d.kind is WordKind.POISON:
            return d.offset
    return _UNKNOWN


def _owed_store(
    oracle: OracleName,
    addr: int,
    point: CrashPoint,
    state: CrashState,
    trace: Sequence[Event],
    copied: Reached | None,
    until: int | None,
) -> tuple[Event | None, str | None]:
    """The lost store a crash's wrong word at `addr` is owed, and, when the copy on write that
    remapped its block issued it, what the copy lost (`_copy_lost`). A store's own data its op
    leaves to a later persist is not owed (a crash may lose a write); past it, another lost store
    to the word that the copy on write issued still is: the remapping write's data dropped in the
    same line as a racing store's, or issued after it (a sync fault's log force committed the
    remap before either)."""
    for k, lost in enumerate(_lost_stores(addr, point, state, trace, until)):
        own = oracle is OracleName.STALE_EXPOSURE and _own_data(lost, point)
        copy_what = None
        if copied is not None and oracle is not OracleName.DURABILITY and copied.start <= lost.seq < copied.end:
            copy_what = _copy_lost(lost, copied, trace, addr, None if own else point.spec.seq)
            if own and copy_what != "data":
                copy_what = None
        if copy_what is not None or (not own and k == 0):
            return lost, copy_what
        if copied is None:
            break
    return None, None


def _lost_stores(
    addr: int, point: CrashPoint, state: CrashState, trace: Sequence[Event], until: int | None = None
) -> Iterator[Event]:
    """The stores to the word at `addr` that the image lacks, first first: dropped in flight, then
    (none dropped) those issued later in the crash's op -- or, up to trace index `until`, in the op
    or parallel group that copied the block on write, whose ops' stores interleave: a racing op's
    copy, after the remap the crash kept, is lost as much."""
    word, line = addr // 8, addr // 64
    seqs = []
    for gi, g in enumerate(point.groups):
        if line not in g.lines:
            continue
        kept = set(g.kept(state.choices[gi]))
        seqs += [u.piece.seq for j, u in enumerate(g.units) if j not in kept and u.word == word]
    if seqs:
        yield from (trace[q] for q in sorted(set(seqs)))
        return
    at = point.spec.seq
    if at is None:
        return
    for i in range(at + 1, len(trace) if until is None else until):
        e = trace[i]
        if until is None and e.op != point.op:
            return
        if e.kind.is_store and e.addr < addr + 8 and addr < e.addr + e.size:
            yield e


def _writer(addr: int, word: int, point: CrashPoint, trace: Sequence[Event]) -> Event | None:
    """The last store before the crash that wrote `word` at `addr`."""
    end = len(trace) if point.spec.seq is None else point.spec.seq
    want = word.to_bytes(8, "little")
    for i in range(end - 1, -1, -1):
        e = trace[i]
        data = e.data
        inside = e.kind.is_store and data is not None and e.addr <= addr and addr + 8 <= e.addr + e.size
        if inside and data is not None and data[addr - e.addr : addr - e.addr + 8] == want:
            return e
    return None


def _last_writer(addr: int, want: bytes, point: CrashPoint, trace: Sequence[Event]) -> Event | None:
    """For a word that is not one store's data (zeroes, a torn word, the part of a word before
    EOF): the latest of the stores that wrote its bytes, if stores before the crash wrote every one
    of them (a tail zeroed up to a byte inside a word is the zeroing's; a word half data, half
    media nobody wrote has none)."""
    last, every = writers_of(trace, addr, want, 0, len(trace) if point.spec.seq is None else point.spec.seq)
    return last if every else None


def _dropped_site(point: CrashPoint, state: CrashState, trace: Sequence[Event]) -> str:
    """The site of the earliest store the state dropped, for targets that do not map words to the device."""
    first: int | None = None
    for gi in state.deviation_groups:
        g = point.groups[gi]
        kept = set(g.kept(state.choices[gi]))
        for j, u in enumerate(g.units):
            if j not in kept and (first is None or u.piece.seq < first):
                first = u.piece.seq
    return "" if first is None else trace[first].site


def reordered_store(
    point: CrashPoint, state: CrashState, groups: Iterable[int], trace: Sequence[Event]
) -> Event | None:
    """The earliest in-flight store of these groups that the state dropped while it kept a later one.

    A metadata rule a recovered image breaks (an fsck rule, a log that will not replay) names a
    block or an inode, which vary with the workload; the order the crash broke does not: a commit
    record kept over the log records it covers is one cause whichever record went missing and
    whatever the replay then made of it. None when the state keeps a prefix of the program order
    (nothing was reordered: the crash fell between two durable steps)."""
    dropped: list[int] = []
    last_kept = -1
    for gi in groups:
        g = point.groups[gi]
        kept = set(g.kept(state.choices[gi]))
        for j, u in enumerate(g.units):
            if j in kept:
                last_kept = max(last_kept, u.piece.seq)
            else:
                dropped.append(u.piece.seq)
    first = min((d for d in dropped if d < last_kept), default=None)
    return None if first is None else trace[first]
