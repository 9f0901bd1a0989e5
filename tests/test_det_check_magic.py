"""%%det_check as a user types it: through the magic, with the session's re-seeding."""

from __future__ import annotations

import pytest
from IPython.core.error import UsageError


def test_det_check_magic_reseeds_from_the_lineage(shell, capsys) -> None:
    shell.run_line_magic("det_seed", "42 --trial 3 --quiet")
    shell.run_cell("%%det_check --runs 3\nimport numpy as np\nx = np.random.rand(5)")
    out = capsys.readouterr().out
    assert "deterministic across 3 runs" in out and "x" in out


def test_det_check_magic_names_the_nondeterministic_variable(shell, capsys) -> None:
    shell.run_line_magic("det_seed", "42 --quiet")
    shell.run_cell("%%det_check\nimport numpy as np\nnoise = np.random.default_rng().random(3)")
    out = capsys.readouterr().out
    assert "NOT deterministic across 2 runs" in out and "noise" in out


@pytest.mark.parametrize(("line", "message"), [
    ("--runs 1", "--runs must be an integer >= 2"),
    ("--runs x", "--runs must be an integer >= 2, got 'x'"),
])
def test_det_check_bad_runs(shell, line, message) -> None:
    with pytest.raises(UsageError, match=message):
        shell.run_cell_magic("det_check", line, "y = 1")
