"""Rows "modes": Keras training speed under each determinism mode, one fresh process each.

TensorFlow's thread pools are fixed when its runtime starts, so every run is a fresh
interpreter: ``python benchmarks/row_modes.py --train MODE [--quick]`` trains a small
Keras MLP with Dropout and prints samples/s over the median epoch after the first (a
warm-up: it traces the training function) and a hash of the trained weights. The parent runs
every mode once per round, rotating their order from round to round, and compares each
with the default-threads run of the same round.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import time
from statistics import median
from typing import Any

from bench import BENCH_DIR, SEED_LINE, TRIAL_SEED, Row, emit, run_json

THREADS = os.cpu_count() or 1
# mode -> (%det_seed flags, or None: no det_nb and seeded by hand; row name; what it is)
MODES: dict[str, tuple[str | None, str, str]] = {
    "default": (None, "default threads",
                "default TF threads, no det_nb (keras.utils.set_random_seed by hand)"),
    "single": ("", "single-thread", "single-thread (the %det_seed default)"),
    "pinned": (f"--threads {THREADS}", f"pinned {THREADS}",
               f"TF pinned to {THREADS} threads = the core count (--threads {THREADS})"),
    "ops": ("--no-single-thread --deterministic-ops", "op determinism",
            "op determinism, default threads (--no-single-thread --deterministic-ops)"),
    "both": ("--deterministic-ops", "both", "single-thread + op determinism (--deterministic-ops)"),
}
FULL = {"samples": 24576, "features": 64, "units": 512, "epochs": 4, "batch": 256}
ROUNDS = 5
QUICK = {"samples": 512, "features": 8, "units": 16, "epochs": 2, "batch": 128}


def train(mode: str, quick: bool) -> dict[str, Any]:
    """Seed as ``mode`` says, then train; samples/s of the timed epochs and a weights hash."""
    flags = MODES[mode][0]
    if flags is not None:
        from IPython.core.interactiveshell import InteractiveShell

        shell = InteractiveShell.instance()
        shell.run_line_magic("load_ext", "det_nb")
        shell.run_line_magic("det_seed", f"{SEED_LINE} {flags}")
    import keras
    import numpy as np
    import tensorflow as tf
    from tensorflow.python.framework import config

    if flags is None:
        keras.utils.set_random_seed(TRIAL_SEED)
    size = QUICK if quick else FULL
    x = np.random.standard_normal((size["samples"], size["features"])).astype("float32")
    y = np.random.randint(0, 10, size["samples"])
    layers = keras.layers
    model = keras.Sequential([
        keras.Input((size["features"],)),
        layers.Dense(size["units"], activation="relu"), layers.Dropout(0.3),
        layers.Dense(size["units"], activation="relu"), layers.Dropout(0.3),
        layers.Dense(10),
    ])
    model.compile(optimizer="adam",
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    epoch_seconds: list[float] = []

    class EpochTimer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            epoch_seconds.append(time.perf_counter() - self.start)

    model.fit(x, y, epochs=size["epochs"], batch_size=size["batch"], verbose=0,
              callbacks=[EpochTimer()])
    weights = hashlib.sha256(b"".join(w.tobytes() for w in model.get_weights()))
    threading = tf.config.threading
    return {
        "mode": mode,
        "samples_per_s": size["samples"] / median(epoch_seconds[1:]),
        "weights": weights.hexdigest()[:16],
        "threads": [threading.get_intra_op_parallelism_threads(),
                    threading.get_inter_op_parallelism_threads()],
        "op_determinism": config.is_op_determinism_enabled(),
    }


def measure(quick: bool) -> list[dict[str, Any]]:
    """One row per det_nb mode against default threads, from fresh processes."""
    rounds = 1 if quick else ROUNDS
    names = list(MODES)
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    for index in range(rounds):
        for name in names[index:] + names[:index]:
            args = [str(BENCH_DIR / "row_modes.py"), "--train", name]
            runs[name].append(run_json(args + ["--quick"] * quick))
    size = QUICK if quick else FULL
    default = runs["default"]
    default_speed = median(run["samples_per_s"] for run in default)
    rows = []
    for name in names[1:]:
        weights = {run["weights"] for run in runs[name]}
        facts: dict[str, Any] = {
            "TF threads (intra, inter)": tuple(runs[name][0]["threads"]),
            "op determinism": runs[name][0]["op_determinism"],
            "weights equal default's": weights == {default[0]["weights"]},
        }
        if rounds > 1:
            facts[f"same weights in all {rounds} runs"] = len(weights) == 1
            # Runs on a shared machine are sometimes much slower as a whole: best against
            # best is the cost without that noise.
            facts["ratio of best runs"] = round(
                max(run["samples_per_s"] for run in runs[name])
                / max(run["samples_per_s"] for run in default), 2)
        rows.append(Row(
            f"modes: {MODES[name][1]}", f"{MODES[name][2]}: training samples/s",
            MODES["default"][2], "samples/s", "candidate / baseline",
            [run["samples_per_s"] for run in default],
            [run["samples_per_s"] for run in runs[name]], 1, facts=facts,
            note=(f"Keras MLP {size['features']}-{size['units']}-{size['units']}-10 with "
                  f"Dropout 0.3, {size['samples']} samples, batch {size['batch']}, "
                  f"{size['epochs']} epochs, the first excluded as a warm-up, samples/s of the "
                  f"median other epoch; ratio = speed "
                  f"relative to default threads in the same round; default threads: "
                  f"{default_speed:.0f} samples/s, same weights in all its runs: "
                  f"{len({run['weights'] for run in default}) == 1}"),
            warmup_is="epoch per run",
        ))
    return [row.to_json() for row in rows]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--train", choices=list(MODES), help="train once in this mode")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, one round")
    arguments = parser.parse_args()
    if arguments.train is None:
        parser.error("--train MODE is required (benchmarks/run.py runs the whole row)")
    emit(train(arguments.train, arguments.quick))
