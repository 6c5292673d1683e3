"""Bounds on what pmfuzz accepts from files and flags, and how it reads an input file.

Reproducers, corpora and traces travel: they are attached to bug reports,
committed and replayed in CI, recorded by other people's programs. pmfuzz
treats them as data that may be hostile or damaged, so a number in a file
never decides alone how much memory or time pmfuzz spends: a device is at
most `MAX_DEVICE_SIZE`, every offset and length of a reproducer's ops lies
inside its device, and an input file must be a regular file of bounded size
(a FIFO or /dev/zero as input would otherwise block or fill memory).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable, Iterator
from dataclasses import fields

from ..errors import PmfuzzError, clip, shown_path
from .textform import SizeError, read_size
from .workload import PAGE_SIZE, Op, flatten

__all__ = [
    "MAX_DEVICE_SIZE",
    "MAX_REPRODUCER_BYTES",
    "MAX_TRACE_BYTES",
    "MAX_TRACE_DEVICE",
    "check_device_size",
    "op_ends",
    "parse_size",
    "read_input",
    "read_input_bytes",
    "size_text",
    "workload_overflow",
]

MAX_DEVICE_SIZE = 256 << 20
"""Largest device a reproducer or `--device` may name. pmfuzz holds a device in memory (a
formatted daxfs device costs about twice its size), so `# device: 4G` would cost 8 GiB."""
MAX_REPRODUCER_BYTES = 1 << 20
"""Largest reproducer or corpus file read: 4,000 ops (the most a workload holds) fit in a tenth of it."""
MAX_TRACE_BYTES = 1 << 30
"""Largest trace file read."""
MAX_TRACE_DEVICE = 256 << 20
"""Largest device a trace may need (its registered files laid end to end). The replay keeps each
file in memory (and writes it for program checkers): one flipped bit in a size must not ask for
293 GB."""


def size_text(n: int) -> str:
    """`8 MiB`, `12 KiB`, or bytes: how error messages name a size."""
    for suffix, k in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= k and n % k == 0:
            return f"{n // k} {suffix}"
    return f"{n} bytes"


def parse_size(text: str, what: str = "device size") -> int:
    """A size like `8M`, `64K` or `1048576` (decimal, no leading zero); errors show the value, clipped."""
    try:
        return read_size(text.strip(), hex_ok=False)
    except SizeError:
        raise PmfuzzError(
            f"{what} must be a number with an optional K/M/G suffix (like 8M), got {clip(text)}"
        ) from None


def check_device_size(n: int, what: str = "device size") -> int:
    """A device size pmfuzz can hold: whole pages, at least one, at most `MAX_DEVICE_SIZE`.

    Whether the target can format a device of this size is the target's to say (see `preflight`).
    """
    if n <= 0 or n % PAGE_SIZE:
        raise PmfuzzError(f"{what} must be a positive whole number of 4 KiB pages, got {n}")
    if n > MAX_DEVICE_SIZE:
        raise PmfuzzError(f"{what} {size_text(n)} is beyond the limit of {size_text(MAX_DEVICE_SIZE)}")
    return n


_ENDS = (("off", "len"), ("soff", "len"), ("doff", "len"), ("moff", "len"))


def op_ends(op: Op) -> Iterator[int]:
    """Every byte position an op reaches: offset + length of each range, a size, the end of a page.

    Read from the op's fields by name, so ops added later (or new fields) are covered without a table.
    """
    values = {f.name: getattr(op, f.name) for f in fields(op)}
    ints = {k: v for k, v in values.items() if isinstance(v, int) and not isinstance(v, bool)}
    for a, b in _ENDS:
        if a in ints and b in ints:
            yield ints[a] + ints[b]
    if "size" in ints:
        yield ints["size"]
    if "pgoff" in ints:
        yield (ints["pgoff"] + 1) * PAGE_SIZE


def workload_overflow(ops: Iterable[Op], device_size: int) -> tuple[int, str] | None:
    """(index among `ops`, message) of the first op that reaches past the device; None if all fit.

    A file on a device of N bytes never needs an offset past N here: bounding ops by the device at
    parse time keeps a two-line reproducer from asking for gigabytes of payload and model state.
    """
    for i, op in enumerate(ops):
        for sub in flatten((op,)):
            end = max(op_ends(sub), default=0)
            if end > device_size:
                return i, (
                    f"`{sub}` reaches byte {end}, beyond the device of {size_text(device_size)} "
                    f"(ops stay inside the device; a reproducer may name up to `# device: "
                    f"{MAX_DEVICE_SIZE >> 20}M`)"
                )
    return None


def read_input(path: str, limit: int, what: str = "input", *, errors: str = "strict") -> str:
    """The UTF-8 text of a regular file of at most `limit` bytes, or one clear error (see `read_input_bytes`)."""
    data = read_input_bytes(path, limit, what)
    try:
        return data.decode("utf-8", errors=errors)
    except UnicodeDecodeError as e:
        raise PmfuzzError(f"{shown_path(path)} is not a UTF-8 text file (byte {e.start})") from None


def read_input_bytes(path: str, limit: int, what: str = "input") -> bytes:
    """The bytes of a regular file of at most `limit` bytes, or one clear error.

    A FIFO would block the open forever and a character device (/dev/zero) never ends, so the
    type is checked before opening; the size is checked again while reading (the file may grow).
    """
    try:
        st = os.stat(path)
    except OSError as e:
        raise PmfuzzError(f"cannot read {shown_path(path)}: {e.strerror}") from None
    if stat.S_ISDIR(st.st_mode):
        raise PmfuzzError(f"{shown_path(path)} is a directory, not a {what} file")
    if not stat.S_ISREG(st.st_mode):
        raise PmfuzzError(f"{shown_path(path)} is not a regular file (a FIFO, socket or device); give a {what} file")
    if st.st_size > limit:
        raise PmfuzzError(f"{shown_path(path)} is {st.st_size} bytes: a {what} file is at most {size_text(limit)}")
    try:
        with open(path, "rb") as f:
            data = f.read(limit + 1)
    except OSError as e:
        raise PmfuzzError(f"cannot read {shown_path(path)}: {e.strerror}") from None
    if len(data) > limit:
        raise PmfuzzError(f"{shown_path(path)} grew past {size_text(limit)} while read: a {what} file is at most that")
    return data
