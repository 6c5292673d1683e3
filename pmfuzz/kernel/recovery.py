"""Recovering a crash image with the real ext4 code on the host, and the recovered view.

`e2fsck -f -p` is what a boot does after a crash: it replays the journal
(e2fsck's recovery.c is the kernel's fs/jbd2/recovery.c), processes the
orphan list, and fixes only what an unclean shutdown may leave (free counts);
anything else makes it stop with exit status 4 -- a `mount` finding, with
e2fsck's words. The image is then repaired with `e2fsck -fy` so the other
oracles can still read the files.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..pmem import PMem
from ..target import Errno, Result, err
from .ext4image import Ext4Error, Ext4Image
from .paths import tool

__all__ = ["Recovered", "recover", "mkfs"]

PAGE = 4096

# Fixed so the formatted image (and so every trace and crash state id) is the same on every run.
UUID = "5ca1ab1e-0000-4000-8000-00000000f5f5"
HASH_SEED = "5ca1ab1e-0000-4000-8000-00000000a5a5"
MKFS_OPTS = (
    "-q",
    "-F",
    "-t",
    "ext4",
    "-b",
    "4096",
    "-I",
    "256",
    "-N",
    "64",
    "-m",
    "0",
    "-O",
    "^resize_inode",
    "-U",
    UUID,
    "-E",
    f"nodiscard,lazy_itable_init=0,lazy_journal_init=0,hash_seed={HASH_SEED}",
)


def _scratch() -> Path:
    base = Path("/dev/shm") if Path("/dev/shm").is_dir() else None
    return Path(tempfile.mkdtemp(prefix="pmfuzz-ext4-", dir=base))


def mkfs(base: np.ndarray) -> np.ndarray:
    """mke2fs over `base` (the poisoned device): the formatted image."""
    d = _scratch()
    img = d / "img"
    try:
        base.tofile(img)
        env = dict(os.environ, E2FSPROGS_FAKE_TIME="1700000000")
        p = subprocess.run([tool("mke2fs"), *MKFS_OPTS, str(img)], capture_output=True, text=True, env=env)
        if p.returncode:
            raise RuntimeError(f"mke2fs failed: {p.stderr.strip()}")
        return np.fromfile(img, dtype=np.uint8)
    finally:
        img.unlink(missing_ok=True)
        d.rmdir()


class Unrecoverable(Exception):
    """Neither the boot-time check nor a full repair gets the image mounted: a `mount` finding."""

    is_target_error = True


@dataclass(frozen=True, slots=True)
class Recovery:
    problems: tuple[str, ...]
    image: np.ndarray


_SCRATCH: Path | None = None


def recover(image: np.ndarray) -> Recovery:
    """Run the boot-time recovery on a copy of `image`; the recovered bytes and what fsck reported."""
    global _SCRATCH
    if _SCRATCH is None or not _SCRATCH.exists():
        _SCRATCH = _scratch()
    img = _SCRATCH / f"crash-{os.getpid()}"
    image.tofile(img)
    env = dict(os.environ, E2FSPROGS_FAKE_TIME="1700000000")
    p = subprocess.run([tool("e2fsck"), "-f", "-p", str(img)], capture_output=True, text=True, env=env)
    problems: list[str] = []
    if p.returncode & ~3:
        text = (p.stdout + p.stderr).replace(str(img), "image")
        problems = [ln.strip() for ln in text.splitlines() if ln.strip()] or [f"e2fsck -p exit status {p.returncode}"]
        problems.insert(0, f"e2fsck -f -p exit status {p.returncode} (the boot-time check would stop here)")
        q = subprocess.run([tool("e2fsck"), "-f", "-y", str(img)], capture_output=True, text=True, env=env)
        if q.returncode & ~3:
            img.unlink(missing_ok=True)
            raise Unrecoverable("\n".join(problems))
    out = np.fromfile(img, dtype=np.uint8)
    img.unlink(missing_ok=True)
    return Recovery(tuple(problems), out)


class Recovered:
    """The read-only view of a recovered crash image; file data is read from the device each time."""

    def __init__(self, pm: PMem, problems: tuple[str, ...]) -> None:
        self.pm = pm
        self.problems = list(problems)
        try:
            self.img: Ext4Image | None = Ext4Image(self._read)
        except Ext4Error as e:
            self.img = None
            self.problems.append(f"the recovered image cannot be read: {e}")

    def _read(self, addr: int, n: int) -> bytes:
        if addr < 0 or addr + n > self.pm.size:
            raise Ext4Error(f"block address {addr:#x} outside the device")
        return self.pm.load(addr, n)

    def execute(self, index: int, op, payload: bytes | None) -> Result:
        return err(Errno.EIO)  # a recovered image is only read

    def files(self) -> list[str]:
        return [] if self.img is None else self.img.files()

    def size(self, name: str) -> int | None:
        if self.img is None:
            return None
        ip = self.img.stat(name)
        return None if ip is None else ip.size

    def read(self, name: str, off: int, n: int) -> bytes:
        if self.img is None:
            raise KeyError(name)
        return self.img.read(name, off, n)

    def read_mapping(self, name: str, off: int, n: int) -> Result:
        return err(Errno.EINVAL)  # no mapping survives a crash

    def fsck(self) -> list[str]:
        return list(self.problems)


def mount_crash_image(pm: PMem) -> Recovered:
    """Recover the image on `pm` and write what recovery changed back to it (page by page)."""
    before = pm.load_array(0, pm.size)
    rec = recover(before)
    after = rec.image[: pm.size]
    diff = (before != after).reshape(-1, PAGE).any(axis=1)
    for pg in np.flatnonzero(diff):
        a = int(pg) * PAGE
        pm.pages.write(a, after[a : a + PAGE])
    return Recovered(pm, rec.problems)
