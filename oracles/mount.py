"""`mount`: every crash image mounts (recovery does not raise; the engine reports that) and fsck is clean."""

from __future__ import annotations

from pmfuzz.target import Guarantee

from . import CrashContext, OracleName, Phase, Violation


class Mount:
    name = OracleName.MOUNT
    guarantee = Guarantee.MOUNTABLE
    phase = Phase.CRASH
    metadata_only = True
    """Reads only what mount reads (fsck, names, sizes): the engine runs it once per metadata state."""

    def check(self, ctx: CrashContext) -> list[Violation]:
        out = [Violation(self.name, f"fsck: {p}") for p in ctx.fs.fsck()]
        ex = ctx.expect
        for name in ctx.fs.files():
            if not ex.may_exist(name) and not ex.existed_before(name):
                out.append(Violation(self.name, f"{name} exists after recovery but was never created"))
                continue
            size = ctx.fs.size(name)
            if ex.may_exist(name) and size not in ex.held_sizes(name):
                out.append(
                    Violation(
                        self.name,
                        f"{name} recovered with size {size}, which it never had "
                        f"(sizes held: {sorted(ex.held_sizes(name))})",
                    )
                )
        return out
