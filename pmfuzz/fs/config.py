"""daxfs configuration: the design, the bug switches, and how the log is pushed.

Designs are the alternatives the Linux DAX threads argue about, as options of
one model; bugs are named deviations of it, each modelling a real failure.
Every design without bugs is crash-correct; the oracles must stay silent on it.
The lock scheme (`locks=rwsem|range`) is orthogonal to both.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from ..errors import PmfuzzError

__all__ = ["Design", "Bug", "CilMode", "LockScheme", "Config", "BUG_ORACLE"]


class Design(enum.StrEnum):
    ZERO = "zero"
    """Into a hole: allocate, zero the new blocks, commit the map, copy the data -- today's
    XFS/ext4/ext2 DAX (xfs_iomap_write_direct with XFS_BMAPI_ZERO: "Hence we must zero before
    commit"). Into a shared block: stage a COW extent, copy head/tail and data, remap one extent per
    transaction (xfs_reflink_end_cow)."""
    UNWRITTEN = "unwritten"
    """Into a hole: allocate unwritten and commit, copy the data (zeroing the rest of each new
    block), persist it, then convert in a second transaction -- the direct-I/O style path
    (iomap_dio end_io conversion). Into a shared block: as `zero`."""
    COW_REMAP = "cow-remap"
    """Into a hole: allocate, copy the data (zeroing the rest of each new block), persist it, then
    commit the new map -- the transaction is held across the copy, so new blocks are written once.
    Into a shared block: the same, and the whole remap commits in one transaction."""


class Bug(enum.StrEnum):
    ZERO_AFTER_COMMIT = "zero-after-commit"
    """The zero design commits the allocation before zeroing the new blocks: if the log is pushed
    in between (a background CIL push), the map is durable over stale media. The failure the
    comment in xfs_iomap_write_direct warns of."""
    NO_ZERO = "no-zero"
    """New blocks are mapped written with neither zeroing nor unwritten state: stale media shows
    through every part of a block the write did not cover -- the exposure that XFS_BMAPI_ZERO and
    EXT4_GET_BLOCKS_CREATE_ZERO exist to prevent."""
    CONVERT_BEFORE_PERSIST = "convert-before-persist"
    """The unwritten design converts unwritten->written as soon as it allocates, before the data is
    copied, flushed and fenced; a log push in between exposes the never-zeroed block."""
    COW_REMAP_BEFORE_COPY = "cow-remap-before-copy"
    """The copy-on-write remap (xfs_reflink_end_cow) commits before the copy into the staging
    extent is written, so a crash can leave the file pointing at a half-filled block."""
    COW_SKIP_TAIL_COPY = "cow-skip-tail-copy"
    """COW does not copy the unaligned head and tail of a block from the source extent
    (dax_iomap_copy_around skipped): the rest of the new block is whatever the staging block held."""
    COW_IN_PLACE = "cow-in-place"
    """A write to a shared block writes it in place instead of copying it, changing every file
    that shares it: reflink isolation broken (imap_needs_cow answering false)."""
    REFCOUNT_NOT_JOURNALED = "refcount-not-journaled"
    """Refcount updates are written in place instead of through the transaction, so a crash leaves
    refcounts that disagree with the extent maps."""
    JOURNAL_COMMIT_NO_FENCE = "journal-commit-no-fence"
    """The log writes the commit record without fencing the log records first (a missing
    REQ_PREFLUSH): recovery can replay a committed transaction whose records never reached media."""
    FSYNC_NO_FLUSH = "fsync-no-flush"
    """fsync forces the log but does not write back dirty mapping entries (dax_writeback_mapping_range
    skipped): data stored through a mapping is not durable after fsync."""
    MAP_SYNC_NO_COMMIT = "map-sync-no-commit"
    """A MAP_SYNC write fault installs the writable PTE without forcing the allocation to the log
    (dax_finish_sync_fault skipped): user data persisted through the mapping is lost with its block."""
    FAULT_EOF_ROUND_UP = "fault-eof-round-up"
    """The fault path checks pos >= i_size + PAGE_SIZE - 1 instead of pos >= i_size, so a fault on
    the page at EOF maps it instead of raising SIGBUS."""
    TRUNCATE_NO_ZERO_TAIL = "truncate-no-zero-tail"
    """Truncating down does not zero the partial tail block (dax_truncate_page skipped): a mapping of
    the last page still shows the cut-off bytes."""
    COW_EDGES_UNFLUSHED = "cow-edges-unflushed"
    """The COW head and tail are copied with cached stores that nothing flushes before the remap
    commits. This is how fs/dax.c dax_iomap_copy_around reads today (copied edges are not
    dax_flush'ed; only zeroed ones are) -- see docs/kernel-facts.md; unconfirmed on hardware."""
    FAULT_IOMAP_BEFORE_ENTRY_LOCK = "fault-iomap-before-entry-lock"
    """The fault path calls iomap_begin before grab_mapping_entry locks the entry. A read fault
    that saw a hole can then install the zero page after a racing write(2) allocated the block and
    invalidated the (still empty) range: the mapping shows zeroes where read(2) shows the data --
    the race that holding the entry lock across the whole of dax_iomap_pte_fault closes."""
    WRITE_FAULT_SHARED_NO_COW = "write-fault-shared-no-cow"
    """A write fault on a shared (reflinked) block maps that block writable instead of copying it
    (the IOMAP_F_SHARED fault path skipped): stores through the mapping change every file sharing the
    block -- the reason XFS refused reflink+DAX until the DAX COW fault path existed."""
    WRITE_KEEPS_HUGE_ZERO_PAGE = "write-keeps-huge-zero-page"
    """A write(2) that allocates under a range mapped by the huge (PMD) zero page does not
    invalidate that entry, so loads through the mapping keep reading zeroes over the new data -- the
    PMD half of the invalidate_inode_pages2_range call in dax_iomap_iter."""
    COW_REMAP_STALE_MAPPING = "cow-remap-stale-mapping"
    """A copy-on-write of a mapped shared block remaps the file without unmapping the old block
    (for IOMAP_F_SHARED, neither dax_iomap_iter's invalidation before the copy nor the one after
    xfs_reflink_end_cow): the mapping keeps showing, and storing into, the old block that now
    belongs only to the reflink source."""
    TRUNCATE_IGNORES_PINS = "truncate-ignores-pins"
    """Truncate, punch, fallocate and reflink break layouts without waiting for pinned pages
    (dax_layout_busy_page skipped): the blocks under a DMA in flight are freed and can be given to
    another file, which the device then overwrites -- the DAX/GUP problem that made XFS wait on
    busy DAX pages in xfs_break_dax_layouts."""
    COW_RECOPIES_STAGED_BLOCK = "cow-recopies-staged-block"
    """A write(2) or write fault that finds its block already staged in the COW fork by a racing
    op copies the old shared block into it again (the fault's whole page, the write's head and
    tail), over the data that op already put there: a write(2) returns its count but its bytes are
    gone, or a store through the mapping is undone. As we read fs/dax.c and xfs_reflink.c this is
    what the kernel does today (xfs_find_trim_cow_extent hands back the staged extent as
    IOMAP_F_SHARED with the data fork as srcmap, and dax_iomap_copy_around copies from srcmap
    unconditionally) between dax_iomap_iter and xfs_reflink_end_cow; unconfirmed on hardware."""
    UNSHARE_PARTIAL_COPY = "unshare-partial-copy"
    """fallocate unshare-range copies only the requested bytes into the COW staging block, from and to
    the start of the block (dax_unshare_iter from v6.2's "fsdax,xfs: port unshare to fsdax",
    d984648e428b, until v6.12's "fsdax: dax_unshare_iter needs to copy entire blocks", 50793801fc7f):
    after the remap the file shows the staging block's stale contents around an unaligned range, and
    its own bytes moved -- "catastrophic for data confidentiality", no crash needed."""
    UNSHARE_COPY_UNFLUSHED = "unshare-copy-unflushed"
    """fallocate unshare-range copies each shared block with cached stores that nothing flushes before
    the remap commits. This is how fs/dax.c dax_unshare_iter reads today (copy_mc_to_kernel, no
    dax_flush; the filemap_write_and_wait_range after it flushes only DIRTY-tagged entries, which the
    unshare makes none of) -- see docs/kernel-facts.md; unconfirmed on hardware. On ADR a crash after
    a log force can find the file remapped onto a block whose copy never left the cache."""


BUG_ORACLE: dict[Bug, str] = {
    Bug.ZERO_AFTER_COMMIT: "stale-exposure",
    Bug.NO_ZERO: "stale-exposure",
    Bug.CONVERT_BEFORE_PERSIST: "stale-exposure",
    Bug.COW_REMAP_BEFORE_COPY: "cow-atomicity",
    Bug.COW_SKIP_TAIL_COPY: "cow-atomicity",
    Bug.COW_IN_PLACE: "stale-exposure",
    Bug.REFCOUNT_NOT_JOURNALED: "mount",
    Bug.JOURNAL_COMMIT_NO_FENCE: "mount",
    Bug.FSYNC_NO_FLUSH: "durability",
    Bug.MAP_SYNC_NO_COMMIT: "durability",
    Bug.FAULT_EOF_ROUND_UP: "functional",
    Bug.TRUNCATE_NO_ZERO_TAIL: "functional",
    Bug.COW_EDGES_UNFLUSHED: "cow-atomicity",
    Bug.FAULT_IOMAP_BEFORE_ENTRY_LOCK: "mmap-coherency",
    Bug.WRITE_FAULT_SHARED_NO_COW: "functional",
    Bug.WRITE_KEEPS_HUGE_ZERO_PAGE: "mmap-coherency",
    Bug.COW_REMAP_STALE_MAPPING: "mmap-coherency",
    Bug.TRUNCATE_IGNORES_PINS: "layout",
    Bug.COW_RECOPIES_STAGED_BLOCK: "functional",
    Bug.UNSHARE_PARTIAL_COPY: "functional",
    Bug.UNSHARE_COPY_UNFLUSHED: "stale-exposure",
}
"""The oracle that must catch each bug."""


class CilMode(enum.StrEnum):
    """When committed transactions reach the on-media log."""

    LAZY = "lazy"
    """At a log force (fsync, sync, MAP_SYNC write fault, busy-extent flush) or when the CIL is full."""
    EAGER = "eager"
    """Right after every commit, as a background CIL push that won the race does."""


class LockScheme(enum.StrEnum):
    """How write(2), read(2), the layout-changing ops and page faults exclude each other."""

    RWSEM = "rwsem"
    """Today's XFS: write(2) holds i_rwsem exclusive over the whole file, read(2) shared; truncate,
    punch, fallocate and reflink add MMAPLOCK exclusive; a page fault takes MMAPLOCK shared. A
    write(2) whose user buffer is a mapping of the same file faults it in under i_rwsem and
    succeeds."""
    RANGE = "range"
    """Byte-range locks instead of i_rwsem: write(2), truncate, punch, fallocate (and reflink and
    unlink, over the whole file) lock the blocks they change exclusive, to EOF and beyond when the
    size changes; read(2) and page faults lock their range shared. A thread that asks for a range
    overlapping one it holds in a conflicting mode gets EDEADLK instead of waiting: a write(2) from
    its own mapping of the range it writes fails with EDEADLK (short if earlier source pages were
    copied), and two such writes crosswise between two files deadlock (an ABBA cycle)."""


@dataclass(frozen=True, slots=True)
class Config:
    design: Design = Design.ZERO
    bugs: frozenset[Bug] = frozenset()
    cil: CilMode = CilMode.LAZY
    locks: LockScheme = LockScheme.RWSEM

    def has(self, bug: Bug) -> bool:
        return bug in self.bugs

    @classmethod
    def parse(cls, design: str = "zero", bugs: str = "", cil: str = "lazy", locks: str = "rwsem") -> Config:
        try:
            d = Design(design)
        except ValueError:
            raise PmfuzzError(f"unknown design {design!r} (designs: {', '.join(x.value for x in Design)})") from None
        bs = set()
        for name in filter(None, (b.strip() for b in bugs.split(","))):
            try:
                bs.add(Bug(name))
            except ValueError:
                raise PmfuzzError(f"unknown bug {name!r} (see `pmfuzz bugs`)") from None
        try:
            c = CilMode(cil)
        except ValueError:
            raise PmfuzzError(f"unknown cil mode {cil!r} (expected lazy or eager)") from None
        try:
            lk = LockScheme(locks)
        except ValueError:
            raise PmfuzzError(
                f"unknown lock scheme locks={locks!r} (expected {' or '.join(x.value for x in LockScheme)})"
            ) from None
        return cls(d, frozenset(bs), c, lk)

    def options(self) -> dict[str, str]:
        """`key=value` pairs for a reproducer header; the default lock scheme is left out, so headers
        written before lock schemes existed still say exactly what they ran."""
        out = {"design": self.design.value}
        if self.bugs:
            out["bugs"] = ",".join(sorted(b.value for b in self.bugs))
        out["cil"] = self.cil.value
        if self.locks is not LockScheme.RWSEM:
            out["locks"] = self.locks.value
        return out
