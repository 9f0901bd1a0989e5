"""NumPy's legacy global RandomState (``np.random.*`` functions)."""

from __future__ import annotations

from det_nb.sources.base import Source, digest


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
