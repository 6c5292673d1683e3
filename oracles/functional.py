"""`functional`: crash-free, every op's result and the whole visible state equal the reference's."""

from __future__ import annotations

import re

from pmfuzz.lang.workload import PAGE_SIZE
from pmfuzz.target import Guarantee, content_key_hooks

from . import Evidence, OracleName, Phase, RunContext, Violation, WrongRead
from ._words import content_cause

_RESULT = re.compile(r"op \d+ `.*` returned .*, POSIX says .*")


def result_differs(message: str) -> bool:
    """Whether a functional finding says an op returned what POSIX does not (not what a read saw):
    the reference then holds no version of what the target's op did, even inside it."""
    return _RESULT.fullmatch(message) is not None


KEYED_FROM = 64 * 1024
"""Bytes from which a file or mapping is compared again only when its content key changed: below,
reading it costs less than its key."""


class Functional:
    name = OracleName.FUNCTIONAL
    guarantee = Guarantee.POSIX
    phase = Phase.RUN
    metadata_only = False

    def check(self, ctx: RunContext) -> list[Violation]:
        out: list[Violation] = []
        if ctx.got != ctx.want:
            out.append(Violation(self.name, f"op {ctx.index} `{ctx.op}` returned {ctx.got}, POSIX says {ctx.want}"))
        fs, ref = ctx.target, ctx.ref
        got_files, want_files = fs.files(), ref.files()
        if got_files != want_files:
            out.append(Violation(self.name, f"after op {ctx.index} the files are {got_files}, POSIX says {want_files}"))
        hooks = content_key_hooks(fs) if ctx.memo is not None else None
        same: dict = {} if ctx.memo is None else ctx.memo.setdefault(self.name, {})
        """Per file and mapping, the keys of both sides when they last read alike (`KeysContent`)."""
        for f in set(got_files) & set(want_files):
            gs, ws = fs.size(f), ref.size(f)
            if gs != ws:
                out.append(Violation(self.name, f"after op {ctx.index} {f} has size {gs}, POSIX says {ws}"))
                continue
            rf = ref.names[f]
            key = _key(hooks[0], f, (rf, rf.version)) if hooks is not None and (ws or 0) >= KEYED_FROM else None
            if key is not None and _equal(same.get(("file", f)), key):
                continue
            a, b = fs.read(f, 0, ws or 0), ref.read(f, 0, ws or 0)
            if a == b and key is not None:
                same[("file", f)] = key
            elif a != b:
                same.pop(("file", f), None)
                i = next(i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y) if len(a) == len(b) else 0
                i -= i % 8
                out.append(
                    Violation(
                        self.name,
                        f"after op {ctx.index} read(2) of {f} differs from POSIX",
                        (
                            Evidence(
                                f, i, min(len(a), i + 64), _describe(a[i : i + 64], i), _describe(b[i : i + 64], i)
                            ),
                        ),
                        content_cause(a[i : i + 8], b[i : i + 8]),
                        WrongRead(f, i, a[i : i + 8], b[i : i + 8]),
                    )
                )
        for m, mp in sorted(ref.maps.items()):
            pages = -(-mp.length // PAGE_SIZE)
            mine = (mp, mp.off, mp.length, mp.file, mp.file.version)
            key = _key(hooks[1], m, mine) if hooks is not None and mp.length >= KEYED_FROM else None
            if key is not None and _equal(same.get(("map", m)), key):
                continue
            same.pop(("map", m), None)
            whole = ref.read_mapping(m, 0, pages * PAGE_SIZE)
            if whole.ok and fs.read_mapping(m, 0, pages * PAGE_SIZE) == whole:
                if key is not None:
                    same[("map", m)] = key
                continue  # one read of the mapping, not one per page: a 4 MiB mapping is 1,024 pages
            for pg in range(pages):
                want = ref.read_mapping(m, pg * PAGE_SIZE, PAGE_SIZE)
                got = fs.read_mapping(m, pg * PAGE_SIZE, PAGE_SIZE)
                if got != want:
                    key = None
                    out.append(
                        Violation(
                            self.name,
                            f"after op {ctx.index} loads through {m} page {pg} "
                            f"see {_short(got)}, POSIX says {_short(want)}",
                            cause=_page_cause(got, want),
                            read=_page_read(got, want, ctx, m, mp, pg),
                        )
                    )
                    break
            if key is not None:
                same[("map", m)] = key  # every page read alike, past EOF too: one read a page, not again
        return out


def _key(hook, name: str, ref_side: tuple) -> tuple | None:
    """Both sides' key of a file or mapping, or None when the target gives none (or an unhashable one)."""
    got = hook(name)
    if got is None:
        return None
    try:
        hash(got)
    except TypeError:
        return None
    return (got, *ref_side)


def _equal(old: tuple | None, new: tuple) -> bool:
    """Whether two keys are the same; a target's key that cannot be compared is not."""
    if old is None:
        return False
    try:
        return bool(old == new)
    except Exception:
        return False


def _short(r) -> str:
    if r.ok and isinstance(r.value, bytes):
        from pmfuzz.lang.data import describe

        return describe(r.value)[:160]
    return str(r)


def _describe(b: bytes, base: int) -> str:
    from pmfuzz.lang.data import describe

    return describe(b, base=base)


def _first_diff(got, want) -> int | None:
    if got.ok and want.ok and isinstance(got.value, bytes) and isinstance(want.value, bytes):
        a, b = got.value, want.value
        i = next((k for k in range(min(len(a), len(b))) if a[k] != b[k]), None)
        return None if i is None else i - i % 8
    return None


def _page_cause(got, want) -> str:
    """A page seen through a mapping as a cause: its first differing word, or what the load gave."""
    i = _first_diff(got, want)
    return "" if i is None else content_cause(got.value[i : i + 8], want.value[i : i + 8])


def _page_read(got, want, ctx: RunContext, m: str, mp, pg: int) -> WrongRead | None:
    """The first wrong word of a mapped page, as a read of the file it maps."""
    i = _first_diff(got, want)
    name = next((n for n, f in ctx.ref.names.items() if f is mp.file), None)
    if i is None or name is None:
        return None
    at = pg * PAGE_SIZE + i
    return WrongRead(name, mp.off + at, got.value[i : i + 8], want.value[i : i + 8], (m, at))
