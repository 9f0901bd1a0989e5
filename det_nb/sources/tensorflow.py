"""TensorFlow: the global (op-level) seed and the global ``tf.random.Generator``."""

from __future__ import annotations

from det_nb import determinism
from det_nb.determinism import Settings
from det_nb.sources.base import Source, State, digest
from det_nb.status import Check


class TensorFlow(Source):
    """``tf.random.set_seed(s)`` plus a global Generator ``from_seed(s)``.

    With op determinism on, ``tf.random.get_global_generator()`` raises unless a global
    generator was set, so det_nb always sets one. Creating it starts TF's runtime, so
    the session pins threads before seeding.
    """

    name = "tensorflow"
    module = "tensorflow"
    fingerprint_covers = "global generator"  # op-level seed counters are not readable

    def configure(self, settings: Settings) -> None:
        tf = self.loaded()
        if settings.threads is not None:
            determinism.pin_tf_threads(tf, settings.threads)
        determinism.set_tf_op_determinism(tf, settings.deterministic_ops)

    def checks(self, settings: Settings) -> list[Check]:
        tf = self.loaded()
        if tf is None:
            threads = "left alone" if settings.threads is None else f"pinned to {settings.threads}"
            ops = "on" if settings.deterministic_ops else "off"
            return [Check(
                "tensorflow threads", "ok" if settings.threads else "off",
                f"pending: TensorFlow is not imported yet; threads {threads} and op "
                f"determinism {ops} at import, before its first op",
            )]
        return [
            determinism.tf_threads_check(tf, settings.threads),
            determinism.tf_op_determinism_check(),
        ]

    def seed(self, seed: int) -> str:
        tf = self.loaded()
        tf.random.set_seed(seed)
        tf.random.set_global_generator(tf.random.Generator.from_seed(seed))
        return f"tf.random.set_seed({seed}) and global Generator.from_seed({seed})"

    def fingerprint(self) -> str:
        return digest(self.loaded().random.get_global_generator().state.numpy().tobytes())

    def get_state(self) -> State:
        import numpy as np

        generator = self.loaded().random.get_global_generator()
        return {
            "state": generator.state.numpy(),
            "algorithm": np.array(generator.algorithm, dtype=np.int64),
        }

    def check_state(self, state: State) -> None:
        super().check_state(state)
        here = self.loaded().random.get_global_generator().algorithm
        if int(state["algorithm"]) != here:
            raise ValueError(
                f"tensorflow: the file's global Generator uses RNG algorithm "
                f"{int(state['algorithm'])}, this one uses {here}"
            )

    def set_state(self, state: State) -> str:
        # In place: a Generator object the user holds resumes too.
        self.loaded().random.get_global_generator().reset(state["state"])
        return "global Generator.reset (op-level seeds cannot be restored)"
