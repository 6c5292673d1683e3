"""`cow-atomicity`: a write to shared blocks leaves each block wholly as before or wholly as after."""

from __future__ import annotations

import numpy as np

from pmfuzz.lang.data import describe
from pmfuzz.reference.expect import WORDS_PER_BLOCK
from pmfuzz.target import Guarantee

from . import CrashContext, Evidence, OracleName, Phase, Violation


class CowAtomicity:
    name = OracleName.COW_ATOMICITY
    guarantee = Guarantee.COW_ATOMIC
    phase = Phase.CRASH
    metadata_only = False

    def check(self, ctx: CrashContext) -> list[Violation]:
        out = []
        ex = ctx.expect
        for name in ctx.fs.files():
            if not ex.may_exist(name):
                continue
            words = ctx.words(name)
            for ev in ex.cow_events(name):
                lo = ev.block * WORDS_PER_BLOCK
                hi = min(lo + WORDS_PER_BLOCK, len(words))
                if lo >= hi:
                    continue
                idx = np.arange(lo, hi)
                before, after = ex.block_side(name, ev, idx, words[lo:hi], ctx.fs.size(name))
                if not (before or after):
                    raw = words[lo:hi].astype("<u8").tobytes()
                    out.append(
                        Violation(
                            self.name,
                            f"block {ev.block} of {name}, copied on write by op {ev.op}, is neither its version "
                            f"before that write nor after it",
                            (
                                Evidence(
                                    name,
                                    lo * 8,
                                    hi * 8,
                                    describe(raw, base=lo * 8)[:400],
                                    f"all of op {ev.op}'s before-version or all of its after-version",
                                ),
                            ),
                        )
                    )
        return out
