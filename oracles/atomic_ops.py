"""`atomic-ops` (opt-in): the recovered state is exactly the state before or after the op in flight."""

from __future__ import annotations

from pmfuzz.target import Guarantee

from . import CrashContext, OracleName, Phase, Violation


class AtomicOps:
    name = OracleName.ATOMIC_OPS
    guarantee = Guarantee.ATOMIC_OPS
    phase = Phase.CRASH
    metadata_only = False

    def check(self, ctx: CrashContext) -> list[Violation]:
        ex = ctx.expect
        candidates = sorted({ex.completed, ex.upper})
        files = ctx.fs.files()
        for b in candidates:
            state = ex.state_at(b)
            if sorted(state) != files:
                continue
            if all(
                ctx.fs.size(n) == v.size and ctx.fs.read(n, 0, v.size) == v.words.tobytes()[: v.size]
                for n, v in state.items()
            ):
                return []
        return [
            Violation(
                self.name, f"recovered state is neither the state before op {ex.completed} nor after it (files {files})"
            )
        ]
