"""A gzip'd newc cpio archive, written in Python so the set-up needs no cpio tool."""

from __future__ import annotations

import gzip
import stat
from pathlib import Path

__all__ = ["Archive"]


class Archive:
    """Directories, files and symlinks, in the order added (directories before their contents)."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self._ino = 1

    def _entry(self, name: str, mode: int, data: bytes = b"") -> None:
        fields = [self._ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(name) + 1, 0]
        head = b"070701" + b"".join(f"{v:08x}".encode() for v in fields)
        blob = head + name.encode() + b"\0"
        blob += b"\0" * (-len(blob) % 4)
        blob += data + b"\0" * (-len(data) % 4)
        self._parts.append(blob)
        self._ino += 1

    def dir(self, name: str) -> None:
        self._entry(name, stat.S_IFDIR | 0o755)

    def file(self, name: str, data: bytes, mode: int = 0o644) -> None:
        self._entry(name, stat.S_IFREG | mode, data)

    def copy(self, name: str, src: Path, mode: int = 0o755) -> None:
        self.file(name, src.read_bytes(), mode)

    def symlink(self, name: str, target: str) -> None:
        self._entry(name, stat.S_IFLNK | 0o777, target.encode())

    def write(self, path: Path) -> None:
        self._entry("TRAILER!!!", 0)
        path.write_bytes(gzip.compress(b"".join(self._parts), compresslevel=1))
