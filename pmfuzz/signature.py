"""What identifies a finding: where the crash fell (`Signature`) and what went wrong (`Cause`).

A signature, `oracle:op:site`, names the crash point: one root cause shows under as many
signatures as there are places a crash can reveal it. A cause, `oracle/how/where`, names the
cause as far as the evidence knows it (the store a crash lost, the store that wrote a wrong
value, the rule an fsck or the reference applied); campaigns group findings by it.
Both are tuples, so they stay dict keys and sort; `-` stands for an empty field in the text.
"""

from __future__ import annotations

import enum
import re
from typing import NamedTuple

from oracles import OracleName

from .errors import PmfuzzError, clip

__all__ = ["Signature", "Cause", "How", "top_site", "oracle_of", "rule_of", "signal_rule"]


def top_site(site: str) -> str:
    """The top-level label of a code site ("xfs_file_fsync" for "xfs_file_fsync.commit_record")."""
    return site.split(".", 1)[0]


def _fields(text: str, sep: str, form: str) -> tuple[OracleName, str, str]:
    """The three fields of a signature or a cause (the last may hold `sep` itself); `-` is empty."""
    parts = text.strip().split(sep, 2)
    if len(parts) != 3:
        raise PmfuzzError(f"{form}, got {clip(text)}")
    try:
        oracle = OracleName(parts[0])
    except ValueError:
        raise PmfuzzError(f"{form.split(' is ')[0]} names an oracle first, got {clip(text)}") from None
    second, third = ("" if x == "-" else x for x in parts[1:])
    return oracle, second, third


class Signature(NamedTuple):
    oracle: OracleName
    op_kind: str
    """The op kind at the crash (`end` for a crash at the end of the run, `parallel` for a group)."""
    site: str

    @classmethod
    def parse(cls, text: str) -> Signature:
        """The value of `oracle:op:site` (the site may itself hold colons)."""
        oracle, kind, site = _fields(text, ":", "a signature is oracle:op:site")
        return cls(oracle, kind, site)

    def with_top_site(self) -> Signature:
        """The signature as findings give it: the site's top-level label only."""
        return self._replace(site=top_site(self.site))

    def __str__(self) -> str:
        return ":".join(x or "-" for x in (str(self.oracle), self.op_kind, self.site))


class How(enum.StrEnum):
    """How a finding's cause was established."""

    LOST = "lost"
    """A store to a wrong word that the crash did not keep (dropped in flight, or not yet issued)."""
    WRITTEN = "written"
    """The store that put the wrong word there (no later store would have fixed it); for a metadata
    rule, the store that wrote metadata home outside the log ahead of its transaction."""
    NEVER_WRITTEN = "never-written"
    """Nothing wrote the wrong word for this file: media nobody wrote (or a copy of it), or data a
    block held before it was this file's; whichever oracle read it, and with or without a crash."""
    UNMAPPED = "unmapped"
    """The wrong word reads as a hole: the block map that held it was lost."""
    METADATA = "metadata"
    """What a durability point made durable recovers without its metadata -- the file, its removal,
    its size or the block map under its data: one cause whichever of them the crash shows."""
    PAGE_TABLE = "page-table"
    """A load or store through a mapping went through a page-table entry that should not have let
    it: installed stale, made writable on a shared block, or kept over a change of the block map --
    whatever the page showed."""
    DROPPED = "dropped"
    """The target does not map words to the device: the code whose in-flight stores the crash dropped."""
    REORDERED = "reordered"
    """A metadata rule broke where the crash kept a store and dropped an earlier one: the earliest dropped's code."""
    AT = "at"
    """Nothing more is known than where the crash fell."""
    CONTENT = "content"
    """A crash-free read saw the wrong kind of word: what was read for what was due (`poison for zero`)."""
    RULE = "rule"
    """The rule a message states, numbers and names taken out (fsck, sizes, names, races)."""


class Cause(NamedTuple):
    oracle: OracleName
    how: How
    where: str
    """A code site (`xfs_zero_extent`), or for `rule` the message with numbers and names taken out."""

    @classmethod
    def parse(cls, text: str) -> Cause:
        """The value of `oracle/how/where`."""
        oracle, how, where = _fields(text, "/", "a cause is oracle/how/where")
        try:
            return cls(oracle, How(how), where)
        except ValueError:
            raise PmfuzzError(f"a cause's second field is one of {', '.join(How)}, got {clip(text)}") from None

    def __str__(self) -> str:
        return f"{self.oracle}/{self.how}/{self.where or '-'}"


_NUMBERS = re.compile(r"\b0x[0-9a-f]+\b|\b\d+\b")
_NAMES = re.compile(r"\b([fm])\d+\b")
_FILE_IDS = re.compile(r"file#\d+")


def rule_of(message: str) -> str:
    """A message with what varies between runs of one rule taken out: op texts, numbers, names, what was seen."""
    m = message.split("\n", 1)[0]
    for tail in (" see ", ";", ": results"):
        m = m.split(tail, 1)[0]
    m = re.sub(r"`(\w+)[^`]*`", r"`\1`", m)
    m = re.sub(r"\([^()]*\)", "", m)
    m = re.sub(r"\[[^\[\]]*\]", "[]", m)
    m = _FILE_IDS.sub("file#", m)
    m = _NAMES.sub(lambda x: x[1].upper(), m)
    m = _NUMBERS.sub("N", m)
    m = m.replace("/", "|")
    due = _SIGNAL_DUE.match(m)
    if due:
        return signal_rule(due[1])
    return re.sub(r"\s+", " ", m).strip(" :,.")[:160]


def signal_rule(signal: str) -> str:
    """The rule of a signal that was due and did not come, whatever op met it and whatever it got."""
    return f"an access did not get the {signal} POSIX says"


_SIGNAL_DUE = re.compile(r"^op N `\w+` returned \S+, POSIX says (SIG[A-Z]+)$")
"""A signal due is one rule whatever op met it and whatever it got: a fault, a store, a pin and a
persist past EOF all read one mapping past EOF (`fault-eof-round-up` was five groups)."""


def oracle_of(text: str) -> str:
    """The oracle a cause's or a signature's text names; tolerant, for indexes written by other versions."""
    for parse in (Cause.parse, Signature.parse):
        try:
            return str(parse(text).oracle)
        except PmfuzzError:
            pass
    return re.split(r"[:/]", text, maxsplit=1)[0]
