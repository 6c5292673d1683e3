"""Consistency checker for tests/data/traces/flag_*.log: if the flag is set, the record must be complete.

The pool holds a flag (u64 at offset 0) and a 16-byte record at offset 64.
Used two ways: as a Python checker (`flag_checker.py:check`) and as a
program (`python flag_checker.py IMAGE`, exit 0 = consistent, pmreorder's
convention).
"""

from __future__ import annotations

import struct
import sys

RECORD = (0x1122334455667788, 0x99AABBCCDDEEFF00)


def check(image: memoryview) -> bool | str:
    (flag,) = struct.unpack_from("<Q", image, 0)
    record = struct.unpack_from("<QQ", image, 64)
    if flag == 1 and record != RECORD:
        return f"flag set but record is {record[0]:#x},{record[1]:#x}"
    return True


if __name__ == "__main__":
    with open(sys.argv[-1], "rb") as f:
        verdict = check(memoryview(f.read()))
    if verdict is not True:
        print(verdict, file=sys.stderr)
        sys.exit(1)
