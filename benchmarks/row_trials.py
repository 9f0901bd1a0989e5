"""Row "trials": 8 trials of a small Keras notebook on 2 workers, against 8 in one process.

The candidate is ``det_nb.trials.run_trials`` on an embedded LocalCluster of two
single-threaded worker processes: each trial is a fresh kernel that starts, imports
TensorFlow and Keras, trains and is fingerprinted, and the cluster's start is timed too.
The baseline runs the same 8 trials one after another in one fresh interpreter, seeding
with ``det_nb.seed(42, trial=k)`` before each (TensorFlow imported once). Both run with
the trials' kernel environment (one thread, hash seed, portable CPU kernels), so each
trial is single-threaded and the two give the same losses. The ratio is the speed-up;
the per-trial overhead of a fresh kernel is the median trial's seconds in its kernel
minus the median seconds of a trial in the one process (the first, which imports
TensorFlow, left out).
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import nbformat
from bench import BENCH_DIR, QUIET_ENV, Goal, Row, interleave, run_json
from nbformat.v4 import new_code_cell, new_notebook

SEED = 42
# (trials, workers, samples, epochs): full run, --quick
SIZES = {"full": (8, 2, 32768, 6), "quick": (2, 2, 256, 1)}
TRAIN = """\
import keras
import numpy as np

data = np.random.default_rng(7)  # the experiment's data: the same in every trial
x = data.standard_normal(({samples}, 32)).astype("float32")
y = (x[:, :4].sum(axis=1, keepdims=True) > 0).astype("float32")
model = keras.Sequential([
    keras.Input((32,)),
    keras.layers.Dense(256, activation="relu"),
    keras.layers.Dropout(0.2),
    keras.layers.Dense(256, activation="relu"),
    keras.layers.Dense(1, activation="sigmoid"),
])
model.compile(optimizer="adam", loss="binary_crossentropy")
history = model.fit(x, y, batch_size=64, epochs={epochs}, shuffle=True, verbose=0)
final_loss = float(history.history["loss"][-1])"""
# The baseline: the same trials one after another in this one interpreter.
ONE_PROCESS = """\
import json, sys, time
import det_nb

train, trials = sys.argv[1], int(sys.argv[2])
losses, seconds = [], []
for trial in range(trials):
    start = time.perf_counter()
    det_nb.seed({seed}, trial=trial)
    namespace = {{}}
    exec(train, namespace)
    losses.append(namespace["final_loss"])
    seconds.append(time.perf_counter() - start)
print(json.dumps({{"losses": losses, "seconds": seconds}}))
"""


def write_notebook(folder: Path, samples: int, epochs: int) -> Path:
    """The trial notebook: det_nb seeded in its first cell, the training in the second."""
    notebook = new_notebook(cells=[
        new_code_cell(f"%load_ext det_nb\n%det_seed {SEED} --quiet"),
        new_code_cell(TRAIN.format(samples=samples, epochs=epochs)),
    ])
    notebook.metadata["kernelspec"] = {"name": "python3", "language": "python",
                                       "display_name": "Python 3"}
    path = folder / "keras_trial.ipynb"
    nbformat.write(notebook, path)
    return path


def measure(quick: bool) -> list[dict[str, Any]]:
    """The row, as JSON: one-process seconds / cluster seconds, pairs interleaved ABBA."""
    from det_nb.trials import run_trials, trial_environment

    trials, workers, samples, epochs = SIZES["quick" if quick else "full"]
    pairs, warmups = (1, 0) if quick else (2, 0)  # a pair takes minutes
    train = TRAIN.format(samples=samples, epochs=epochs)
    found: dict[str, list] = {"cluster": [], "one process": []}

    def on_cluster(path: Path) -> float:
        start = time.perf_counter()
        result = run_trials(path, SEED, f"0-{trials - 1}", workers=workers,
                            collect=["final_loss"])
        elapsed = time.perf_counter() - start
        if result.failed:
            raise RuntimeError(f"a benchmark trial failed: {result.failed[0].error}")
        found["cluster"].append(result)
        return elapsed

    def in_one_process() -> float:
        start = time.perf_counter()
        data = run_json(["-c", ONE_PROCESS.format(seed=SEED), train, str(trials)])
        found["one process"].append(data)
        return time.perf_counter() - start

    saved = dict(os.environ)
    os.environ.update(trial_environment())  # run_json passes it to the baseline
    try:
        with tempfile.TemporaryDirectory(prefix="det_nb-bench-trials-") as folder:
            path = write_notebook(Path(folder), samples, epochs)
            base, cand = interleave(in_one_process, lambda: on_cluster(path), pairs, warmups)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    kernel_seconds = [t.seconds for result in found["cluster"] for t in result.trials]
    inline_seconds = [s for data in found["one process"] for s in data["seconds"][1:]]
    overhead = statistics.median(kernel_seconds) - statistics.median(inline_seconds or [0.0])
    same = all([t.collected["final_loss"] for t in result.trials] == data["losses"]
               for result in found["cluster"] for data in found["one process"])
    return [Row(
        "trials", f"run_trials: {trials} trials of a Keras notebook, LocalCluster of "
        f"{workers} single-threaded workers", f"the same {trials} trials one after another "
        "in one process (det_nb.seed per trial)", "s", "baseline / candidate", base, cand,
        warmups, Goal(">=", 1.7),
        facts={"same losses on the cluster as in one process": same,
               "per-trial overhead of a fresh kernel (s)": round(overhead, 2)},
        note=(f"wall time, cluster start included; MLP 32-256-256-1 with Dropout, {samples} "
              f"samples, {epochs} epochs, batch 64; kernel seconds per trial (median) "
              f"{statistics.median(kernel_seconds):.2f}, in one process "
              f"{statistics.median(inline_seconds or [0.0]):.2f} (first trial left out)"),
    ).to_json()]


if __name__ == "__main__":
    sys.path.insert(0, str(BENCH_DIR))
    os.environ.update(QUIET_ENV)
    row = measure("--quick" in sys.argv[1:])[0]
    print(f"speed-up (one process / cluster): median {row['ratio']['median']:.2f}x over "
          f"{row['pairs']} pairs; medians {row['baseline_median']:.1f} s vs "
          f"{row['candidate_median']:.1f} s; {row['facts']}")
    print(json.dumps(row), flush=True)
