"""NumPy: arrays (masked ones with their mask and fill value, subclasses with their own
attributes), scalars, generators by their state.

Also the shared reduction of any framework's array data (:func:`array_view`), which keeps a
view whose elements far outnumber the memory they span (``np.broadcast_to(x, (10**13,))``,
a torch ``expand``) from being walked element by element.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

from det_nb.values.base import Family, Reduced, View, bad, count, parts, scalar, state
from det_nb.values.objects import subclass_attributes

#: A view is reduced to the memory it spans when its elements take more than this many
#: bytes and more than twice that memory (below it, hashing every element is cheap).
VIEW_MIN_BYTES = 4 << 20


class Numpy(Family):
    """``ndarray`` (and subclasses), ``MaskedArray``, NumPy scalars, ``Generator``/
    ``BitGenerator``/``RandomState``/``SeedSequence`` by their state, dtypes and ufuncs by
    name."""

    name = "numpy"
    module = "numpy"

    def view(self, value: object, module: ModuleType | None) -> View | None:
        np: Any = module
        if isinstance(value, np.ndarray):
            if isinstance(value, np.ma.MaskedArray):
                # The fill value is what filled() and every NumPy function given the
                # array's data put where it is masked.
                named = {"data": np.asarray(value.data), "mask": np.ma.getmaskarray(value),
                         "fill_value": value.fill_value}
                return parts("MaskedArray", named, _summary("MaskedArray", value))
            if value.dtype.hasobject and value.dtype.fields is not None:
                return bad(value, "structured arrays with object fields are not supported")
            return _with_attributes(value, array_view(value, "ndarray"))
        if isinstance(value, np.generic):
            return View("array", "numpy scalar", np.asarray(value), f"numpy {value.dtype.name}")
        if isinstance(value, np.random.Generator):
            return state("Generator", {"bit_generator.state": value.bit_generator.state})
        if isinstance(value, np.random.BitGenerator):
            return state(type(value).__name__, {"state": value.state})
        if isinstance(value, np.random.RandomState):
            return state("RandomState", {"get_state()": value.get_state(legacy=False)})
        if isinstance(value, np.random.SeedSequence):
            return state("SeedSequence", {"entropy": value.entropy, "spawn_key": value.spawn_key,
                                          "pool_size": value.pool_size,
                                          "n_children_spawned": value.n_children_spawned})
        if isinstance(value, np.dtype):
            return scalar("numpy dtype", str(value.descr if value.fields else value.str),
                          f"numpy dtype {value}")
        if isinstance(value, np.ufunc):
            return scalar("ufunc", f"numpy.{value.__name__}", f"ufunc numpy.{value.__name__}")
        return None


def _with_attributes(array: Any, view: View) -> View:
    """An instance of a user's ndarray subclass by its elements and its own attributes
    (``t = x.view(Tagged); t.meta = ...``). NumPy's own subclasses keep only bookkeeping
    there (``matrix``'s indexing flag, ``memmap``'s file), so they are compared by elements."""
    kind = type(array)
    attributes = subclass_attributes(array)
    if not attributes:
        return view
    named = {"contents": Reduced(view), "attributes": attributes}
    return parts(kind.__name__, named, f"{kind.__name__} ({view.summary}, "
                                       f"{count(len(attributes), 'attribute')})")


def array_view(array: Any, kind: str, dtype_name: str | None = None) -> View:
    """The view of ``array`` (an ndarray holding a value's data) as a value of ``kind``.

    ``dtype_name`` is the framework's own dtype where it differs from the array's (a
    bfloat16 tensor widened exactly to float32). A view whose elements take more than
    :data:`VIEW_MIN_BYTES` and more than twice the memory they span (stride 0, overlapping
    strides) is reduced to that memory with its dtype, shape, strides and offset: hashing,
    copying and comparing it then cost that memory, not its logical size, and it equals
    only the same view of equal memory (not a materialised copy of it).
    """
    dtype = dtype_name or array.dtype.name
    summary = f"{kind} {dtype} {tuple(array.shape)}"
    if array.dtype.fields is not None:
        array = _without_padding(array)
    span = _memory_span(array)
    if span is None:
        return View("array", kind, array, summary)
    first, size = span
    buffer = _spanned_memory(array, size)
    if buffer is None:
        return bad(array, "an overlapping view of Python objects at unaligned strides")
    named = {"dtype": dtype, "shape": tuple(array.shape), "strides": tuple(array.strides),
             "offset": first, "memory": buffer}
    return parts(f"{kind} view", named,
                 f"{summary}, a view of {buffer.nbytes} bytes of memory")


def _without_padding(array: Any) -> Any:
    """A structured array with its fields packed: the padding bytes between or after fields
    hold whatever memory held before (a scikit-learn tree's nodes), so equal records would
    hash differently. Copies only where there is padding."""
    from numpy.lib import recfunctions  # part of NumPy, which is loaded

    packed = recfunctions.repack_fields(array.dtype)
    return array if packed.itemsize == array.dtype.itemsize else array.astype(packed)


def _summary(kind: str, array: Any) -> str:
    return f"{kind} {array.dtype.name} {tuple(array.shape)}"


def _memory_span(array: Any) -> tuple[int, int] | None:
    """(offset of the first element, bytes spanned) for a view whose elements far exceed the
    memory it spans; None for any other array (hashed element by element)."""
    nbytes = array.size * array.itemsize  # logical; array.nbytes is the same
    if array.ndim == 0 or nbytes <= VIEW_MIN_BYTES:
        return None
    low = sum(s * (n - 1) for s, n in zip(array.strides, array.shape, strict=True) if s < 0)
    high = sum(s * (n - 1) for s, n in zip(array.strides, array.shape, strict=True) if s > 0)
    size = high - low + array.itemsize
    return (-low, size) if nbytes > 2 * size else None


def _spanned_memory(array: Any, size: int) -> Any:
    """A 1-d read-only array over the ``size`` bytes the view spans: of its dtype where its
    strides are whole elements, else of bytes; None for objects at unaligned strides."""
    import numpy as np  # loaded: an array was met

    corner = tuple(n - 1 if s < 0 else 0
                   for s, n in zip(array.strides, array.shape, strict=True))
    lowest = array[tuple(slice(i, i + 1) for i in corner)].reshape(-1)  # one element, a view
    item = array.itemsize
    if all(s % item == 0 for s in array.strides) and size % item == 0:
        return np.lib.stride_tricks.as_strided(lowest, (size // item,), (item,),
                                               writeable=False)
    if array.dtype.hasobject:
        return None
    raw = lowest.view(np.uint8)
    return np.lib.stride_tricks.as_strided(raw, (size,), (1,), writeable=False)
