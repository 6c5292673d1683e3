"""The kernel file systems pmfuzz runs: each is one configuration of the same guest and recording pipeline.

What differs between ext4-DAX and XFS-DAX is small and all here: how the
host formats the device, which of its blocks are metadata from the start,
how the file system is mounted, which ops it runs and what it promises, and
how a crash image is recovered -- ext4's journal replay also exists outside
the kernel (e2fsck's recovery.c is the kernel's fs/jbd2/recovery.c), so it
runs on the host; XFS's log recovery runs only in the kernel, at mount, so a
guest mounts each crash image.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..lang.falloc import FALLOC_MODES, FallocMode
from ..lang.workload import OpKind
from ..target import Guarantee
from . import ext4image, recovery, xfs
from .commands import FALLOC_MODES_EXT4, OPS

__all__ = ["FileSystem", "Recovery", "EXT4", "XFS"]

MiB = 1 << 20


class Recovery(enum.Enum):
    """Where a crash image's recovery runs."""

    HOST_FSCK = "host-fsck"
    """e2fsck -f -p on the host: what a boot does (journal replay, orphans), then the image is read by
    pmfuzz's ext4 reader."""
    GUEST_MOUNT = "guest-mount"
    """A mount in a booted guest (log recovery), a listing of every file, an unmount; xfs_repair -n on
    the host checks the result."""


@dataclass(frozen=True, slots=True)
class FileSystem:
    name: str
    """The target's name (`pmfuzz run --target NAME`)."""
    fstype: str
    mount_opts: str
    """Options of the workload's mount (one word: the agent's command line splits on spaces)."""
    recovery: Recovery
    recovery_opts: str
    """Options of a crash image's mount (GUEST_MOUNT): the workload's file system, with the same UUID,
    is mounted in the same guest."""
    ops: frozenset[OpKind]
    falloc_modes: tuple[FallocMode, ...]
    """The fallocate modes the file system's fallocate(2) accepts."""
    guarantees: frozenset[Guarantee]
    device_size: int
    """The device size a campaign uses unless told otherwise."""
    min_device_size: int
    tools: tuple[str, ...]
    """Host tools it needs (mkfs, fsck)."""
    mkfs: Callable[[np.ndarray], np.ndarray]
    """The formatted image, made over the poisoned device."""
    static_meta: Callable[[np.ndarray, np.ndarray], list[tuple[int, int]]]
    """(poisoned device, formatted image) -> byte ranges that are metadata from the start."""


_BASE = frozenset({Guarantee.POSIX, Guarantee.MOUNTABLE, Guarantee.NO_STALE_DATA, Guarantee.FSYNC_DURABLE})

EXT4 = FileSystem(
    name="ext4-dax",
    fstype="ext4",
    # No lazy inode-table init thread; the 5 s commit timer pushed out of the way so a workload's trace
    # does not depend on wall-clock time (commits come from fsync, sync, MAP_SYNC faults, a full journal).
    mount_opts="dax=always,noinit_itable,commit=600",
    recovery=Recovery.HOST_FSCK,
    recovery_opts="",
    ops=OPS,
    falloc_modes=FALLOC_MODES_EXT4,
    guarantees=_BASE,
    device_size=8 * MiB,
    min_device_size=2 * MiB,
    tools=("e2fsck", "mke2fs"),
    mkfs=recovery.mkfs,
    static_meta=ext4image.allocated_ranges,
)

XFS = FileSystem(
    name="xfs-dax",
    fstype="xfs",
    mount_opts="dax=always",
    recovery=Recovery.GUEST_MOUNT,
    recovery_opts="dax=always,nouuid",
    ops=OPS | {OpKind.REFLINK},
    falloc_modes=FALLOC_MODES,
    guarantees=_BASE | {Guarantee.COW_ATOMIC},
    device_size=xfs.MIN_SIZE,
    min_device_size=xfs.MIN_SIZE,
    tools=("mkfs.xfs", "xfs_repair"),
    mkfs=xfs.mkfs,
    static_meta=xfs.written_blocks,
)
