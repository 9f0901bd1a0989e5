"""PyTorch: the default CPU generator and, through it, every CUDA device."""

from __future__ import annotations

from det_nb import determinism
from det_nb.determinism import Settings
from det_nb.sources.base import Source, digest
from det_nb.status import Check


class Torch(Source):
    """``torch.manual_seed(s)``, which also seeds all CUDA devices."""

    name = "torch"
    module = "torch"

    def configure(self, settings: Settings) -> None:
        determinism.set_torch_determinism(self.loaded(), settings.deterministic_ops)

    def checks(self, settings: Settings) -> list[Check]:
        torch = self.loaded()
        return [] if torch is None else [determinism.torch_determinism_check(torch)]

    def seed(self, seed: int) -> str:
        self.loaded().manual_seed(seed)
        return f"torch.manual_seed({seed}) (CPU and CUDA)"

    def fingerprint(self) -> str:
        return digest(self.loaded().get_rng_state().numpy().tobytes())
