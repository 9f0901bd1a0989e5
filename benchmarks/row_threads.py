"""Rows "threads": what single-thread mode costs against each library's own thread count.

Pools are sized when a library loads or starts, so each side is its own long-lived
process: ``det_nb.seed(42)`` (the default: one thread in every pool) and
``det_nb.seed(42, threads=None)`` (``--no-single-thread``: each library sizes its pools
from the CPUs it may use). Both run the portable kernels, so only the thread counts
differ, and neither inherits a thread or kernel variable. The parent asks the two
processes for one timed run at a time, in ABBA order, so both sides see the same machine
load; ``python benchmarks/row_threads.py --worker`` is one side.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from bench import Row, Side, interleave, serve

# task -> (what is timed, size for a full run, size for --quick)
TASKS = {
    "lapack": ("NumPy float64 solve + eigvalsh + svd", 1000, 64),
    "torch": ("torch CNN forward + backward (conv, matmul), batch", 64, 2),
}
# Thread and kernel variables the sides must not inherit (each sets its own through det_nb).
UNSET = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS",
         "VECLIB_MAXIMUM_THREADS", "PJRT_NPROC", "TF_NUM_INTRAOP_THREADS",
         "TF_NUM_INTEROP_THREADS", "OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")


def worker(single_thread: bool) -> None:
    """Seed with det_nb, then answer each task name read on stdin with its seconds."""
    import det_nb

    det_nb.seed(42, threads=1 if single_thread else None)
    import numpy as np
    import torch

    sizes = json.loads(sys.stdin.readline())
    rng = np.random.default_rng(0)
    n = sizes["lapack"]
    m = rng.standard_normal((n, n))
    spd, rhs = m @ m.T + n * np.eye(n), rng.standard_normal((n, 8))
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 32, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(32, 64, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Flatten(), torch.nn.Linear(64 * 8 * 8, 256), torch.nn.ReLU(),
        torch.nn.Linear(256, 10),
    )
    images = torch.randn(sizes["torch"], 3, 32, 32)
    labels = torch.randint(0, 10, (sizes["torch"],))

    def lapack() -> None:
        np.linalg.solve(spd, rhs)
        np.linalg.eigvalsh(spd)
        np.linalg.svd(m, compute_uv=False)

    def train_step() -> None:
        model.zero_grad()
        torch.nn.functional.cross_entropy(model(images), labels).backward()

    actions = {"lapack": lapack, "torch": train_step}
    from det_nb import threads

    pools = threads.record_fields()["thread_pools"]
    serve({"pools": [f"{k} {v}" for k, v in pools.items()]}, actions)


def measure(quick: bool) -> list[dict[str, Any]]:
    """One row per task: single-thread seconds / default-threads seconds, interleaved ABBA."""
    sizes = {task: spec[2] if quick else spec[1] for task, spec in TASKS.items()}
    pairs, warmups = (2, 1) if quick else (15, 3)
    single = Side("row_threads.py", [], sizes, UNSET)
    default = Side("row_threads.py", ["--default-threads"], sizes, UNSET)
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    try:
        rows = []
        for task, (what, *_sizes) in TASKS.items():
            base, cand = interleave(lambda t=task: default.run(t), lambda t=task: single.run(t),
                                    pairs, warmups)
            rows.append(Row(
                f"threads: {task}", f"{what} (size {sizes[task]}) single-threaded",
                f"the same with each library's own thread count (--no-single-thread; "
                f"{cpus} CPUs usable)", "s", "candidate / baseline", base, cand, warmups,
                note=f"single-thread: {', '.join(single.hello['pools'])}. default: "
                     f"{', '.join(default.hello['pools'])}",
            ).to_json())
        return rows
    finally:
        single.close()
        default.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--worker", action="store_true")
    parser.add_argument("--default-threads", action="store_true")
    arguments = parser.parse_args()
    worker(not arguments.default_threads)
