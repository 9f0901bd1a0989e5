"""Keras 3: its global seed and the default seeds of layers built after seeding."""

from __future__ import annotations

import gc
import random
import sys

from det_nb.sources.base import Source


class Keras(Source):
    """``keras.utils.set_random_seed(s)`` (which also seeds random, NumPy and TF with s).

    A layer's SeedGenerator takes its state when the layer is built, so layers built
    before seeding stay unseeded: :meth:`generators` lets the session count them.
    """

    name = "keras"
    module = "keras"

    def seed(self, seed: int) -> str:
        # set_random_seed also re-seeds Python random and NumPy. Keep their streams where
        # they are, so a Keras imported after seeding does not restart draws already made
        # (at %det_seed they were just seeded with the same seed, so nothing changes).
        numpy = sys.modules["numpy"]  # Keras imports NumPy
        python_state, numpy_state = random.getstate(), numpy.random.get_state()
        self.loaded().utils.set_random_seed(seed)
        random.setstate(python_state)
        numpy.random.set_state(numpy_state)
        return f"keras.utils.set_random_seed({seed})"

    def generators(self) -> list[object]:
        """Every live Keras SeedGenerator (one per random layer, plus the global one)."""
        seed_generator = self.loaded().random.SeedGenerator
        return [obj for obj in gc.get_objects() if isinstance(obj, seed_generator)]
