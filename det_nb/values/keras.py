"""Keras 3 (any backend): variables, layers and models by their weights, optimizers and
metrics by their variables (the iteration count included), seed generators by state."""

from __future__ import annotations

from types import ModuleType
from typing import Any

from det_nb.values.base import Family, View, count, find, parts, state
from det_nb.values.numpy import array_view


class Keras(Family):
    """``keras.Variable``, ``keras.Optimizer``, ``keras.metrics.Metric``,
    ``keras.random.SeedGenerator``, ``keras.layers.Layer`` (models included)."""

    name = "keras"
    module = "keras"

    def view(self, value: object, module: ModuleType | None) -> View | None:
        keras: Any = module
        kind = type(value).__name__
        if isinstance(value, find(keras, "Variable")):
            return _variable_view(value)
        if isinstance(value, find(keras, "optimizers.Optimizer")):
            variables = list(value.variables)  # iterations, learning rate, slots
            # Without its name, which Keras numbers per session ("adam_1"), like layers'.
            config = {k: v for k, v in value.get_config().items() if k != "name"}
            named = {"variables": variables, "config": config}
            steps = int(value.iterations.numpy())
            return parts(kind, named, f"{kind} (keras optimizer, "
                                      f"{count(len(variables), 'variable')}, "
                                      f"{count(steps, 'iteration')})")
        if isinstance(value, find(keras, "metrics.Metric")):
            variables = list(value.variables)
            return parts(kind, {"variables": variables},
                         f"{kind} (keras metric, {count(len(variables), 'variable')})")
        if isinstance(value, find(keras, "random.SeedGenerator")):
            return state(kind, {"state": value.state})
        if isinstance(value, find(keras, "layers.Layer")):
            # By position, not by path: Keras numbers layer names per session ("dense_3"),
            # so the same model built twice has different paths but must compare equal.
            weights = list(value.weights)
            return parts(kind, {"weights": weights}, f"{kind} ({count(len(weights), 'weight')})")
        return None


def _variable_view(variable: Any) -> View:
    import numpy as np  # Keras has loaded it

    kind = "keras.Variable"
    try:
        array = np.asarray(variable.numpy())
    except Exception as exc:  # symbolic (unbuilt) variables have no value to hash
        return View("bad", kind, f"its value cannot be read ({type(exc).__name__})", kind)
    return array_view(array, kind, getattr(variable.dtype, "name", None) or str(variable.dtype))
