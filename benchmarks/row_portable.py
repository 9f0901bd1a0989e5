"""Rows "portable": what the portable CPU kernels cost against the native ones.

Libraries fix their kernels when they load, so each side is its own long-lived process:
``det_nb.seed(..., portable=True)`` (the default: x86-64-v3 kernels) and
``portable=False`` (the kernels this CPU picks). Neither inherits a kernel pin from the
environment (``OPENBLAS_CORETYPE`` and ``OPENBLAS_L2_SIZE`` are unset together for both).
The parent asks the two processes for one timed run at a time, in ABBA order, so both
sides see the same machine load; ``python benchmarks/row_portable.py --worker`` is one side.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from bench import Row, Side, interleave, serve

# task -> (what is timed, size for a full run, size for --quick)
TASKS = {
    "numpy": ("NumPy float32 matmul", 1024, 64),
    "torch": ("torch float32 matmul + softmax", 1024, 64),
    "keras": ("Keras MLP fit, one epoch", 16384, 256),
}
UNSET = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")


def worker(portable: bool) -> None:
    """Seed with det_nb, then answer each task name read on stdin with its seconds."""
    import det_nb

    det_nb.seed(42, portable=portable)
    import keras
    import numpy as np
    import tensorflow as tf
    import torch

    rng = np.random.default_rng(0)
    sizes = json.loads(sys.stdin.readline())
    n = sizes["numpy"]
    a, b = (rng.standard_normal((n, n)).astype(np.float32) for _ in range(2))
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    samples = sizes["keras"]
    x = rng.standard_normal((samples, 64)).astype(np.float32)
    y = rng.integers(0, 10, samples)
    model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(256, activation="relu"),
                              keras.layers.Dropout(0.2), keras.layers.Dense(10)])
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    data = tf.data.Dataset.from_tensor_slices((x, y)).batch(256)
    actions = {
        "numpy": lambda: a @ b,
        "torch": lambda: torch.softmax(ta @ tb, 1),
        "keras": lambda: model.fit(data, epochs=1, verbose=0),
    }
    from det_nb import cpu_kernels

    kernels = cpu_kernels.record_fields()["cpu_kernels"]
    serve({"kernels": [f"{k} {v}" for k, v in kernels.items()]}, actions)


def measure(quick: bool) -> list[dict[str, Any]]:
    """One row per task: portable seconds / native seconds, interleaved ABBA."""
    sizes = {task: spec[2] if quick else spec[1] for task, spec in TASKS.items()}
    pairs, warmups = (2, 1) if quick else (15, 3)
    portable = Side("row_portable.py", [], sizes, UNSET)
    native = Side("row_portable.py", ["--native"], sizes, UNSET)
    try:
        rows = []
        for task, (what, *_sizes) in TASKS.items():
            base, cand = interleave(lambda t=task: native.run(t), lambda t=task: portable.run(t),
                                    pairs, warmups)
            rows.append(Row(
                f"portable: {task}", f"{what} (size {sizes[task]}) with portable kernels",
                "the same with this CPU's native kernels (--no-portable)", "s",
                "candidate / baseline", base, cand, warmups,
                note=f"portable: {', '.join(portable.hello['kernels'])}. native: "
                     f"{', '.join(native.hello['kernels'])}",
            ).to_json())
        return rows
    finally:
        portable.close()
        native.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--worker", action="store_true")
    parser.add_argument("--native", action="store_true")
    arguments = parser.parse_args()
    worker(not arguments.native)
