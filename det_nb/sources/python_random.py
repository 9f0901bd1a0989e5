"""Python's ``random`` module: the global Mersenne Twister."""

from __future__ import annotations

import random

from det_nb.sources.base import Source, digest


class PythonRandom(Source):
    """``random.seed(s)``; Keras also draws its default layer seeds from here."""

    name = "python random"
    module = "random"

    def seed(self, seed: int) -> str:
        random.seed(seed)
        return f"random.seed({seed})"

    def fingerprint(self) -> str:
        return digest(random.getstate())
