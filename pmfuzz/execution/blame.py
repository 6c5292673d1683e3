"""Whose exception is it: the target's (a finding, with its traceback) or pmfuzz's own (a bug that propagates)."""

from __future__ import annotations

import traceback
from pathlib import Path

from oracles import default_oracles

from ..errors import PMemError, PmfuzzError
from ..target import is_target_error
from .guarded import hang_stack
from .watchdog import TargetHang, TargetNonsense

__all__ = ["pmfuzz_fault", "target_traceback", "oracle_fault", "failure", "what_failed"]

_HERE = Path(__file__).resolve().parent.parent
_ORACLES = Path(default_oracles.__code__.co_filename).resolve().parent


def pmfuzz_fault(exc: BaseException) -> bool:
    """Was this exception raised by pmfuzz's own code (a bug) rather than the target's?"""
    if isinstance(exc, (PMemError, TargetHang, TargetNonsense)) or is_target_error(exc):
        return False
    if isinstance(exc, PmfuzzError):
        return True
    tb = traceback.extract_tb(exc.__traceback__)
    if not tb:
        return False
    last = Path(tb[-1].filename).resolve()
    inside = _HERE in last.parents
    return inside and (_HERE / "fs") not in last.parents


def target_traceback(exc: BaseException) -> str | None:
    """The traceback a finding keeps for the target's exception; re-raises pmfuzz's own."""
    if pmfuzz_fault(exc):
        raise exc
    if isinstance(exc, TargetNonsense):
        return None
    if isinstance(exc, TargetHang):
        return hang_stack(exc)
    return "".join(traceback.format_exception(exc))


def oracle_fault(exc: BaseException) -> bool:
    """Was this exception raised by an oracle's own code (a bug of pmfuzz) rather than by the target it read?"""
    tb = traceback.extract_tb(exc.__traceback__)
    return bool(tb) and _ORACLES in Path(tb[-1].filename).resolve().parents


def failure(exc: BaseException) -> str:
    """What went wrong in a call into the target; a hang or a nonsense result already says it all."""
    return str(exc) if isinstance(exc, (TargetHang, TargetNonsense)) else f"{type(exc).__name__}: {exc}"


def what_failed(e: BaseException) -> str:
    if isinstance(e, TargetHang):
        return "hung"
    return "returned nonsense" if isinstance(e, TargetNonsense) else "raised"
