"""The daxfs COW designs against the real kernel's fsdax COW (XFS-DAX, Linux 6.1), on the same workloads.

    .venv/bin/python benchmarks/cow_designs.py [--states 64] [--only NAME] [--domain adr]

Every workload starts from a fsync'd 8 KiB f0 cloned into f1 (reflink, fsync'd),
then writes, faults, punches or truncates into the shared blocks of f1. Each
runs on daxfs with the three designs (zero, unwritten, cow-remap) and on
xfs-dax; every distinct crash state is recovered and the block the workload
copies on write (the "COW block") is classified by what it holds:

  old    all of it as before the COW op        new    all of it as after
  torn   every word old or new, but both        stale  a word that is neither (poison, another
                                                       file's, or never written: an unflushed copy)
  gone   f1 or its block missing

with the oracles' verdicts on that state. Only crash states from the COW op on
are counted (earlier ones cannot hold the COW). The table printed at the end
is the answer to "can a DAX COW be atomic with its data copy?", per design
and on the kernel itself.
"""

from __future__ import annotations

import argparse
import collections
import time
from dataclasses import dataclass, field

import numpy as np

from oracles import CrashContext, CrashOracle, OracleName, Phase, Violation, default_oracles, is_crash_oracle
from pmfuzz.judging.engine import Options, check
from pmfuzz.lang.workload import parse
from pmfuzz.reference import Reference
from pmfuzz.target import Guarantee, make_target

PREFIX = "create f0\nwrite f0 0 8192\nfsync f0\ncreate f1\nreflink f0 f1\nfsync f1\n"

WORKLOADS: dict[str, tuple[str, tuple[int, int], tuple[int, ...]]] = {
    # name: (ops after the prefix, (first, last) of the ops that change the COW blocks, COW blocks of f1)
    "write-aligned": ("write f1 0 4096\nfsync f1\n", (0, 0), (0,)),
    "write-unaligned": ("write f1 100 200\nfsync f1\n", (0, 0), (0,)),
    "write-2-blocks": ("write f1 2000 4000\nfsync f1\n", (0, 0), (0, 1)),
    "fault": ("mmap m0 f1 0 8192\nstore m0 100 64\nfsync f1\n", (1, 1), (0,)),
    "fault-other-fsync": ("mmap m0 f1 0 8192\nstore m0 100 64\ncreate f2\nwrite f2 0 100\nfsync f2\n", (1, 1), (0,)),
    "fault-sync": ("mmap m0 f1 0 8192 sync\nstore m0 100 64\npersist m0 100 64\n", (1, 1), (0,)),
    "fault-sync-2nd": (
        "mmap m0 f1 0 8192 sync\nstore m0 0 64\npersist m0 0 64\nstore m0 4196 64\npersist m0 4196 64\n",
        (3, 3),
        (1,),
    ),
    "punch-block": ("punch f1 0 4096\nfsync f1\n", (0, 0), (0,)),
    "punch-partial": ("punch f1 100 200\nfsync f1\n", (0, 0), (0,)),
    "truncate-partial": ("truncate f1 100\nfsync f1\n", (0, 0), (0,)),
    "truncate-then-extend": ("truncate f1 100\ntruncate f1 4096\nfsync f1\n", (0, 1), (0,)),
    "hole-in-cow-prealloc": ("write f1 100 10\ntruncate f1 16384\nwrite f1 8292 100\nfsync f1\n", (2, 2), (2,)),
}

TARGETS = ("daxfs design=zero", "daxfs design=unwritten", "daxfs design=cow-remap", "xfs-dax")
CLASSES = ("old", "new", "torn", "stale", "gone")


@dataclass
class Tally:
    states: int = 0
    classes: collections.Counter = field(default_factory=collections.Counter)
    oracles: collections.Counter = field(default_factory=collections.Counter)
    seconds: float = 0.0


class CowBlock:
    """Runs the data oracles on every recovered state and, for states from the COW op on, counts what
    f1's COW block holds and which oracles flagged the state."""

    name = OracleName.STALE_EXPOSURE
    guarantee = Guarantee.MOUNTABLE
    phase = Phase.CRASH
    metadata_only = False

    def __init__(
        self, inner: list[CrashOracle], op: int, blocks: tuple[int, ...], old: bytes, new: bytes, tally: Tally
    ) -> None:
        self.inner, self.op, self.blocks, self.tally = inner, op, blocks, tally
        self.old = np.frombuffer(old, dtype="<u8").reshape(len(blocks), 512)
        self.new = np.frombuffer(new, dtype="<u8").reshape(len(blocks), 512)
        self.guarantees: frozenset[Guarantee] = frozenset()

    def check(self, ctx: CrashContext) -> list[Violation]:
        out = [v for o in self.inner if o.guarantee in self.guarantees for v in o.check(ctx)]
        if ctx.expect.upper > self.op:
            self.tally.states += 1
            self.tally.classes[self.classify(ctx)] += 1
            for name in sorted({v.oracle.value for v in out}):
                self.tally.oracles[name] += 1
        return out

    def classify(self, ctx: CrashContext) -> str:
        """The blocks as one: old or new if every block is, stale if a word of any is neither."""
        if "f1" not in ctx.fs.files():
            return "gone"
        words = ctx.words("f1")
        got = np.zeros((len(self.blocks), 512), dtype="<u8")  # past the recovered EOF: zeros, as the versions
        for i, b in enumerate(self.blocks):
            part = words[b * 512 : (b + 1) * 512]
            got[i, : len(part)] = part
        is_old, is_new = got == self.old, got == self.new
        if is_old.all():
            return "old"
        if is_new.all():
            return "new"
        return "torn" if (is_old | is_new).all() else "stale"


def versions(text: str, first: int, last: int, blocks: tuple[int, ...]) -> tuple[bytes, bytes]:
    """f1's COW blocks before op `first` and after op `last`, crash-free (zero-padded to the block)."""
    ref = Reference()
    old = b""
    for i, op in enumerate(parse(text).ops):
        if i == first:
            old = b"".join(_block(ref, b) for b in blocks)
        ref.apply(i, op)
        if i == last:
            return old, b"".join(_block(ref, b) for b in blocks)
    raise ValueError("no COW op")


def _block(ref: Reference, block: int) -> bytes:
    size = ref.size("f1") or 0
    data = ref.read("f1", block * 4096, max(0, min(4096, size - block * 4096))) if size > block * 4096 else b""
    return data + bytes(4096 - len(data))


def run(spec: str, name: str, states: int, domain: str) -> Tally:
    tail, (first, last), blocks = WORKLOADS[name]
    text = PREFIX + tail
    op = PREFIX.count("\n") + first
    old, new = versions(text, op, PREFIX.count("\n") + last, blocks)
    tally = Tally()
    t = make_target(spec)
    size = getattr(t, "device_size", 8 << 20)
    data = [o for o in default_oracles() if is_crash_oracle(o) and not o.metadata_only]
    cow = CowBlock(data, op, blocks, old, new, tally)
    cow.guarantees = t.guarantees
    others = [o for o in default_oracles() if o not in data]
    opts = Options(
        device_size=size,
        domain=domain,
        exhaustive_upto=states,
        max_states=states,
        first_per_signature=False,
        oracles=(*others, cow),
    )
    t0 = time.perf_counter()
    v = check(t, parse(text), opts)
    tally.seconds = time.perf_counter() - t0
    for f in v.findings:
        if f.crash is None:
            tally.oracles[f"{f.oracle.value} (crash-free)"] += 1
        elif f.oracle is OracleName.MOUNT:
            tally.oracles["mount"] += 1
    return tally


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--states", type=int, default=64, help="states a crash point, at most (exhaustive up to it)")
    ap.add_argument("--only", action="append", help="workload name (repeatable)")
    ap.add_argument("--targets", default=",".join(TARGETS), help="comma-separated target specs")
    ap.add_argument("--domain", default="adr")
    args = ap.parse_args()
    names = args.only or list(WORKLOADS)
    rows = []
    for name in names:
        for spec in args.targets.split(","):
            tally = run(spec, name, args.states, args.domain)
            cls = " ".join(f"{c} {tally.classes[c]}" for c in CLASSES if tally.classes[c])
            ors = ", ".join(f"{o} {n}" for o, n in sorted(tally.oracles.items())) or "-"
            rows.append((name, spec.replace("daxfs design=", "daxfs "), tally.states, cls, ors))
            print(f"{name:22} {spec:24} {tally.states:5} states  {cls:40}  {ors}  ({tally.seconds:.1f} s)", flush=True)
    print()
    print("| workload | target | distinct crash states | COW block | states flagged (oracle) |")
    print("|---|---|---|---|---|")
    for name, spec, n, cls, ors in rows:
        print(f"| {name} | {spec} | {n} | {cls} | {ors} |")


if __name__ == "__main__":
    main()
