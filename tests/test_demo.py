"""``make demo`` with no display: tools/run_notebook.py prints a notebook as a reader reads it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

RUNNER = Path(__file__).resolve().parents[1] / "tools" / "run_notebook.py"
NOISE = ("cuInit", "E0000", "TCP without encryption", "absl::InitializeLog", "oneDNN")


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> tuple[str, str, Path, str]:
    """Run the runner on a small notebook that imports TensorFlow.

    Returns stdout, stderr, the notebook's path and its text before the run.
    """
    path = tmp_path_factory.mktemp("demo") / "small.ipynb"
    notebook = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell(
            "# A small demo\n\nThe same **seed** gives the same draws,\nso this cell repeats."),
        nbformat.v4.new_code_cell("%load_ext det_nb"),
        nbformat.v4.new_code_cell("%det_seed 42 --trial 3 --quiet"),
        nbformat.v4.new_code_cell(
            "import tensorflow as tf\n\nprint('draw', float(tf.random.uniform([])))"),
        nbformat.v4.new_code_cell("# NBVAL_RAISES_EXCEPTION\n%det_seed 4.5"),
    ])
    nbformat.write(notebook, path)
    stored = path.read_text()
    # As a user's shell would start it: TensorFlow's logging not silenced beforehand (GPUs
    # hidden, so the verdict does not depend on the machine's).
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    env["CUDA_VISIBLE_DEVICES"] = ""
    done = subprocess.run([sys.executable, str(RUNNER), str(path)], capture_output=True,
                          text=True, timeout=300, env=env, check=True)
    return done.stdout, done.stderr, path, stored


def test_markdown_is_printed_as_prose_around_the_code(demo) -> None:
    out, _, _, _ = demo
    lines = out.splitlines()
    assert lines[:6] == [
        "A small demo", "============", "",
        "The same seed gives the same draws, so this cell repeats.", "",
        "In [1]: %load_ext det_nb",
    ]
    at = lines.index("In [3]: import tensorflow as tf")
    assert lines[at + 1:at + 3] == ["", "        print('draw', float(tf.random.uniform([])))"]
    assert lines[at + 3].startswith("draw 0.")
    assert "UsageError: experiment seed must be an integer in [0, 2147483647], got " in out


def test_no_kernel_or_tensorflow_start_up_noise(demo) -> None:
    out, err, _, _ = demo
    for noise in NOISE:
        assert noise not in out
        assert noise not in err


def test_ends_with_the_kernels_verdict_and_what_to_do_next(demo) -> None:
    out, _, _, _ = demo
    tail = out[out.index("Verdict (det_nb.status() in the kernel after the last cell):"):]
    verdict = tail.splitlines()[1].strip()
    assert verdict.startswith("reproducible on this machine: ")
    assert " warn" in verdict and " ok" in verdict
    if "PYTHONHASHSEED" not in os.environ:  # the kernel's hash randomisation is on: explained
        assert "warn hash randomisation: on: hash() of str/bytes" in tail
        assert "fix: restart the kernel with PYTHONHASHSEED=0" in tail
    assert "`make demo` opens this notebook in JupyterLab" in tail
    assert "`make test` runs the test suite" in tail


def test_the_notebook_file_is_left_as_it_was(demo) -> None:
    _, _, path, stored = demo
    assert path.read_text() == stored
