"""A brute-force crash-image enumerator written from the Px86 rules, for tests.

It simulates the machine step by step: execute the next instruction, or write
back any pending unit whose ordering predecessors are already on the media,
and a crash may strike between any two steps. It shares no code with
`pmfuzz.pmem`: the only common ground is the rules themselves.
"""

from __future__ import annotations

from dataclasses import dataclass

LINE, WORD = 64, 8


@dataclass(frozen=True)
class Op:
    kind: str  # store ntstore clwb clflushopt clflush sfence mfence
    addr: int = 0
    data: bytes = b""
    size: int = 0


@dataclass(frozen=True)
class U:
    idx: int
    ev: int
    lo: int
    hi: int
    data: bytes
    nt: bool

    @property
    def line(self) -> int:
        return self.lo // LINE

    @property
    def word(self) -> int:
        return self.lo // WORD


def units_of(ops: list[Op]) -> list[list[U]]:
    out: list[list[U]] = []
    n = 0
    for i, op in enumerate(ops):
        us = []
        if op.kind in ("store", "ntstore"):
            end = op.addr + len(op.data)
            for w in range(op.addr // WORD, (end - 1) // WORD + 1):
                lo, hi = max(op.addr, w * WORD), min(end, w * WORD + WORD)
                us.append(U(n, i, lo, hi, op.data[lo - op.addr : hi - op.addr], op.kind == "ntstore"))
                n += 1
        out.append(us)
    return out


def ordered(u: U, v: U) -> bool:
    """Must u (earlier in program order) reach the media before v?"""
    if u.line != v.line:
        return False
    if not u.nt or not v.nt:
        return True
    return u.word == v.word


def _apply(media: bytes, u: U) -> bytes:
    return media[: u.lo] + u.data + media[u.hi :]


def _lines(op: Op) -> range:
    return range(op.addr // LINE, (op.addr + op.size - 1) // LINE + 1)


def adr(ops: list[Op], initial: bytes) -> tuple[set[bytes], dict[int, set[bytes]]]:
    """All crash images under ADR, and per instruction index the images just before it executes."""
    per = units_of(ops)
    allu = [u for us in per for u in us]
    issued_by = [sum(len(us) for us in per[:pc]) for pc in range(len(ops) + 1)]

    def preds(u: U) -> list[int]:
        return [v.idx for v in allu[: u.idx] if ordered(v, u)]

    pred = [preds(u) for u in allu]

    def fence_needs(pc: int) -> set[int]:
        need = set()
        for u in allu[: issued_by[pc]]:
            if u.nt or any(
                ops[e].kind in ("clwb", "clflushopt", "clflush") and u.line in _lines(ops[e])
                for e in range(u.ev + 1, pc)
            ):
                need.add(u.idx)
        return need

    def clflush_needs(pc: int) -> set[int]:
        lines = set(_lines(ops[pc]))
        return {u.idx for u in allu[: issued_by[pc]] if not u.nt and u.line in lines}

    start = (0, frozenset(), initial)
    seen = {start}
    stack = [start]
    images: set[bytes] = set()
    before: dict[int, set[bytes]] = {}
    while stack:
        pc, w, media = stack.pop()
        images.add(media)
        before.setdefault(pc, set()).add(media)
        nxt = []
        for u in allu[: issued_by[pc]]:
            if u.idx not in w and all(p in w for p in pred[u.idx]):
                nxt.append((pc, w | {u.idx}, _apply(media, u)))
        if pc < len(ops):
            kind = ops[pc].kind
            if kind in ("sfence", "mfence"):
                ok = fence_needs(pc) <= w
            elif kind == "clflush":
                ok = clflush_needs(pc) <= w
            else:
                ok = True
            if ok:
                nxt.append((pc + 1, w, media))
        for s in nxt:
            if s not in seen:
                seen.add(s)
                stack.append(s)
    return images, before


def eadr(ops: list[Op], initial: bytes) -> set[bytes]:
    """All crash images under eADR."""
    per = units_of(ops)
    nts = [u for us in per for u in us if u.nt]

    start = (0, 0, frozenset(), initial)
    seen = {start}
    stack = [start]
    images: set[bytes] = set()
    while stack:
        pc, sub, w, media = stack.pop()
        images.add(media)
        nxt = []
        issued_nt = [u for u in nts if u.ev < pc]
        for u in issued_nt:
            if u.idx not in w and all(v.idx in w for v in issued_nt if v.idx < u.idx and v.word == u.word):
                nxt.append((pc, sub, w | {u.idx}, _apply(media, u)))
        if pc < len(ops):
            op = ops[pc]
            if op.kind == "store":
                us = per[pc]
                if sub == 0:
                    lines = {u.line for u in us}
                    ok = all(u.idx in w for u in issued_nt if u.line in lines)
                else:
                    ok = True
                if ok:
                    media2 = _apply(media, us[sub])
                    nxt.append((pc + 1, 0, w, media2) if sub + 1 == len(us) else (pc, sub + 1, w, media2))
            elif op.kind in ("sfence", "mfence"):
                if all(u.idx in w for u in issued_nt):
                    nxt.append((pc + 1, 0, w, media))
            else:
                nxt.append((pc + 1, 0, w, media))
        for s in nxt:
            if s not in seen:
                seen.add(s)
                stack.append(s)
    return images
