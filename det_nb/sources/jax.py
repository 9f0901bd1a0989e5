"""JAX: no global PRNG state; det_nb hands out a key derived from the trial seed."""

from __future__ import annotations

from det_nb.sources.base import Source


class Jax(Source):
    """Nothing to seed: ``det_nb.jax_key()`` returns ``jax.random.key(trial_seed)``."""

    name = "jax"
    module = "jax"

    def seed(self, seed: int) -> str:
        return f"no global state; det_nb.jax_key() = jax.random.key({seed})"

    def pending(self, seed: int) -> str:
        return f"nothing to seed at import; det_nb.jax_key() = jax.random.key({seed})"
