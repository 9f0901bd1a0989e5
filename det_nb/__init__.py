"""det_nb: reproducible ML experiments in notebooks.

``%load_ext det_nb`` then ``%det_seed 42 --trial 3``; or, without IPython,
``det_nb.seed(42, trial=3)``. Importing det_nb imports no ML framework.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from det_nb.lineage import Lineage
from det_nb.session import get_session
from det_nb.status import Report

__all__ = [
    "Lineage", "Report", "jax_key", "lineage", "load_ipython_extension", "load_record",
    "load_state", "record", "reseed", "rng", "run_trials", "save_record", "save_state", "seed",
    "status", "unload_ipython_extension", "worker_seed",
]
__version__ = "0.1.0"


def seed(
    seed: int | None = None,
    trial: int | None = None,
    *,
    scheme: str = "seedsequence",
    threads: int | None = 1,
    deterministic_ops: bool | str = False,
    per_cell: bool = False,
    portable: bool = True,
) -> Lineage:
    """Seed every PRNG from ``seed`` and ``trial``; return the lineage.

    ``threads``: threads of every pool that splits float reductions (OpenBLAS/MKL/OpenMP,
    torch, TensorFlow, JAX; 1, the default, is single-thread mode, the same floats on any
    core count; None leaves each library's own). ``deterministic_ops``: True runs only
    deterministic kernels (torch, TF, and JAX's XLA on GPUs), so an op without one raises;
    ``"warn"`` lets such an op run and lists it with its count in the status (torch's warn
    mode; the run is then NOT reproducible). ``per_cell`` acts where the IPython extension
    is loaded. ``portable`` pins CPU kernels to the x86-64-v3 baseline (libraries not
    imported yet; see the status). Arguments are validated, then the pins set, then the
    trial seed derived, so NumPy (which derives it) loads under the pins.
    Raises ValueError on bad input, before anything is seeded.
    """
    return get_session().seed(
        seed, trial, scheme=scheme, threads=threads, deterministic_ops=deterministic_ops,
        per_cell=per_cell, portable=portable,
    )


def reseed() -> Lineage:
    """Restart every stream from the current lineage."""
    return get_session().reseed()


def lineage() -> Lineage | None:
    """The current lineage, or None before seeding."""
    return get_session().lineage


def status() -> Report:
    """The determinism report: one check per source and setting, with fixes."""
    return get_session().status()


def rng() -> Any:
    """A NumPy Generator equal to ``np.random.default_rng(trial_seed)``, restarted on re-seed."""
    return get_session().rng()


def jax_key() -> Any:
    """``jax.random.key(trial_seed)``."""
    return get_session().jax_key()


def worker_seed(worker: int) -> int:
    """Seed of data-loader worker or distributed rank ``worker`` of the current trial."""
    return get_session().worker_seed(worker)


def record() -> dict[str, Any]:
    """The run record: lineage, settings and their status, and the environment (JSON-able)."""
    from det_nb import run_record

    return run_record.build(get_session())


def save_record(path: str) -> Path:
    """Write the run record to ``path`` as JSON, atomically."""
    from det_nb import run_record

    return run_record.save(get_session(), path)


def load_record(path: str) -> list[str]:
    """Replay a run record's lineage and settings; return the environment differences."""
    from det_nb import run_record

    return run_record.replay(get_session(), run_record.load(path))


def save_state(path: str) -> Path:
    """Save every seeded source's PRNG state (and det_nb.rng()'s) to ``path`` (.npz)."""
    from det_nb import state

    return state.save(get_session(), path)


def load_state(path: str) -> list[str]:
    """Restore the PRNG states saved by :func:`save_state`; return what was restored."""
    from det_nb import state

    return state.restore(get_session(), path)


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext det_nb``: register the magics (once per shell)."""
    from det_nb.extension import load

    load(ipython)


def unload_ipython_extension(ipython: Any) -> None:
    """``%unload_ext det_nb``: remove magics, events and pending import hooks."""
    from det_nb.extension import unload

    unload(ipython)


def __getattr__(name: str) -> object:
    """``det_nb.run_trials``, imported on first use (it brings the notebook runner)."""
    if name == "run_trials":
        from det_nb.trials import run_trials

        return run_trials
    raise AttributeError(f"module 'det_nb' has no attribute {name!r}")
