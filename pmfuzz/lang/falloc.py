"""The fallocate(2) modes of the op language: FALLOC_FL_* flags and their text words.

`fallocate F OFF LEN [zero-range|unshare-range] [keep-size]` is
`fallocate(fd, mode, OFF, LEN)` with `mode` the flags named by the words (none:
FALLOC_FL_ALLOCATE_RANGE). Words may come in any order; the canonical text puts
the mode first, as `FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE` is usually written.

What every target must do (the reference model implements it):

* allocate (no mode word): preallocate every block of [OFF, OFF+LEN) that is a
  hole (unwritten: reads zero); the data does not change.
* `zero-range`: [OFF, OFF+LEN) reads zero afterwards and its blocks are
  allocated. xfs_falloc_zero_range does it as xfs_free_file_space (zero the
  partial edge blocks in place, up to EOF only; unmap the whole blocks) and then
  xfs_alloc_file_space over the range rounded out to blocks.
* `unshare-range`: every shared (reflinked) block of [OFF, min(OFF+LEN, EOF))
  gets its own copy (xfs_reflink_unshare -> dax_file_unshare), then the range is
  preallocated as for allocate; the data does not change.
* Without `keep-size`, a range ending past EOF extends the size to OFF+LEN
  (xfs_falloc_newsize / xfs_falloc_setsize); with it the size never changes and
  blocks past EOF are preallocated beyond it.

`zero-range` and `unshare-range` together are not representable: the kernel
rejects that mode (vfs_fallocate: EOPNOTSUPP since the modes became exclusive in
v6.12's "sort out the fallocate mode vs flag mess"; EINVAL before, because
UNSHARE_RANGE only combined with KEEP_SIZE), so no target ever runs it.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence

__all__ = ["FallocMode", "falloc_words", "parse_falloc_words", "FALLOC_MODES"]


class FallocMode(enum.IntFlag):
    """fallocate(2)'s mode argument, with the kernel's bit values (include/uapi/linux/falloc.h)."""

    ALLOCATE_RANGE = 0x00
    KEEP_SIZE = 0x01
    """FALLOC_FL_KEEP_SIZE: i_size stays; blocks past EOF are preallocated beyond it."""
    ZERO_RANGE = 0x10
    """FALLOC_FL_ZERO_RANGE: the range reads zero and stays allocated."""
    UNSHARE_RANGE = 0x40
    """FALLOC_FL_UNSHARE_RANGE: copy shared blocks so that the file owns every block of the range."""

    @property
    def valid(self) -> bool:
        """Does vfs_fallocate accept this mode? The two range modes exclude each other."""
        return not (self & FallocMode.ZERO_RANGE and self & FallocMode.UNSHARE_RANGE)


_WORDS: tuple[tuple[FallocMode, str], ...] = (
    (FallocMode.ZERO_RANGE, "zero-range"),
    (FallocMode.UNSHARE_RANGE, "unshare-range"),
    (FallocMode.KEEP_SIZE, "keep-size"),
)

FALLOC_MODES: tuple[FallocMode, ...] = tuple(
    FallocMode(m | k) for m in (0, FallocMode.ZERO_RANGE, FallocMode.UNSHARE_RANGE) for k in (0, FallocMode.KEEP_SIZE)
)
"""Every mode the kernel accepts for the ops the language has (punch is its own op)."""


def falloc_words(mode: FallocMode) -> list[str]:
    """The mode's words in canonical order (none for a plain allocate)."""
    return [w for flag, w in _WORDS if mode & flag]


def parse_falloc_words(words: Sequence[tuple[str, int]], fail: Callable[[str, int], Exception]) -> FallocMode:
    """The mode that (word, column) tokens name; `fail(message, column)` is raised for an unknown or
    repeated word, or a combination the kernel rejects (so the text cannot express one)."""
    by_word = {w: flag for flag, w in _WORDS}
    mode = FallocMode.ALLOCATE_RANGE
    for w, col in words:
        flag = by_word.get(w)
        if flag is None:
            raise fail(f"expected a fallocate flag ({' or '.join(by_word)}), got {w!r}", col)
        if mode & flag:
            raise fail(f"fallocate flag {w!r} given twice", col)
        mode |= flag
        if not mode.valid:
            raise fail("zero-range and unshare-range exclude each other (the kernel rejects that mode)", col)
    return mode
