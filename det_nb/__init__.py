"""det_nb: reproducible ML experiments in notebooks.

``%load_ext det_nb`` then ``%det_seed 42 --trial 3``; or, without IPython,
``det_nb.seed(42, trial=3)``. Importing det_nb imports no ML framework.
"""

from __future__ import annotations

from typing import Any

from det_nb.lineage import Lineage
from det_nb.session import get_session
from det_nb.status import Report

__all__ = [
    "Lineage", "Report", "jax_key", "lineage", "load_ipython_extension", "reseed", "rng", "seed",
    "status", "unload_ipython_extension", "worker_seed",
]
__version__ = "0.1.0"


def seed(
    seed: int | None = None,
    trial: int | None = None,
    *,
    scheme: str = "seedsequence",
    threads: int | None = 1,
    deterministic_ops: bool = False,
) -> Lineage:
    """Seed every PRNG from ``seed`` and ``trial``; return the lineage.

    ``threads``: TF threads to pin (1, the default, is single-thread mode; None leaves TF
    alone). Raises ValueError on bad input, before anything is seeded.
    """
    return get_session().seed(
        seed, trial, scheme=scheme, threads=threads, deterministic_ops=deterministic_ops
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


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext det_nb``: register the magics (once per shell)."""
    from det_nb.extension import load

    load(ipython)


def unload_ipython_extension(ipython: Any) -> None:
    """``%unload_ext det_nb``: remove magics, events and pending import hooks."""
    from det_nb.extension import unload

    unload(ipython)
