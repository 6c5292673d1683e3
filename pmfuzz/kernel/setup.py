"""`pmfuzz kernel-setup`: fetch and build what the kernel targets need, from Debian's registry only.

Installs (as root, with apt-get) the host tools: qemu-system-x86, e2fsprogs,
xfsprogs, gcc, make and libc6-dev. Downloads (apt-get download, no install) the pinned
kernel image with its modules, its headers and linux-kbuild (to build the
recorder module), and busybox-static, and extracts them into the cache. Then
builds the recorder module, the static agent and the initramfs.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from importlib import resources
from pathlib import Path

from ..errors import PmfuzzError
from .initramfs import Archive
from .paths import KERNEL, PACKAGE_OF, QEMU, Layout, layout, stamp, tool

__all__ = ["setup", "GUEST_MODULES"]

HOST_PACKAGES = ("qemu-system-x86", "e2fsprogs", "xfsprogs", "gcc", "make", "libc6-dev")
"""Installed on the host with apt-get (the kernel target's host tools)."""

# Loaded in this order by the guest's init (insmod needs dependencies first; no depmod in the guest).
GUEST_MODULES = (
    "lib/crc16.ko",
    "fs/mbcache.ko",
    "fs/jbd2/jbd2.ko",
    "crypto/crc32c_generic.ko",
    "fs/ext4/ext4.ko",
    "lib/libcrc32c.ko",
    "fs/xfs/xfs.ko",
    "drivers/nvdimm/libnvdimm.ko",
    "drivers/nvdimm/nd_btt.ko",
    "drivers/nvdimm/nd_pmem.ko",
    "drivers/nvdimm/nd_e820.ko",
)

BUSYBOX_APPLETS = ("sh", "mount", "umount", "insmod", "mkdir", "echo", "cat", "sleep", "ls", "dmesg", "sync")

INIT = """#!/bin/sh
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for m in {modules}; do insmod /lib/modules/$m || echo "pmfuzz-init: insmod $m failed"; done
insmod /lib/modules/pmtrace.ko || echo "pmfuzz-init: insmod pmtrace failed"
# No periodic writeback: metadata reaches pmem only through the journal's commits and
# checkpoints that the ops cause, so a replayed reproducer records the same trace.
echo 0 > /proc/sys/vm/dirty_writeback_centisecs
echo 8640000 > /proc/sys/vm/dirty_expire_centisecs
echo 1 > /proc/sys/kernel/panic_on_oops
# XFS: no log worker (log covering, AIL pushes) and no block garbage collection on a timer.
echo 720000 > /proc/sys/fs/xfs/xfssyncd_centisecs
echo 86400 > /proc/sys/fs/xfs/speculative_prealloc_lifetime
echo 86400 > /proc/sys/fs/xfs/speculative_cow_prealloc_lifetime
mkdir -p /mnt /rec
n=0
while [ ! -e /dev/pmem1 ] && [ $n -lt 50 ]; do sleep 0.1; n=$((n+1)); done
n=0
while [ ! -e /dev/pmem0 ] && [ $n -lt 50 ]; do sleep 0.1; n=$((n+1)); done
[ -e /dev/pmem0 ] || echo "pmfuzz-init: no /dev/pmem0"
[ -e /dev/pmem1 ] || echo "pmfuzz-init: no /dev/pmem1"
echo "pmfuzz-init: starting agent"
exec /agent
"""


def _run(cmd: list[str], what: str, cwd: Path | None = None) -> str:
    p = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd)
    if p.returncode != 0:
        tail = (p.stderr or p.stdout).strip().splitlines()[-5:]
        raise PmfuzzError(f"{what} failed ({' '.join(cmd[:3])} ...): " + " | ".join(tail))
    return p.stdout


def _host_tools(say: Callable[[str], None]) -> None:
    need = [
        p
        for p in HOST_PACKAGES
        if subprocess.run(["dpkg-query", "-W", "-f=${Status}", p], capture_output=True, text=True).stdout
        != "install ok installed"
    ]
    if not need:
        return
    if os.geteuid() != 0:
        raise PmfuzzError(
            f"host packages missing: {' '.join(need)} (run `pmfuzz kernel-setup` as root, or apt-get install them)"
        )
    say(f"apt-get install {' '.join(need)}")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    p = subprocess.run(
        ["apt-get", "install", "-y", "-q", "--no-install-recommends", *need], capture_output=True, text=True, env=env
    )
    if p.returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], capture_output=True)
        _run(["apt-get", "install", "-y", "-q", "--no-install-recommends", *need], "apt-get install")


def guest_packages() -> list[str]:
    """apt's `name=version` of the packages the guest is made from."""
    v = KERNEL.version
    return [
        f"linux-image-{KERNEL.abi}={v}",
        f"linux-headers-{KERNEL.abi}={v}",
        f"{KERNEL.common.replace('6.1.0', 'linux-headers-6.1.0', 1)}={v}",
        f"linux-kbuild-6.1={v}",
        "busybox-static",
    ]


def _download(lay: Layout, say: Callable[[str], None]) -> None:
    lay.debs.mkdir(parents=True, exist_ok=True)
    have = {p.name.split("_", 1)[0] for p in lay.debs.glob("*.deb")}
    want = [p for p in guest_packages() if p.split("=", 1)[0] not in have]
    if not want:
        return
    say(f"apt-get download {' '.join(want)}")
    p = subprocess.run(["apt-get", "download", *want], capture_output=True, text=True, cwd=lay.debs)
    if p.returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], capture_output=True)
        p = subprocess.run(["apt-get", "download", *want], capture_output=True, text=True, cwd=lay.debs)
    if p.returncode != 0:
        raise PmfuzzError(
            f"the pinned kernel {KERNEL.abi} ({KERNEL.version}) cannot be downloaded from the registry "
            f"({(p.stderr.strip().splitlines() or ['?'])[-1]}); pin one that `apt-cache search linux-image-6.1` lists "
            "in pmfuzz/kernel/paths.py"
        )


def _extract(lay: Layout, say: Callable[[str], None]) -> None:
    if lay.vmlinuz.exists() and lay.headers.exists() and lay.busybox.exists():
        return
    say(f"extracting into {lay.tree}")
    lay.tree.mkdir(parents=True, exist_ok=True)
    for deb in sorted(lay.debs.glob("*.deb")):
        _run(["dpkg-deb", "-x", str(deb), str(lay.tree)], f"extracting {deb.name}")
    mk = lay.headers / "Makefile"
    text = mk.read_text()
    mk.write_text(text.replace("include /usr/src/", f"include {lay.tree}/usr/src/"))


def _source(name: str) -> bytes:
    return resources.files("pmfuzz.kernel").joinpath(name).read_bytes()


def _build(lay: Layout, say: Callable[[str], None]) -> None:
    mod = lay.build / "module"
    mod.mkdir(parents=True, exist_ok=True)
    for f in ("pmtrace.c", "Kbuild"):
        (mod / f).write_bytes(_source(f"module/{f}"))
    say("building the recorder module (pmtrace.ko)")
    _run(["make", "-s", "-C", str(lay.headers), f"M={mod}", "modules"], "building pmtrace.ko")
    shutil.copy(mod / "pmtrace.ko", lay.module)
    src = lay.build / "agent.c"
    src.write_bytes(_source("agent/agent.c"))
    say("building the agent (static)")
    _run(["gcc", "-static", "-O2", "-Wall", "-o", str(lay.agent), str(src)], "building the agent")


def _initramfs(lay: Layout) -> None:
    a = Archive()
    for d in ("bin", "dev", "proc", "sys", "mnt", "rec", "lib", "lib/modules"):
        a.dir(d)
    a.copy("bin/busybox", lay.busybox)
    for applet in BUSYBOX_APPLETS:
        a.symlink(f"bin/{applet}", "busybox")
    names = []
    for rel in GUEST_MODULES:
        src = lay.modules / rel
        a.copy(f"lib/modules/{src.name}", src, 0o644)
        names.append(src.name)
    a.copy("lib/modules/pmtrace.ko", lay.module, 0o644)
    a.copy("agent", lay.agent)
    a.file("init", INIT.format(modules=" ".join(names)).encode(), 0o755)
    a.write(lay.initramfs)


def setup(say: Callable[[str], None] = print, lay: Layout | None = None) -> Layout:
    """Make the kernel target ready; idempotent (fetches and builds only what is missing)."""
    lay = lay or layout()
    _host_tools(say)
    if shutil.which(QEMU) is None:
        raise PmfuzzError(f"{QEMU} still missing after installing qemu-system-x86")
    _download(lay, say)
    _extract(lay, say)
    lay.build.mkdir(parents=True, exist_ok=True)
    lay.stamp.unlink(missing_ok=True)
    _build(lay, say)
    _initramfs(lay)
    for t in ("e2fsck", "mke2fs", "debugfs", "mkfs.xfs", "xfs_repair"):
        if not Path(tool(t)).exists():
            raise PmfuzzError(f"{t} missing after installing {PACKAGE_OF.get(t, 'e2fsprogs')}")
    lay.stamp.write_text(stamp() + "\n")
    say(f"kernel target ready: {KERNEL.abi} ({KERNEL.version}) in {lay.root}")
    return lay
