"""What ``pip install det_nb`` gives a user: the wheel, in a clean venv without TensorFlow.

Builds the wheel from this checkout, installs it with its declared dependencies only
(from the package index pip is configured with) and runs the two lines of the quick
start in IPython there. It catches a dependency used but not declared, a module left out
of the wheel, and an import of an optional framework at load time. About 30 s.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TRIAL_SEED = 1129302213  # experiment 42, trial 3 (DESIGN.md)


def run(*command: str | Path, cwd: Path | None = None) -> str:
    """Run a command; fail with its output when it fails. Returns stdout and stderr."""
    done = subprocess.run([str(part) for part in command], capture_output=True, text=True,
                          timeout=300, cwd=cwd)
    output = done.stdout + done.stderr
    if done.returncode != 0:
        pytest.fail(f"{' '.join(map(str, command))} failed:\n{output[-3000:]}")
    return output


@pytest.fixture(scope="module")
def clean_venv(tmp_path_factory) -> Path:
    """A new virtual environment with only the built wheel and its dependencies."""
    where = tmp_path_factory.mktemp("packaging")
    # pip builds it as `python -m build --wheel` would (PEP 517, isolated backend).
    run(sys.executable, "-m", "pip", "wheel", "--quiet", "--quiet", "--no-deps",
        "--wheel-dir", where / "dist", ROOT)
    [wheel] = (where / "dist").glob("det_nb-*.whl")
    venv = where / "venv"
    run(sys.executable, "-m", "venv", venv)
    run(venv / "bin" / "python", "-m", "pip", "install", "--quiet", "--quiet", wheel)
    return venv


def test_the_clean_venv_has_no_tensorflow(clean_venv) -> None:
    found = run(clean_venv / "bin" / "python", "-c",
                "import importlib.util as u; print([m for m in ('tensorflow', 'torch', 'jax') "
                "if u.find_spec(m)])")
    assert found.strip() == "[]"


def test_the_quick_start_runs_from_the_installed_wheel(clean_venv, tmp_path) -> None:
    shown = run(clean_venv / "bin" / "ipython", "--colors=nocolor", "-c",
                "%load_ext det_nb\n%det_seed 42 --trial 3", cwd=tmp_path)
    assert "Traceback" not in shown and "Error" not in shown, shown
    assert f"trial 3 -> trial seed {TRIAL_SEED}" in shown
    assert "[off ] tensorflow: not installed" in shown
