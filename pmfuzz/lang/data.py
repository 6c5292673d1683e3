"""Self-describing data: every 8-byte word says what it is.

A word a workload writes encodes (file incarnation, op index, word offset in
the file) under a magic; formatted media holds poison that encodes its own
device address. So any word read back after a crash can be classified alone:
zero, this file's data at this offset (and from which op), another file's or
another offset's data, or stale media that nobody wrote.
"""

from __future__ import annotations

import enum
import itertools
from dataclasses import dataclass

import numpy as np

__all__ = ["WordKind", "Decoded", "payload", "poison", "decode", "decode_words", "describe"]

_DATA_MAGIC = 0xDA7
_POISON_MAGIC = 0xB0B0
_INC_BITS, _OP_BITS, _OFF_BITS = 12, 12, 28


class WordKind(enum.StrEnum):
    ZERO = "zero"
    DATA = "data"
    POISON = "poison"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class Decoded:
    kind: WordKind
    file: int = -1
    """Incarnation id of the file that wrote it: the index of the op that created the file."""
    op: int = -1
    offset: int = -1
    """File byte offset (data) or device byte address (poison) the word encodes."""

    def __str__(self) -> str:
        if self.kind is WordKind.DATA:
            return f"data of file#{self.file} at offset {self.offset} written by op {self.op}"
        if self.kind is WordKind.POISON:
            return f"poison of device address {self.offset:#x} (block {self.offset // 4096}), never written"
        return self.kind.value


def _data_words(file: int, op: int, first_word: int, n: int) -> np.ndarray:
    if not (0 <= file < 1 << _INC_BITS and 0 <= op < 1 << _OP_BITS):
        raise ValueError(f"file incarnation {file} or op index {op} out of range for self-describing data")
    w = np.arange(first_word, first_word + n, dtype=np.uint64)
    head = np.uint64((_DATA_MAGIC << 52) | (file << 40) | (op << 28))
    return head | w


def payload(file: int, op: int, off: int, n: int) -> bytes:
    """The bytes op `op` writes to file incarnation `file` at file offset `off`."""
    first = off // 8
    last = (off + n - 1) // 8
    words = _data_words(file, op, first, last - first + 1)
    raw = words.astype("<u8").tobytes()
    start = off - first * 8
    return raw[start : start + n]


def poison(addr: int, n: int) -> np.ndarray:
    """Media content that encodes its own device address, for [addr, addr+n) with both 8-aligned."""
    words = np.arange(addr, addr + n, 8, dtype=np.uint64) | np.uint64(_POISON_MAGIC << 48)
    return words.astype("<u8").view(np.uint8)


def decode(word: int) -> Decoded:
    if word == 0:
        return Decoded(WordKind.ZERO)
    if word >> 52 == _DATA_MAGIC:
        return Decoded(WordKind.DATA, (word >> 40) & 0xFFF, (word >> 28) & 0xFFF, (word & ((1 << 28) - 1)) * 8)
    if word >> 48 == _POISON_MAGIC and not word & 7:
        return Decoded(WordKind.POISON, offset=word & ((1 << 48) - 1))
    return Decoded(WordKind.UNKNOWN)


def decode_words(words: np.ndarray) -> np.ndarray:
    """Vectorised kind of each uint64 word: 0 zero, 1 data, 2 poison, 3 unknown."""
    words = words.astype(np.uint64, copy=False)
    out = np.full(words.shape, 3, dtype=np.uint8)
    out[words >> np.uint64(52) == _DATA_MAGIC] = 1
    out[(words >> np.uint64(48) == _POISON_MAGIC) & (words & np.uint64(7) == 0)] = 2
    out[words == 0] = 0
    return out


def describe(data: bytes | np.ndarray, base: int = 0) -> str:
    """A short human summary of a byte range: runs of words of the same meaning."""
    arr = np.frombuffer(bytes(data), dtype=np.uint8)
    if len(arr) % 8:
        arr = np.concatenate([arr, np.zeros(8 - len(arr) % 8, dtype=np.uint8)])
    words = arr.view("<u8")
    if len(words) == 0:
        return ""
    kind = decode_words(words)
    mask = np.uint64((1 << 28) - 1)
    ident = np.where(kind == 1, words >> np.uint64(28), np.uint64(0))
    pos = np.arange(len(words), dtype=np.uint64)
    off = np.where(
        kind == 1, words & mask, np.where(kind == 2, (words & np.uint64((1 << 48) - 1)) >> np.uint64(3), np.uint64(0))
    )
    step = off - pos
    brk = np.ones(len(words), dtype=bool)
    brk[1:] = (
        (kind[1:] != kind[:-1])
        | (ident[1:] != ident[:-1])
        | ((kind[1:] == 1) | (kind[1:] == 2)) & (step[1:] != step[:-1])
    )
    starts = [*np.flatnonzero(brk).tolist(), len(words)]
    parts = [f"[{base + a * 8}:{base + b * 8}] {decode(int(words[a]))}" for a, b in itertools.pairwise(starts)]
    return "; ".join(parts)
