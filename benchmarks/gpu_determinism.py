"""The GPU determinism table (docs/gpu.md), measured: ``python benchmarks/gpu_determinism.py``.

Every case runs under four seedings, each twice in a fresh process, and the two results
are compared bit for bit:

- plain: ``torch.manual_seed(42)`` (JAX: ``jax.random.key(42)``), no det_nb;
- defaults: ``det_nb.seed(42)``;
- strict: ``det_nb.seed(42, deterministic_ops=True)`` (``%det_seed 42 --deterministic-ops``);
- warn: ``det_nb.seed(42, deterministic_ops="warn")``.

Cases: torch ``index_add_`` and ``scatter_add_`` (4M floats into 1000 bins), a small CNN's
training (conv, batch norm, dropout), the same with ``cudnn.benchmark = True``, conv weight
gradients, a model with ``nn.AdaptiveAvgPool2d`` (it raises under strict determinism on
CUDA; warn mode trains it and lists the op), and JAX ``segment_sum`` and ``.at[].add``.
Data come from fixed generators, so only the kernels can make two runs differ. Then the
cost of deterministic training: the CNN's steps timed with deterministic algorithms off and
on, alternating in one process (median of 3 pairs), as a ratio; and the status's GPU lines.

Needs det_nb's dependencies and torch and/or JAX with a GPU (wheels are enough). Without
a CUDA GPU it says so and exits 0. ``--device cpu`` runs the same on the CPU to check the
script itself: that is not a GPU measurement, and says so.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

SEED = 42
MODES = {
    "plain": "plain seeding",
    "defaults": "det_nb defaults",
    "strict": "det_nb --deterministic-ops",
    "warn": "det_nb --deterministic-ops=warn",
}
# case -> its row's label, filled in from the sizes
TORCH_CASES = {
    "index_add": "`index_add_` ({elements:,} floats into {bins} bins)",
    "scatter_add": "`scatter_add_` ({elements:,} floats into {bins} bins)",
    "cnn": "small CNN, {steps} SGD steps (conv, batch norm, dropout)",
    "cnn_benchmark": "same CNN with `cudnn.benchmark = True`",
    "conv_grad": "conv weight gradient",
    "adaptive_pool": "CNN with `nn.AdaptiveAvgPool2d`, {pool_steps} SGD steps",
}
JAX_CASES = {
    "jax_segment_sum": "JAX `segment_sum` ({elements:,} floats into {bins} segments)",
    "jax_at_add": "JAX `.at[].add` ({elements:,} floats into {bins} bins)",
}
STATUS_LINES = ("gpus", "torch deterministic algorithms", "torch cudnn", "jax determinism")
FULL = {"elements": 4_000_000, "bins": 1000, "steps": 60, "pool_steps": 20, "batch": 64,
        "timed_steps": 40}
QUICK = {"elements": 40_000, "bins": 100, "steps": 3, "pool_steps": 3, "batch": 8,
         "timed_steps": 3}


# -- in a fresh process: one seeding, every case ----------------------------------------


def seed(mode: str) -> None:
    """Seed as ``mode`` says, before torch or JAX is imported (det_nb acts at import)."""
    if mode != "plain":
        import det_nb

        det_nb.seed(SEED, deterministic_ops={"defaults": False, "strict": True,
                                             "warn": "warn"}[mode])


def reseed(mode: str) -> None:
    """Restart every stream before a case, so each case starts from the same state."""
    if mode == "plain":
        import torch

        torch.manual_seed(SEED)
    else:
        import det_nb

        det_nb.reseed()


def torch_data(size: dict[str, int], device: str) -> tuple[Any, Any]:
    """Fixed floats and bin indices (a CPU generator of its own, then moved)."""
    import torch

    generator = torch.Generator().manual_seed(0)
    values = torch.randn(size["elements"], generator=generator)
    bins = torch.randint(0, size["bins"], (size["elements"],), generator=generator)
    return values.to(device), bins.to(device)


def cnn(pool: bool = False) -> Any:
    """A small CNN; ``pool``: end in nn.AdaptiveAvgPool2d, as ResNet-style models do."""
    from torch import nn

    head = ([nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10)] if pool
            else [nn.MaxPool2d(2), nn.Flatten(), nn.Linear(32 * 8 * 8, 10)])
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.Dropout(0.2),
        *head,
    )


def train(model: Any, steps: int, batch: int, device: str) -> Any:
    """SGD on fixed images and labels; the trained parameters, flattened."""
    import torch

    generator = torch.Generator().manual_seed(1)
    images = torch.randn(batch, 3, 32, 32, generator=generator).to(device)
    labels = torch.randint(0, 10, (batch,), generator=generator).to(device)
    model = model.to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    for _ in range(steps):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(images), labels).backward()
        optimizer.step()
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def run_torch_case(case: str, size: dict[str, int], device: str) -> Any:
    """One torch case's result tensor (on the CPU)."""
    import torch

    if case in ("index_add", "scatter_add"):
        values, bins = torch_data(size, device)
        out = torch.zeros(size["bins"], device=device)
        if case == "index_add":
            return out.index_add_(0, bins, values).cpu()
        return out.scatter_add_(0, bins, values).cpu()
    if case == "conv_grad":
        generator = torch.Generator().manual_seed(2)
        images = torch.randn(size["batch"], 16, 32, 32, generator=generator).to(device)
        conv = torch.nn.Conv2d(16, 32, 3, padding=1).to(device)
        conv(images).square().sum().backward()
        return conv.weight.grad.cpu()
    benchmark = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = case == "cnn_benchmark"
    try:
        pool = case == "adaptive_pool"
        steps = size["pool_steps"] if pool else size["steps"]
        return train(cnn(pool), steps, size["batch"], device).cpu()
    finally:
        torch.backends.cudnn.benchmark = benchmark


def run_jax_case(case: str, size: dict[str, int]) -> Any:
    """One JAX case's result, as a NumPy array (JAX's default device: its GPU if any)."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    generator = np.random.default_rng(0)
    values = jnp.asarray(generator.standard_normal(size["elements"], dtype=np.float32))
    bins = jnp.asarray(generator.integers(0, size["bins"], size["elements"]))
    if case == "jax_segment_sum":
        out = jax.ops.segment_sum(values, bins, num_segments=size["bins"])
    else:
        out = jnp.zeros(size["bins"], jnp.float32).at[bins].add(values)
    return np.asarray(out)


def child(mode: str, cases: list[str], device: str, quick: bool, out: Path) -> dict[str, Any]:
    """Run ``cases`` under ``mode`` in this (fresh) process; arrays go to ``out``."""
    import numpy as np

    seed(mode)
    size = QUICK if quick else FULL
    results: dict[str, Any] = {}
    for case in cases:
        reseed(mode)
        before = _listed_ops(mode)
        try:
            if case in JAX_CASES:
                array = run_jax_case(case, size)
            else:
                array = run_torch_case(case, size, device).numpy()
        except RuntimeError as error:
            results[case] = {"raised": _refused_op(error) or f"{type(error).__name__}: {error}"}
            continue
        np.save(out / f"{case}.npy", array)
        ran = {op: n - before.get(op, 0) for op, n in _listed_ops(mode).items()
               if n > before.get(op, 0)}
        results[case] = {"saved": f"{case}.npy", "ops": ran}
    return {"results": results, "status": _status_lines(mode)}


def _listed_ops(mode: str) -> dict[str, int]:
    if mode == "plain":
        return {}
    from det_nb import nondeterministic_ops

    return nondeterministic_ops.ran()


def _refused_op(error: RuntimeError) -> str | None:
    from det_nb import nondeterministic_ops

    found = nondeterministic_ops.RAISED.match(str(error))
    return None if found is None else found["op"]


def _status_lines(mode: str) -> list[str]:
    if mode == "plain":
        return []
    import det_nb

    report = det_nb.status()
    return [report.verdict(), *(c.text() for c in report.checks if c.name in STATUS_LINES)]


def cost(device: str, quick: bool) -> dict[str, Any]:
    """The CNN's steps with deterministic algorithms off and on, alternating, in one process."""
    import det_nb

    det_nb.seed(SEED)
    import torch

    size = QUICK if quick else FULL
    generator = torch.Generator().manual_seed(1)
    images = torch.randn(size["batch"], 3, 32, 32, generator=generator).to(device)
    labels = torch.randint(0, 10, (size["batch"],), generator=generator).to(device)

    def timed(deterministic: bool) -> float:
        det_nb.seed(SEED, deterministic_ops=deterministic)
        model = cnn().to(device)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
        for step in range(size["timed_steps"] + 1):  # the first step warms up
            if step == 1:
                _synchronize(device)
                start = time.perf_counter()
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(model(images), labels).backward()
            optimizer.step()
        _synchronize(device)
        return time.perf_counter() - start

    pairs = [(timed(False), timed(True)) for _ in range(3)]
    return {"seconds": pairs, "ratio": statistics.median(on / off for off, on in pairs),
            "steps": size["timed_steps"]}


def _synchronize(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


# -- the parent: fresh processes, comparison, table ---------------------------------------


def gpus() -> dict[str, Any]:
    """What GPUs torch and JAX see here, and the versions (imports both in this process)."""
    found: dict[str, Any] = {"torch": None, "jax": None, "versions": {}}
    try:
        import torch
    except ImportError:
        torch = None
    if torch is not None:
        found["versions"]["torch"] = torch.__version__
        if torch.cuda.is_available():
            found["torch"] = torch.cuda.get_device_name(0)
            found["versions"]["cuda (torch)"] = torch.version.cuda
    try:
        import jax
    except ImportError:
        jax = None
    if jax is not None:
        found["versions"]["jax"] = jax.__version__
        devices = [d for d in jax.devices() if d.platform != "cpu"]
        found["jax"] = devices[0].device_kind if devices else None
    import det_nb

    found["versions"]["det_nb"] = det_nb.__version__
    return found


def spawn(args: list[str], timeout: float) -> dict[str, Any]:
    """Run this script with ``args`` in a fresh interpreter; the JSON it printed last."""
    done = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True,
                          timeout=timeout, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed (exit {done.returncode}):\n"
                         f"{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def compare(first: dict[str, Any], second: dict[str, Any], folders: tuple[Path, Path]) -> str:
    """One table cell: same, differs (how many elements), or raised."""
    import numpy as np

    if "raised" in first or "raised" in second:
        return f"raises: {first.get('raised') or second.get('raised')}"
    a, b = (np.load(folder / result["saved"]) for folder, result in
            zip(folders, (first, second), strict=True))
    ops = {**first["ops"], **second["ops"]}
    listed = f"; lists {', '.join(ops)}" if ops else ""
    if a.shape == b.shape and a.tobytes() == b.tobytes():
        return f"same{listed}"
    differing = int(np.count_nonzero(a != b)) if a.shape == b.shape else a.size
    return f"differs ({differing} of {a.size} elements){listed}"


def measure(cases: list[str], device: str, quick: bool) -> dict[str, Any]:
    """Every case under every mode, twice in fresh processes; the cells and status lines."""
    timeout = 600 if quick else 3600
    table: dict[str, dict[str, str]] = {case: {} for case in cases}
    status: dict[str, list[str]] = {}
    with tempfile.TemporaryDirectory() as scratch:
        for mode in MODES:
            runs = []
            for run in (1, 2):
                folder = Path(scratch) / f"{mode}-{run}"
                folder.mkdir()
                args = ["--child", mode, "--cases", ",".join(cases), "--device", device,
                        "--to", str(folder), *(["--quick"] if quick else [])]
                runs.append((folder, spawn(args, timeout)))
            (first_folder, first), (second_folder, second) = runs
            status[mode] = second["status"]
            for case in cases:
                table[case][mode] = compare(first["results"][case], second["results"][case],
                                            (first_folder, second_folder))
    return {"table": table, "status": status}


def render(found: dict[str, Any], measured: dict[str, Any], spent: dict[str, Any] | None,
           device: str, quick: bool) -> str:
    """The results as Markdown: device, table, cost, status lines."""
    size = QUICK if quick else FULL
    names = {case: label.format(**size) for case, label in {**TORCH_CASES, **JAX_CASES}.items()}
    where = (f"GPU: {found['torch'] or found['jax']}" if device == "cuda"
             else "CPU only: a check of this script, NOT a GPU measurement")
    versions = ", ".join(f"{name} {version}" for name, version in found["versions"].items())
    lines = [f"{where}; {versions}", "",
             "| work | " + " | ".join(MODES.values()) + " |",
             "|---|" + "---|" * len(MODES)]
    lines += [f"| {names[case]} | " + " | ".join(cells[m] for m in MODES) + " |"
              for case, cells in measured["table"].items()]
    if spent is not None:
        pairs = ", ".join(f"{off:.3f}/{on:.3f}" for off, on in spent["seconds"])
        lines += ["", f"Cost: the CNN's {spent['steps']} steps took {spent['ratio']:.2f}x as "
                  f"long with deterministic algorithms (median of 3 alternating pairs, "
                  f"off/on seconds: {pairs})"]
    for mode, status in measured["status"].items():
        if status:
            lines += ["", f"Status lines under {MODES[mode]}:", *status]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda",
                        help="cuda (default) measures the GPU; cpu checks the script")
    parser.add_argument("--quick", action="store_true", help="tiny sizes (a check, not a table)")
    parser.add_argument("--cases", help="comma-separated subset of: "
                        + ", ".join([*TORCH_CASES, *JAX_CASES]))
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    parser.add_argument("--child", choices=MODES, help=argparse.SUPPRESS)
    parser.add_argument("--cost", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--to", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    known = [*TORCH_CASES, *JAX_CASES]
    cases = known if args.cases is None else args.cases.split(",")
    unknown = [case for case in cases if case not in known]
    if unknown:
        parser.error(f"unknown cases {unknown}; known: {', '.join(known)}")
    if args.child is not None:
        print(json.dumps(child(args.child, cases, args.device, args.quick, Path(args.to))))
        return 0
    if args.cost:
        print(json.dumps(cost(args.device, args.quick)))
        return 0
    found = gpus()
    if args.device == "cuda":
        if found["torch"] is None and found["jax"] is None:
            print("no CUDA GPU here: torch sees none and JAX has no GPU backend, so nothing "
                  "was measured (run this on a machine with an NVIDIA GPU)")
            return 0
        cases = [case for case in cases if (found["torch"] if case in TORCH_CASES
                                            else found["jax"]) is not None]
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    measured = measure(cases, args.device, args.quick)
    torch_cases = any(case in TORCH_CASES for case in cases)
    spent = spawn(["--cost", "--device", args.device, *(["--quick"] if args.quick else [])],
                  3600) if torch_cases else None
    print(render(found, measured, spent, args.device, args.quick))
    if args.json:
        Path(args.json).write_text(json.dumps(
            {"device": args.device, "found": found, **measured, "cost": spent}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
