"""`mmap-coherency`: at every quiescent point, loads through a live mapping see what read(2) sees.

MAP_SHARED mappings of a DAX file are the file: every byte a live mapping
shows inside the file's size must equal read(2) of the same file and offset,
and no page-table entry may reach a block the file no longer owns at that
offset (a freed block, or the old copy of a block that was copied on write).
The first half is black-box; the second uses the target's optional
`mapping_blocks(name)` introspection (per mapped page: the block mapped, None
for the zero page, and the block the file has there, None for a hole). Bytes
past EOF and the zero page over a block are not judged: POSIX says nothing
about the former, and the latter is only wrong when it shows wrong bytes,
which the first half sees.
"""

from __future__ import annotations

from pmfuzz.lang.workload import PAGE_SIZE
from pmfuzz.target import Guarantee, mapping_blocks_hook

from . import Evidence, OracleName, Phase, RunContext, Violation, WrongRead
from ._words import content_cause

__all__ = ["MmapCoherency"]


class MmapCoherency:
    name = OracleName.MMAP_COHERENCY
    guarantee = Guarantee.POSIX
    phase = Phase.RUN
    metadata_only = False

    def check(self, ctx: RunContext) -> list[Violation]:
        out: list[Violation] = []
        fs, ref = ctx.target, ctx.ref
        blocks = mapping_blocks_hook(fs)
        for m, mp in sorted(ref.maps.items()):
            name = next((n for n, f in ref.names.items() if f is mp.file), None)
            if name is None or name not in fs.files():
                continue
            size = fs.size(name) or 0
            n = min(mp.length, size - mp.off)
            if n > 0:
                v = self._bytes(ctx, m, name, mp.off, n)
                if v is not None:
                    out.append(v)
            if blocks is not None:
                out += self._blocks(ctx, m, name, mp.off, blocks(m))
        return out

    def _bytes(self, ctx: RunContext, m: str, name: str, off: int, n: int) -> Violation | None:
        got = ctx.target.read_mapping(m, 0, n)
        want = ctx.target.read(name, off, n)
        if got.ok and got.value == want:
            return None
        if not got.ok:
            return Violation(
                self.name,
                f"after op {ctx.index} loads through {m} inside {name}'s size give {got}, read(2) gives data",
            )
        a, b = got.value, want
        assert isinstance(a, bytes)
        i = next(k for k in range(min(len(a), len(b))) if a[k] != b[k])
        pg = i // PAGE_SIZE
        lo, hi = i - i % 8, min(len(a), (pg + 1) * PAGE_SIZE)
        return Violation(
            self.name,
            f"after op {ctx.index} loads through {m} page {pg} differ from read(2) of {name} from offset {off + lo}",
            (
                Evidence(f"{m}->{name}", off + lo, off + hi, "mapping: " + _describe(a[lo : lo + 64], off + lo)),
                Evidence(name, off + lo, off + hi, "read(2): " + _describe(b[lo : lo + 64], off + lo)),
            ),
            content_cause(a[lo : lo + 8], b[lo : lo + 8]),
            WrongRead(name, off + lo, a[lo : lo + 8], b[lo : lo + 8], (m, lo)),
        )

    def _blocks(self, ctx: RunContext, m: str, name: str, off: int, pages: dict) -> list[Violation]:
        for vpage, (mapped, owned) in sorted(pages.items()):
            if mapped is None or mapped == owned:
                continue
            has = "a hole" if owned is None else f"block {owned}"
            return [
                Violation(
                    self.name,
                    f"after op {ctx.index} {m} page {vpage} maps device block {mapped}, "
                    f"which {name} no longer owns there (it has {has})",
                    (Evidence(f"{m}->{name}", off + vpage * PAGE_SIZE, off + (vpage + 1) * PAGE_SIZE, "stale PTE"),),
                    "stale PTE",
                    page=(m, vpage * PAGE_SIZE),
                )
            ]
        return []


def _describe(b: bytes, base: int) -> str:
    from pmfuzz.lang.data import describe

    return describe(b, base=base)
