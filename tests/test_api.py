"""The public ``det_nb.*`` functions, called as a user calls them, each with what it promises."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
from conftest import run_python

import det_nb

TRIAL_SEED = 1129302213  # (42, trial 3), DESIGN.md's vector


def draws() -> list[float]:
    """One draw from each global stream and from det_nb.rng()."""
    return [random.random(), float(np.random.rand()), float(det_nb.rng().random())]


def test_seed_returns_the_lineage_and_seeds_like_plain_library_calls() -> None:
    lineage = det_nb.seed(42, trial=3)
    assert (lineage.experiment_seed, lineage.trial, lineage.trial_seed) == (42, 3, TRIAL_SEED)
    assert det_nb.lineage() == lineage
    got = [random.random(), float(np.random.rand())]
    random.seed(TRIAL_SEED)
    np.random.seed(TRIAL_SEED)
    assert got == [random.random(), float(np.random.rand())]


def test_reseed_restarts_every_stream_and_keeps_the_lineage() -> None:
    lineage = det_nb.seed(42, trial=3)
    first = draws()
    draws()
    assert det_nb.reseed() == lineage and det_nb.lineage() == lineage
    assert draws() == first


def test_rng_is_one_generator_equal_to_default_rng_of_the_trial_seed() -> None:
    det_nb.seed(42, trial=3)
    generator = det_nb.rng()
    assert det_nb.rng() is generator
    expected = np.random.default_rng(TRIAL_SEED).random(4).tolist()
    assert generator.random(4).tolist() == expected
    det_nb.reseed()
    assert generator.random(4).tolist() == expected  # restarted in place


def test_worker_seed_follows_the_lineage_vectors() -> None:
    det_nb.seed(42, trial=3)
    assert [det_nb.worker_seed(0), det_nb.worker_seed(1)] == [406353823, 1282688488]
    with pytest.raises(ValueError, match=r"^worker must be an integer"):
        det_nb.worker_seed(-1)


def test_jax_key_is_the_key_of_the_trial_seed() -> None:
    jax = pytest.importorskip("jax")
    det_nb.seed(42, trial=3)
    key = det_nb.jax_key()
    assert jax.random.key_data(key).tolist() == jax.random.key_data(
        jax.random.key(TRIAL_SEED)).tolist()
    assert jax.random.normal(key, (3,)).tolist() == jax.random.normal(
        jax.random.key(TRIAL_SEED), (3,)).tolist()


def test_status_reads_the_streams_back() -> None:
    lineage = det_nb.seed(42, trial=3)
    report = det_nb.status()
    assert isinstance(report, det_nb.Report) and report.lineage == lineage
    assert report.check("python random").detail == (
        f"random.seed({TRIAL_SEED}); no draws since seeding")
    random.random()
    assert det_nb.status().check("python random").detail.endswith("draws made since seeding")


def test_record_is_json_with_the_lineage_and_settings() -> None:
    det_nb.seed(42, trial=3, per_cell=False)
    record = json.loads(json.dumps(det_nb.record()))
    assert record["lineage"] == {
        "experiment_seed": 42, "experiment_seed_origin": "given", "trial": 3,
        "scheme": "seedsequence", "trial_seed": TRIAL_SEED,
    }
    assert record["settings"]["threads"] == 1 and record["settings"]["per_cell"] is False


def test_save_record_then_load_record_replays_the_run(tmp_path: Path) -> None:
    det_nb.seed(42, trial=3)
    expected = draws()
    path = det_nb.save_record(str(tmp_path / "run.json"))
    assert path == tmp_path / "run.json"
    assert json.loads(path.read_text())["lineage"]["trial_seed"] == TRIAL_SEED
    det_nb.seed(7)
    assert det_nb.load_record(str(path)) == []  # same process: nothing differs
    assert det_nb.lineage().trial_seed == TRIAL_SEED
    assert draws() == expected


def test_save_state_then_load_state_repeats_the_draws_made_after_saving(tmp_path: Path) -> None:
    det_nb.seed(42, trial=3)
    draws()
    path = det_nb.save_state(str(tmp_path / "state.npz"))
    assert path == tmp_path / "state.npz"
    after_save = [draws() for _ in range(3)]
    restored = det_nb.load_state(str(path))
    assert {"python random", "numpy", "det_nb.rng()"} <= {line.split(":")[0] for line in restored}
    assert [draws() for _ in range(3)] == after_save


def test_before_seeding_nothing_is_derived_and_the_status_says_so() -> None:
    result = run_python("""
        import json
        import det_nb
        refused = {}
        for name in ("reseed", "rng", "jax_key", "record"):
            try:
                getattr(det_nb, name)()
            except ValueError as error:
                refused[name] = str(error)
        for name, argument in (("worker_seed", 0), ("save_state", "x.npz")):
            try:
                getattr(det_nb, name)(argument)
            except ValueError as error:
                refused[name] = str(error)
        print(json.dumps({"lineage": det_nb.lineage(), "refused": refused,
                          "verdict": det_nb.status().verdict()}))
    """)
    assert result["lineage"] is None
    assert set(result["refused"]) >= {"reseed", "rng", "jax_key", "worker_seed", "save_state"}
    assert all(message.startswith("det_nb is not seeded yet") for message in
               result["refused"].values())
    assert result["verdict"].startswith("not seeded yet: run %det_seed SEED")
