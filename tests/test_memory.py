"""A campaign gives back what one large workload took: glibc's behaviour, checked in a fresh process."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from pmfuzz.fuzzing import memory
from pmfuzz.fuzzing.memory import heap_mib

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux") or getattr(memory._LIBC, "mallopt", None) is None, reason="glibc only"
)

_SCRIPT = """
import sys
import numpy as np
from pmfuzz.fuzzing import memory

def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 >> 20

if sys.argv[1] == "fixed":
    memory.keep_freed_memory_until_trimmed()
big = np.ones(16 << 20, dtype=np.uint8)  # freed: glibc raises its mmap threshold to this size
del big
blocks, keep = [], []
for _ in range(150):  # interleaved with small blocks that stay, as a campaign's corpus and findings do
    blocks.append(np.ones(1 << 20, dtype=np.uint8))
    keep.append(bytes(4000))
before = rss()
del blocks
after = rss()
memory.give_back_memory()
print(before - after, before - rss())
"""


def _freed(mode: str) -> tuple[int, int]:
    out = subprocess.run([sys.executable, "-c", _SCRIPT, mode], capture_output=True, text=True, check=True).stdout
    now, trimmed = map(int, out.split())
    return now, trimmed


def test_large_arrays_freed_after_a_larger_one_are_given_back_at_once() -> None:
    """150 MiB of 1 MiB arrays, freed: with glibc's mmap threshold kept from rising they were mappings of their own."""
    assert _freed("fixed")[0] >= 120
    assert _freed("default")[0] < 120  # glibc's own rising threshold kept them: what the fix is for


def test_trimming_gives_back_what_the_heap_kept() -> None:
    assert _freed("default")[1] >= 120


_REFAULT = """
import resource
import sys
import numpy as np
from pmfuzz.fuzzing import memory
from pmfuzz.fuzzing.memory import heap_mib

if sys.argv[1] == "fixed":
    memory.keep_freed_memory_until_trimmed()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(50):  # a workload's heap-sized arrays, made and freed again and again
    blocks = [np.ones(100 << 10, dtype=np.uint8) for _ in range(100)]
    del blocks
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _refaults(mode: str) -> int:
    out = subprocess.run([sys.executable, "-c", _REFAULT, mode], capture_output=True, text=True, check=True)
    return int(out.stdout)


def test_the_heap_keeps_freed_pages_until_the_trim() -> None:
    """50 rounds of 10 MiB of heap blocks: glibc's 128 KiB trim threshold gives the heap's top back after
    each round and faults it in again (about 2,560 pages a round); kept until the batch's trim, once."""
    assert _refaults("fixed") < 10_000
    assert _refaults("default") > 50_000  # what the setting is for


@pytest.mark.skipif(heap_mib() is None, reason="the C library has no mallinfo2")
def test_heap_figures_count_a_live_block_as_in_use_and_its_freed_pages_as_not() -> None:
    before = heap_mib()
    assert before is not None
    block = np.ones(40 << 20, dtype=np.uint8)
    during = heap_mib()
    assert during is not None and during[0] - before[0] >= 39
    del block
    after = heap_mib()
    assert after is not None and after[0] - before[0] < 1
