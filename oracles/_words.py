"""Turning per-word verdicts into readable evidence runs."""

from __future__ import annotations

import numpy as np

from pmfuzz.lang.data import WordKind, decode, describe
from pmfuzz.lang.workload import Op, Reflink
from pmfuzz.reference.expect import Expectation
from pmfuzz.reference.model import Reference

from . import ELSEWHERE, GARBAGE, OTHER_DATA, Evidence

MAX_EVIDENCE = 4


def runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) word index runs where mask is set."""
    if not mask.any():
        return []
    m = np.concatenate([[False], mask, [False]]).astype(np.int8)
    d = np.diff(m)
    return list(zip(np.flatnonzero(d == 1).tolist(), np.flatnonzero(d == -1).tolist(), strict=True))


def allowed_text(expect: Expectation, name: str, word: int) -> str:
    """What the rules accept at this word, as the oracles judged it (nothing: "no value")."""
    kinds = sorted({str(decode(x)) for x in expect.allowed(name, word)})
    if not kinds:
        return "no value: the word is outside every size the file may recover to"
    return " or ".join(kinds[:4]) + (" ..." if len(kinds) > 4 else "")


def evidence(expect: Expectation, name: str, words: np.ndarray, mask: np.ndarray, size: int) -> tuple[Evidence, ...]:
    out = []
    for a, b in runs(mask)[:MAX_EVIDENCE]:
        start, end = a * 8, min(b * 8, size)
        raw = words[a:b].astype("<u8").tobytes()[: end - start]
        out.append(Evidence(name, start, end, describe(raw, base=start), allowed_text(expect, name, a)))
    return tuple(out)


def content_cause(got: bytes, want: bytes) -> str:
    """The first differing word as a cause: what was read for what was due (`zero for data`), both
    judged on the bytes that differ (a word EOF cuts is due zero past EOF, data before it).

    Poison, undecodable words and a nonzero partial word at EOF are all `garbage`: which of them a
    read meets depends on where EOF fell, not on what went wrong. Garbage is garbage whatever was
    due: one block exposed unwritten reads as garbage where data was due and where zeroes were.
    """
    n = min(len(got), len(want))
    diff = [i for i in range(n) if got[i] != want[i]] or list(range(n))
    due = "data" if any(want[i] for i in diff) else "zero"
    if not any(got[i] for i in diff):
        return f"zero for {due}"
    if len(got) < 8 or len(want) < 8:
        return GARBAGE
    g = decode(int.from_bytes(got, "little"))
    w = decode(int.from_bytes(want, "little"))
    if g.kind is WordKind.DATA and w.kind is WordKind.DATA:
        if (g.file, g.offset) != (w.file, w.offset):
            return OTHER_DATA  # whatever was due: a block that is not this file's
        found = "older data"
    elif g.kind is WordKind.DATA:
        found = "data"
    elif g.kind is WordKind.ZERO:
        found = "zero"
    else:
        return GARBAGE
    return f"{found} for {due}"


def _touched(op: Op, ref: Reference) -> set[str] | None:
    """The files an op names: the file it writes, and the one behind a mapping it uses (a write(2)
    from a mapping faults its source's pages in); None if that mapping is gone."""
    if isinstance(op, Reflink):
        return {op.dst}
    name = getattr(op, "file", None)
    out = {name} if isinstance(name, str) else set()
    m = getattr(op, "map", None)
    if m is None:
        return out
    mp = ref.maps.get(m)
    if mp is None:
        return None
    return out | {n for n, f in ref.names.items() if f is mp.file}


def elsewhere_cause(op: Op, ref: Reference, name: str) -> str:
    """For a crash-free read of `name` that went wrong after `op`, whose stores reached the file's
    blocks: the cause when the op does not name that file, else empty.

    A file whose data an op on another file changed has lost its isolation (a copy on write that
    wrote in place, a block freed while another file used it): one cause whatever the bytes were
    and whichever path the op's stores took (write(2), a write fault, zeroing: a COW skipped in
    iomap_begin shows on all of them), not what the read happened to see."""
    touched = _touched(op, ref)
    if touched is None or name in touched:
        return ""
    return ELSEWHERE
