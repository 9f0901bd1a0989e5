"""The seed-lineage contract of DESIGN.md: vectors, ranges, purity, validation."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from det_nb.lineage import (
    MAX_DETERMINED_TRIAL,
    MAX_SEED,
    Lineage,
    assign_seed,
    make_lineage,
    validate_seed,
)

seeds = st.integers(0, MAX_SEED)


@pytest.mark.parametrize(
    ("experiment_seed", "trial", "trial_seed"),
    [(42, 0, 536987300), (42, 1, 1944468666), (42, 3, 1129302213), (0, 0, 1610069009),
     (2147483647, 7, 206383203), (42, 2147483647, 322524539)],
)
def test_seedsequence_vectors(experiment_seed: int, trial: int, trial_seed: int) -> None:
    assert Lineage(experiment_seed, trial).trial_seed == trial_seed


def test_no_trial_means_the_experiment_seed_itself() -> None:
    lineage = Lineage(42)
    assert lineage.trial_seed == 42
    assert "no trial" in lineage.trial_seed_origin


def test_worker_seed_vectors() -> None:
    assert Lineage(42, 3).worker_seed(0) == 406353823
    assert Lineage(42, 3).worker_seed(1) == 1282688488


@pytest.mark.parametrize(
    ("experiment_seed", "expected"),
    [(0, [441365315, 530702035, 1682652230]), (42, [996406378, 1914837113, 1572714583])],
)
def test_determined_vectors(experiment_seed: int, expected: list[int]) -> None:
    got = [Lineage(experiment_seed, trial, "determined").trial_seed for trial in (1, 2, 3)]
    assert got == expected


def _master_replay(experiment_seed: int, trials: int) -> list[int]:
    """Determined's master, literally: per trial, 4 UUID words, then the trial seed."""
    stream = np.random.RandomState(experiment_seed)
    out = []
    for _ in range(trials):
        for _ in range(4):
            stream.randint(0, 2**32, dtype=np.uint64)
        out.append(int(stream.randint(0, 2**31)))
    return out


@settings(max_examples=25, deadline=None)
@given(seeds, st.integers(1, 40))
def test_determined_scheme_matches_the_literal_master_replay(seed: int, trials: int) -> None:
    expected = _master_replay(seed, trials)
    assert [Lineage(seed, t, "determined").trial_seed for t in range(1, trials + 1)] == expected


@settings(max_examples=200, deadline=None)
@given(seeds, seeds)
def test_trial_seeds_are_in_range_and_pure(seed: int, trial: int) -> None:
    first = Lineage(seed, trial)
    assert 0 <= first.trial_seed <= MAX_SEED
    assert Lineage(seed, trial) == first
    assert Lineage(seed, trial).trial_seed == first.trial_seed


@settings(max_examples=30, deadline=None)
@given(seeds, st.lists(seeds, min_size=2, max_size=50, unique=True))
def test_distinct_trials_give_distinct_seeds(seed: int, trials: list[int]) -> None:
    derived = {Lineage(seed, trial).trial_seed for trial in trials}
    assert len(derived) == len(trials)


@settings(max_examples=30, deadline=None)
@given(seeds, seeds, st.lists(st.integers(0, 10_000), min_size=2, max_size=20, unique=True))
def test_distinct_workers_give_distinct_seeds(seed: int, trial: int, workers: list[int]) -> None:
    lineage = Lineage(seed, trial)
    assert len({lineage.worker_seed(w) for w in workers}) == len(workers)


def test_assigned_seed_comes_from_the_clock_and_is_marked() -> None:
    lineage = make_lineage(None, 3, clock=lambda: 1_790_000_000.7)
    assert lineage.experiment_seed == 1_790_000_000
    assert lineage.experiment_seed_origin == "assigned"
    assert "(assigned)" in lineage.summary()
    assert 0 <= assign_seed() <= MAX_SEED


def test_given_seed_is_marked_given() -> None:
    assert make_lineage("42", "3").experiment_seed_origin == "given"
    assert make_lineage("42", "3") == Lineage(42, 3)


@pytest.mark.parametrize("bad", ["abc", "4.5", "1e3", "-1", str(MAX_SEED + 1), 4.5, True, "", None])
def test_bad_seeds_name_what_is_allowed(bad: object) -> None:
    with pytest.raises(ValueError, match=r"seed must be an integer in \[0, 2147483647\]"):
        validate_seed(bad)


def test_bad_trial_and_scheme() -> None:
    with pytest.raises(ValueError, match=r"trial must be an integer in \[0, 2147483647\], got -1"):
        make_lineage(1, -1)
    with pytest.raises(ValueError, match="scheme must be one of seedsequence, determined"):
        make_lineage(1, 1, "mt")
    determined_range = rf"counts created trials from 1 .*\[1, {MAX_DETERMINED_TRIAL}\]"
    with pytest.raises(ValueError, match=determined_range):
        make_lineage(1, 0, "determined")
