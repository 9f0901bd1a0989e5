"""Python's ``random`` module: the global Mersenne Twister."""

from __future__ import annotations

import math
import random
from typing import Any

from det_nb.sources.base import Source, State, digest

# random.getstate(): 624 words of Mersenne Twister state, then the index into them.
_MT_WORDS = 624


def degenerate_mt19937(key: Any) -> bool:
    """Whether a Mersenne Twister key is the all-zero state, from which it draws only zeros.

    MT19937 uses only the top bit of the first word, so that bit and the other 623 words
    being zero is the one state it never leaves (seeding never makes it).
    """
    return not (int(key[0]) & 0x80000000 or key[1:].any())


class PythonRandom(Source):
    """``random.seed(s)``; Keras also draws its default layer seeds from here."""

    name = "python random"
    module = "random"

    def seed(self, seed: int) -> str:
        random.seed(seed)
        return f"random.seed({seed})"

    def fingerprint(self) -> str:
        return digest(random.getstate())

    def get_state(self) -> State:
        import numpy as np

        _, words, gauss_next = random.getstate()
        return {
            "mt": np.array(words, dtype=np.uint32),
            # NaN stands for None: no Gaussian cached (a cached one is never NaN).
            "gauss_next": np.array(math.nan if gauss_next is None else gauss_next),
        }

    def check_state(self, state: State) -> None:
        super().check_state(state)  # 625 uint32 words: each below 2**32 by its dtype
        words = state["mt"]
        if int(words[-1]) > _MT_WORDS:
            raise ValueError(f"python random: index {int(words[-1])} is past {_MT_WORDS}")
        if degenerate_mt19937(words[:_MT_WORDS]):
            raise ValueError(
                "python random: the Mersenne Twister key is all zeros, which draws only 0.0"
            )
        gauss_next = float(state["gauss_next"])
        if math.isinf(gauss_next):
            raise ValueError(f"python random: cached Gaussian {gauss_next} is not finite")

    def set_state(self, state: State) -> str:
        gauss_next = float(state["gauss_next"])
        random.setstate((3, tuple(int(w) for w in state["mt"]),
                         None if math.isnan(gauss_next) else gauss_next))
        return "random.setstate"
