"""A run's digest: two schedules with equal digests get equal verdicts, so one is judged."""

from __future__ import annotations

from ..pmem import PMem
from ..reference import Reference
from ..target import MountedFS, layout_violations_hook, mapping_blocks_hook
from ..verdict import Findings, filing_key
from .quiescent import TraceDigest

__all__ = ["run_digest"]


def run_digest(
    trace: TraceDigest,
    pm: PMem,
    results: list[str],
    orders: list[tuple[int, ...]],
    fs: MountedFS,
    ref: Reference,
    found: Findings,
) -> bytes:
    """What decides every verdict of a run: its trace, results, serial orders, mapping views, what
    the target's introspection hooks tell the oracles (which block each mapped page reaches, which
    accesses reached a block the file lost), and what the oracles found while it ran (a later op may
    undo what one saw after a group): two schedules may leave the same trace -- a lazy log writes
    nothing at commit -- yet differ in whether a store came before a remap."""
    h = trace.of(pm)
    h.update(repr((results, orders, sorted(repr(filing_key(f)) for f in found.values()))).encode())
    blocks = mapping_blocks_hook(fs)
    for m, mp in sorted(ref.maps.items()):
        got = fs.read_mapping(m, 0, mp.length)
        h.update(repr((m, str(got))).encode() + (got.value if isinstance(got.value, bytes) else b""))
        if blocks is not None:
            h.update(repr(blocks(m)).encode())
    layout = layout_violations_hook(fs)
    if layout is not None:
        h.update(repr(layout()).encode())
    return h.digest()
