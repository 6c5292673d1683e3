"""`layout`: no store or DMA reaches a block after its file lost it (freed, or given to another file).

A pinned page is a promise to a device: the file system must not free or
remap the block under it until the pin is dropped (dax_layout_busy_page,
break_layouts). The black-box view cannot see blocks, so this oracle reads
the target's optional `layout_violations()` introspection (`pmfuzz.target.ReportsLayout`): (op index, what)
for every access it let through to a block that the mapped file no longer
has at that page. A target without it is not judged.
"""

from __future__ import annotations

from pmfuzz.target import Guarantee, layout_violations_hook

from . import OracleName, Phase, RunContext, Violation

__all__ = ["Layout"]


class Layout:
    name = OracleName.LAYOUT
    guarantee = Guarantee.POSIX
    phase = Phase.RUN
    metadata_only = False

    def check(self, ctx: RunContext) -> list[Violation]:
        fn = layout_violations_hook(ctx.target)
        if fn is None:
            return []
        first = ctx.index if ctx.first is None else ctx.first
        return [Violation(self.name, f"op {op}: {what}") for op, what in fn() if first <= op <= ctx.index]
