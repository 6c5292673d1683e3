"""Systematic seeds: every short workload over a small alphabet of telling ops (ACE-style).

A seed is a setup (empty file, file with data, file with holes inside EOF,
file shared by reflink), then one to three core ops from the alphabet, then
fsync as the persistence point. The alphabet straddles what the DAX paths
care about: block-aligned and unaligned ranges, ranges across block
boundaries and EOF, holes, shared blocks, MAP_SYNC stores, and the fallocate
modes (preallocation past EOF, zero-range inside and across EOF, unshare of a
cloned range).

    python -m pmfuzz.gen.systematic corpora/seeds     # regenerate the committed seeds
"""

from __future__ import annotations

import itertools
import sys
from collections.abc import Iterator
from pathlib import Path

from ..lang.workload import Workload, format_workload, parse

__all__ = ["SETUPS", "ALPHABET", "seeds", "write_seeds"]

SETUPS: dict[str, str] = {
    "empty": "create f0\n",
    "data": "create f0\nwrite f0 0 8192\nfsync f0\n",
    "holes": "create f0\ntruncate f0 16384\nfsync f0\n",
    "shared": "create f0\nwrite f0 0 8192\nfsync f0\ncreate f1\nreflink f0 f1\n",
}

ALPHABET: dict[str, str] = {
    "write-aligned": "write f0 4096 4096",
    "write-unaligned": "write f0 100 200",
    "write-straddle": "write f0 4000 300",
    "write-past-eof": "write f0 20000 100",
    "truncate-down-mid-block": "truncate f0 100",
    "truncate-up": "truncate f0 12288",
    "fallocate": "fallocate f0 8192 8192",
    "fallocate-keep-size": "fallocate f0 12288 8192 keep-size",
    "zero-range": "fallocate f0 100 5000 zero-range",
    "zero-range-keep-size-eof": "fallocate f0 6000 8192 zero-range keep-size",
    "unshare": "fallocate f1 100 5000 unshare-range",
    "punch": "punch f0 100 5000",
    "reflink-range": "reflink f0 f1 0 4096 4096",
    "cow-write": "write f1 100 200",
    "map-sync-store": "mmap m0 f0 0 16384 sync\nstore m0 100 64\npersist m0 100 64\nmunmap m0",
    "map-store": "mmap m0 f0 0 16384\nstore m0 4096 64\nmunmap m0",
}

TRIPLES = ("write-unaligned", "truncate-down-mid-block", "cow-write", "map-sync-store", "unshare")


def seeds() -> Iterator[tuple[str, Workload]]:
    """(name, workload) for every seed, in a fixed order."""
    for setup, prefix in SETUPS.items():
        alphabet = [a for a in ALPHABET if setup == "shared" or "f1" not in ALPHABET[a]]
        for n in (1, 2):
            for combo in itertools.product(alphabet, repeat=n):
                yield _make(setup, prefix, combo)
    for combo in itertools.product(TRIPLES, repeat=3):
        yield _make("shared", SETUPS["shared"], combo)


def _make(setup: str, prefix: str, combo: tuple[str, ...]) -> tuple[str, Workload]:
    body = "".join(ALPHABET[c] + "\n" for c in combo)
    fsync = "fsync f1\n" if "f1" in body else "fsync f0\n"
    return f"{setup}--{'+'.join(combo)}", parse(prefix + body + fsync)


def write_seeds(directory: Path) -> int:
    directory.mkdir(parents=True, exist_ok=True)
    for old in directory.glob("*.pmfuzz"):
        old.unlink()
    n = 0
    for n, (name, w) in enumerate(seeds(), 1):
        (directory / f"{n:04d}-{name}.pmfuzz").write_text(f"# seed: {name}\n" + format_workload(w))
    return n


if __name__ == "__main__":
    print(write_seeds(Path(sys.argv[1] if len(sys.argv) > 1 else "corpora/seeds")), "seeds written")
