"""Per-cell re-seeding: a cell's draws depend on its text, not on what ran before it."""

from __future__ import annotations

import random

import numpy as np
import pytest

import det_nb
from det_nb.lineage import Lineage

CELL_A = "a = [random.random(), float(np.random.rand())]"
CELL_B = "b = [random.random(), float(np.random.rand())]"


@pytest.fixture
def per_cell(shell):
    shell.run_cell("import random\nimport numpy as np")
    shell.run_line_magic("det_seed", "42 --trial 3 --per-cell --quiet")
    yield shell
    shell.run_line_magic("det_seed", "42 --trial 3 --no-per-cell --quiet")


def run(shell, cell: str, name: str) -> list[float]:
    assert shell.run_cell(cell).success
    return shell.user_ns[name]


def test_rerunning_a_cell_in_any_order_repeats_its_draws(per_cell) -> None:
    first = run(per_cell, CELL_A, "a")
    run(per_cell, CELL_B, "b")
    run(per_cell, CELL_B, "b")
    assert run(per_cell, CELL_A, "a") == first


def test_cells_with_different_text_draw_differently(per_cell) -> None:
    assert run(per_cell, CELL_A, "a") != run(per_cell, CELL_B, "b")


def test_cell_seed_is_derived_from_trial_seed_and_text(per_cell) -> None:
    seed = Lineage(42, 3).cell_seed(CELL_A)
    random.seed(seed)
    np.random.seed(seed)
    expected = [random.random(), float(np.random.rand())]
    assert run(per_cell, CELL_A, "a") == expected
    assert f"last cell seed {seed}" in det_nb.status().check("per-cell seeding").detail


def test_front_end_whitespace_differences_do_not_matter(per_cell) -> None:
    assert run(per_cell, CELL_A, "a") == run(per_cell, CELL_A + "\r\n\n", "a")


def test_a_cell_sent_with_crlf_line_endings_draws_as_with_lf(per_cell) -> None:
    cell = f"{CELL_A}\nc = random.random()"
    with_lf = [*run(per_cell, cell, "a"), per_cell.user_ns["c"]]
    assert [*run(per_cell, cell.replace("\n", "\r\n"), "a"), per_cell.user_ns["c"]] == with_lf


def test_no_per_cell_lets_streams_run_on(per_cell) -> None:
    per_cell.run_line_magic("det_seed", "42 --trial 3 --no-per-cell --quiet")
    assert det_nb.status().check("per-cell seeding").state == "off"
    assert run(per_cell, CELL_A, "a") != run(per_cell, CELL_A, "a")


def test_per_cell_without_the_extension_says_nothing_reseeds_cells() -> None:
    from det_nb.session import Session

    session = Session()  # the Python API alone: no IPython shell calls before_cell
    try:
        session.seed(42, per_cell=True)
        check = session.status().check("per-cell seeding")
        assert check.state == "warn" and check.fix == "%load_ext det_nb"
    finally:
        session.close()
