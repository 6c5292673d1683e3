"""XFS on the host: mkfs.xfs over the poisoned device, and `xfs_repair -n` of a recovered image.

The image is a reflink-enabled V5 XFS (`-m crc=1,reflink=1`), one allocation
group, 4 KiB blocks (DAX needs the block size to be the page size), and the
smallest internal log mkfs accepts with reflink (1368 blocks). mkfs.xfs 5.19
and later refuse file systems under 300 MB unless it runs under fstests
(`TEST_DIR`, `TEST_DEV` and `QA_CHECK_FS` set); the kernel mounts small ones
fine, and fstests runs them every day, so the set-up does what fstests does.
16 MiB is the least the data section takes (4096 blocks).

XFS's log recovery runs only in the kernel, at mount (xfs_repair refuses a
dirty log), so crash images are mounted in a guest (`guestmount.py`);
`xfs_repair -n` then checks the image that mount and unmount left.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import numpy as np

from .paths import format_over, tool

__all__ = ["MIN_SIZE", "mkfs", "written_blocks", "repair_problems", "UUID"]

MiB = 1 << 20
MIN_SIZE = 16 * MiB
BLOCK = 4096
UUID = "5ca1ab1e-0000-4000-8000-0000000f5f5f"
"""Fixed, so the formatted image (and every trace's shape) is the same on every run; a recovery
mount in the guest that also has the workload's file system mounted needs `nouuid`."""

_ENV = {"TEST_DIR": "1", "TEST_DEV": "1", "QA_CHECK_FS": "1"}


def mkfs(base: np.ndarray) -> np.ndarray:
    """mkfs.xfs over `base` (the poisoned device, its whole size): the formatted image."""
    if len(base) < MIN_SIZE:
        raise ValueError(f"XFS needs a device of at least {MIN_SIZE >> 20} MiB (4096 blocks), not {len(base)} bytes")
    opts = ["-q", "-f", "-K", "-b", f"size={BLOCK}", "-m", f"crc=1,reflink=1,uuid={UUID}"]
    opts += ["-d", f"size={len(base)},agcount=1", "-l", "size=1368b"]
    return format_over(base, "pmfuzz-xfs-", ["mkfs.xfs", *opts], dict(os.environ, **_ENV))


def log_range(img: np.ndarray) -> tuple[int, int]:
    """The internal log's byte range, from the primary superblock (big-endian xfs_dsb:
    sb_logstart at byte 48, sb_logblocks at 96, sb_blocksize at 4)."""
    head = img[:128].tobytes()
    if head[:4] != b"XFSB":
        raise ValueError("no XFS superblock at the start of the image")
    bsize = int.from_bytes(head[4:8], "big")
    start = int.from_bytes(head[48:56], "big")
    blocks = int.from_bytes(head[96:100], "big")
    return start * bsize, (start + blocks) * bsize


def written_blocks(base: np.ndarray, img: np.ndarray) -> list[tuple[int, int]]:
    """Byte ranges of the metadata mkfs wrote: blocks that differ from the poison and are not all
    zeros (headers, btree roots, the first inode chunk), and the log. Recovery reads these and what
    the run writes by block I/O. (mkfs also zeroes the device's last 128 KiB, free space.)"""
    n = len(img) // BLOCK * BLOCK
    blocks = img[:n].reshape(-1, BLOCK)
    diff = (base[:n] != img[:n]).reshape(-1, BLOCK).any(axis=1) & blocks.any(axis=1)
    lo, hi = log_range(img)
    diff[lo // BLOCK : hi // BLOCK] = True
    out: list[tuple[int, int]] = []
    for b in np.flatnonzero(diff):
        a = int(b) * BLOCK
        if out and out[-1][1] == a:
            out[-1] = (out[-1][0], a + BLOCK)
        else:
            out.append((a, a + BLOCK))
    return out


_NOISE = (
    "Cannot get host filesystem geometry",
    "Repair may fail if there is a sector size mismatch",
    "the image and the host filesystem",
    "Phase ",
    "- ",
    "No modify flag set",
)


def repair_problems(path: Path) -> list[str]:
    """`xfs_repair -n` (check only) of the image file: nothing if clean, else its words."""
    p = subprocess.run(
        [tool("xfs_repair"), "-n", "-f", "-o", "force_geometry", str(path)], capture_output=True, text=True
    )
    if p.returncode == 0:
        return []
    text = (p.stdout + p.stderr).replace(str(path), "image")
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith(_NOISE)]
    return [f"xfs_repair -n exit status {p.returncode}", *lines[:40]]
