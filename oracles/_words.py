"""Turning per-word verdicts into readable evidence runs."""

from __future__ import annotations

import numpy as np

from pmfuzz.lang.data import WordKind, decode, describe
from pmfuzz.reference.expect import Expectation

from . import Evidence

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
    """The first differing word as a cause: what was read for what was due (`zero for data`).

    Poison, undecodable words and a nonzero partial word at EOF are all `garbage`: which of them a
    read meets depends on where EOF fell, not on what went wrong. Garbage is garbage whatever was
    due: one block exposed unwritten reads as garbage where data was due and where zeroes were.
    """
    due = "zero" if not any(want) else "data"
    if len(got) < 8 or len(want) < 8:
        return f"zero for {due}" if not any(got) else "garbage"
    g = decode(int.from_bytes(got, "little"))
    w = decode(int.from_bytes(want, "little"))
    if g.kind is WordKind.DATA and w.kind is WordKind.DATA:
        found = "older data" if (g.file, g.offset) == (w.file, w.offset) else "data of another file or offset"
    elif g.kind is WordKind.DATA:
        found = "data"
    elif g.kind is WordKind.ZERO:
        found = "zero"
    else:
        return "garbage"
    return f"{found} for {due}"
