"""JAX: arrays on any device (gathered to the host) and typed PRNG keys by their key data.

Pytrees need nothing of their own: flax and optax states are dicts, lists, tuples, named
tuples, dataclasses and mappings, which the Python families walk.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

from det_nb.values.base import Family, View, find, state
from det_nb.values.numpy import array_view


class Jax(Family):
    """``jax.Array`` (committed to any device, sharded or not) and typed PRNG keys."""

    name = "jax"
    module = "jax"

    def view(self, value: object, module: ModuleType | None) -> View | None:
        jax: Any = module
        if not isinstance(value, find(jax, "Array")):
            return None
        import numpy as np  # JAX has loaded it

        shape = tuple(value.shape)
        key_dtype = getattr(jax.dtypes, "prng_key", None)  # typed keys: JAX 0.4.16 and later
        if key_dtype is not None and jax.dtypes.issubdtype(value.dtype, key_dtype):
            impl = str(jax.random.key_impl(value))
            data = np.asarray(jax.random.key_data(value))
            return state("jax PRNG key", {"impl": impl, "key_data": data},
                         f"jax PRNG key {impl} {shape}")
        try:
            array = np.asarray(value)  # the host copy (shared on the CPU)
        except Exception as exc:  # tracers, deleted (donated) arrays, other hosts' shards
            return View("bad", "jax.Array", f"its value cannot be read ({type(exc).__name__})",
                        "jax.Array")
        return array_view(array, "jax.Array", value.dtype.name)
