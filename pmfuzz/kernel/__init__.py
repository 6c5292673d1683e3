"""Real kernels under pmfuzz: a QEMU guest runs the workload, its pmem traffic is recorded and replayed.

`pmfuzz kernel-setup` fetches what the guest needs from Debian's registry into a
cache directory (`paths.py`); `guest.py` boots and drives one guest, `pool.py`
keeps this process's; `live.py` runs the workload on it, `trace.py` decodes the
recorder's events and `replay.py` puts them onto a `PMem`. `filesystems.py`
holds the two configurations -- ext4 (`recovery.py`: e2fsck on the host,
`ext4image.py` reads the result) and XFS (`xfs.py`: mkfs.xfs and xfs_repair;
`guestmount.py`: crash images recovered by a mount in the guest) -- and
`target.py` the `ext4-dax` and `xfs-dax` targets the engine runs.
"""
