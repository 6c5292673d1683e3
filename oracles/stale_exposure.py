"""`stale-exposure`: every readable word is zero or a value this file held at this offset."""

from __future__ import annotations

from pmfuzz.target import Guarantee

from . import CrashContext, OracleName, Phase, Violation
from ._words import evidence


class StaleExposure:
    name = OracleName.STALE_EXPOSURE
    guarantee = Guarantee.NO_STALE_DATA
    phase = Phase.CRASH
    metadata_only = False

    def check(self, ctx: CrashContext) -> list[Violation]:
        out = []
        ex = ctx.expect
        for name in ctx.fs.files():
            if not ex.may_exist(name):
                continue
            words = ctx.words(name)
            size = ctx.fs.size(name) or 0
            v = ctx.verdict(name)
            if v.stale.any():
                out.append(
                    Violation(self.name, f"{name} shows data it never held", evidence(ex, name, words, v.stale, size))
                )
        return out
