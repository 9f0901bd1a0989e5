"""TensorFlow: tensors and variables, ragged and sparse tensors by their components,
``tf.random.Generator`` by its state and algorithm, ``tf.Module`` by its variables and its
own attributes."""

from __future__ import annotations

import functools
from types import ModuleType
from typing import Any

from det_nb.values.base import Family, View, bad, count, find, parts, state
from det_nb.values.numpy import array_view
from det_nb.values.objects import instance_attributes


class TensorFlow(Family):
    """``tf.Tensor``, ``tf.Variable``, ``tf.RaggedTensor``, ``tf.SparseTensor``,
    ``tf.IndexedSlices``, ``tf.random.Generator``, ``tf.Module``."""

    name = "tensorflow"
    module = "tensorflow"

    def view(self, value: object, module: ModuleType | None) -> View | None:
        tf: Any = module
        # Before tf.is_tensor, which is true of these composite tensors too.
        if isinstance(value, find(tf, "RaggedTensor")):
            splits = list(value.nested_row_splits)
            named = {"flat_values": value.flat_values, "nested_row_splits": splits}
            return parts("tf.RaggedTensor", named, _summary("tf.RaggedTensor", value))
        if isinstance(value, find(tf, "SparseTensor")):
            named = {"indices": value.indices, "values": value.values,
                     "dense_shape": value.dense_shape}
            return parts("tf.SparseTensor", named, _summary("tf.SparseTensor", value))
        if isinstance(value, find(tf, "IndexedSlices")):
            named = {"indices": value.indices, "values": value.values,
                     "dense_shape": value.dense_shape}
            return parts("tf.IndexedSlices", named, _summary("tf.IndexedSlices", value))
        if isinstance(value, find(tf, "random.Generator")):
            named = {"state": value.state, "algorithm": int(value.algorithm)}
            return state("tf.random.Generator", named)
        if isinstance(value, find(tf, "Variable")):
            return _tensor_view(value, "tf.Variable", lambda: value.numpy())
        if _is_tensor(tf, value):
            # EagerTensor.__array__ shares the tensor's memory (tensors are immutable).
            return _tensor_view(value, "tf.Tensor", lambda: value)
        if isinstance(value, find(tf, "data.Dataset")):
            return bad(value, "a tf.data.Dataset is a pipeline, not values: compare what it "
                              "yields")
        if isinstance(value, find(tf, "Module")):
            kind = type(value).__name__
            variables = list(value.variables)
            named: dict[str, object] = {"variables": variables}
            attributes = _module_attributes(tf, value)
            if attributes:
                named["attributes"] = attributes
            return parts(kind, named, f"{kind} (tf.Module, {count(len(variables), 'variable')})")
        return None


def _module_attributes(tf: Any, module: Any) -> dict[str, object]:
    """The attributes of a ``tf.Module`` that are the user's (``self.proj = tf.constant(...)``,
    ``self.temperature``, submodules, each by its own view): those a bare ``tf.Module()``
    lacks, less TensorFlow's tracking (``_self_...``) and the private attributes of a class
    TensorFlow defines."""
    bare = _bare_module_attributes(tf)
    private_is_tf = any(base.__module__.partition(".")[0] == "tensorflow"
                        for base in type(module).__mro__
                        if base is not tf.Module and issubclass(base, tf.Module))
    return {name: part for name, part in instance_attributes(module).items()
            if name not in bare and not name.startswith("_self_")
            and not (private_is_tf and name.startswith("_"))}


@functools.cache
def _bare_module_attributes(tf: Any) -> frozenset[str]:
    """What every ``tf.Module`` holds for TensorFlow (its name and name scope)."""
    return frozenset(vars(tf.Module(name="det_nb_bare_module")))


def _is_tensor(tf: Any, value: object) -> bool:
    """``tf.is_tensor``, which reads attributes: a ``__getattr__`` that raises means no."""
    try:
        return bool(tf.is_tensor(value))
    except Exception:
        return False


def _tensor_view(value: Any, kind: str, to_array: Any) -> View:
    import numpy as np  # TensorFlow has loaded it

    try:
        array = np.asarray(to_array())
    except Exception as exc:  # symbolic tensors and the like have no value to hash
        return View("bad", kind, f"its value cannot be read ({type(exc).__name__})", kind)
    # The framework's own dtype name: "string" for a TF string tensor, not "object".
    return array_view(array, kind, getattr(value.dtype, "name", None))


def _summary(kind: str, value: Any) -> str:
    shape = tuple(value.shape.as_list()) if value.shape.rank is not None else "(unknown)"
    return f"{kind} {value.dtype.name} {shape}"
