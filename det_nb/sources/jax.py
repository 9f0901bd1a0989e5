"""JAX: no global PRNG state; det_nb hands out a key derived from the trial seed.

Deterministic ops give XLA its GPU determinism flag before JAX's backend starts
(:mod:`det_nb.xla`): the session sets it with the CPU pins, before JAX loads, and this
source again when JAX is imported (XLA_FLAGS may have been set again in between).
"""

from __future__ import annotations

from det_nb import xla
from det_nb.determinism import Settings
from det_nb.sources.base import Source
from det_nb.status import Check


class Jax(Source):
    """Nothing to seed: ``det_nb.jax_key()`` returns ``jax.random.key(trial_seed)``."""

    name = "jax"
    module = "jax"

    def configure(self, settings: Settings) -> None:
        xla.apply(bool(settings.deterministic_ops))

    def checks(self, settings: Settings) -> list[Check]:
        if self.loaded() is None:
            return []
        return [xla.check(settings.deterministic_ops, xla.observe())]

    def seed(self, seed: int) -> str:
        return f"no global state; det_nb.jax_key() = jax.random.key({seed})"

    def pending(self, seed: int) -> str:
        return f"nothing to seed at import; det_nb.jax_key() = jax.random.key({seed})"
