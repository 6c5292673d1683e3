"""The POSIX reference: what every op must do, and what a crash may leave.

Three parts, one module each: the model (`model`, with `files` and `falloc`), the history of a
run (`history`, with the records of `effects`) and the expectations (`expect`); this package
gathers their public names.

Crash-free, `Reference` executes ops with plain POSIX semantics. Files live as
byte arrays that also hold the bytes between EOF and the end of the EOF block
(what a mapping of the last page shows); those bytes are zeroed whenever the
size grows over them, as the kernel's EOF zeroing does.

For crashes, `History` keeps every file's version at every op boundary, the
durability points (fsync, sync, persist on a MAP_SYNC mapping after a write
fault), the blocks each op copied on write, and the ranges a truncate removed.
`Expectation` turns that into what a recovered file system may show after a
crash in a given op. These are the rules of DESIGN.md section 4, kept here so
every oracle reads them the same way:

* A word's window runs from its last durability point to the crash. It may
  hold any value it had at an op boundary in the window while inside the
  file's size, any value an op in the window wrote to it (an in-place write
  tears per word, so old and new are both boundary values), or zero if a
  truncate in the window removed it (the tail is zeroed before the new size
  is durable).
* A file's size is one of its sizes at the window's boundaries; a name exists
  only if it existed at some boundary of its window, and must if at all.
* A write to a block that is shared (cloned by reflink and not since
  rewritten) leaves that block, as a whole, as it was before the write or
  after it.
"""

from __future__ import annotations

from ..lang.rules import page_pieces, reflink_error
from .effects import CowEvent, FileVersion, OpEffects
from .expect import WORDS_PER_BLOCK, Expectation, WordVerdict
from .files import Backing, RefFile, RefMapping
from .history import History
from .model import Reference

__all__ = [
    "Reference",
    "RefFile",
    "RefMapping",
    "Backing",
    "History",
    "Expectation",
    "WordVerdict",
    "WORDS_PER_BLOCK",
    "FileVersion",
    "CowEvent",
    "OpEffects",
    "reflink_error",
    "page_pieces",
]
