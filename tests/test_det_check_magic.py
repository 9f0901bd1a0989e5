"""%%det_check as a user types it: through the magic, with the session's re-seeding."""

from __future__ import annotations

import re

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
    ("--runs 1", "--runs must be an integer in [2, 1000], got '1'"),
    ("--runs x", "--runs must be an integer in [2, 1000], got 'x'"),
    ("--runs 1001", "--runs must be an integer in [2, 1000], got '1001'"),
    ("-n 100000000000", "--runs must be an integer in [2, 1000], got '100000000000'"),
])
def test_det_check_bad_runs(shell, line, message) -> None:
    """Refused in one line before the cell runs once (a huge count would never end:
    the cell stops it after three runs should the count get through)."""
    shell.run_line_magic("det_seed", "42 --quiet")
    shell.user_ns["runs_made"] = 0
    cell = "runs_made += 1\nif runs_made > 3:\n    raise RuntimeError('ran on')"
    with pytest.raises(UsageError, match=re.escape(message) + "$"):
        shell.run_cell_magic("det_check", line, cell)
    assert shell.user_ns["runs_made"] == 0
