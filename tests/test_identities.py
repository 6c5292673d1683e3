"""Typed identities: crash state ids, finding signatures and reproducer fields read back what they print."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from oracles import OracleName
from pmfuzz.errors import PMemError, PmfuzzError
from pmfuzz.judging.repro import CLEAN, Expect, format_reproducer, parse_reproducer
from pmfuzz.pmem import StateId
from pmfuzz.signature import Signature, oracle_of

REGRESSION = Path(__file__).resolve().parent.parent / "corpora" / "regression"

_token = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_x", min_size=1, max_size=8)
state_ids = st.builds(
    StateId,
    st.sampled_from(["E", "O0"]) | st.from_regex(r"\A[FCSDO][0-9]{1,5}\Z"),
    st.lists(st.tuples(_token, _token), max_size=6).map(tuple),
)
_field = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_-.:0123456789", max_size=24).filter(lambda s: s != "-")
signatures = st.builds(
    Signature,
    st.sampled_from(list(OracleName)),
    _field.filter(lambda s: ":" not in s),
    _field,
)


@given(state_ids)
def test_state_id_round_trips(sid: StateId) -> None:
    assert StateId.parse(str(sid)) == sid


@given(signatures)
def test_signature_round_trips(sig: Signature) -> None:
    assert Signature.parse(str(sig)) == sig
    assert oracle_of(str(sig)) == sig.oracle


def test_old_text_forms_parse_unchanged() -> None:
    for text in ("F14:L3=1,L7=0", "E:L5505=0", "E", "S3:L2=x1f"):
        assert str(StateId.parse(text)) == text
    sid = StateId.parse("F14:L3=1,L7=0")
    assert sid.point == "F14" and sid.deviations == (("L3", "1"), ("L7", "0"))
    assert str(sid.without("L3")) == "F14:L7=0"
    for text in ("stale-exposure:end:-", "mount:fsync:xfs_file_fsync.commit_record", "functional:parallel:-"):
        assert str(Signature.parse(text)) == text
    sig = Signature.parse("cow-atomicity:write:xfs_reflink_end_cow_extent.cil_push.commit_record")
    assert sig == ("cow-atomicity", "write", "xfs_reflink_end_cow_extent.cil_push.commit_record")
    assert sig.with_top_site() == ("cow-atomicity", "write", "xfs_reflink_end_cow_extent")
    assert Signature.parse("durability:end:-") == (OracleName.DURABILITY, "end", "")


@pytest.mark.parametrize("bad", ["F3:L0", "F3:=1", "F3:L0=1,"])
def test_malformed_state_ids_are_errors(bad: str) -> None:
    with pytest.raises(PMemError):
        StateId.parse(bad)


@pytest.mark.parametrize("bad", ["mount", "mount:x", "no-such-oracle:write:-"])
def test_malformed_signatures_are_errors(bad: str) -> None:
    with pytest.raises(PmfuzzError):
        Signature.parse(bad)


def test_reproducers_on_disk_keep_their_text() -> None:
    files = sorted(REGRESSION.glob("*.pmfuzz"))
    assert files
    for p in files:
        text = p.read_text()
        r = parse_reproducer(text, source=str(p))
        assert r.crash is None or isinstance(r.crash, StateId)
        assert r.signature is None or isinstance(r.signature, Signature)
        assert r.expect is None or all(isinstance(x, Expect) for x in r.expect)
        again = parse_reproducer(format_reproducer(r))
        assert again == r
        for key, value in (("crash", r.crash), ("signature", r.signature)):
            if value is not None:
                assert f"# {key}: {value}\n" in text
        if r.expect is not None:
            assert f"# expect: {', '.join(r.expect)}" in text


def test_expect_names_clean_and_every_oracle() -> None:
    assert CLEAN is Expect.CLEAN and Expect("clean") == "clean"
    assert {x.value for x in Expect} == {"clean", *(o.value for o in OracleName)}
