"""Keras 3: its global seed and the default seeds of layers built after seeding."""

from __future__ import annotations

import gc
import weakref
from typing import Any

from det_nb.sources.base import Source, State


class Keras(Source):
    """``keras.utils.set_random_seed(s)`` (which also seeds random, NumPy and TF with s).

    A layer's SeedGenerator takes its state when the layer is built, so layers built
    before seeding keep their earlier state. To count them cheaply, the source wraps
    ``keras.random.SeedGenerator.__init__`` (with wrapt) and notes at which seeding each
    generator was born; generators alive before that are found once, by a heap scan.
    The state saved and restored is the global SeedGenerator's, which ``keras.random``
    functions called without a seed draw from; layers' generators are not global.
    """

    name = "keras"
    module = "keras"

    def __init__(self) -> None:
        self._seedings = 0
        self._births: weakref.WeakKeyDictionary[Any, int] = weakref.WeakKeyDictionary()
        self._watched: Any = None  # the SeedGenerator class whose __init__ is wrapped
        self._wrapper: Any = None  # this source's wrapper of it

    def seed(self, seed: int) -> str:
        self._watch()
        self._seedings += 1
        # It re-seeds Python random and NumPy with the same seed too: the session seeds
        # those first, and restores them after a Keras imported later (import_guard).
        self.loaded().utils.set_random_seed(seed)
        return f"keras.utils.set_random_seed({seed})"

    def early_generators(self) -> int:
        """Live unseeded-at-build generators (random layers) born before the latest seeding."""
        return sum(
            1 for generator, born in list(self._births.items())
            if born < self._seedings and getattr(generator, "_initial_seed", None) is None
        )

    def close(self) -> None:
        """Unwrap ``SeedGenerator.__init__`` (for unload), if the wrapper there is ours."""
        if self._watched is not None and self._watched.__dict__.get("__init__") is self._wrapper:
            self._watched.__init__ = self._wrapper.__wrapped__
        self._watched = self._wrapper = None

    def _watch(self) -> None:
        if self._watched is not None:
            return
        import wrapt  # only once Keras is in use: it costs %load_ext 20 ms

        seed_generator = self.loaded().random.SeedGenerator
        # type(), not isinstance(): isinstance reads __class__, which some proxies warn on.
        for obj in gc.get_objects():
            if issubclass(type(obj), seed_generator):
                self._births[obj] = 0
        self._wrapper = wrapt.wrap_function_wrapper(seed_generator, "__init__", self._note_birth)
        self._watched = seed_generator

    def _note_birth(self, wrapped: Any, instance: Any, args: tuple, kwargs: dict) -> None:
        wrapped(*args, **kwargs)
        self._births[instance] = self._seedings

    def get_state(self) -> State:
        """``{"global": [seed, counter]}``, or ``{}`` while no global SeedGenerator exists."""
        generator = _global_generator()
        if generator is None:
            return {}
        return {"global": generator.state.numpy()}

    def check_state(self, state: State) -> None:
        if set(state) - {"global"}:
            raise ValueError(f"keras: unknown arrays {sorted(set(state) - {'global'})}")
        value = state.get("global")
        if value is None:
            return
        if value.shape != (2,) or value.dtype.kind not in "iu":
            raise ValueError(
                f"keras: the global SeedGenerator state is {value.dtype}{value.shape}, "
                "keras needs 2 integers"
            )
        import numpy as np

        dtype = np.dtype(_state_dtype())
        low, high = np.iinfo(dtype).min, np.iinfo(dtype).max
        outside = [int(v) for v in value if not low <= int(v) <= high]
        if outside:
            raise ValueError(
                f"keras: the global SeedGenerator state holds {outside[0]}, outside "
                f"[{low}, {high}] of the {dtype} it is kept in here"
            )

    def set_state(self, state: State) -> str:
        if "global" not in state:
            # As when it was saved: none yet, so the next unseeded keras.random call makes
            # one from Python random (restored too).
            _set_global_generator(None)
            return "no global SeedGenerator yet, as when saved"
        generator = _global_generator()
        if generator is None:
            # An explicit seed, so making it draws nothing from Python random.
            generator = self.loaded().random.SeedGenerator(int(state["global"][0]))
            _set_global_generator(generator)
        # check_state keeps every value in range of this dtype: the cast changes none.
        generator.state.assign(state["global"].astype(generator.state.dtype))
        return "global SeedGenerator state assigned"


def _state_dtype() -> str:
    """The dtype of the global SeedGenerator's state: the existing one's, else the backend's."""
    generator = _global_generator()
    if generator is not None:
        return str(generator.state.dtype)  # Keras names dtypes as strings
    from keras.src import backend

    return backend.random_seed_dtype()


# Keras keeps its global SeedGenerator (used by keras.random calls given no seed) in a
# private registry; set_random_seed clears it and the next such call makes a new one.
def _global_generator() -> object | None:
    from keras.src.backend.common import global_state
    from keras.src.random.seed_generator import GLOBAL_SEED_GENERATOR

    return global_state.get_global_attribute(GLOBAL_SEED_GENERATOR)


def _set_global_generator(generator: object | None) -> None:
    from keras.src.backend.common import global_state
    from keras.src.random.seed_generator import GLOBAL_SEED_GENERATOR

    global_state.set_global_attribute(GLOBAL_SEED_GENERATOR, generator)
