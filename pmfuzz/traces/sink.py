"""Where a crash image is laid out for a checker: a buffer, and a file when the checker needs one.

Consecutive crash states differ in a few lines, so the sink rewrites only
the cache lines whose content changed since the previous image (found by page
identity of the copy-on-write base, then by comparing contents), never the
whole file per state.
"""

from __future__ import annotations

import os

import numpy as np

from ..pmem import LINE, PAGE, CrashImage
from .model import Region

__all__ = ["ImageSink"]


class ImageSink:
    """The current image of one region, in memory and optionally in a file.

    `bytes_written` counts what reached the file (or the buffer): the cost the
    incremental update keeps small.
    """

    def __init__(self, region: Region, path: str | None = None, initial: bytes | None = None) -> None:
        self.region = region
        self.path = path
        self._lo = region.offset
        self._hi = region.offset + region.size
        self._buf = bytearray(initial[self._lo : self._hi] if initial is not None else region.size)
        self._arr = np.frombuffer(self._buf, dtype=np.uint8)
        self._view = memoryview(self._buf).toreadonly()
        self._fd: int | None = None
        if path is not None:
            self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
            os.pwrite(self._fd, bytes(self._buf), 0)
        self._refs: dict[int, object] = {}
        self._base: object = None
        self._overlay: frozenset[int] = frozenset()
        self.bytes_written = 0

    @property
    def view(self) -> memoryview:
        """The current image, read-only; valid until the next `update`."""
        return self._view

    def _write_runs(self, start: int, want: np.ndarray) -> None:
        """Make device bytes [start, start+len(want)) equal `want`, writing only changed lines."""
        lo, hi = max(start, self._lo), min(start + len(want), self._hi)
        if lo >= hi:
            return
        want = want[lo - start : hi - start]
        have = self._arr[lo - self._lo : hi - self._lo]
        diff = np.flatnonzero(have != want)
        if not len(diff):
            return
        lines = np.unique((diff + lo) // LINE)
        i = 0
        while i < len(lines):
            j = i
            while j + 1 < len(lines) and lines[j + 1] == lines[j] + 1:
                j += 1
            a, b = max(int(lines[i]) * LINE, lo), min((int(lines[j]) + 1) * LINE, hi)
            chunk = want[a - lo : b - lo]
            self._arr[a - self._lo : b - self._lo] = chunk
            if self._fd is not None:
                os.pwrite(self._fd, chunk.tobytes(), a - self._lo)
            self.bytes_written += b - a
            i = j + 1

    def _write_line(self, line: int, content: bytes) -> None:
        """Make one cache line equal `content` (plain bytes: cheaper than numpy for 64 bytes)."""
        a, b = max(line * LINE, self._lo), min((line + 1) * LINE, self._hi)
        if a >= b:
            return
        want = content[a - line * LINE : b - line * LINE]
        lo, hi = a - self._lo, b - self._lo
        if self._buf[lo:hi] == want:
            return
        self._buf[lo:hi] = want
        if self._fd is not None:
            os.pwrite(self._fd, want, lo)
        self.bytes_written += b - a

    def update(self, image: CrashImage) -> None:
        base = image.base
        first_page, last_page = self._lo // PAGE, (self._hi - 1) // PAGE
        if base is not self._base:
            for p in range(first_page, last_page + 1):
                arr = base._page(p)  # identity of the shared page tells whether it can differ at all
                if self._refs.get(p) is not arr:
                    self._write_runs(p * PAGE, arr)
                    self._refs[p] = arr
            self._base = base
        new = frozenset(ln for ln in image.lines if self._lo < (ln + 1) * LINE and ln * LINE < self._hi)
        for ln in self._overlay - new:
            self._write_line(ln, base.read_bytes(ln * LINE, LINE))
        for ln in new:
            self._write_line(ln, image.lines[ln])
        self._overlay = new

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
