"""PyTorch: the default CPU generator and, through it, every CUDA device."""

from __future__ import annotations

from det_nb import determinism, nondeterministic_ops, threads
from det_nb.determinism import WARN, Settings
from det_nb.sources.base import Source, State, check_arrays, digest
from det_nb.sources.python_random import degenerate_mt19937
from det_nb.status import Check

# torch's CPU state bytes: initial seed, left, seeded, next (24 bytes), then the 624
# Mersenne Twister words as native uint64, of which torch keeps the low 32 bits.
_MT_KEY_BYTES = slice(24, 24 + 624 * 8)


class Torch(Source):
    """``torch.manual_seed(s)``, which also seeds all CUDA devices.

    The state saved is the CPU generator's and, once CUDA has started, every device's
    (reading them before would start CUDA, and until then they are as seeded).
    """

    name = "torch"
    module = "torch"

    def __init__(self) -> None:
        self._settings: Settings | None = None  # the seeding whose run the raised ops stopped

    def configure(self, settings: Settings) -> None:
        if settings is not self._settings:  # a new seeding (not a re-seed): a new run
            self._settings = settings
            nondeterministic_ops.forget_raised()
        if settings.deterministic_ops == WARN:
            nondeterministic_ops.install()
        else:
            nondeterministic_ops.uninstall()
        threads.pin_torch(self.loaded(), settings.threads)
        determinism.set_torch_determinism(self.loaded(), settings.deterministic_ops)

    def checks(self, settings: Settings) -> list[Check]:
        torch = self.loaded()
        if torch is None:
            return []
        return [
            threads.torch_check(torch, settings.threads),
            determinism.torch_determinism_check(torch, nondeterministic_ops.ran(),
                                                nondeterministic_ops.raised(),
                                                nondeterministic_ops.counting()),
            determinism.cudnn_check(torch),
        ]

    def close(self) -> None:
        nondeterministic_ops.uninstall()

    def seed(self, seed: int) -> str:
        self.loaded().manual_seed(seed)
        return f"torch.manual_seed({seed}) (CPU and CUDA)"

    def fingerprint(self) -> str:
        return digest(self.loaded().get_rng_state().numpy().tobytes())

    def get_state(self) -> State:
        import numpy as np

        torch = self.loaded()
        state = {"cpu": torch.get_rng_state().numpy()}
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            state["cuda"] = np.stack([s.numpy() for s in torch.cuda.get_rng_state_all()])
        return state

    def check_state(self, state: State) -> None:
        import numpy as np

        torch = self.loaded()
        expected = {"cpu": torch.get_rng_state().numpy()}
        if "cuda" in state:
            devices = torch.cuda.device_count() if torch.cuda.is_available() else 0
            cuda = state["cuda"]
            if cuda.ndim != 2 or cuda.dtype != expected["cpu"].dtype or len(cuda) != devices:
                raise ValueError(
                    f"torch: the file holds CUDA states {cuda.dtype}{cuda.shape}, this torch "
                    f"has {devices} CUDA device(s)"
                )
            expected["cuda"] = cuda
        check_arrays(self.name, state, expected)
        try:  # torch checks the content too: try it on a scratch generator
            torch.Generator().set_state(torch.from_numpy(state["cpu"].copy()))
        except RuntimeError as error:
            raise ValueError(f"torch: bad CPU generator state: {error}") from None
        if degenerate_mt19937(state["cpu"][_MT_KEY_BYTES].view(np.uint64).astype(np.uint32)):
            raise ValueError(
                "torch: the CPU generator's Mersenne Twister key is all zeros, which draws only 0"
            )

    def set_state(self, state: State) -> str:
        torch = self.loaded()
        torch.set_rng_state(torch.from_numpy(state["cpu"].copy()))
        if "cuda" not in state:
            return "torch.set_rng_state (no CUDA states in the file: CUDA had not started)"
        torch.cuda.set_rng_state_all([torch.from_numpy(row.copy()) for row in state["cuda"]])
        return f"torch.set_rng_state and CUDA states of {len(state['cuda'])} device(s)"
