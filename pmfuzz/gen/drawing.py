"""Drawing values from hypothesis strategies with plain bytes, outside a test.

The same strategies serve property tests, the native fuzzer (bytes from a
seeded PRNG) and atheris (bytes from libFuzzer), through Hypothesis'
`fuzz_one_input`.
"""

from __future__ import annotations

from typing import Generic, TypeVar

import hypothesis.strategies as st
from hypothesis import HealthCheck, given, settings

__all__ = ["Drawer"]

T = TypeVar("T")


class Drawer(Generic[T]):
    """Turns a byte string into a value of a strategy (None if the bytes run out)."""

    def __init__(self, strategy: st.SearchStrategy[T]) -> None:
        self._box: list[T] = []

        @settings(database=None, deadline=None, suppress_health_check=list(HealthCheck))
        @given(strategy)
        def _take(value: T) -> None:
            self._box.append(value)

        # @given sets `.hypothesis` at run time; its stubs type the result as a plain Callable.
        self._fuzz = _take.hypothesis.fuzz_one_input  # type: ignore[attr-defined]

    def __call__(self, buf: bytes) -> T | None:
        self._box.clear()
        self._fuzz(buf)
        return self._box[0] if self._box else None
