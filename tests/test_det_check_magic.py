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


def test_det_check_names_the_unseeded_call_as_the_likely_cause(shell, capsys) -> None:
    """The entropy audit's records of the runs: the line as the cell shows it (under its
    %%det_check line), each run's call counted."""
    shell.run_line_magic("det_seed", "42 --quiet")
    shell.run_cell("%%det_check --runs 3\nimport uuid\nrun_id = uuid.uuid4().hex",
                   store_history=True)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "NOT deterministic across 3 runs"
    cause = lines.index("likely cause, unseeded randomness (det_nb's entropy audit):")
    assert re.fullmatch(r"  cell \d+, line 3: uuid\.uuid4\(\), 3 times", lines[cause + 1])
    shell.run_cell("%%det_check\nimport uuid\nrun_id = uuid.uuid5(uuid.NAMESPACE_DNS, 'a').hex",
                   store_history=True)
    assert "likely cause" not in capsys.readouterr().out  # a seeded id: nothing to name


@pytest.mark.parametrize(("cell", "call", "values"), [
    ("import os\nsize = len(os.urandom(4))", "os.urandom(4)", ["size: int"]),
    ("import random, time\nrandom.seed(int(time.time()))\nlabel = 'run'",
     "random.seed(int(time.time())) seeds from the clock", ["label: str (len 3)"]),
])
def test_equal_values_after_unseeded_draws_are_not_proven(shell, capsys, cell, call,
                                                           values) -> None:
    """Every compared value equal, but a run drew OS entropy or seeded from a clock (the
    audit's records of the runs): luck, not proof; the calls are listed."""
    shell.run_line_magic("det_seed", "42 --quiet")
    capsys.readouterr()
    number = shell.execution_count
    result = shell.run_cell(f"%%det_check\n{cell}", store_history=True)
    assert result.success
    assert capsys.readouterr().out.splitlines() == [
        "not proven across 2 runs: the cell drew unseeded randomness (OS entropy or a seed "
        "from a clock)",
        "compared:",
        *(f"  {value}" for value in values),
        "unseeded randomness (det_nb's entropy audit):",
        f"  cell {number}, line 3: {call}, 2 times",  # the line under %%det_check
    ]


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


FAMILIES_CELL = """\
import jax
import numpy as np
import pandas as pd
import torch
from sklearn.ensemble import RandomForestClassifier
{draws}
net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4), torch.nn.Linear(4, 1))
x = torch.randn(16, 3)
net(x).pow(2).mean().backward()
with torch.no_grad():  # a step by hand: torch.optim imports triton, fatal next to TF
    for weight in net.parameters():
        weight -= 0.1 * weight.grad
del weight
frame = pd.DataFrame({{"a": np.random.rand(16), "b": pd.Categorical(list("uv") * 8)}})
forest = RandomForestClassifier(3).fit(frame[["a"]], frame["b"])
params = {{"w": jax.random.normal(key, (2, 2))}}
def loss(p):
    return (p["w"] ** 2).sum()
"""
SEEDED = "key = jax.random.key(0)"
UNSEEDED = """\
import os
torch.manual_seed(int.from_bytes(os.urandom(4), "little"))
np.random.seed(int.from_bytes(os.urandom(4), "little"))
key = jax.random.key(int.from_bytes(os.urandom(4), "little"))"""


def test_det_check_compares_a_trained_model_a_frame_an_estimator_and_jax_arrays(
    shell, capsys
) -> None:
    """Seeded: every value compared and equal, the function the cell defines not listed."""
    shell.run_line_magic("det_seed", "42 --quiet")
    capsys.readouterr()
    shell.run_cell("%%det_check\n" + FAMILIES_CELL.format(draws=SEEDED))
    assert capsys.readouterr().out == (
        "deterministic across 2 runs\n"
        "compared:\n"
        "  forest: RandomForestClassifier (fitted)\n"
        "  frame: DataFrame (16 rows, 2 columns)\n"
        "  key: jax PRNG key threefry2x32 ()\n"
        "  net: Sequential (torch.nn.Module, 9 tensors)\n"
        "  params: dict (1 key)\n"
        "  x: torch.Tensor float32 (16, 3)\n")


def test_det_check_names_each_family_value_that_drifts(shell, capsys) -> None:
    shell.run_line_magic("det_seed", "42 --quiet")
    capsys.readouterr()
    shell.run_cell("%%det_check\n" + FAMILIES_CELL.format(draws=UNSEEDED))
    out = capsys.readouterr().out
    assert out.startswith("NOT deterministic across 2 runs\n")
    assert "  net: torch.nn.Module: state_dict['0.weight']: 12 of 12 elements differ" in out
    assert "  frame: DataFrame: column 'a': 16 of 16 rows differ" in out
    assert "  key: jax PRNG key state differs, so its next draws differ" in out
    assert "  params['w']: jax.Array float32 (2, 2): 4 of 4 elements differ" in out
    assert "forest: RandomForestClassifier: " in out
    assert "loss" not in out


def test_det_check_says_not_proven_when_a_value_cannot_be_compared(shell, capsys) -> None:
    shell.run_line_magic("det_seed", "42 --quiet")
    capsys.readouterr()
    shell.run_cell("%%det_check\nimport zlib\nguard = zlib.compressobj()\ntotal = 3")
    assert capsys.readouterr().out == (
        "not proven across 2 runs: 1 value could not be compared\n"
        "compared:\n"
        "  total: int\n"
        "could not be compared:\n"
        "  guard: Compress: Compress is not a supported type\n")
