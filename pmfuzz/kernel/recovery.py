"""Recovering a crash image with the real ext4 code on the host, and the recovered view.

`e2fsck -f -p` is what a boot does after a crash: it replays the journal
(e2fsck's recovery.c is the kernel's fs/jbd2/recovery.c), processes the
orphan list, and fixes only what an unclean shutdown may leave (free counts);
anything else makes it stop with exit status 4 -- a `mount` finding, with
e2fsck's words. The image is then repaired with `e2fsck -fy` so the other
oracles can still read the files.
"""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np

from ..pmem import Pages, PMem
from ..target import Errno, Result, err
from .ext4image import Ext4Error, Ext4Image
from .paths import format_over, scratch_dir, tool

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


def mkfs(base: np.ndarray) -> np.ndarray:
    """mke2fs over `base` (the poisoned device): the formatted image."""
    env = dict(os.environ, E2FSPROGS_FAKE_TIME="1700000000")
    return format_over(base, "pmfuzz-ext4-", ["mke2fs", *MKFS_OPTS], env)


class Unrecoverable(Exception):
    """Neither the boot-time check nor a full repair gets the image mounted: a `mount` finding."""

    is_target_error = True


class Scratch:
    """The host file e2fsck recovers, kept between crash images: only pages that differ are rewritten.

    `expect` mirrors the file; a page of the next image whose array is the very one written last
    time (copy-on-write pages are shared between states of a point) needs no comparison at all.
    """

    def __init__(self, size: int) -> None:
        self.dir = scratch_dir("pmfuzz-ext4-")
        self.path = self.dir / f"image-{os.getpid()}"
        with open(self.path, "wb") as f:
            f.truncate(size)
        self.size = size
        self.file = np.memmap(self.path, dtype=np.uint8, mode="r+", shape=(size,))
        self.expect = np.zeros(size, dtype=np.uint8)
        self.written: list[object | None] = [None] * (-(-size // PAGE))
        atexit.register(shutil.rmtree, self.dir, True)  # tmpfs: 8 MiB per process otherwise left behind

    def load(self, pages: Pages) -> None:
        for p in range(len(self.written)):
            page = pages._page(p)  # the copy-on-write page object: identity says "unchanged"
            if page is self.written[p]:
                continue
            a = p * PAGE
            if not np.array_equal(self.expect[a : a + len(page)], page):
                self.file[a : a + len(page)] = page
                self.expect[a : a + len(page)] = page
            self.written[p] = page

    def changed(self) -> list[int]:
        """Pages the last e2fsck wrote; the mirror and the identity cache learn them."""
        diff = np.flatnonzero((self.file != self.expect).reshape(-1, PAGE).any(axis=1))
        for p in diff:
            a = int(p) * PAGE
            self.expect[a : a + PAGE] = self.file[a : a + PAGE]
            self.written[int(p)] = None
        return [int(p) for p in diff]


_SCRATCH: dict[int, Scratch] = {}


def _fsck(path: Path, *flags: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, E2FSPROGS_FAKE_TIME="1700000000")
    return subprocess.run([tool("e2fsck"), *flags, str(path)], capture_output=True, text=True, env=env)


def recover(pm: PMem) -> tuple[list[str], list[int]]:
    """Run the boot-time recovery on `pm`'s image; (what fsck reported, pages recovery changed)."""
    sc = _SCRATCH.get(pm.size)
    if sc is None or not sc.path.exists():
        sc = _SCRATCH[pm.size] = Scratch(pm.size)
    sc.load(pm.pages)
    sc.file.flush()
    p = _fsck(sc.path, "-f", "-p")
    problems: list[str] = []
    if p.returncode & ~3:
        text = (p.stdout + p.stderr).replace(str(sc.path), "image")
        problems = [ln.strip() for ln in text.splitlines() if ln.strip()] or [f"e2fsck -p exit status {p.returncode}"]
        problems.insert(0, f"e2fsck -f -p exit status {p.returncode} (the boot-time check would stop here)")
        q = _fsck(sc.path, "-f", "-y")
        if q.returncode & ~3:
            sc.changed()
            why = next((ln for ln in (q.stdout + q.stderr).splitlines() if "while trying to open" in ln), problems[-1])
            raise Unrecoverable(f"e2fsck cannot repair it (exit {q.returncode}): {why.replace(str(sc.path), 'image')}")
    return problems, sc.changed()


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
    problems, changed = recover(pm)
    sc = _SCRATCH[pm.size]
    for p in changed:
        a = p * PAGE
        pm.pages.write(a, sc.expect[a : a + PAGE])
    return Recovered(pm, tuple(problems))
