"""PyTorch, where installed: seeded like the other sources, at once or at import."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import prng_states, run_python

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


def test_the_audit_knows_the_seeds_torch_was_given_and_not_one_drawn_by_a_c_method() -> None:
    """A script (its __main__ is the user's code): det_nb seeding torch at import and
    re-seeding it, the user's torch.manual_seed and a restored state leave the status
    reproducible; torch.default_generator.seed(), a C method, is caught by the seed it leaves."""
    result = run_python("""
import json
import det_nb
from det_nb import entropy_audit
det_nb.seed(42, trial=3)
import torch
torch.manual_seed(123)
state = torch.get_rng_state()
det_nb.reseed()
torch.set_rng_state(state)
det_nb.seed(7)
before = [det_nb.status().verdict(), entropy_audit.records()]
torch.default_generator.seed()
after = [det_nb.status().verdict(), [r["call"] for r in entropy_audit.records()]]
print(json.dumps({"before": before, "after": after}))
""")
    assert result["before"][1] == []
    assert not result["before"][0].startswith("NOT reproducible"), result["before"][0]
    verdict, calls = result["after"]
    assert verdict.startswith("NOT reproducible: ")
    assert "(unseeded randomness: torch's global generator: remove the call" in verdict
    assert calls == ["torch's global generator was re-seeded from OS entropy after %det_seed "
                     "(torch.seed() or torch.default_generator.seed())"]


@pytest.mark.parametrize("deterministic_ops", [False, True, "warn"])
def test_torch_imported_after_tensorflow_does_not_crash(deterministic_ops: bool | str) -> None:
    """TF then torch in a det_nb session: torch's own switch would import triton's LLVM
    next to TF's, which aborts the process (exit 134); det_nb sets the flag without it."""
    result = run_python(f"""
import json, sys
import det_nb
det_nb.seed(42, deterministic_ops={deterministic_ops!r})
import tensorflow
import torch
print(json.dumps({{"deterministic": torch.are_deterministic_algorithms_enabled(),
                  "warn_only": torch.is_deterministic_algorithms_warn_only_enabled(),
                  "triton": "triton" in sys.modules,
                  "check": det_nb.status().check("torch deterministic algorithms").state}}))
""")
    assert result == {"deterministic": bool(deterministic_ops),
                      "warn_only": deterministic_ops == "warn", "triton": False,
                      "check": "ok" if deterministic_ops else "off"}


def test_inductor_is_deterministic_with_the_flag_even_when_it_loads_later() -> None:
    """As with torch.use_deterministic_algorithms: inductor's setting follows the flag."""
    result = run_python("""
import json
import det_nb
det_nb.seed(1, deterministic_ops=True)
import torch
import torch._inductor.config as inductor
states = [(torch.are_deterministic_algorithms_enabled(), inductor.deterministic)]
det_nb.seed(1)
states.append((torch.are_deterministic_algorithms_enabled(), inductor.deterministic))
det_nb.seed(1, deterministic_ops=True)
states.append((torch.are_deterministic_algorithms_enabled(), inductor.deterministic))
print(json.dumps(states))
""")
    assert result == [[True, True], [False, False], [True, True]]


@pytest.mark.parametrize("kept_byte", [None, 24, 36], ids=["zeros", "low bits", "upper half"])
def test_a_state_file_whose_mersenne_key_is_all_zeros_is_refused(
    shell, tmp_path: Path, kept_byte: int | None
) -> None:
    """torch itself takes such a state and then draws only zeros; only the top bit of the
    first word and the other 623 words count, each word's low 32 bits as torch reads them."""
    shell.run_line_magic("det_seed", "42 --trial 3 --quiet")
    path = tmp_path / "s.npz"
    det_nb.save_state(str(path))
    with np.load(path, allow_pickle=False) as npz:
        arrays = {name: npz[name] for name in npz.files}
    cpu = arrays["torch.cpu"].copy()
    cpu[24:5016] = 0  # the 624 Mersenne Twister words (uint64 each)
    if kept_byte is not None:
        cpu[kept_byte] = 0x7F  # word 0 below its top bit, or word 1's unused upper half
    arrays["torch.cpu"] = cpu
    np.savez(path, **arrays)
    torch.rand(2)
    before = (prng_states(), torch.get_rng_state().numpy().tobytes())
    with pytest.raises(ValueError, match="torch: the CPU generator's Mersenne Twister key is "
                       "all zeros") as error:
        det_nb.load_state(str(path))
    assert "\n" not in str(error.value)
    assert (prng_states(), torch.get_rng_state().numpy().tobytes()) == before


def test_torch_tensors_fingerprint_by_dtype_shape_and_bits() -> None:
    from det_nb.fingerprint import describe_difference, fingerprint

    a = torch.tensor([[1.0, 2.0]], dtype=torch.bfloat16)
    b = a.clone()
    b[0, 1] = 2.5
    assert fingerprint(a).summary == "torch.Tensor bfloat16 (1, 2)"
    assert fingerprint(a) == fingerprint(a.clone()) != fingerprint(b)
    assert fingerprint(a).digest != fingerprint(a.float()).digest  # same values, other dtype
    assert describe_difference(a, a.float(), "t") == (
        "t: torch.Tensor bfloat16 (1, 2) vs torch.Tensor float32 (1, 2)"
    )
    assert describe_difference(a, b, "t") == (
        "t: torch.Tensor bfloat16 (1, 2): 1 of 2 elements differ; max abs difference 0.5; "
        "first at t[0, 1]"
    )
