"""benchmarks/gpu_determinism.py on a machine without a GPU: it says so and exits 0; its
plumbing (fresh processes, bitwise comparison, table, status lines) checked on the CPU."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "gpu_determinism.py"
_spec = importlib.util.spec_from_file_location("det_nb_benchmarks_gpu", SCRIPT)
gpu_determinism = sys.modules[_spec.name] = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(gpu_determinism)

torch = pytest.importorskip("torch")


def run_script(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True,
                          timeout=900, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
                          check=False)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU")
def test_without_a_gpu_it_says_so_and_exits_0() -> None:
    done = run_script()
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == (
        "no CUDA GPU here: torch sees none and JAX has no GPU backend, so nothing was measured "
        "(run this on a machine with an NVIDIA GPU)")


def test_on_the_cpu_it_checks_itself_and_says_it_is_no_gpu_measurement(tmp_path: Path) -> None:
    pytest.importorskip("jax")
    out = tmp_path / "results.json"
    done = run_script("--device", "cpu", "--quick", "--cases", "index_add,adaptive_pool,jax_at_add",
                      "--json", str(out))
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert lines[0].startswith("CPU only: a check of this script, NOT a GPU measurement; torch ")
    assert lines[2] == ("| work | plain seeding | det_nb defaults | det_nb --deterministic-ops | "
                        "det_nb --deterministic-ops=warn |")
    # The CPU's kernels are deterministic: every case is the same in both fresh processes.
    assert lines[4:7] == [
        "| `index_add_` (40,000 floats into 100 bins) | same | same | same | same |",
        "| CNN with `nn.AdaptiveAvgPool2d`, 3 SGD steps | same | same | same | same |",
        "| JAX `.at[].add` (40,000 floats into 100 bins) | same | same | same | same |",
    ]
    assert lines[8].startswith("Cost: the CNN's 3 steps took ")
    assert ("[ok  ] torch deterministic algorithms: on (warn mode): ops without a deterministic "
            "kernel run and are listed here; none ran since the kernel started or its latest "
            "hard %reset") in lines
    assert any(line.startswith("[ok  ] jax determinism: on: --xla_gpu_deterministic_ops=true "
                               "was in XLA_FLAGS") for line in lines)
    assert '"device": "cpu"' in out.read_text()


def test_a_cell_says_same_differs_with_how_many_or_what_raised(tmp_path: Path) -> None:
    first, second = tmp_path / "1", tmp_path / "2"
    first.mkdir()
    second.mkdir()
    np.save(first / "a.npy", np.array([1.0, 2.0, 3.0], np.float32))
    np.save(second / "a.npy", np.array([1.0, 2.0000002, 3.5], np.float32))
    np.save(second / "b.npy", np.array([1.0, 2.0, 3.0], np.float32))
    folders = (first, second)
    saved = {"saved": "a.npy", "ops": {}}
    assert gpu_determinism.compare(saved, saved, folders) == "differs (2 of 3 elements)"
    same = {"saved": "b.npy", "ops": {"adaptive_avg_pool2d_backward_cuda": 20}}
    assert gpu_determinism.compare(saved, same, folders) == "same; lists " \
        "adaptive_avg_pool2d_backward_cuda"
    raised = {"raised": "adaptive_avg_pool2d_backward_cuda"}
    assert gpu_determinism.compare(raised, raised, folders) == (
        "raises: adaptive_avg_pool2d_backward_cuda")
