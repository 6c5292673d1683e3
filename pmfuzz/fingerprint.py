"""A digest of an in-memory object graph: equal digests mean equal graphs.

Why: the schedule explorer stops a schedule at the end of a parallel group when an earlier
schedule left the execution in the same state there (see `execution/quiescent.py`); that is
sound only if "the same state" never confuses two states. So this digest errs the other way:
two equal graphs may digest apart (a dict filled in another order, two objects shared in one
graph and copied in the other), which costs a duplicate run, never a missed one; and a graph
it cannot see all of (a generator, a lock, an open file) has no digest at all (None).
"""

from __future__ import annotations

import hashlib
import io
import pickle
import types
import weakref
from collections.abc import Callable, Iterable

__all__ = ["fingerprint"]


def _seen(*parts: object) -> None:
    """Stands for a value in the digest's pickle stream (never called: the stream is only hashed)."""


class _Digester(pickle.Pickler):
    """A pickler whose stream names every reachable value, including closures and weak references
    (which pickle refuses), and names `left_out` objects by their position only."""

    def __init__(self, out: io.BytesIO, left_out: Iterable[object]) -> None:
        super().__init__(out, protocol=5)
        self._left_out = {id(o): k for k, o in enumerate(left_out)}

    def persistent_id(self, obj: object) -> int | None:
        return self._left_out.get(id(obj))

    def reducer_override(self, obj: object) -> tuple[Callable[..., None], tuple[object, ...]]:
        if isinstance(obj, types.FunctionType) and "<" in obj.__qualname__:
            # A lambda or nested function: its code site and what it closed over decide what it does.
            # Two lambdas can share a line and a name: their code tells them apart.
            code = obj.__code__
            cells = tuple(c.cell_contents for c in obj.__closure__ or ())
            consts = tuple(repr(c) if isinstance(c, types.CodeType) else c for c in code.co_consts)
            where = (obj.__module__, obj.__qualname__, code.co_firstlineno, code.co_code, code.co_names, consts)
            return _seen, (where, code.co_freevars, cells, obj.__defaults__, obj.__kwdefaults__)
        if isinstance(obj, weakref.ref):
            return _seen, ("weakref", obj())
        return NotImplemented


def fingerprint(graph: object, *, left_out: Iterable[object] = ()) -> bytes | None:
    """SHA-256 of everything reachable from `graph`, except the `left_out` objects (named by their
    position in it; what they hold is the caller's to vouch for); None when some value cannot be
    seen whole."""
    out = io.BytesIO()
    try:
        _Digester(out, left_out).dump(graph)
    except (pickle.PicklingError, TypeError, AttributeError, ValueError, RecursionError):
        return None
    return hashlib.sha256(out.getbuffer()).digest()
