"""A det_nb kernel with deterministic ops: XLA's determinism flag in its environment, and
warn mode carried into the kernel's %det_seed; started for real."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_kernel import jupyter_dirs, run_in_kernel  # the same Jupyter folders and client

from det_nb import kernel, xla
from det_nb.cpu_kernels import pin_environment

__all__ = ["jupyter_dirs"]  # a fixture, used by name below

pytest.importorskip("jax")

NAME = "det-nb-gpu-test"
PROBE = """
import json, os
import det_nb, jax
jax.numpy.ones(3).sum()
report = det_nb.status()
print(json.dumps({
    "mode": det_nb.get_session().settings.deterministic_ops,
    "flags": os.environ.get("XLA_FLAGS"),
    "jax": [report.check("jax determinism").state, report.check("jax determinism").detail],
}))
"""


def test_a_deterministic_ops_kernelspec_gives_xla_its_flag_at_start() -> None:
    on = kernel.KernelOptions(name=NAME, deterministic_ops=True).spec()
    assert on["env"]["XLA_FLAGS"] == (f"{pin_environment()['XLA_FLAGS']} "
                                      f"--{xla.accepted_flag()}=true")
    assert kernel.KernelOptions(name=NAME).spec()["env"]["XLA_FLAGS"] == (
        pin_environment()["XLA_FLAGS"])
    native = kernel.KernelOptions(name=NAME, deterministic_ops="warn", portable=False).spec()
    assert native["env"]["XLA_FLAGS"] == f"--{xla.accepted_flag()}=true"


def test_a_warn_mode_kernel_starts_in_warn_mode_with_the_flag(jupyter_dirs: Path) -> None:
    options = kernel.KernelOptions(name=NAME, seed=42, trial=3, deterministic_ops="warn")
    assert options.seed_line() == "%det_seed 42 --trial 3 --threads 1 --deterministic-ops=warn " \
                                  "--quiet"
    folder = kernel.install(options, prefix=str(jupyter_dirs))
    spec = kernel.installed()[NAME][1]
    assert kernel.describe(spec) == ("seed 42, trial 3, threads 1, deterministic ops (warn mode), "
                                     "portable CPU kernels")
    assert "--DetMagics.deterministic_ops=warn" in spec["argv"]
    result = run_in_kernel(jupyter_dirs, NAME, PROBE)
    flag = f"--{xla.accepted_flag()}=true"
    assert result["mode"] == "warn"
    assert result["flags"] == f"{pin_environment()['XLA_FLAGS']} {flag}"
    assert result["jax"] == ["ok", f"on: {flag} was in XLA_FLAGS when JAX's backend started "
                                   "(cpu); XLA has no warn mode"]
    assert Path(folder).name == NAME


@pytest.mark.parametrize("value", ["yes", 1, None])
def test_a_kernel_refuses_a_bad_mode(value: object) -> None:
    with pytest.raises(ValueError, match=r"^deterministic_ops must be True"):
        kernel.KernelOptions(name=NAME, deterministic_ops=value)
