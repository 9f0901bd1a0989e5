"""The trials runner compares a trial run twice through the runner's outputs digest: printed
progress cut differently by the kernel's flushes is the same output."""

from __future__ import annotations

import concurrent.futures
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_notebook

from det_nb.trials import run_trials


def test_trials_verify_a_printing_loop_as_identical(tmp_path: Path) -> None:
    notebook = new_notebook(cells=[new_code_cell(
        "import os\nimport random\nimport time\nfor step in range(12):\n"
        "    print('step', step, round(random.random(), 6))\n"
        "    time.sleep(0.01 + os.urandom(1)[0] / 2500)  # cut differently in every run")])
    notebook.metadata["kernelspec"] = {"name": "python3", "language": "python",
                                       "display_name": "Python 3"}
    path = tmp_path / "progress.ipynb"
    nbformat.write(notebook, path)
    with concurrent.futures.ThreadPoolExecutor(1) as executor:
        result = run_trials(path, 7, "0", verify=1, executor=executor)
    assert [trial.error for trial in result.trials] == [None]
    assert [(check.trial, check.differences) for check in result.verifications] == [(0, [])]
