"""The seed-lineage contract of DESIGN.md: vectors, ranges, purity, validation."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from det_nb.determinism import validate_threads
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


@pytest.mark.parametrize("bad", ["+-5", "-+5", pytest.param("9" * 5000, id="5000 digits"),
                                 "٤٢", "4_2", " 4 2 ", "0x10", "५"])
def test_hostile_seed_text_gets_det_nb_s_one_line_message(bad: str) -> None:
    with pytest.raises(ValueError) as error:
        validate_seed(bad)
    message = str(error.value)
    assert message.startswith("seed must be an integer in [0, 2147483647], got '")
    assert "\n" not in message and len(message) < 150  # a 5000-digit value is cut


@pytest.mark.parametrize("bad", [np.array([5]), np.array([[5]]), np.float64(5.0),
                                 pytest.param(10**5000, id="5000-digit int"), np.bool_(True),
                                 object()])
def test_values_that_are_not_one_integer_are_a_value_error(bad: object) -> None:
    with pytest.raises(ValueError) as error:
        validate_seed(bad)
    message = str(error.value)
    assert message.startswith("seed must be an integer in [0, 2147483647], got ")
    assert "\n" not in message and len(message) < 150


@pytest.mark.parametrize(("given", "number"), [
    (np.int64(5), 5), (np.uint32(5), 5), (np.array(5), 5), ("+5", 5), (" 42 ", 42), ("007", 7),
    pytest.param("0" * 5000 + "7", 7, id="5000 zeros then 7"),
])
def test_integers_in_any_exact_form_are_accepted(given: object, number: int) -> None:
    assert validate_seed(given) == number
    assert type(validate_seed(given)) is int


def test_messages_quote_the_value_as_given() -> None:
    with pytest.raises(ValueError, match=r"got -5$"):
        validate_seed(-5)
    with pytest.raises(ValueError, match=r"got '-5'$"):
        validate_seed("-5")
    with pytest.raises(ValueError, match=r"got 'abc'$"):
        validate_seed("abc")


def test_threads_share_the_integer_check() -> None:
    assert validate_threads(np.int64(4)) == 4
    assert validate_threads("4") == 4
    assert validate_threads(None) is None
    with pytest.raises(ValueError, match=r"\(or None to leave .*\), got '0'$"):
        validate_threads("0")
    with pytest.raises(ValueError, match=r"\(or --no-single-thread to leave .*\), got 0$"):
        validate_threads(0, "--no-single-thread")
    with pytest.raises(ValueError, match=r"threads must be an integer in \[1, 1024\]"):
        validate_threads("٤")


def test_lineage_keeps_plain_ints_whatever_integer_type_it_was_given() -> None:
    lineage = Lineage(np.int64(42), np.uint32(3))
    assert (type(lineage.experiment_seed), type(lineage.trial)) == (int, int)
    assert lineage == Lineage(42, 3)
    assert lineage.command() == "%det_seed 42 --trial 3"
    with pytest.raises(ValueError, match=r"trial must be an integer in \[0, 2147483647\], got "):
        Lineage(42, np.array([3]))


@settings(max_examples=300, deadline=None)
@given(st.one_of(seeds, st.integers(0, 2**200)),
       st.lists(st.one_of(seeds, st.integers(0, 2**64 - 1)), max_size=3))
def test_seedsequence_seed_is_numpys_seedsequence(entropy: int, spawn_key: list[int]) -> None:
    """Derived in plain Python (NumPy must not load before det_nb's pins), word for word
    what NumPy's SeedSequence gives, also for the 64-bit cell keys of per-cell seeding."""
    from det_nb.lineage import seedsequence_seed

    word = np.random.SeedSequence(entropy, spawn_key=spawn_key).generate_state(1, np.uint32)[0]
    assert seedsequence_seed(entropy, *spawn_key) == int(word) & MAX_SEED


@settings(max_examples=40, deadline=None)
@given(seeds, st.integers(1, 400))
def test_determined_seed_is_the_legacy_mt19937_stream(experiment_seed: int, trial: int) -> None:
    """Python's MT19937 in the state RandomState(seed) starts from: NumPy's word 5*trial-1."""
    words = np.random.RandomState(experiment_seed).randint(0, 2**32, size=5 * trial,
                                                           dtype=np.uint64)
    assert Lineage(experiment_seed, trial, "determined").trial_seed == int(words[-1]) & MAX_SEED


def test_deriving_seeds_loads_no_numpy() -> None:
    """A fresh interpreter: seeding, worker and cell seeds and both schemes leave NumPy
    unloaded, so it loads later under the CPU-kernel and thread pins."""
    from conftest import run_python

    found = run_python("""
        import json, sys
        from det_nb.lineage import Lineage
        seeds = [Lineage(42, 3).trial_seed, Lineage(42, 3).worker_seed(1),
                 Lineage(42, 3).cell_seed("x = 1"), Lineage(7, 4, "determined").trial_seed]
        print(json.dumps({"seeds": seeds, "numpy": "numpy" in sys.modules}))
    """)
    assert found["numpy"] is False
    assert found["seeds"][:2] == [1129302213, 1282688488]
