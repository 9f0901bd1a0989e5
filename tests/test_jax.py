"""JAX, where installed: no global state, so det_nb hands out keys from the seed in force."""

from __future__ import annotations

import pytest
from conftest import run_python

import det_nb

jax = pytest.importorskip("jax")

TRIAL_SEED = 1129302213  # experiment 42, trial 3 (DESIGN.md)


def key_data(key: object) -> list[int]:
    return jax.random.key_data(key).tolist()


def test_jax_key_is_jax_random_key_of_the_trial_seed(shell) -> None:
    shell.run_line_magic("det_seed", "42 --trial 3 --quiet")
    key = det_nb.jax_key()
    plain = jax.random.key(TRIAL_SEED)
    assert key_data(key) == key_data(plain)
    assert jax.random.normal(key, (3,)).tolist() == jax.random.normal(plain, (3,)).tolist()
    row = det_nb.status().check("jax")
    assert (row.state, row.detail) == (
        "ok", f"no global state; det_nb.jax_key() = jax.random.key({TRIAL_SEED})"
    )


def test_per_cell_jax_key_is_the_key_of_the_cell_seed(shell) -> None:
    cell = "import det_nb\nper_cell_key = det_nb.jax_key()"
    shell.run_line_magic("det_seed", "42 --trial 3 --per-cell --quiet")
    try:
        assert shell.run_cell(cell).success
        first = key_data(shell.user_ns.pop("per_cell_key"))
        row = det_nb.status().check("jax")
        assert shell.run_cell(cell).success
        again = key_data(shell.user_ns.pop("per_cell_key"))
        assert shell.run_cell(cell + "  # another cell").success
        other = key_data(shell.user_ns.pop("per_cell_key"))
    finally:
        shell.run_line_magic("det_seed", "42 --trial 3 --quiet")
    cell_seed = det_nb.lineage().cell_seed(cell)
    assert cell_seed != TRIAL_SEED
    assert first == again == key_data(jax.random.key(cell_seed)) != other
    assert row.detail == f"no global state; det_nb.jax_key() = jax.random.key({cell_seed})"


def test_jax_key_before_seeding_says_what_to_do() -> None:
    result = run_python("""
import json
import det_nb
try:
    det_nb.jax_key()
except ValueError as error:
    print(json.dumps({"error": str(error)}))
""")
    assert result == {"error": "det_nb is not seeded yet: run %det_seed SEED or "
                               "det_nb.seed(SEED) first"}


def test_jax_not_imported_yet_is_not_said_to_be_seeded_at_import() -> None:
    result = run_python("""
        import json, sys
        import det_nb
        det_nb.seed(42, trial=3)
        check = det_nb.status().check("jax")
        print(json.dumps(["jax" in sys.modules, check.state, check.detail]))
    """)
    assert result == [False, "ok", "not imported yet: nothing to seed at import; "
                      "det_nb.jax_key() = jax.random.key(1129302213)"]


def test_jax_key_without_jax_is_one_line() -> None:
    result = run_python("""
        import json, sys
        sys.modules["jax"] = None  # as where JAX is not installed
        import det_nb
        det_nb.seed(1)
        try:
            det_nb.jax_key()
        except ValueError as error:
            print(json.dumps(str(error)))
    """)
    assert result.startswith("det_nb.jax_key() needs JAX, which cannot be imported here")
    assert result.endswith(": pip install jax") and "\n" not in result
