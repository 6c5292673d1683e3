"""A recovered image mounted once per metadata state, with its data lines swapped in per crash state.

Crash states of one point that share their metadata lines differ only in data lines, which no
recovery reads (the lines outside the target's metadata regions): the judge mounts once per
metadata state and rewrites only data lines between the states it judges there. So the file list
and sizes a mount shows are fixed for its life, and read once (`FixedMetadataView`).
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable
from typing import Any, cast

import numpy as np

from oracles import VerdictCache

from ..execution.blame import pmfuzz_fault
from ..execution.watchdog import TargetHang, deadline
from ..lang.workload import BLOCK_SIZE
from ..pmem import LINE, CrashPoint, CrashState, Event, PMem
from ..pmem.outcomes import read_lines
from ..signature import How
from ..target import MountedFS, file_blocks

__all__ = ["FixedMetadataView", "Mounted", "block_maps"]


_BULK_LINES = 48
"""Lines from which `Mounted.patch` writes a page at a time: below it, one write per line costs less."""


class FixedMetadataView:
    """A mounted image's view whose `files()` and `size()` are asked of the target once each: the
    oracles ask them of every crash state (five oracles, each file), and they are metadata."""

    __slots__ = ("_files", "_fs", "_sizes")

    def __init__(self, fs: MountedFS) -> None:
        self._fs = fs
        self._files: list[str] | None = None
        self._sizes: dict[str, int | None] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._fs, name)

    def files(self) -> list[str]:
        if self._files is None:
            self._files = self._fs.files()
        return list(self._files)

    def size(self, name: str) -> int | None:
        try:
            return self._sizes[name]
        except KeyError:
            got = self._sizes[name] = self._fs.size(name)
            return got


def block_maps(fs: MountedFS, limit: float | None) -> dict[str, dict[int, list[int]]] | None:
    """Per file of the recovered image, the device blocks its data is read from and the file offsets
    each backs; None if the target does not tell (`file_blocks`) or fails to. Unwritten blocks read
    as zeroes whatever the device holds: they are left out."""
    maps: dict[str, dict[int, list[int]]] = {}
    try:
        with deadline(limit, "file_blocks()"):
            for name in fs.files():
                got = file_blocks(fs, name, fs.size(name) or 0)
                if got is None:
                    return None
                m = maps[name] = {}
                for foff, dev, unwritten in got:
                    if dev is not None and not unwritten:
                        m.setdefault(dev // BLOCK_SIZE, []).append(foff)
    except (Exception, TargetHang) as e:
        if pmfuzz_fault(e):
            raise
        return None
    return maps


class Mounted:
    """A recovered image mounted once per metadata state; data groups are swapped in per crash state.

    The device starts with every data group at "nothing kept" (it holds the point's media and the
    state's metadata lines); `patch` rewrites only the groups
    whose choice differs from the previous state's. `judged`: the data oracles' violations per
    choice of the `visible` groups (None: every state is judged).
    """

    def __init__(self, fs: MountedFS, pm: PMem, point: CrashPoint, data_groups: list[int]) -> None:
        self.fs: MountedFS = cast(MountedFS, FixedMetadataView(fs))
        self.pm = pm
        self.point = point
        self.data_groups = data_groups
        self.meta_findings: list[tuple] = []
        """(oracle, message, evidence, traceback) of each metadata oracle's violation."""
        self.meta_store: tuple[How, Event] | None = None
        """For a metadata state that broke a rule: the store that broke it, if known (`Judge._meta_store`)."""
        self.verdicts = VerdictCache()
        self.visible: tuple[int, ...] | None = None
        self.judged: dict[tuple[int, ...], list[tuple]] = {}
        self.blocks: dict[str, dict[int, list[int]]] | None = None
        self._cur: dict[int, int] = dict.fromkeys(data_groups, 0)
        self._first: tuple[int, ...] | None = None
        self._base: tuple[bool, tuple[int, ...]] | None = None
        """The base and deviations of the state the device holds, if known (see `CrashState.base`)."""
        self._data_set = set(data_groups)
        self._visible_set: set[int] = set()
        self._moved: set[int] = set()
        """Data groups whose choice differs from the first patched (judged) state's."""

    def map_blocks(self, limit: float | None) -> None:
        """Learn which blocks each file reads from. With metadata fixed, the data oracles read file
        data only through the files' blocks: states whose data differ only in other lines (a block
        allocated by a transaction the crash lost, a COW staging copy not yet remapped) share one
        verdict (`visible`), and a file's words are read again only where the lines of a group
        moved since the first judged state back them (`VerdictCache.moved`)."""
        self.blocks = maps = block_maps(self.fs, limit)
        if maps is None:
            return
        used = {b for m in maps.values() for b in m}
        groups = self.point.groups
        self.visible = tuple(
            gi for gi in self.data_groups if any(ln * LINE // BLOCK_SIZE in used for ln in groups[gi].lines)
        )
        self._visible_set = set(self.visible)
        mine = weakref.ref(self)  # not a cycle through the verdicts it owns
        self.verdicts.moved = lambda name, nwords: None if (m := mine()) is None else m._moved_words(name, nwords)

    def _moved_words(self, name: str, nwords: int) -> np.ndarray | None:
        m = None if self.blocks is None else self.blocks.get(name)
        if m is None or self._first is None or len(self._moved) * 4 > nwords:
            return None
        groups = self.point.groups
        idx: list[int] = []
        for gi in self._moved:
            for ln in groups[gi].lines:
                at = ln * LINE
                for foff in m.get(at // BLOCK_SIZE, ()):
                    w = (foff + at % BLOCK_SIZE) // 8
                    idx.extend(range(w, w + LINE // 8))
        got = np.unique(np.array(idx, dtype=np.int64))
        return got[got < nwords]

    def visible_key(self, state: CrashState) -> tuple | None:
        """What a state's data oracles can see of its data groups: their choices, or, for a state
        known by its base and deviations, those of the visible groups (None: every state is judged)."""
        if self.visible is None:
            return None
        ch, base = state.choices, state.base
        if base is None:
            return tuple(ch[gi] for gi in self.visible)
        return ("dev", base[0], *((gi, ch[gi]) for gi in base[1] if gi in self._visible_set))

    def patch(self, state: CrashState) -> None:
        """Rewrite the data groups whose choice differs from what the device holds: those the state
        and the last one deviate in when both have the same base, else every data group."""
        pages, point, cur, moved = self.pm.pages, self.point, self._cur, self._moved
        choices, base = state.choices, state.base
        first = self._first
        if first is None:
            first = self._first = choices
        todo: Iterable[int] = self.data_groups
        if base is not None and self._base is not None and base[0] == self._base[0]:
            todo = sorted({*self._base[1], *base[1]} & self._data_set)
        self._base = base
        writes: dict[int, bytes | None] = {}
        """Per line, its content as the last group to touch it leaves it (None: the base media's)."""
        groups = point.groups
        for gi in todo:
            c = choices[gi]
            if cur[gi] == c:
                continue
            writes.update(dict.fromkeys(groups[gi].lines))
            writes.update(point.group_lines(gi, c))
            cur[gi] = c
            if c == first[gi]:
                moved.discard(gi)
            else:
                moved.add(gi)
        if len(writes) < _BULK_LINES:
            for ln, b in writes.items():
                pages.write(ln * LINE, b if b is not None else point.base_line(ln))
        else:
            lines = np.fromiter(writes, dtype=np.int64, count=len(writes))
            data = read_lines(point.base_pages(), lines)
            for k, b in enumerate(writes.values()):
                if b is not None:
                    data[k] = np.frombuffer(b, dtype=np.uint8)
            pages.write_lines(lines, data, LINE)
