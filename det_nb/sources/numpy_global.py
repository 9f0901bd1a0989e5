"""NumPy's legacy global RandomState (``np.random.*`` functions)."""

from __future__ import annotations

import math

from det_nb.sources.base import Source, State, digest
from det_nb.sources.python_random import degenerate_mt19937

# The legacy MT19937 state: 624 words and a position in [0, 624].
_MT_WORDS = 624


class NumpyGlobal(Source):
    """``np.random.seed(s)``. ``np.random.default_rng()`` ignores it: use ``det_nb.rng()``."""

    name = "numpy"
    module = "numpy"

    def seed(self, seed: int) -> str:
        self.loaded().random.seed(seed)
        return f"np.random.seed({seed})"

    def fingerprint(self) -> str:
        _, keys, pos, has_gauss, cached = self.loaded().random.get_state()
        return digest(keys.tobytes(), pos, has_gauss, cached)

    def get_state(self) -> State:
        np = self.loaded()
        _, keys, pos, has_gauss, cached = np.random.get_state()
        return {
            "keys": keys,
            "pos": np.array(pos, dtype=np.int64),
            "has_gauss": np.array(has_gauss, dtype=np.int64),
            "cached_gaussian": np.array(cached, dtype=np.float64),
        }

    def check_state(self, state: State) -> None:
        super().check_state(state)
        # MT19937 reads keys[pos]: a position past the end would read out of bounds.
        if not 0 <= int(state["pos"]) <= _MT_WORDS:
            raise ValueError(f"numpy: position {int(state['pos'])} is not in [0, {_MT_WORDS}]")
        if int(state["has_gauss"]) not in (0, 1):
            raise ValueError(f"numpy: has_gauss is {int(state['has_gauss'])}, must be 0 or 1")
        if degenerate_mt19937(state["keys"]):
            raise ValueError("numpy: the Mersenne Twister key is all zeros, which draws only 0")
        if not math.isfinite(float(state["cached_gaussian"])):
            raise ValueError(
                f"numpy: cached Gaussian {float(state['cached_gaussian'])} is not finite"
            )

    def set_state(self, state: State) -> str:
        self.loaded().random.set_state((
            "MT19937", state["keys"], int(state["pos"]), int(state["has_gauss"]),
            float(state["cached_gaussian"]),
        ))
        return "np.random.set_state"
