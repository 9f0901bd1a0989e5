"""TensorFlow: the global (op-level) seed and the global ``tf.random.Generator``."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from types import ModuleType
from typing import Any

from det_nb import determinism, threads
from det_nb.determinism import Settings
from det_nb.sources.base import Source, State, digest
from det_nb.status import Check


class TensorFlow(Source):
    """``tf.random.set_seed(s)`` plus a global Generator ``from_seed(s)``, made on first use.

    Making a Generator starts TF's runtime, after which virtual devices, visible devices
    and memory growth can no longer be set: the first lines of many notebooks. So seeding
    sets only the op seed (and threads and op determinism, which do not start the runtime
    either) and keeps the state the global generator is to start from. Until that
    generator exists, ``tf.random.get_global_generator`` (under each of its names) is
    wrapped to make it from that state on its first call; TF's own would make one from
    OS entropy, or raise with op determinism on.
    """

    name = "tensorflow"
    module = "tensorflow"
    fingerprint_covers = "global generator"  # op-level seed counters are not readable

    def __init__(self) -> None:
        # Philox state for the global generator not made yet (None: made, or not ours).
        self._pending: Any = None
        self._original: Callable[[], Any] | None = None  # TF's get_global_generator
        self._wrapper: Callable[[], Any] | None = None  # ours, in its place
        self._closed = False  # unloaded: ours goes once it has made the pending generator

    def configure(self, settings: Settings) -> None:
        tf = self.loaded()
        if settings.threads is not None:
            threads.pin_tf_threads(tf, settings.threads)
        determinism.set_tf_op_determinism(tf, settings.deterministic_ops)

    def checks(self, settings: Settings) -> list[Check]:
        tf = self.loaded()
        if tf is None:
            pools = "left alone" if settings.threads is None else f"pinned to {settings.threads}"
            ops = "on" if settings.deterministic_ops else "off"
            return [Check(
                "tensorflow threads", "ok" if settings.threads else "off",
                f"pending: TensorFlow is not imported yet; threads {pools} and op "
                f"determinism {ops} at import, before its first op",
            )]
        return [
            threads.tf_threads_check(tf, settings.threads),
            determinism.tf_op_determinism_check(),
        ]

    def seed(self, seed: int) -> str:
        import numpy as np

        tf = self.loaded()
        tf.random.set_seed(seed)
        random_ops = _random_ops()
        # What Generator.from_seed(seed) starts from: the seed in the first 64-bit word.
        state = np.zeros(random_ops._get_state_size(_philox()), dtype=np.int64)
        state[0] = seed
        random_ops.global_generator = None
        self._pending, self._closed = state, False
        self._wrap(random_ops)
        return (f"tf.random.set_seed({seed}) and global Generator.from_seed({seed}), made on "
                "first use")

    def close(self) -> None:
        """Put TF's own ``get_global_generator`` back wherever ours stands.

        A generator still pending is part of a seeding already applied (it survives
        ``%reload_ext``, like every other source's seed): then ours stays until it has
        made it, rather than start TF's runtime now.
        """
        self._closed = True
        if self.loaded() is None:  # never imported: nothing of ours is in TensorFlow
            return
        if self._made() is None and self._pending is not None:
            return
        if self._wrapper is not None:
            _replace_everywhere(self._wrapper, self._original)
        self._original = self._wrapper = None

    def fingerprint(self) -> str | None:
        state = self._state()
        return None if state is None else digest(state["state"].tobytes())

    def get_state(self) -> State | None:
        """The global generator's state, read without making it (or None: there is none)."""
        return self._state()

    def check_state(self, state: State) -> None:
        super().check_state(state)
        here = int(self._state()["algorithm"])
        if int(state["algorithm"]) != here:
            raise ValueError(
                f"tensorflow: the file's global Generator uses RNG algorithm "
                f"{int(state['algorithm'])}, this one uses {here}"
            )

    def set_state(self, state: State) -> str:
        generator = self._made()
        if generator is None:
            self._pending = state["state"].copy()
            self._wrap(_random_ops())
            return ("global Generator state, made from it on first use (op-level seeds cannot "
                    "be restored)")
        # In place: a Generator object the user holds resumes too.
        generator.reset(state["state"])
        return "global Generator.reset (op-level seeds cannot be restored)"

    # -- the global generator, made on demand ---------------------------------------------

    def _made(self) -> Any:
        """The global generator, if one exists (ours or the user's); a pending one is dropped."""
        generator = _random_ops().global_generator
        if generator is not None:
            self._pending = None
        return generator

    def _state(self) -> State | None:
        import numpy as np

        generator = self._made()
        if generator is not None:
            return {"state": generator.state.numpy(),
                    "algorithm": np.array(generator.algorithm, dtype=np.int64)}
        if self._pending is not None:
            return {"state": self._pending.copy(), "algorithm": np.array(_philox(), np.int64)}
        return None

    def _make_pending(self) -> None:
        """Make the global generator from the pending state, if it is still wanted."""
        if self._made() is not None or self._pending is None:
            return
        from tensorflow.python.framework import ops

        state, self._pending = self._pending, None
        with ops.init_scope():  # eagerly, even when first asked for inside a tf.function
            generator = self.loaded().random.Generator.from_state(state, _philox())
        _random_ops().global_generator = generator

    def _wrap(self, random_ops: ModuleType) -> None:
        if self._wrapper is not None:
            return
        original = random_ops.get_global_generator

        @functools.wraps(original)
        def get_global_generator() -> Any:
            self._make_pending()
            if self._closed:
                self.close()
            return original()

        self._original, self._wrapper = original, get_global_generator
        _replace_everywhere(original, get_global_generator)


def _random_ops() -> ModuleType:
    from tensorflow.python.ops import stateful_random_ops

    return stateful_random_ops


def _philox() -> int:
    """The algorithm ``Generator.from_seed`` uses by default, as TF's integer."""
    from tensorflow.python.ops import random_ops_util

    return random_ops_util.convert_alg_to_int(_random_ops().DEFAULT_ALGORITHM)


def _replace_everywhere(old: object, new: object) -> None:
    """Rebind ``get_global_generator`` from ``old`` to ``new`` in every TensorFlow module.

    ``stateful_random_ops``, ``tf.random``, ``tf.random.experimental`` and the
    ``tf.compat`` namespaces each hold it; namespaces loaded later import it from
    ``stateful_random_ops``, so they get whichever is in place then.
    """
    for name, module in list(sys.modules.items()):
        if name.startswith("tensorflow") and isinstance(module, ModuleType):
            namespace = vars(module)
            if namespace.get("get_global_generator") is old:
                namespace["get_global_generator"] = new
