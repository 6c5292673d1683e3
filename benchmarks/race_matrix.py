"""Every pair of racing ops on one small file, on the correct designs: a systematic false-positive hunt.

Where race_hunt.py draws random workloads, this walks a fixed matrix: each unordered
pair of the generator's race op kinds, over each prefix (a hole, data, blocks shared by
reflink, a preallocated extent), with and without a read fault first, at two offsets,
every schedule with up to 2 preemptions. A correct design must be clean on all of it;
the first finding per configuration is printed with its workload, to be fixed in the
model or the reference, never in the oracle.

    python benchmarks/race_matrix.py
    python benchmarks/race_matrix.py --only unwritten-lazy-adr
    python benchmarks/race_matrix.py --with zero-range,unshare-range     # only pairs with one of these
"""

from __future__ import annotations

import argparse
import itertools
import time

from race_hunt import CONFIGS

from pmfuzz.fs import DaxfsTarget
from pmfuzz.judging.engine import Options, check
from pmfuzz.judging.report import format_report
from pmfuzz.lang.workload import Workload, format_workload, parse
from pmfuzz.pmem import Domain

PREFIXES = {
    "hole": "create f0\ntruncate f0 8192\n",
    "data": "create f0\nwrite f0 0 8192\n",
    "shared": "create f1\nwrite f1 0 8192\ncreate f0\nreflink f1 f0\n",
    "prealloc": "create f0\nfallocate f0 0 8192\n",
}
KINDS = (
    *("write", "fault-read", "fault-write", "store", "read", "truncate", "punch", "fallocate", "fsync", "persist"),
    *("zero-range", "unshare-range"),
)


def _op(kind: str, off: int) -> str:
    page = off // 4096
    return {
        "write": f"write f0 {off} 100",
        "fault-read": f"fault m0 {page} read",
        "fault-write": f"fault m0 {page} write",
        "store": f"store m0 {off} 100",
        "read": f"read f0 {off} 100",
        "truncate": "truncate f0 2000",
        "punch": f"punch f0 {page * 4096} 4096",
        "fallocate": f"fallocate f0 {off} 100",
        "zero-range": f"fallocate f0 {off} 4096 zero-range",
        "unshare-range": f"fallocate f0 {off} 100 unshare-range",
        "fsync": "fsync f0",
        "persist": f"persist m0 {off} 100",
    }[kind]


def workloads(need: frozenset[str] = frozenset()) -> list[Workload]:
    out = []
    pairs = [p for p in itertools.combinations_with_replacement(KINDS, 2) if not need or need & set(p)]
    for (a, b), prefix, prefault, off in itertools.product(pairs, PREFIXES.values(), (False, True), (0, 100)):
        text = prefix + "mmap m0 f0 0 8192\n" + ("fault m0 0 read\n" if prefault else "")
        out.append(parse(text + f"parallel {{ {_op(a, off)} ; {_op(b, off)} }}\n"))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default="", help="run the configurations whose name contains this")
    ap.add_argument("--with", dest="need", default="", help="only the pairs with one of these kinds (comma-separated)")
    args = ap.parse_args()
    need = frozenset(k for k in args.need.split(",") if k)
    if need - set(KINDS):
        ap.error(f"unknown kinds {sorted(need - set(KINDS))} (kinds: {', '.join(KINDS)})")
    matrix = workloads(need)
    dirty = 0
    for design, cil, dom in CONFIGS:
        name = f"{design}-{cil}-{dom}"
        if args.only not in name:
            continue
        target = DaxfsTarget(design=design, cil=cil)
        opts = Options(domain=Domain(dom), max_states=24, exhaustive_upto=24, preemption_bound=2, max_schedules=200)
        t0 = time.perf_counter()
        for w in matrix:
            v = check(target, w, opts)
            if not v.clean:
                dirty += 1
                print(f"{name:24} FALSE POSITIVE\n{format_workload(w)}\n{format_report(v)}", flush=True)
                break
        else:
            print(f"{name:24} clean   {len(matrix)} workloads in {time.perf_counter() - t0:.0f} s", flush=True)
    raise SystemExit(1 if dirty else 0)


if __name__ == "__main__":
    main()
