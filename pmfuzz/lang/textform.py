"""Numbers and words of pmfuzz's text formats: workload lines, reproducer headers, size flags.

One reader of sizes (`8M`, `64K`, `4096`, `0x1000`) serves the op language,
`# device:` and `--device`, so that a size means the same everywhere and is
refused the same way (a leading zero, which C would read as octal, is an
error rather than a guess).
"""

from __future__ import annotations

import re

from ..errors import ParseError, clip

__all__ = ["NUMBER_DIGITS", "Line", "SizeError", "read_size"]

_NUM = re.compile(r"^(0x[0-9a-fA-F]+|0|[1-9][0-9]*)([KMG]?)$")
_LEADING_ZERO = re.compile(r"^0[0-9]+[KMG]?$")
NUMBER_DIGITS = 20
"""Longest number read (2**64 in decimal): longer ones are past every limit anyway."""
_SCALE = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}


class SizeError(ValueError):
    """Why a token is not a size: `reason` is "leading zero", "too long" or "not a number"."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def read_size(token: str, *, hex_ok: bool = True) -> int:
    """A decimal (or `0x` hex) number with an optional K/M/G suffix (powers of 1024); `SizeError` if not."""
    m = _NUM.match(token)
    if not m or (not hex_ok and m.group(1).startswith("0x")):
        raise SizeError("leading zero" if _LEADING_ZERO.match(token) else "not a number")
    digits = m.group(1)
    if len(digits) > NUMBER_DIGITS:
        raise SizeError("too long")
    return int(digits, 16 if digits.startswith("0x") else 10) * _SCALE[m.group(2)]


class Line:
    """Tokens of one line with their columns, for errors that point at the value.

    `limit` bounds every number read (`num`), unless a call gives its own.
    """

    def __init__(self, text: str, lineno: int, source: str | None, limit: int) -> None:
        self.text, self.lineno, self.source, self.limit = text, lineno, source, limit
        self.tokens = [(m.group(), m.start() + 1) for m in re.finditer(r"\S+", text)]

    def fail(self, msg: str, col: int | None = None) -> ParseError:
        return ParseError(msg, line=self.lineno, column=col, source=self.source)

    def arity(self, lo: int, hi: int, usage: str) -> None:
        n = len(self.tokens) - 1
        if not lo <= n <= hi:
            col = self.tokens[hi + 1][1] if n > hi else None
            raise self.fail(f"{self.tokens[0][0]} takes {usage}, got {n} argument(s)", col)

    def name(self, i: int, allowed: tuple[str, ...], what: str) -> str:
        tok, col = self.tokens[i]
        if tok not in allowed:
            raise self.fail(f"expected a {what} ({allowed[0]}..{allowed[-1]}), got {clip(tok)}", col)
        return tok

    def num(self, i: int, what: str, *, positive: bool = False, limit: int | None = None) -> int:
        tok, col = self.tokens[i]
        limit = self.limit if limit is None else limit
        try:
            v = read_size(tok)
        except SizeError as e:
            if e.reason == "leading zero":
                raise self.fail(
                    f"{what} {clip(tok)} has a leading zero (C would read octal): write it without", col
                ) from None
            if e.reason == "too long":
                raise self.fail(f"{what} {clip(tok)} is beyond the limit of {limit}", col) from None
            raise self.fail(f"expected a number for {what}, got {clip(tok)}", col) from None
        if positive and v == 0:
            raise self.fail(f"{what} must be at least 1, got {clip(tok)}", col)
        if v > limit:
            raise self.fail(f"{what} {clip(tok)} is beyond the limit of {limit}", col)
        return v

    def word(self, i: int, allowed: tuple[str, ...], what: str) -> str:
        tok, col = self.tokens[i]
        if tok not in allowed:
            raise self.fail(f"expected {what} ({' or '.join(allowed)}), got {clip(tok)}", col)
        return tok
