"""The one root of pmfuzz's own user-facing errors.

Errors of a target under test are findings and never use these classes; an
exception of any other type raised from pmfuzz code is a bug in pmfuzz.
"""

from __future__ import annotations

__all__ = ["PMemError", "ParseError", "PmfuzzError"]


class PmfuzzError(Exception):
    """A user error that pmfuzz reports in one line and exits non-zero on."""


class PMemError(PmfuzzError):
    """A misuse of the persistent-memory device (bad address, length, domain)."""


class ParseError(PmfuzzError):
    """Text that does not parse; the message names the line (and column)."""

    def __init__(
        self, message: str, *, line: int | None = None, column: int | None = None, source: str | None = None
    ) -> None:
        self.line = line
        self.column = column
        self.source = source
        where = ""
        if source is not None:
            where += f"{source}:"
        if line is not None:
            where += f"{line}:"
            if column is not None:
                where += f"{column}:"
        super().__init__(f"{where} {message}" if where else message)
