"""`pmem.cached`: computed once per instance, on first access, like `functools.cached_property`."""

from __future__ import annotations

from dataclasses import dataclass

from pmfuzz.pmem.cached import cached


@dataclass(frozen=True)
class _Box:
    n: int

    @cached
    def square(self) -> int:
        """The square, counted."""
        _CALLS.append(self.n)
        return self.n * self.n


_CALLS: list[int] = []


def test_computed_once_per_instance_even_when_frozen() -> None:
    _CALLS.clear()
    a, b = _Box(3), _Box(4)
    assert (a.square, a.square, b.square, a.square) == (9, 9, 16, 9)
    assert _CALLS == [3, 4]
    assert a == _Box(3), "the cached value is not part of the value's equality"


def test_the_class_attribute_is_the_descriptor_with_its_doc() -> None:
    assert isinstance(_Box.square, cached) and _Box.square.__doc__ == "The square, counted."
