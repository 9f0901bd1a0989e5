"""PyTorch, where installed: seeded like the other sources, at once or at import."""

from __future__ import annotations

import pytest
from conftest import run_python

import det_nb

torch = pytest.importorskip("torch")

TRIAL_SEED = 1129302213


def test_draws_equal_torch_manual_seed_with_the_trial_seed(shell) -> None:
    torch.manual_seed(TRIAL_SEED)
    expected = torch.rand(4).tolist()
    shell.run_line_magic("det_seed", "42 --trial 3 --quiet")
    assert torch.rand(4).tolist() == expected
    check = det_nb.status().check("torch")
    assert check.state == "ok" and f"torch.manual_seed({TRIAL_SEED})" in check.detail


def test_deterministic_ops_turns_on_deterministic_algorithms(shell) -> None:
    shell.run_line_magic("det_seed", "42 --deterministic-ops --quiet")
    assert torch.are_deterministic_algorithms_enabled()
    assert det_nb.status().check("torch deterministic algorithms").state == "ok"
    shell.run_line_magic("det_seed", "42 --quiet")
    assert not torch.are_deterministic_algorithms_enabled()
    assert det_nb.status().check("torch deterministic algorithms").state == "off"


def test_torch_imported_after_det_seed_is_seeded_at_import() -> None:
    result = run_python("""
import json
import det_nb
det_nb.seed(42, trial=3)
import torch
drawn = torch.rand(3).tolist()
torch.manual_seed(1129302213)
print(json.dumps({"equal": drawn == torch.rand(3).tolist(),
                  "check": det_nb.status().check("torch").state}))
""")
    assert result == {"equal": True, "check": "ok"}
