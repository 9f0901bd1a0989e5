"""Row "verify": ``verify --runs 2`` against two plain nbclient executions of one notebook.

verify starts its two kernels side by side, lets them take turns on each cell and
fingerprints every cell's changed names inside them; the baseline executes the same
notebook twice with nbclient, one run after the other, with nothing else. The difference
is what verify costs over running the notebook: the probe after each cell, the silent
requests that fetch its fingerprints, the run records and the comparison. The notebook is
a small NumPy regression (no TensorFlow, so kernel start-up does not hide the cost),
written to a temporary folder.
"""

from __future__ import annotations

import contextlib
import io
import json
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

import nbformat
from bench import Goal, Row, interleave, timed
from nbformat.v4 import new_code_cell, new_notebook

# (samples, features, gradient steps): full run, --quick
SIZES = {"full": (20_000, 50, 300), "quick": (500, 10, 20)}


def notebook_cells(samples: int, features: int, steps: int) -> list[str]:
    """A seeded least-squares fit by gradient descent, one step of the story per cell."""
    return [
        "%load_ext det_nb\n%det_seed 42 --quiet",
        f"import numpy as np\nX = np.random.standard_normal(({samples}, {features}))\n"
        f"true_w = np.random.standard_normal({features})\n"
        f"y = X @ true_w + 0.1 * np.random.standard_normal({samples})",
        f"w = np.zeros({features})\nhistory = []",
        f"for step in range({steps}):\n    residual = X @ w - y\n"
        "    w -= 0.1 * (X.T @ residual) / len(y)\n"
        "    history.append(float((residual ** 2).mean()))",
        f"test = np.random.standard_normal(({samples // 4}, {features}))\npredicted = test @ w",
        "summary = {'loss': history[-1], 'error': float(np.abs(w - true_w).max())}\n"
        "print(summary)",
    ]


def write_notebook(folder: Path, quick: bool) -> str:
    """The benchmark notebook in ``folder``; returns its path."""
    notebook = new_notebook(cells=[new_code_cell(source) for source in
                                   notebook_cells(*SIZES["quick" if quick else "full"])])
    notebook.metadata["kernelspec"] = {"name": "python3", "language": "python",
                                       "display_name": "Python 3"}
    path = folder / "regression.ipynb"
    nbformat.write(notebook, path)
    return str(path)


def plain_runs(path: str) -> None:
    """Two plain nbclient executions of ``path``, one after the other."""
    from nbclient import NotebookClient

    for _ in range(2):
        NotebookClient(nbformat.read(path, as_version=4), timeout=600, kernel_name="python3",
                       resources={"metadata": {"path": str(Path(path).parent)}}).execute()


def verify_runs(path: str) -> None:
    """``python -m det_nb verify PATH --runs 2``, in this process; it must pass."""
    from det_nb.verify import main

    with contextlib.redirect_stdout(io.StringIO()) as out:
        status = main([path, "--runs", "2"])
    if status != 0:
        raise RuntimeError(f"verify did not pass the benchmark notebook:\n{out.getvalue()}")


def measure(quick: bool) -> list[dict[str, Any]]:
    """The row, as JSON: verify seconds / plain seconds, pairs interleaved ABBA."""
    pairs, warmups = (2, 1) if quick else (8, 1)
    with tempfile.TemporaryDirectory(prefix="det_nb-bench-verify-") as folder:
        path = write_notebook(Path(folder), quick)
        base, cand = interleave(timed(lambda: plain_runs(path)), timed(lambda: verify_runs(path)),
                                pairs, warmups)
    samples, features, steps = SIZES["quick" if quick else "full"]
    return [Row(
        "verify", "python -m det_nb verify NOTEBOOK --runs 2 (6 code cells)",
        "two plain nbclient executions of the notebook, one after the other", "s",
        "candidate / baseline", base, cand, warmups, Goal("<=", 1.15),
        note=(f"in-process wall time, kernel start to shutdown; the notebook: seeded NumPy "
              f"least squares, X {samples}x{features} float64, {steps} gradient steps"),
    ).to_json()]


if __name__ == "__main__":
    row = measure("--quick" in sys.argv[1:])[0]
    ratios = [c / b for b, c in zip(row["baseline_values"], row["candidate_values"], strict=True)]
    print(f"verify / plain: ratio min {min(ratios):.3f}, median {statistics.median(ratios):.3f}, "
          f"max {max(ratios):.3f} over {len(ratios)} pairs; medians "
          f"{statistics.median(row['candidate_values']):.2f} s vs "
          f"{statistics.median(row['baseline_values']):.2f} s")
    print(json.dumps(row), flush=True)
