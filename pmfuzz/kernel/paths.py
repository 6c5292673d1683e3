"""Where the kernel target's pieces live, which kernel is pinned, and what is missing.

Everything is fetched by `pmfuzz kernel-setup` into one cache directory
(`$PMFUZZ_KERNEL_CACHE`, default `~/.cache/pmfuzz/kernel`): the pinned Debian
kernel package with its modules, its headers (to build the recorder module),
busybox-static, and what is built from them (the module, the agent, the
initramfs). Nothing is committed; nothing comes from anywhere but the
registry.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["KERNEL", "Layout", "layout", "missing"]


@dataclass(frozen=True, slots=True)
class PinnedKernel:
    """The Debian kernel package the target runs (a reproducer names its release and version)."""

    abi: str
    """The package ABI name: linux-image-ABI, linux-headers-ABI."""
    version: str
    """The Debian package version (apt's `=VERSION`)."""

    @property
    def release(self) -> str:
        """`uname -r` of the guest."""
        return self.abi

    @property
    def common(self) -> str:
        return self.abi.rsplit("-", 1)[0] + "-common"


# In bookworm/main (the point release) and bookworm-security when pinned; linux-kbuild-6.1 of the
# same version is the one the headers were built with.
KERNEL = PinnedKernel(abi="6.1.0-50-amd64", version="6.1.176-1")


@dataclass(frozen=True, slots=True)
class Layout:
    root: Path

    @property
    def debs(self) -> Path:
        return self.root / "debs"

    @property
    def tree(self) -> Path:
        """The extracted packages."""
        return self.root / "root"

    @property
    def build(self) -> Path:
        return self.root / "build"

    @property
    def vmlinuz(self) -> Path:
        return self.tree / "boot" / f"vmlinuz-{KERNEL.abi}"

    @property
    def modules(self) -> Path:
        return self.tree / "lib" / "modules" / KERNEL.abi / "kernel"

    @property
    def headers(self) -> Path:
        return self.tree / "usr" / "src" / f"linux-headers-{KERNEL.abi}"

    @property
    def busybox(self) -> Path:
        return self.tree / "bin" / "busybox"

    @property
    def module(self) -> Path:
        return self.build / "pmtrace.ko"

    @property
    def agent(self) -> Path:
        return self.build / "agent"

    @property
    def initramfs(self) -> Path:
        return self.build / "initramfs.cpio.gz"

    @property
    def stamp(self) -> Path:
        """Written last by the set-up: names the kernel it was made for."""
        return self.build / "READY"


def layout() -> Layout:
    env = os.environ.get("PMFUZZ_KERNEL_CACHE")
    root = Path(env) if env else Path.home() / ".cache" / "pmfuzz" / "kernel"
    return Layout(root)


QEMU = "qemu-system-x86_64"
HOST_TOOLS = ("e2fsck", "mke2fs")
PACKAGE_OF = {"e2fsck": "e2fsprogs", "mke2fs": "e2fsprogs", "mkfs.xfs": "xfsprogs", "xfs_repair": "xfsprogs"}
"""The Debian package each host tool comes from (for the message that says what is missing)."""


def missing(lay: Layout | None = None, tools: tuple[str, ...] = HOST_TOOLS) -> str | None:
    """One line naming the first missing piece of a kernel target (its host `tools`), or None if it can run."""
    lay = lay or layout()
    if shutil.which(QEMU) is None:
        return f"{QEMU} not installed (run `pmfuzz kernel-setup` as root)"
    for tool in tools:
        if shutil.which(tool) is None and not Path("/usr/sbin", tool).exists() and not Path("/sbin", tool).exists():
            return f"{tool} ({PACKAGE_OF.get(tool, '?')}) not installed (run `pmfuzz kernel-setup` as root)"
    if not lay.stamp.exists():
        return f"kernel target not set up in {lay.root} (run `pmfuzz kernel-setup`)"
    made_for = lay.stamp.read_text().strip()
    if made_for != stamp():
        return f"kernel cache {lay.root} was built for {made_for}, not {stamp()} (run `pmfuzz kernel-setup`)"
    return None


def stamp() -> str:
    """The kernel and a digest of the guest-side sources: a cache built from other sources is stale."""
    import hashlib
    from importlib import resources

    h = hashlib.sha256()
    for name in ("agent/agent.c", "module/pmtrace.c", "module/Kbuild", "setup.py"):
        h.update(resources.files("pmfuzz.kernel").joinpath(name).read_bytes())
    return f"{KERNEL.abi} {h.hexdigest()[:12]}"


def tool(name: str) -> str:
    """The path of a host tool (e2fsprogs lives in /usr/sbin, which a user's PATH may lack)."""
    found = shutil.which(name)
    if found:
        return found
    for d in ("/usr/sbin", "/sbin"):
        if Path(d, name).exists():
            return str(Path(d, name))
    return name


def scratch_dir(prefix: str) -> Path:
    """A private directory for images handed to host tools, in RAM where there is a /dev/shm."""
    base = Path("/dev/shm") if Path("/dev/shm").is_dir() else None
    return Path(tempfile.mkdtemp(prefix=prefix, dir=base))


def format_over(base: np.ndarray, prefix: str, argv: list[str], env: dict[str, str]) -> np.ndarray:
    """Run a host mkfs (`argv`, the image path appended) over a copy of `base`: the formatted image."""
    d = scratch_dir(prefix)
    img = d / "img"
    try:
        base.tofile(img)
        p = subprocess.run([tool(argv[0]), *argv[1:], str(img)], capture_output=True, text=True, env=env)
        if p.returncode:
            raise RuntimeError(f"{argv[0]} failed: {p.stderr.strip()}")
        return np.fromfile(img, dtype=np.uint8)
    finally:
        img.unlink(missing_ok=True)
        d.rmdir()
