"""Mutation: deterministic per seed, always a valid workload, and a fresh scenario spliced in whole."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from pmfuzz.gen.mutate import mutate
from pmfuzz.lang.workload import MAX_OPS, Workload, format_workload, parse

BASE = parse("create f0\ntruncate f0 8192\nmmap m0 f0 0 8192\nparallel { write f0 0 100 ; fault m0 0 write }\n")
DONOR = parse("create f1\nwrite f1 0 4096\nfsync f1\n")
PREFIX = parse("create f2\nwrite f2 0 77\nreflink f2 f0\n").ops


def _run(seed: int, calls: list[int]) -> Workload:
    def scenario():
        calls.append(seed)
        return PREFIX

    return mutate(random.Random(seed), BASE, [DONOR], DONOR.ops[:1], scenario)


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 2**32))
def test_a_mutant_is_a_valid_workload_and_the_same_seed_gives_the_same_one(seed: int) -> None:
    got = _run(seed, [])
    assert got == _run(seed, [])
    assert 1 <= len(got.ops) <= MAX_OPS
    assert parse(format_workload(got)) == got


def test_a_fresh_scenario_is_drawn_only_when_spliced_and_lands_whole() -> None:
    spliced = drawn = 0
    for seed in range(300):
        calls: list[int] = []
        ops = _run(seed, calls).ops
        drawn += len(calls)
        n = len(PREFIX)
        spliced += any(ops[i : i + n] == PREFIX for i in range(len(ops) - n + 1))
        if not calls:
            assert not any(ops[i : i + n] == PREFIX for i in range(len(ops) - n + 1))
    assert 0 < drawn < 300 and spliced > 0
