"""Keras 3 (any backend): variables, layers and models by their weights and the plain
data and tensors in their own attributes, optimizers and metrics by their variables (the
iteration count included), seed generators by state."""

from __future__ import annotations

import functools
import sys
from types import ModuleType
from typing import Any

from det_nb.values.base import Family, Reduced, View, count, find, parts, state
from det_nb.values.numpy import array_view

_PLAIN = (type(None), bool, int, float, complex, str, bytes)
# Public attributes that Keras's own layers fill with Keras's bookkeeping: a functional
# model's output and input names are its layers' session-numbered names ("dense_3").
_KERAS_BOOKKEEPING = frozenset({"output_names", "input_names"})
# Nesting beyond which a container attribute is not looked into (fingerprints' bound).
_MAX_DEPTH = 100


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
            named: dict[str, object] = {"weights": weights}
            attributes = _layer_attributes(keras, value)
            if attributes:
                named["attributes"] = attributes
            return parts(kind, named, f"{kind} ({count(len(weights), 'weight')})")
        return None


def _layer_attributes(keras: Any, layer: Any) -> dict[int, Reduced]:
    """The plain data, tensors and seed generators in the public attributes of ``layer``
    and of every layer in it, by the layer's position (0: ``layer`` itself; Keras numbers
    names per session): ``units``, ``rate``, a ``LayerNormalization``'s ``axis`` list, a
    ``Dropout``'s ``seed_generator``, a ``self.proj`` tensor, ``self.scale =
    np.float32(...)`` or a ``self.history = [...]`` list of numbers of the user's own.

    Only these: Keras's private attributes hold its bookkeeping (graph nodes with
    session-numbered names), as do a functional model's ``output_names``; other objects
    (initializers, a fitted model's ``history`` callback, compiled functions, lists and
    dicts holding any of these) mix the user's values with Keras's own.
    """
    try:
        layers = list(layer._flatten_layers(include_self=True, recursive=True))
    except AttributeError:  # a Keras without it: the layer alone
        layers = [layer]
    bare = _bare_layer_attributes(keras)
    found: dict[int, Reduced] = {}
    for position, each in enumerate(layers):
        named = {name: part for name, part in sorted(vars(each).items())
                 if not name.startswith("_") and name not in bare
                 and name not in _KERAS_BOOKKEEPING and _plain_or_tensor(keras, part)}
        if named:
            kind = type(each).__name__
            found[position] = Reduced(parts(kind, named,
                                            f"{kind} ({count(len(named), 'attribute')})"))
    return found


@functools.cache
def _bare_layer_attributes(keras: Any) -> frozenset[str]:
    """What every Keras layer holds for Keras (its session-numbered ``name`` among them)."""
    return frozenset(vars(keras.layers.Layer(name="det_nb_bare_layer")))


def _plain_or_tensor(keras: Any, part: object, depth: int = 0) -> bool:
    """A plain scalar, a NumPy scalar, a tensor or array (not a variable: those are the
    layer's weights), a seed generator (a ``Dropout``'s, whose state decides its next
    masks and is not among the weights), or a list, tuple or dict (Keras's tracked ones
    included) made of these alone (a list that holds itself, or nests deeper than the
    fingerprint's bound, is not)."""
    if isinstance(part, _PLAIN + find(keras, "random.SeedGenerator")):
        return True
    if isinstance(part, list | tuple | dict) and depth >= _MAX_DEPTH:
        return False
    if isinstance(part, list | tuple):
        return all(_plain_or_tensor(keras, item, depth + 1) for item in part)
    if isinstance(part, dict):
        return all(isinstance(key, _PLAIN) and _plain_or_tensor(keras, item, depth + 1)
                   for key, item in part.items())
    if isinstance(part, find(keras, "Variable")):
        return False
    np = sys.modules.get("numpy")
    if np is not None and isinstance(part, np.ndarray | np.generic):
        return True
    try:
        return bool(keras.ops.is_tensor(part))
    except Exception:  # a backend that cannot tell
        return False


def _variable_view(variable: Any) -> View:
    import numpy as np  # Keras has loaded it

    kind = "keras.Variable"
    try:
        array = np.asarray(variable.numpy())
    except Exception as exc:  # symbolic (unbuilt) variables have no value to hash
        return View("bad", kind, f"its value cannot be read ({type(exc).__name__})", kind)
    return array_view(array, kind, getattr(variable.dtype, "name", None) or str(variable.dtype))
