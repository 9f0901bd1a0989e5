"""Same floats on every machine: seeded NumPy, torch and JAX results across CPU counts.

Runs one seeded workload (:data:`WORKLOAD`) in fresh processes whose first statement
restricts their CPUs (``os.sched_setaffinity``) to one CPU or to all this process may use,
as a one-core and a many-core machine, under det_nb's defaults (single-thread, portable
kernels) and under plain seeding (each library's own thread count and kernels). It prints
which results differ and writes their hashes, with this machine's CPU, to a JSON file, so
a session on another machine can run it there and compare:

    python tools/thread_results.py --out docs/thread_results.json
    python tools/thread_results.py --against docs/thread_results.json   # on another machine

``--against`` exits 1 when a det_nb-default result differs from the file's. No process
inherits a thread or kernel variable from this one. tests/test_threads.py runs the same
workload.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import textwrap
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
#: The seeded work, hashed; ``ONE_CPU`` and ``WITH_DET_NB`` are filled in per process.
WORKLOAD = textwrap.dedent("""
    import os
    cpus = sorted(os.sched_getaffinity(0))
    os.sched_setaffinity(0, cpus[:1] if ONE_CPU else cpus)
    if WITH_DET_NB:
        import det_nb
        det_nb.seed(42)
    import hashlib, json
    import numpy as np
    import torch
    import jax.numpy as jnp
    from threadpoolctl import threadpool_info

    def digest(value):
        data = np.ascontiguousarray(np.asarray(value)).tobytes()
        return hashlib.sha256(data).hexdigest()[:16]

    data = np.random.default_rng(0)
    a, b = (data.standard_normal((1000, 1000)).astype(np.float32) for _ in range(2))
    m = data.standard_normal((512, 512))
    spd = m @ m.T + 512 * np.eye(512)
    rhs = data.standard_normal((512, 64))
    v = data.standard_normal(4_000_000)
    square = data.standard_normal((1000, 1000))
    results = {
        "numpy sgemm": digest(a @ b),
        "numpy solve": digest(np.linalg.solve(spd, rhs)),
        "numpy eigvalsh": digest(np.linalg.eigvalsh(spd)),
        "numpy dot": digest(v @ v),
        "numpy svd": digest(np.linalg.svd(square, compute_uv=False)),
    }
    torch.manual_seed(0)
    x = torch.randn(4_000_000)
    results["torch sum"] = digest(x.sum().numpy())
    results["torch mean"] = digest(x.mean().numpy())
    j = jnp.asarray(v.astype(np.float32))
    results["jax sum"] = digest(jnp.sum(j))
    results["jax mean"] = digest(jnp.mean(j))
    blas = [[p["internal_api"], p.get("architecture"), p["num_threads"]]
            for p in threadpool_info() if p["internal_api"] != "openmp"]
    pools = {"cpus": len(os.sched_getaffinity(0)), "blas": blas,
             "torch": [torch.get_num_threads(), torch.get_num_interop_threads()]}
    print(json.dumps({"results": results, "pools": pools}))
""")
#: The cases: (seeding, CPUs) -> whether the process seeds with det_nb, runs on one CPU.
CASES = {
    ("det_nb defaults", "one cpu"): (True, True), ("det_nb defaults", "all cpus"): (True, False),
    ("plain seeding", "one cpu"): (False, True), ("plain seeding", "all cpus"): (False, False),
}
#: Variables no case inherits: thread counts and kernel pins are each case's own.
INHERITED_PINS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                  "BLIS_NUM_THREADS", "VECLIB_MAXIMUM_THREADS", "PJRT_NPROC",
                  "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS", "OPENBLAS_CORETYPE",
                  "NPY_DISABLE_CPU_FEATURES", "ONEDNN_MAX_CPU_ISA", "MKL_CBWR",
                  "ATEN_CPU_CAPABILITY", "XLA_FLAGS", "DET_NB_EMULATED_CPU")
QUIET = {"TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": "", "JAX_PLATFORMS": "cpu"}


def workload(with_det_nb: bool, one_cpu: bool) -> str:
    """The workload's code for one case."""
    return (WORKLOAD.replace("ONE_CPU", repr(one_cpu))
            .replace("WITH_DET_NB", repr(with_det_nb)))


def clean_environment() -> dict[str, str]:
    """This process's environment without thread or kernel pins, plus quiet logging."""
    kept = {k: v for k, v in os.environ.items() if k not in INHERITED_PINS}
    return {**kept, **QUIET}


def run_case(with_det_nb: bool, one_cpu: bool, timeout: float = 600) -> dict[str, Any]:
    """Run one case in a fresh interpreter; its results and thread pools."""
    done = subprocess.run([sys.executable, "-c", workload(with_det_nb, one_cpu)],
                          capture_output=True, text=True, timeout=timeout,
                          env=clean_environment(), cwd=ROOT)
    if done.returncode != 0:
        raise RuntimeError(f"a workload process failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def differing(first: dict[str, str], second: dict[str, str]) -> list[str]:
    """The names whose hashes differ between two result sets."""
    return [name for name in first if first[name] != second.get(name)]


def machine() -> dict[str, Any]:
    """This machine's CPU, as far as it decides floats: model, kernel flags, CPUs usable."""
    sys.path.insert(0, str(ROOT))
    from det_nb.cpu_kernels import cpu_flags

    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = next((line.split(":", 1)[1].strip() for line in info.splitlines()
                  if line.startswith("model name")), platform.processor())
    return {"cpu": model, "cpu_flags": cpu_flags(), "cpu_count": os.cpu_count(),
            "cpus_usable": len(os.sched_getaffinity(0)), "platform": platform.platform(),
            "python": platform.python_version()}


def versions() -> dict[str, str | None]:
    """The library versions the results come from."""
    found: dict[str, str | None] = {}
    for package in ("numpy", "torch", "jax", "jaxlib", "threadpoolctl"):
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = None
    return found


def measure() -> dict[str, Any]:
    """Every case, and what differs between one CPU and all CPUs under each seeding."""
    runs: dict[str, dict[str, Any]] = {}
    for (seeding, cpus), (with_det_nb, one_cpu) in CASES.items():
        runs.setdefault(seeding, {})[cpus] = run_case(with_det_nb, one_cpu)
    return {
        "generated": datetime.date.today().isoformat(),
        "machine": machine(),
        "versions": versions(),
        "runs": runs,
        "differ between one CPU and all CPUs": {
            seeding: differing(cases["one cpu"]["results"], cases["all cpus"]["results"])
            for seeding, cases in runs.items()
        },
    }


def against(here: dict[str, Any], there: dict[str, Any]) -> list[str]:
    """The det_nb-default results of this machine that differ from another machine's."""
    mine = here["runs"]["det_nb defaults"]["one cpu"]["results"]
    theirs = there["runs"]["det_nb defaults"]["one cpu"]["results"]
    return differing(mine, theirs)


def main(argv: list[str] | None = None) -> int:
    """Measure, print, write ``--out``, compare with ``--against``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    parser.add_argument("--against", type=Path,
                        help="a JSON file written on another machine to compare with")
    args = parser.parse_args(argv)
    result = measure()
    print(f"machine: {result['machine']['cpu']}, {result['machine']['cpus_usable']} CPUs usable")
    for seeding, names in result["differ between one CPU and all CPUs"].items():
        print(f"{seeding}: one CPU vs all CPUs differ in {', '.join(names) or 'nothing'}")
    if args.out is not None:
        args.out.write_text(json.dumps(result, indent=1) + "\n")
        print(f"written to {args.out}")
    if args.against is None:
        return 0
    there = json.loads(args.against.read_text())
    names = against(result, there)
    print(f"against {there['machine']['cpu']} ({there['machine']['cpus_usable']} CPUs): "
          f"det_nb defaults differ in {', '.join(names) or 'nothing'}")
    if there["versions"] != result["versions"]:
        print(f"versions differ: here {result['versions']}, there {there['versions']}")
    return 1 if names else 0


if __name__ == "__main__":
    sys.exit(main())
