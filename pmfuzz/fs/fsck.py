"""xfs_repair -n for daxfs: every structural invariant of a mounted image."""

from __future__ import annotations

import numpy as np

from ..lang.workload import FILES, MAX_FILE_SIZE
from .core import DaxFS
from .journal import LogCorrupt, find_checkpoint
from .layout import COW_STAGING, MAX_EXTENTS

__all__ = ["fsck"]


def fsck(fs: DaxFS) -> list[str]:
    """Problems found, one line each (empty when consistent). Reads the in-memory state that mount loaded."""
    geo = fs.geo
    out: list[str] = []
    try:
        left = find_checkpoint(fs.pm, geo, fs.journal.tail)
    except LogCorrupt as e:
        left = None
        out.append(f"log: {e}")
    if left is not None:
        out.append(f"log: committed checkpoint {left[0]} was not replayed by mount")
    owners = np.zeros(geo.nblocks, dtype=np.int64)
    names: dict[str, int] = {}
    for ino, ip in sorted(fs.inodes.items()):
        if ip.orphan:
            out.append(f"inode {ino}: still an orphan after mount")
        elif ip.name not in FILES:
            out.append(f"inode {ino}: bad name {ip.name!r}")
        elif ip.name in names:
            out.append(f"inode {ino}: name {ip.name} already used by inode {names[ip.name]}")
        else:
            names[ip.name] = ino
        if not 0 <= ip.size <= MAX_FILE_SIZE:
            out.append(f"inode {ino}: size {ip.size} out of range")
        if len(ip.extents) > MAX_EXTENTS:
            out.append(f"inode {ino}: {len(ip.extents)} extents exceed the extent map")
        prev_end = -1
        for ext in ip.extents:
            if ext.len <= 0:
                out.append(f"inode {ino}: empty extent at file block {ext.lblk}")
                continue
            if ext.lblk < prev_end:
                out.append(f"inode {ino}: extent at file block {ext.lblk} overlaps the previous one")
            prev_end = ext.end
            if ext.pblk < geo.data_start or ext.pblk + ext.len > geo.nblocks:
                out.append(
                    f"inode {ino}: extent {ext.lblk}+{ext.len} maps blocks {ext.pblk}..{ext.pblk + ext.len - 1} "
                    f"outside the data area"
                )
                continue
            if ext.lblk * 4096 >= MAX_FILE_SIZE:
                out.append(f"inode {ino}: extent at file block {ext.lblk} beyond the largest file")
            owners[ext.pblk : ext.pblk + ext.len] += 1
    used = fs.space.used.copy()
    used[: geo.data_start] = False
    refc = fs.space.refc.astype(np.int64)
    data = np.arange(geo.nblocks) >= geo.data_start
    staging = refc == COW_STAGING
    want = np.where(owners >= 2, owners, 0)
    mapped = owners > 0
    if not (data & (staging | (mapped != used) | (refc != want))).any():
        return out  # the block checks below find nothing: one pass, not four (fsck runs per mount)
    for b in np.flatnonzero(data & staging).tolist()[:5]:
        out.append(f"block {b}: CoW staging extent left after mount")
    bad_free = np.flatnonzero(data & mapped & ~used)
    for b in bad_free.tolist()[:5]:
        out.append(f"block {b}: mapped by {owners[b]} extent(s) but free in the bitmap")
    leaked = np.flatnonzero(data & ~mapped & used & ~staging)
    for b in leaked.tolist()[:5]:
        out.append(f"block {b}: used in the bitmap but mapped by no file (leaked)")
    bad_rc = np.flatnonzero(data & ~staging & (refc != want))
    for b in bad_rc.tolist()[:5]:
        out.append(f"block {b}: refcount {refc[b]} but mapped by {owners[b]} extent(s)")
    return out
