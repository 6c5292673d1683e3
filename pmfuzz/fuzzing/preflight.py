"""Checks made before a replay or a campaign starts: the target, once built, can format the device.

Why: a device the target cannot format (daxfs needs 1 MiB, tinyfs its slots)
is a bad flag or header, the user's mistake, not a finding about the target.
Found here, it is one line and exit 2 instead of a `target-error` finding that
carries pmfuzz's own traceback, or a campaign whose every workload is refused
(zero execs and no message).
"""

from __future__ import annotations

from ..errors import PmfuzzError
from ..execution.watchdog import TargetHang, deadline
from ..lang.limits import check_device_size, size_text
from ..target import Target

__all__ = ["preflight"]


def preflight(target: Target, device_size: int, op_timeout: float | None) -> None:
    """One clear error if pmfuzz cannot hold the device or the target refuses to format it.

    Only refusals raised as pmfuzz errors (a `PmfuzzError`, or a `PMemError` from a format that
    does not fit the device) are the user's; anything else the target raises, or a format that
    hangs, stays the target's own failure and the engine reports it as a finding.
    """
    from ..judging.engine import formatted

    check_device_size(device_size)
    try:
        with deadline(op_timeout, "format", target=target.name):
            formatted(target, device_size)
    except PmfuzzError as e:
        raise PmfuzzError(f"target {target.name} cannot format a device of {size_text(device_size)}: {e}") from None
    except (Exception, TargetHang):
        return
