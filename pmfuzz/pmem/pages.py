"""Copy-on-write paged byte storage.

Every device, snapshot and crash image is a `Pages`: a shared tuple of
read-only base pages plus a small dict of pages changed on top of it. Forking
costs O(changed pages), never O(device size), which keeps the cost of a crash
state flat as the device grows.
"""

from __future__ import annotations

import numpy as np

from .trace import PAGE

__all__ = ["Pages", "page_runs"]

_SHIFT = PAGE.bit_length() - 1
_MASK = PAGE - 1


def page_runs(lines: np.ndarray, per: int) -> list[tuple[int, np.ndarray]]:
    """(page, indices into `lines`) for each page the lines (`per` to a page) lie in: bulk reads and
    writes of many lines touch each page once."""
    if not len(lines):
        return []
    page_of = lines // per
    order = np.argsort(page_of, kind="stable")
    cuts = np.flatnonzero(np.diff(page_of[order])) + 1
    return [(int(page_of[run[0]]), run) for run in np.split(order, cuts)]


class Pages:
    """Byte storage of `size` bytes in `PAGE`-sized copy-on-write pages."""

    __slots__ = ("_base", "_npages", "_owned", "_top", "size")

    def __init__(self, size: int, base: tuple[np.ndarray, ...], top: dict[int, np.ndarray] | None = None):
        self.size = size
        self._base = base
        self._top: dict[int, np.ndarray] = {} if top is None else top
        self._owned: set[int] = set()
        self._npages = len(base)

    @classmethod
    def zeros(cls, size: int) -> Pages:
        npages = (size + PAGE - 1) // PAGE
        zero = np.zeros(PAGE, dtype=np.uint8)
        zero.flags.writeable = False
        base = (zero,) * npages
        pages = cls(size, base)
        tail = size - (npages - 1) * PAGE
        if tail != PAGE:
            last = np.zeros(tail, dtype=np.uint8)
            last.flags.writeable = False
            pages._base = (*base[:-1], last)
        return pages

    @classmethod
    def from_array(cls, data: np.ndarray) -> Pages:
        data = np.array(data, dtype=np.uint8, copy=True)
        data.flags.writeable = False
        base = tuple(data[i : i + PAGE] for i in range(0, len(data), PAGE))
        return cls(len(data), base)

    def _page(self, p: int) -> np.ndarray:
        page = self._top.get(p)
        return self._base[p] if page is None else page

    def _writable(self, p: int) -> np.ndarray:
        if p in self._owned:
            return self._top[p]
        page = self._page(p).copy()
        self._top[p] = page
        self._owned.add(p)
        return page

    def read(self, addr: int, n: int) -> np.ndarray:
        """A fresh array holding bytes [addr, addr+n)."""
        p0 = addr >> _SHIFT
        off = addr & _MASK
        if p0 == (addr + n - 1) >> _SHIFT:
            return self._page(p0)[off : off + n].copy()
        return self.read_into(addr, np.empty(n, dtype=np.uint8))

    def read_into(self, addr: int, out: np.ndarray) -> np.ndarray:
        """Bytes [addr, addr+len(out)) copied into `out` (uint8), which is returned: a file read
        fills its buffer in place, not through a copy per extent."""
        n = len(out)
        p0 = addr >> _SHIFT
        p1 = (addr + n - 1) >> _SHIFT
        off = addr & _MASK
        pos = 0
        for p in range(p0, p1 + 1):
            page = self._page(p)
            chunk = page[off:] if p != p1 else page[off : off + n - pos]
            out[pos : pos + len(chunk)] = chunk
            pos += len(chunk)
            off = 0
        return out

    def read_bytes(self, addr: int, n: int) -> bytes:
        p0 = addr >> _SHIFT
        off = addr & _MASK
        if off + n <= PAGE:
            return self._page(p0)[off : off + n].tobytes()
        return self.read(addr, n).tobytes()

    def write(self, addr: int, data: bytes | np.ndarray) -> None:
        if isinstance(data, (bytes, bytearray, memoryview)):
            data = np.frombuffer(data, dtype=np.uint8)
        n = len(data)
        pos = 0
        p = addr >> _SHIFT
        off = addr & _MASK
        while pos < n:
            page = self._writable(p)
            k = min(len(page) - off, n - pos)
            page[off : off + k] = data[pos : pos + k]
            pos += k
            p += 1
            off = 0

    def write_lines(self, lines: np.ndarray, data: np.ndarray, line: int) -> None:
        """Write row k of `data` at line `lines[k]` (lines of `line` bytes, distinct), a page at a
        time: swapping a crash state's data lines in one `write` per line cost more than judging it."""
        per = PAGE // line
        for p, run in page_runs(lines, per):
            page = self._writable(p)
            if len(page) == PAGE:
                page.reshape(per, line)[lines[run] % per] = data[run]
            else:  # the device's short last page
                for k in run.tolist():
                    self.write(int(lines[k]) * line, data[k])

    def fill(self, addr: int, n: int, value: np.ndarray | int) -> None:
        """Write `n` bytes from an array (or a repeated byte) without a temporary bytes object."""
        if isinstance(value, int):
            value = np.full(n, value, dtype=np.uint8)
        self.write(addr, value)

    def fork(self) -> Pages:
        """An independent copy sharing all current pages copy-on-write."""
        if len(self._top) > 64:
            self._consolidate()
        self._owned = set()
        return Pages(self.size, self._base, dict(self._top))

    def _consolidate(self) -> None:
        base = list(self._base)
        for p, page in self._top.items():
            page.flags.writeable = False
            base[p] = page
        self._base = tuple(base)
        self._top = {}
        self._owned = set()

    def to_array(self) -> np.ndarray:
        return self.read(0, self.size)
