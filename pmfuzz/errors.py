"""The one root of pmfuzz's own user-facing errors.

Errors of a target under test are findings and never use these classes; an
exception of any other type raised from pmfuzz code is a bug in pmfuzz.
"""

from __future__ import annotations

__all__ = ["PMemError", "ParseError", "PmfuzzError", "clip", "one_line", "shown_path"]

CLIP = 60
"""Characters of an offending value an error message shows: enough to recognise it, never a whole input."""
MAX_MESSAGE = 400
"""Longest error line pmfuzz prints; a longer message is cut."""


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


def clip(value: object, limit: int = CLIP) -> str:
    """`repr(value)`, cut to about `limit` characters, saying how long the value was.

    Why: a malformed file can hold a line of a megabyte; an error that echoes it whole is no
    longer a one-line error. The start of a value is what a user recognises it by.
    """
    text = repr(value)
    if len(text) <= limit:
        return text
    size = len(value) if isinstance(value, str | bytes) else len(text)
    return f"{text[:limit]}... ({size} chars)"


def one_line(message: str, limit: int = MAX_MESSAGE) -> str:
    """A message as one printable line of at most `limit` characters (the last safety net before printing)."""
    flat = " ".join(message.split())
    return flat if len(flat) <= limit else flat[:limit] + "..."


def shown_path(path: object) -> str:
    """A path as typed, unless it is long or unprintable (then clipped and quoted)."""
    text = str(path)
    return text if len(text) <= 200 and text.isprintable() else clip(text)
