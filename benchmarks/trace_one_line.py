"""`pmfuzz trace check` on N stores pending on one cache line, then one fence: time per N.

Every prefix of the line's stores is a crash state (N + 1 of them). Applying each prefix from the
start made this quadratic in N (issue #15: 20,000 stores took 48 s); prefixes now start from a
checkpoint every 64 stores, so the time should grow about linearly.

    python benchmarks/trace_one_line.py            # N = 5,000, 10,000, 20,000, 40,000
"""

from __future__ import annotations

import json
import sys
import time

from pmfuzz.traces import CheckOptions, check_trace, parse_jsonl
from pmfuzz.traces.checkers import PythonChecker


def trace_text(n: int) -> str:
    lines = [json.dumps({"event": "device", "size": 4096})]
    lines += [json.dumps({"event": "store", "addr": (i % 8) * 8, "data": f"{i:016x}"}) for i in range(n)]
    lines.append(json.dumps({"event": "sfence"}))
    return "\n".join(lines) + "\n"


def main() -> None:
    sizes = [int(a) for a in sys.argv[1:]] or [5_000, 10_000, 20_000, 40_000]
    print(f"{'stores':>8} {'states':>8} {'seconds':>8} {'us/state':>9}")
    for n in sizes:
        tr = parse_jsonl(trace_text(n), source=f"{n}.jsonl")
        t0 = time.perf_counter()
        rep = check_trace(tr, PythonChecker("ok", lambda image: True, 10.0), CheckOptions(minimize=False))
        dt = time.perf_counter() - t0
        print(f"{n:>8} {rep.states:>8} {dt:>8.2f} {1e6 * dt / max(rep.states, 1):>9.1f}")


if __name__ == "__main__":
    main()
