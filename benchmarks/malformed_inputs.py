"""Malformed inputs at volume: 10,000 mutated reproducers and traces through replay, minimize, regress, trace check.

Runs `tests/malformed.py` in a child process under its 3 GiB address-space cap and its hang guard,
and prints what happened: how many variants each command accepted (valid after mutation) or
rejected (one error line, exit 2), how many broke a rule (a traceback, another exit status, an error
that is not one short line, a target-error finding), the slowest variants and the peak memory. A
hang or an abort kills the child; the case it was running is printed.

    python benchmarks/malformed_inputs.py                      # 10,000 variants, seed 1
    python benchmarks/malformed_inputs.py --variants 500 --seed 7
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variants", type=int, default=10_000)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        state = Path(tmp) / "case.json"
        cmd = [sys.executable, "-m", "tests.malformed", "--variants", str(args.variants), "--seed", str(args.seed)]
        res = subprocess.run(
            [*cmd, "--state", str(state)], cwd=ROOT, env={**os.environ, "OPENBLAS_NUM_THREADS": "1"}, check=False
        )
        if res.returncode not in (0, 1):
            last = state.read_text() if state.exists() else "unknown"
            print(f"the child ended with status {res.returncode} (a hang or an abort) on: {last}")
        return res.returncode


if __name__ == "__main__":
    sys.exit(main())
