"""What in-flight groups leave on the media: line hashes, and many groups' "all kept" outcomes at once.

Why: a crash point's base digest needs every group's "all kept" outcome, and a 2 MiB zeroing in
flight is 32,768 one-line groups: computed one group at a time (a dict of lines, a bytes object
per line, a page lookup per line) it cost a third of judging such a workload. Here the lines are
read a page at a time, the pieces laid over one buffer, and only the changed lines hashed; each
group's outcome is exactly what `CrashPoint._outcome` computes for it (held by a property test).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np

from .groups import Group
from .pages import Pages, page_runs
from .trace import LINE, PAGE

__all__ = ["full_outcomes", "line_hash", "log_delta", "read_lines"]

_PER_PAGE = PAGE // LINE


def line_hash(line: int, content: bytes) -> int:
    """One line's share of an image digest (digests add these up modulo 2**128)."""
    h = hashlib.blake2b(content, digest_size=16, key=line.to_bytes(8, "little"))
    return int.from_bytes(h.digest(), "little")


def read_lines(pages: Pages, lines: np.ndarray) -> np.ndarray:
    """Lines of the media as one (len(lines), LINE) array, gathered a page at a time."""
    out = np.empty((len(lines), LINE), dtype=np.uint8)
    if not len(lines):
        return out
    for p, run in page_runs(lines, _PER_PAGE):
        page = pages._page(p)
        if len(page) == PAGE:
            out[run] = page.reshape(_PER_PAGE, LINE)[lines[run] % _PER_PAGE]
        else:  # the device's last page is short: its lines one by one
            for k in run.tolist():
                out[k] = np.frombuffer(pages.read_bytes(int(lines[k]) * LINE, LINE), dtype=np.uint8)
    return out


def full_outcomes(groups: Sequence[Group], todo: Sequence[int], pages: Pages) -> None:
    """Fill `Group.outcomes[full]` for the one-line groups of `todo` (others are left to the caller):
    the line, if keeping every unit changes it from `pages`, and the digest's change."""
    picked = [gi for gi in todo if len(groups[gi].lines) == 1]
    if not picked:
        return
    lines = np.fromiter((groups[gi].lines[0] for gi in picked), dtype=np.int64, count=len(picked))
    base = read_lines(pages, lines)
    buf = bytearray(base.tobytes())
    for k, gi in enumerate(picked):
        at = k * LINE - int(lines[k]) * LINE
        for p in groups[gi].spec.pieces:
            off = at + p.addr
            buf[off : off + len(p.data)] = p.data
    new = np.frombuffer(buf, dtype=np.uint8).reshape(len(picked), LINE)
    changed = (new != base).any(axis=1).tolist()
    view = memoryview(buf)
    for k, gi in enumerate(picked):
        g = groups[gi]
        if not changed[k]:
            g.outcomes[g.full] = ((), 0)
            continue
        line = int(lines[k])
        content = bytes(view[k * LINE : (k + 1) * LINE])
        g.outcomes[g.full] = (((line, content),), line_hash(line, content) - line_hash(line, base[k].tobytes()))


_BULK_LINES = 32
"""From this many touched lines on, `log_delta` gathers them a page at a time and hashes only the changed."""


def log_delta(pages: Pages, pieces: Sequence) -> int:
    """Write persisted pieces onto `pages` in order; return the image digest's change.

    Many lines are gathered a page at a time, the pieces laid over one buffer, and only the lines
    that changed written back and hashed (a line the pieces leave as it was adds nothing): a
    2 MiB zeroing is 32,768 lines and as many pieces.
    """
    touched = sorted({p.line for p in pieces})
    if len(touched) < _BULK_LINES:
        old = [line_hash(ln, pages.read_bytes(ln * LINE, LINE)) for ln in touched]
        for p in pieces:
            pages.write(p.addr, p.data)
        return sum(line_hash(ln, pages.read_bytes(ln * LINE, LINE)) for ln in touched) - sum(old)
    lines = np.array(touched, dtype=np.int64)
    before = read_lines(pages, lines)
    buf = bytearray(before.tobytes())
    row = {ln: k * LINE - ln * LINE for k, ln in enumerate(touched)}
    for p in pieces:
        off = row[p.line] + p.addr
        buf[off : off + len(p.data)] = p.data
    after = np.frombuffer(buf, dtype=np.uint8).reshape(len(touched), LINE)
    changed = np.flatnonzero((before != after).any(axis=1))
    pages.write_lines(lines[changed], after[changed], LINE)
    delta = 0
    for k in changed.tolist():
        ln = touched[k]
        delta += line_hash(ln, after[k].tobytes()) - line_hash(ln, before[k].tobytes())
    return delta
