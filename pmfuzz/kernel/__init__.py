"""Real kernels under pmfuzz: a QEMU guest runs the workload, its pmem traffic is recorded and replayed.

`pmfuzz kernel-setup` fetches what the guest needs from Debian's registry into a
cache directory (`paths.py`); `guest.py` boots and drives it; `trace.py` decodes
the recorder's events and `replay.py` puts them onto a `PMem`; `recovery.py`
recovers crash images with the host's e2fsprogs and reads them with
`ext4image.py`; `target.py` is the `ext4-dax` target the engine runs.
"""
