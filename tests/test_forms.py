"""Op forms: the classifier names the state an op hits, and generation reaches the forms campaigns count."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings

from pmfuzz.gen.forms import ALL_FORMS, Hit, OpForm, missing, workload_forms
from pmfuzz.gen.strategies import workloads
from pmfuzz.lang.workload import OpKind, parse


def forms(text: str) -> set[str]:
    return {str(f) for f in workload_forms(parse(text))}


def test_a_map_sync_store_over_a_block_a_write_allocated_is_fresh_until_fsync() -> None:
    fresh = forms("create f0\nwrite f0 0 4096\nmmap m0 f0 0 4096 sync\nstore m0 0 8\n")
    assert "store,sync:fresh" in fresh
    durable = forms("create f0\nwrite f0 0 4096\nfsync f0\nmmap m0 f0 0 4096 sync\nstore m0 0 8\n")
    assert "store,sync:written" in durable and "store,sync:fresh" not in durable


def test_a_truncate_up_over_bytes_a_store_left_past_eof() -> None:
    text = "create f0\nwrite f0 0 100\nmmap m0 f0 0 4096\nstore m0 200 8\ntruncate f0 4096\n"
    assert "truncate,up:past-eof" in forms(text)
    assert "truncate,up:*" in forms("create f0\nwrite f0 0 100\ntruncate f0 4096\n")


def test_faults_name_their_flags_and_the_block_they_hit() -> None:
    text = (
        "create f0\nfallocate f0 0 8192\nmmap m0 f0 0 8192 sync\nfault m0 0 write pmd\n"
        "create f1\nreflink f0 f1\nmmap m1 f1 0 8192\nfault m1 1 read\nfault m1 3 read\n"
    )
    got = forms(text)
    assert {"fault,write,pmd,sync:unwritten", "fault,read:shared", "fault,read:past-eof"} <= got


def test_writes_into_holes_unwritten_shared_and_past_eof() -> None:
    text = (
        "create f0\ntruncate f0 16384\nwrite f0 0 10\nfallocate f0 4096 4096\nwrite f0 4096 10\n"
        "create f1\nreflink f0 f1\nwrite f1 0 10\nwrite f0 8192 10\nwrite f0 16380 10\n"
    )
    got = forms(text)
    assert {"write:hole", "write:unwritten", "write:shared", "write:past-eof"} <= got


def test_forms_render_and_the_checklist_is_consistent() -> None:
    assert str(OpForm(OpKind.FAULT, ("write", "pmd"), Hit.FRESH)) == "fault,write,pmd:fresh"
    assert not missing(ALL_FORMS)
    assert [str(f) for f in missing([])] == sorted(str(f) for f in ALL_FORMS) or len(missing([])) == len(ALL_FORMS)


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(workloads(max_ops=16))
def test_every_form_a_workload_reaches_is_well_formed(w) -> None:
    for f in workload_forms(w):
        assert isinstance(f.kind, OpKind) and isinstance(f.hit, Hit)
        assert all(isinstance(x, str) and x for x in f.flags)


def _batch_forms(batches: int, screen: bool) -> set[str]:
    """Forms reached by the campaign's fresh draws over `batches` batches, as the driver feeds them back."""
    from pmfuzz.fuzzing.campaign import CampaignConfig, batch_workloads
    from pmfuzz.target import TargetSpec

    cfg = CampaignConfig(target=TargetSpec("daxfs", ()), seed=3)
    reached: set[str] = set()
    for b in range(batches):
        for w, _ in batch_workloads(cfg, b, (), (), frozenset(reached) if screen else None):
            reached |= {str(f) for f in workload_forms(w)}
    return reached


def test_a_young_campaign_screens_fresh_draws_for_forms_it_has_not_reached() -> None:
    blind, screened = _batch_forms(12, False), _batch_forms(12, True)
    assert len(missing(screened)) < len(missing(blind)) - 5


def test_a_campaign_that_reached_every_form_draws_blind() -> None:
    from pmfuzz.fuzzing.campaign import CampaignConfig, batch_workloads
    from pmfuzz.lang.workload import format_workload
    from pmfuzz.target import TargetSpec

    cfg = CampaignConfig(target=TargetSpec("daxfs", ()), seed=4)
    everything = frozenset(str(f) for f in ALL_FORMS)
    for b in range(3):
        blind = [format_workload(w) for w, _ in batch_workloads(cfg, b, (), ())]
        assert [format_workload(w) for w, _ in batch_workloads(cfg, b, (), (), everything)] == blind
