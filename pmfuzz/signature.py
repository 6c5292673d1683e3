"""What deduplicates findings: (oracle, op kind at the crash, code site), and its text `oracle:op:site`.

A tuple, so it stays a dict key and sorts as before; `-` stands for an empty field in the text.
"""

from __future__ import annotations

from typing import NamedTuple

from oracles import OracleName

from .errors import PmfuzzError, clip

__all__ = ["Signature", "top_site", "oracle_of"]


def top_site(site: str) -> str:
    """The top-level label of a code site ("xfs_file_fsync" for "xfs_file_fsync.commit_record")."""
    return site.split(".", 1)[0]


class Signature(NamedTuple):
    oracle: OracleName
    op_kind: str
    """The op kind at the crash (`end` for a crash at the end of the run, `parallel` for a group)."""
    site: str

    @classmethod
    def parse(cls, text: str) -> Signature:
        """The value of `oracle:op:site` (the site may itself hold colons)."""
        parts = text.strip().split(":", 2)
        if len(parts) != 3:
            raise PmfuzzError(f"a signature is oracle:op:site, got {clip(text)}")
        try:
            oracle = OracleName(parts[0])
        except ValueError:
            raise PmfuzzError(f"a signature names an oracle first, got {clip(text)}") from None
        kind, site = ("" if x == "-" else x for x in parts[1:])
        return cls(oracle, kind, site)

    def with_top_site(self) -> Signature:
        """The signature as findings give it: the site's top-level label only."""
        return self._replace(site=top_site(self.site))

    def __str__(self) -> str:
        return ":".join(x or "-" for x in (str(self.oracle), self.op_kind, self.site))


def oracle_of(text: str) -> str:
    """The oracle a signature's text names; tolerant, for indexes written by other versions."""
    try:
        return str(Signature.parse(text).oracle)
    except PmfuzzError:
        return text.partition(":")[0]
