"""Every design behaves as POSIX with no crash; the functional zoo bugs do not."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis.stateful import run_state_machine_as_test

from pmfuzz.fs import Bug, Design

from .daxfs_machine import Disagreement, machine_for

SETTINGS = settings(max_examples=120, stateful_step_count=30, deadline=None, suppress_health_check=list(HealthCheck))


@pytest.mark.parametrize("design", [d.value for d in Design])
@pytest.mark.parametrize("cil", ["lazy", "eager"])
def test_design_matches_the_reference(design: str, cil: str) -> None:
    run_state_machine_as_test(machine_for(design=design, cil=cil), settings=SETTINGS)


@pytest.mark.parametrize(
    "bug",
    [
        Bug.FAULT_EOF_ROUND_UP,
        Bug.TRUNCATE_NO_ZERO_TAIL,
        Bug.NO_ZERO,
        Bug.COW_IN_PLACE,
        Bug.COW_SKIP_TAIL_COPY,
        Bug.UNSHARE_PARTIAL_COPY,
    ],
)
def test_functional_bug_is_caught_without_a_crash(bug: Bug) -> None:
    """The bug shows as daxfs disagreeing with the reference (not as any assertion failing inside the model)."""
    with pytest.raises(Disagreement):
        run_state_machine_as_test(
            machine_for(design="zero", bugs=bug.value),
            settings=settings(SETTINGS, max_examples=1000, derandomize=True, database=None, phases=[Phase.generate]),
        )
