"""`durability`: what was made durable before the crash holds its durable value or a later one."""

from __future__ import annotations

import re

from pmfuzz.target import Guarantee

from . import CrashContext, OracleName, Phase, Violation
from ._words import evidence

_METADATA = re.compile(
    r".* (is missing after recovery, but it was made durable at op boundary \d+"
    r"|exists after recovery, but its removal was durable"
    r"|recovered with size \d+, older than durable \(allowed: .*\))"
)


def metadata_lost(message: str) -> bool:
    """Whether a durability violation is about a file's metadata, not its data: its entry, its
    removal or its size as a durability point left them (the log that held them was not forced)."""
    return _METADATA.fullmatch(message) is not None


class Durability:
    name = OracleName.DURABILITY
    guarantee = Guarantee.FSYNC_DURABLE
    phase = Phase.CRASH
    metadata_only = False

    def check(self, ctx: CrashContext) -> list[Violation]:
        out = []
        ex = ctx.expect
        present = set(ctx.fs.files())
        for name in ex.names():
            if name not in present and ex.must_exist(name):
                out.append(
                    Violation(
                        self.name,
                        f"{name} is missing after recovery, but it was made durable at op boundary {ex.start(name)}",
                    )
                )
        for name in sorted(present):
            if not ex.may_exist(name):
                if ex.existed_before(name):
                    out.append(Violation(self.name, f"{name} exists after recovery, but its removal was durable"))
                continue
            size = ctx.fs.size(name)
            sizes = ex.sizes(name)
            if size not in sizes and size in ex.held_sizes(name):
                out.append(
                    Violation(
                        self.name, f"{name} recovered with size {size}, older than durable (allowed: {sorted(sizes)})"
                    )
                )
            words = ctx.words(name)
            v = ctx.verdict(name)
            if v.older.any():
                out.append(
                    Violation(
                        self.name,
                        f"{name} holds data older than what was made durable",
                        evidence(ex, name, words, v.older, size or 0),
                    )
                )
            if v.lost.any():
                out.append(
                    Violation(
                        self.name,
                        f"{name} reads zero where it holds data in every state it may recover to "
                        f"(data lost, or its size reached the media before its data)",
                        evidence(ex, name, words, v.lost, size or 0),
                    )
                )
        return out
