"""Fingerprints of notebook values, and what differs between two of them.

``%%det_check`` runs a cell several times and must tell whether what it produced is the
same each time. Comparing whole objects would mean keeping copies of every run's results,
so each value is reduced to a :class:`Fingerprint`: a 128-bit xxh3 hash of its type,
structure, dtype, shape and exact bits, plus a short summary for the report. Array buffers
are hashed in place (zero-copy when C-contiguous, in cache-sized C-order blocks when not),
so a fingerprint costs about one pass over memory and equal values hash equal whatever
their memory layout. Only when two fingerprints differ are the values themselves walked,
by :func:`describe_difference`, to say what differs and where.

Supported: None, bool, int, float, complex, str, bytes, bytearray; lists, tuples, dicts
and sets of supported values; NumPy arrays and scalars (masked arrays with their mask);
NumPy and Python random generators (by their state); TensorFlow tensors and variables,
Keras variables, Keras models and layers (by their weights) and torch tensors. Frameworks
are never imported here: they are recognised only if the user's code already imported
them. Anything else yields :class:`Unfingerprintable` with the reason, never a pass.

An object reached through many references is hashed once per call, so the cost is linear
in the number of objects, not of paths (``x = [x, x]`` forty times is 41 lists and 2**40
paths); a value that contains itself is refused. An exception from a value's own code (a
``__getattr__``, property or ``__len__`` that raises) makes it unfingerprintable, with
that exception as the reason, and is never raised to the caller.
"""

from __future__ import annotations

import functools
import random
import struct
import sys
import types
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

import xxhash

if TYPE_CHECKING:  # NumPy is imported only where a NumPy value is met (see is_code)
    import numpy as np

# Non-contiguous arrays are copied to C order this many bytes at a time (fits in cache).
_BLOCK_BYTES = 4 << 20
# Columns per tile when such a block is laid out transposed (see _copy_in_c_order).
_TILE_COLUMNS = 256
# Exactly these types (not subclasses such as numpy.float64) take the fast path.
_PLAIN_SCALARS = frozenset({type(None), bool, int, float, complex, str, bytes})
# Deeper nesting than this is reported as unfingerprintable rather than risking recursion.
_MAX_DEPTH = 100
# How a plain scalar child starts inline ("s", then its length-prefixed tag); a child fed
# by digest starts with "d", so the two cannot be confused.
_SCALAR_TAGS = {
    kind: b"s" + struct.pack("<Q", len(tag)) + tag
    for kind in _PLAIN_SCALARS
    for tag in [f"scalar:{kind.__name__}".encode()]
}


@dataclass(frozen=True)
class Fingerprint:
    """A value's identity for comparing runs: equal values give equal fingerprints."""

    digest: bytes  # xxh3_128 of type, structure, dtype, shape and bits
    summary: str  # e.g. "ndarray float64 (3, 4)", "dict (2 keys)"


@dataclass(frozen=True)
class Unfingerprintable:
    """A value that cannot be fingerprinted, and why (shown as "unchecked")."""

    summary: str  # the type name
    reason: str


@dataclass(frozen=True, eq=False)  # compare snapshots with describe_difference, not ==
class Snapshot:
    """An independent, materialised copy of a value, comparable like the value itself.

    Needed only for values changed in place between runs, whose earlier state would
    otherwise be lost before it can be compared.
    """

    view: _View


class _View(NamedTuple):
    """How a value is walked: one of the categories below, a type name, and its contents.

    category  payload
    array     an ndarray (the value's data, in its own memory where possible)
    scalar    an immutable Python value (None, bool, int, float, complex, str, bytes)
    seq       a sequence of children, addressed ``[i]``
    map       a mapping of children, addressed ``[key]``
    attrs     a mapping of children, addressed ``.name`` (parts of one object)
    state     like attrs, for a random generator's state: its parts are not shown
    set       an iterable of children, compared regardless of order
    bad       the reason the value is not supported
    """

    category: str
    kind: str
    payload: Any
    summary: str


class _Unsupported(Exception):
    """Raised inside a walk; ``path`` grows as it leaves nested containers."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(reason)
        self.path = path
        self.reason = reason


def fingerprint(value: object) -> Fingerprint | Unfingerprintable:
    """Hash ``value`` (see the module docstring for what is supported).

    Never raises: an exception from the value's own code (a ``__getattr__``, ``__len__``
    or property that raises) makes it :class:`Unfingerprintable`, with that exception.
    """
    view = _view_of(value)
    if view.category == "bad":
        return Unfingerprintable(view.kind, view.payload)
    try:
        digest = _Walk().digest(value, view)
    except _Unsupported as exc:
        where = f"at {exc.path}: " if exc.path else ""
        return Unfingerprintable(view.kind, f"{where}{exc.reason}")
    return Fingerprint(digest, view.summary)


def snapshot(value: object) -> Snapshot:
    """Copy ``value`` (arrays, tensors, weights, containers) so later changes don't reach it.

    Raises ValueError for a value that :func:`fingerprint` does not support, or whose own
    code raises while it is read. An object shared by several containers is copied once.
    """
    try:
        return _snapshot(value, 0, {})
    except ValueError:
        raise
    except Exception as exc:
        raise ValueError(f"cannot snapshot {type(value).__name__}: {_raised(exc)}") from None


def describe_difference(
    a: object, b: object, name: str = "value", labels: tuple[str, str] = ("run 1", "run 2")
) -> str | None:
    """Say where ``a`` and ``b`` first differ, or None if they are bit-for-bit equal.

    The answer starts with the path of the difference below ``name`` (``d['meta']['t']``)
    and gives type, dtype, shape or length, the first differing key or index, and for
    numbers the (maximum) absolute difference. ``labels`` name the two sides.
    """
    walk = _Walk()
    try:
        if _same(a, b, walk):
            return None
        found = _diff(a, b, name, labels, 0, walk)
    except Exception as exc:  # the values' own code raised while they were read
        return f"{name}: cannot be compared ({_raised(exc)})"
    return found or f"{name}: differs in a way no element shows (e.g. the type of a dict key)"


# Types whose instances are code, not results: functions, methods, classes, modules.
_CODE_TYPES = (
    types.FunctionType, types.BuiltinFunctionType, types.MethodType, types.ModuleType, type,
    types.MethodWrapperType, types.WrapperDescriptorType, types.MethodDescriptorType,
    types.ClassMethodDescriptorType, functools.partial, staticmethod, classmethod,
)


def is_code(value: object) -> bool:
    """Whether ``value`` is code rather than a result: a function, builtin, method, class or
    module, a NumPy ufunc, or a wrapper of one (``functools.wraps``, ``jax.jit``,
    ``tf.function``: anything callable with code as its ``__wrapped__``).

    ``%%det_check`` and the notebook runner neither compare such names nor list them as
    unchecked: a cell that defines a function has produced no value. Never raises, and
    never imports NumPy (an ufunc exists only once NumPy is loaded).
    """
    kind = type(value)  # not isinstance(): an object's own __class__ may raise
    if issubclass(kind, _CODE_TYPES):
        return True
    np = sys.modules.get("numpy")
    if np is not None and issubclass(kind, np.ufunc):
        return True
    if not callable(value):
        return False
    try:
        wrapped = getattr(value, "__wrapped__", None)
    except Exception:  # the object's own __getattr__ raised
        return False
    return wrapped is not None and wrapped is not value and issubclass(type(wrapped), _CODE_TYPES)


# -- classification --------------------------------------------------------------------


def _view_of(value: object) -> _View:
    """:func:`_classify`, with an exception from the value's own code as the reason it is bad."""
    try:
        return _classify(value)
    except Exception as exc:
        return _bad(value, _raised(exc))


def _raised(exc: BaseException) -> str:
    """One line naming an exception raised by a user's object (its text may raise too)."""
    try:
        text = str(exc).strip().splitlines()[0][:120] if str(exc).strip() else ""
    except Exception:
        text = ""
    return f"reading it raised {type(exc).__name__}" + (f": {text}" if text else "")


def _has_attribute(value: object, name: str) -> bool:
    """``hasattr``, False also where the object's ``__getattr__`` raises something else."""
    try:
        return hasattr(value, name)
    except Exception:
        return False


def _classify(value: object) -> _View:
    """Decide how to walk ``value``; frameworks are looked up only if already imported."""
    if type(value) in _PLAIN_SCALARS:  # fast path for the elements of big lists
        return _View("scalar", type(value).__name__, value, _scalar_summary(value))
    if isinstance(value, Snapshot):
        return value.view
    np = sys.modules.get("numpy")  # never imported here: a NumPy value means it is loaded
    if np is not None:
        found = _numpy_view(np, value)
        if found is not None:
            return found
    if isinstance(value, (type(None), bool, int, float, complex, str, bytes)):
        return _View("scalar", type(value).__name__, value, _scalar_summary(value))
    if isinstance(value, bytearray):
        return _View("scalar", "bytearray", bytes(value), f"bytearray (len {len(value)})")
    if isinstance(value, (list, tuple)):
        kind = type(value).__name__
        return _View("seq", kind, value, f"{kind} (len {len(value)})")
    if isinstance(value, dict):
        kind = type(value).__name__
        return _View("map", kind, value, f"{kind} ({len(value)} keys)")
    if isinstance(value, (set, frozenset)):
        kind = type(value).__name__
        return _View("set", kind, value, f"{kind} (len {len(value)})")
    rng_state = _rng_state(value)
    if rng_state is not None:
        kind = type(value).__name__
        return _View("state", kind, rng_state, f"{kind} (by its state)")
    return _framework_view(value)


def _numpy_view(np: Any, value: object) -> _View | None:
    """NumPy arrays, masked arrays and scalars, or None for anything else."""
    if isinstance(value, np.ma.MaskedArray):
        parts = {"data": np.asarray(value.data), "mask": np.ma.getmaskarray(value)}
        return _View("attrs", "MaskedArray", parts, _array_summary("MaskedArray", value))
    if isinstance(value, np.ndarray):
        if value.dtype.hasobject and value.dtype.fields is not None:
            return _bad(value, "structured arrays with object fields are not supported")
        return _View("array", "ndarray", value, _array_summary("ndarray", value))
    if isinstance(value, np.generic):
        return _View("array", "numpy scalar", np.asarray(value), f"numpy {value.dtype.name}")
    return None


def _framework_view(value: object) -> _View:
    """TensorFlow, Keras and torch values, recognised without importing the framework."""
    kind = type(value).__name__
    keras = sys.modules.get("keras")
    tf = sys.modules.get("tensorflow")
    torch = sys.modules.get("torch")
    if keras is not None or tf is not None or torch is not None:
        import numpy as np  # each of these frameworks has imported NumPy already
    if keras is not None and isinstance(value, getattr(keras, "Variable", ())):
        return _tensor_view(value, "keras.Variable", lambda: np.asarray(value.numpy()))
    if tf is not None and isinstance(value, getattr(tf, "Variable", ())):
        return _tensor_view(value, "tf.Variable", lambda: np.asarray(value.numpy()))
    if tf is not None and _is_tf_tensor(tf, value):
        # EagerTensor.__array__ shares the tensor's memory (tensors are immutable).
        return _tensor_view(value, "tf.Tensor", lambda: np.asarray(value))
    if torch is not None and isinstance(value, getattr(torch, "Tensor", ())):
        return _tensor_view(value, "torch.Tensor", lambda: _torch_array(value))
    if callable(getattr(type(value), "get_weights", None)):
        try:  # any other exception: the model's own code failed, and _view_of says so
            weights = list(value.weights)
        except AttributeError:
            weights = None
        if weights is not None:
            # By position, not by path: Keras numbers layer names per session ("dense_3"),
            # so the same model built twice has different paths but must compare equal.
            return _View("attrs", kind, {"weights": weights}, f"{kind} ({len(weights)} weights)")
    return _bad(value, _why_unsupported(value))


def _is_tf_tensor(tf: Any, value: object) -> bool:
    """``tf.is_tensor``, which reads attributes: a ``__getattr__`` that raises means no."""
    try:
        return bool(getattr(tf, "is_tensor", lambda _: False)(value))
    except Exception:
        return False


def _tensor_view(value: Any, kind: str, to_array: Callable[[], np.ndarray]) -> _View:
    try:
        array = to_array()
    except Exception as exc:  # symbolic tensors and the like have no value to hash
        return _View("bad", kind, f"its value cannot be read ({type(exc).__name__})", kind)
    # The framework's own dtype name: "string" for a TF string tensor, not "object".
    dtype = getattr(value, "dtype", array.dtype)
    dtype_name = getattr(dtype, "name", None) or str(dtype).removeprefix("torch.")
    return _View("array", kind, array, f"{kind} {dtype_name} {tuple(array.shape)}")


def _torch_array(tensor: Any) -> np.ndarray:
    """A torch tensor's values; bfloat16 (no NumPy dtype) is widened exactly to float32."""
    tensor = tensor.detach().cpu()
    try:
        return tensor.numpy()
    except TypeError:
        return tensor.float().numpy()


def _rng_state(value: object) -> dict[str, object] | None:
    """The state of a NumPy or Python random generator, which decides its next draws."""
    np = sys.modules.get("numpy")
    if np is not None and isinstance(value, np.random.Generator):
        return {"bit_generator.state": value.bit_generator.state}
    if np is not None and isinstance(value, np.random.BitGenerator):
        return {"state": value.state}
    if np is not None and isinstance(value, np.random.RandomState):
        return {"get_state()": value.get_state(legacy=False)}
    if isinstance(value, random.Random) and not isinstance(value, random.SystemRandom):
        return {"getstate()": value.getstate()}
    return None


def _why_unsupported(value: object) -> str:
    if isinstance(value, random.SystemRandom):
        return "SystemRandom draws from the operating system and has no state"
    if isinstance(value, types.ModuleType):
        return "modules are not fingerprinted"
    if isinstance(value, type):
        return "classes are not fingerprinted"
    if callable(value):
        return "functions and other callables are not fingerprinted"
    if _has_attribute(value, "read") or _has_attribute(value, "write"):
        return "files and streams have no comparable value"
    return f"{type(value).__name__} is not a supported type"


def _bad(value: object, reason: str) -> _View:
    kind = type(value).__name__
    return _View("bad", kind, reason, kind)


def _array_summary(kind: str, array: Any) -> str:
    return f"{kind} {array.dtype.name} {tuple(array.shape)}"


def _scalar_summary(value: object) -> str:
    kind = type(value).__name__
    return f"{kind} (len {len(value)})" if isinstance(value, (str, bytes)) else kind


# -- hashing ---------------------------------------------------------------------------


def _digest(value: object, walk: _Walk) -> bytes | None:
    """The digest of ``value`` (memoised in ``walk``), or None if it cannot be hashed."""
    try:
        return walk.digest(value)
    except _Unsupported:
        return None


class _Walk:
    """One hashing pass over a value graph: digests memoised by identity, cycles refused.

    A container's digest covers its children's digests (plain scalars are fed inline), so
    an object reached by many paths (``x = [x, x]`` repeated) is hashed once per walk and
    the cost is linear in the number of distinct objects, not in the number of paths.
    Memoised objects are kept alive until the walk ends: views make temporaries (a
    generator's state dict, a tensor's array) whose ids could otherwise be reused.
    """

    def __init__(self) -> None:
        self._digests: dict[int, bytes] = {}
        self._alive: list[object] = []
        self._active: set[int] = set()  # containers on the current path

    def digest(self, value: object, view: _View | None = None, depth: int = 0) -> bytes:
        """xxh3_128 of ``value``; raises _Unsupported (with the path) if it cannot be hashed.

        Scalars are not memoised: as children they are fed inline, never by digest.
        """
        ident = id(value)
        known = self._digests.get(ident)
        if known is not None:
            return known
        view = _view_of(value) if view is None else view
        hasher = xxhash.xxh3_128()
        try:
            self._feed_view(hasher, view, ident, depth)
        except _Unsupported:
            raise
        except Exception as exc:  # its __len__, __iter__, items() ... raised
            raise _Unsupported("", _raised(exc)) from None
        digest = hasher.digest()
        if view.category != "scalar":
            self._digests[ident] = digest
            self._alive.append(value)
        return digest

    def _feed_view(self, hasher: Any, view: _View, ident: int, depth: int) -> None:
        """Stream a value into ``hasher``: a tag for category and type, then its contents.

        Every variable-length part is length-prefixed, so distinct values cannot collide
        by concatenation.
        """
        if view.category == "bad":
            raise _Unsupported("", view.payload)
        if depth > _MAX_DEPTH:
            raise _Unsupported("", f"nested more than {_MAX_DEPTH} levels deep")
        _feed_bytes(hasher, f"{view.category}:{view.kind}".encode())
        if view.category == "array":
            # The summary carries the framework's dtype: a bfloat16 tensor is hashed
            # through float32 values, and must not equal the float32 tensor of them.
            _feed_bytes(hasher, view.summary.encode())
            self._feed_array(hasher, view.payload, depth)
            return
        if view.category == "scalar":
            _feed_scalar(hasher, view.payload)
            return
        if ident in self._active:
            raise _Unsupported("", "it contains itself")
        self._active.add(ident)
        try:
            self._feed_children(hasher, view, depth)
        finally:
            self._active.discard(ident)

    def _feed_children(self, hasher: Any, view: _View, depth: int) -> None:
        payload = view.payload
        hasher.update(struct.pack("<Q", len(payload)))
        if view.category == "set":
            digests = []
            for item in payload:
                sub = xxhash.xxh3_128()
                self._feed_child(sub, item, lambda: "{...}", depth)
                digests.append(sub.digest())
            hasher.update(b"".join(sorted(digests)))
            return
        category = view.category
        for key, child in _children(view):
            if category != "seq":
                self._feed_child(hasher, key, lambda k=key: _step(category, k) + " (key)", depth)
            self._feed_child(hasher, child, lambda k=key: _step(category, k), depth)

    def _feed_child(self, hasher: Any, child: object, step: Callable[[], str], depth: int) -> None:
        """Feed a scalar inline, anything else as its digest; if it is unsupported, prefix
        its path with ``step()`` (made lazily)."""
        if type(child) in _PLAIN_SCALARS:  # the common case, without a view
            hasher.update(_SCALAR_TAGS[type(child)])
            _feed_scalar(hasher, child)
            return
        digest = self._digests.get(id(child))
        if digest is None:
            view = _view_of(child)
            if view.category == "scalar":  # a str subclass, a bytearray, a scalar's Snapshot
                hasher.update(b"s")
                _feed_bytes(hasher, f"scalar:{view.kind}".encode())
                _feed_scalar(hasher, view.payload)
                return
            try:
                digest = self.digest(child, view, depth + 1)
            except _Unsupported as exc:
                raise _Unsupported(step() + exc.path, exc.reason) from None
        hasher.update(b"d")
        hasher.update(digest)

    def _feed_array(self, hasher: Any, array: np.ndarray, depth: int) -> None:
        """Hash dtype, shape and the elements in C order, without copying the whole array."""
        import numpy as np  # loaded: an array was met

        _feed_bytes(hasher, str(array.dtype.descr if array.dtype.fields else array.dtype.str)
                    .encode())
        _feed_bytes(hasher, repr(tuple(array.shape)).encode())
        if array.dtype.hasobject:
            for index, item in enumerate(array.ravel()):
                self._feed_child(
                    hasher, item, lambda i=index: _index_text(np.unravel_index(i, array.shape)),
                    depth,
                )
        elif array.flags.c_contiguous:
            hasher.update(array.reshape(-1).view(np.uint8))
        else:
            buffer = np.empty(0, array.dtype)  # reused: one allocation, not one per block
            for _, (block,) in _blocks((array,)):
                if buffer.size < block.size:
                    buffer = np.empty(block.size, array.dtype)
                out = buffer[: block.size].reshape(block.shape)
                _copy_in_c_order(out, block)
                hasher.update(out.reshape(-1).view(np.uint8))


def _feed_scalar(hasher: Any, value: object) -> None:
    if isinstance(value, float):
        hasher.update(struct.pack("<d", value))
    elif isinstance(value, complex):
        hasher.update(struct.pack("<dd", value.real, value.imag))
    elif isinstance(value, int):  # bool included; the tag tells them apart
        number = int(value)  # bytes, not str(): str() refuses ints of over 4300 digits
        _feed_bytes(hasher, number.to_bytes(number.bit_length() // 8 + 1, "little", signed=True))
    elif isinstance(value, str):
        _feed_bytes(hasher, value.encode("utf-8", "surrogatepass"))
    elif isinstance(value, bytes):
        _feed_bytes(hasher, value)


def _copy_in_c_order(out: np.ndarray, block: np.ndarray) -> None:
    """Copy ``block`` into C-contiguous ``out``, in column tiles if it is laid out transposed.

    When the last axis is not the one closest together in memory (Fortran order, ``.T``),
    a plain copy reads one element per memory page; copying ``_TILE_COLUMNS`` columns at a
    time keeps the pages touched few enough for the TLB (about 3x faster).
    """
    import numpy as np  # loaded: an array was met

    strides = [abs(s) for s, n in zip(block.strides, block.shape, strict=True) if n > 1]
    if block.ndim < 2 or not strides or abs(block.strides[-1]) == min(strides):
        np.copyto(out, block)
        return
    for start in range(0, block.shape[-1], _TILE_COLUMNS):
        columns = slice(start, start + _TILE_COLUMNS)
        np.copyto(out[..., columns], block[..., columns])


def _feed_bytes(hasher: Any, data: bytes) -> None:
    hasher.update(struct.pack("<Q", len(data)))
    hasher.update(data)


def _blocks(arrays: tuple[np.ndarray, ...], offset: int = 0) -> Iterator[tuple[int, tuple]]:
    """Split same-shaped arrays into aligned blocks of at most ~_BLOCK_BYTES, in C order.

    Yields (flat index of the block's first element, the arrays' views of that block).
    Blocks are runs of leading-axis rows; a row too big on its own is split recursively.
    """
    first = arrays[0]
    if first.ndim == 0 or first.nbytes <= _BLOCK_BYTES:
        yield offset, arrays
        return
    rows = first.shape[0]
    row_items = first.size // rows
    row_bytes = first.nbytes // rows
    if row_bytes > _BLOCK_BYTES:
        for row in range(rows):
            # a[row, ...] stays an array (0-d for 1-d input), never a NumPy scalar
            yield from _blocks(tuple(a[row, ...] for a in arrays), offset + row * row_items)
        return
    step = _BLOCK_BYTES // row_bytes
    for start in range(0, rows, step):
        yield offset + start * row_items, tuple(a[start : start + step] for a in arrays)


def _children(view: _View) -> Iterable[tuple[object, object]]:
    if view.category == "seq":
        return enumerate(view.payload)
    return view.payload.items()


def _step(category: str, key: object) -> str:
    """How one step into a container is written in a path."""
    if category in ("attrs", "state"):
        return f".{key}"
    if category == "seq":
        return f"[{key}]"
    return f"[{key!r}]"


def _index_text(index: tuple) -> str:
    return "[" + ", ".join(str(int(i)) for i in index) + "]"


# -- snapshots -------------------------------------------------------------------------


def _snapshot(value: object, depth: int, made: dict[int, tuple[object, Snapshot]]) -> Snapshot:
    """Copy ``value``; ``made`` maps the id of each value copied so far to (value, copy),
    so a shared object is copied once (and kept alive, so its id stays its own)."""
    known = made.get(id(value))
    if known is not None:
        return known[1]
    view = _view_of(value)
    if view.category == "bad" or depth > _MAX_DEPTH:
        raise ValueError(f"cannot snapshot {view.kind}")
    payload = view.payload
    if view.category == "array":
        import numpy as np  # loaded: an array was met

        if payload.dtype.hasobject:
            copy = np.empty(payload.shape, dtype=object)
            for index in np.ndindex(payload.shape):
                copy[index] = _snapshot(payload[index], depth + 1, made)
            payload = copy
        else:
            payload = np.array(payload, copy=True)
    elif view.category in ("seq", "set"):
        payload = [_snapshot(child, depth + 1, made) for child in payload]
    elif view.category in ("map", "attrs", "state"):
        payload = {key: _snapshot(child, depth + 1, made) for key, child in payload.items()}
    copied = Snapshot(view._replace(payload=payload))
    made[id(value)] = (value, copied)
    return copied


# -- describing differences ------------------------------------------------------------


def _same(a: object, b: object, walk: _Walk) -> bool:
    """Do ``a`` and ``b`` hash equal? (Memoised, so walking a shared subtree costs once.)"""
    digest = _digest(a, walk)
    return digest is not None and digest == _digest(b, walk)


def _diff(
    a: object, b: object, path: str, labels: tuple[str, str], depth: int, walk: _Walk
) -> str | None:
    """The first difference between ``a`` and ``b`` below ``path``, or None.

    Children that hash equal are skipped without a walk.
    """
    va, vb = _view_of(a), _view_of(b)
    if "bad" in (va.category, vb.category):
        return f"{path}: cannot be compared ({va.summary} vs {vb.summary})"
    if (va.category, va.kind) != (vb.category, vb.kind):
        return f"{path}: type {va.kind} vs {vb.kind}"
    if depth > _MAX_DEPTH:
        return None
    if va.category == "array":
        return _array_diff(va, vb, path, labels, depth, walk)
    if va.category == "scalar":
        return _scalar_diff(va.payload, vb.payload, path, labels)
    if va.category == "state":
        return f"{path}: {va.kind} state differs, so its next draws differ"
    if va.category == "set":
        return _set_diff(va.payload, vb.payload, path, labels, walk)
    if va.category == "seq" and len(va.payload) != len(vb.payload):
        return f"{path}: {va.kind} length {len(va.payload)} vs {len(vb.payload)}"
    if va.category in ("map", "attrs"):
        found = _keys_diff(va, vb, path, labels, walk)
        if found:
            return found
    children_b = dict(_children(vb)) if va.category != "seq" else None
    for key, child_a in _children(va):
        child_b = vb.payload[key] if children_b is None else children_b[key]
        if _same(child_a, child_b, walk):
            continue
        found = _diff(child_a, child_b, path + _step(va.category, key), labels, depth + 1, walk)
        if found:
            return found
    return None


def _keys_diff(
    va: _View, vb: _View, path: str, labels: tuple[str, str], walk: _Walk
) -> str | None:
    """Keys are compared by fingerprint, so 1 and True or 1 and 1.0 count as different."""
    keys_a = {_digest(k, walk): k for k in va.payload}
    keys_b = {_digest(k, walk): k for k in vb.payload}
    for digest, key in keys_a.items():
        if digest not in keys_b:
            return f"{path}: key {key!r} only in {labels[0]}"
    for digest, key in keys_b.items():
        if digest not in keys_a:
            return f"{path}: key {key!r} only in {labels[1]}"
    if list(keys_a) != list(keys_b):
        return f"{path}: same keys in a different order"
    return None


def _set_diff(a: Iterable, b: Iterable, path: str, labels: tuple[str, str], walk: _Walk) -> str:
    digests_a, digests_b = {_digest(x, walk) for x in a}, {_digest(x, walk) for x in b}
    only_a, only_b = digests_a - digests_b, digests_b - digests_a
    return (f"{path}: {len(only_a)} elements only in {labels[0]}, "
            f"{len(only_b)} only in {labels[1]}")


def _scalar_diff(a: Any, b: Any, path: str, labels: tuple[str, str]) -> str | None:
    kind = type(a).__name__
    if isinstance(a, float | complex):
        if struct.pack("<dd", a.real, a.imag) == struct.pack("<dd", b.real, b.imag):
            return None
        if a == b or (a != a and b != b):
            return f"{path}: {kind} same value, different bits ({a!r} vs {b!r})"
        if a != a or b != b:
            return f"{path}: {kind} is NaN in {labels[0] if a != a else labels[1]} only"
        return f"{path}: {kind} differs by {_number(abs(a - b))}"
    if isinstance(a, bool):
        return None if a is b else f"{path}: bool {a} vs {b}"
    if isinstance(a, int):
        return None if a == b else f"{path}: {kind} differs by {_number(abs(a - b))}"
    if isinstance(a, str | bytes):
        if a == b:
            return None
        pairs = enumerate(zip(a, b, strict=False))
        at = next((i for i, (x, y) in pairs if x != y), min(len(a), len(b)))
        return f"{path}: {kind} differs at position {at} (lengths {len(a)} and {len(b)})"
    return None  # None is always equal to None


def _array_diff(
    va: _View, vb: _View, path: str, labels: tuple[str, str], depth: int, walk: _Walk
) -> str | None:
    import numpy as np  # loaded: an array was met

    a, b = va.payload, vb.payload
    if a.dtype != b.dtype:
        return f"{path}: dtype {a.dtype.name} vs {b.dtype.name}"
    if a.shape != b.shape:
        return f"{path}: shape {tuple(a.shape)} vs {tuple(b.shape)}"
    if va.summary != vb.summary:  # e.g. bfloat16 and float32 tensors of the same values
        return f"{path}: {va.summary} vs {vb.summary}"
    what = f"{path}: {va.summary}"
    if a.dtype.hasobject:
        for index in np.ndindex(a.shape):
            if _same(a[index], b[index], walk):
                continue
            found = _diff(a[index], b[index], path + _index_text(index), labels, depth + 1, walk)
            if found:
                return found
        return None
    count, first, largest, nans = 0, None, None, 0
    for offset, (block_a, block_b) in _blocks((a, b)):
        flat_a = np.ascontiguousarray(block_a).reshape(-1)
        flat_b = np.ascontiguousarray(block_b).reshape(-1)
        where = np.flatnonzero(_bits_differ(flat_a, flat_b))
        if where.size == 0:
            continue
        count += where.size
        if first is None:
            first = offset + int(where[0])
        deltas = _abs_differences(flat_a[where], flat_b[where])
        if deltas is not None:
            nan = np.isnan(deltas) if deltas.dtype.kind == "f" else np.zeros(deltas.shape, bool)
            nans += int(nan.sum())
            if not nan.all():
                block_max = deltas[~nan].max()
                largest = block_max if largest is None else max(largest, block_max)
    if first is None:
        return None
    parts = [f"{count} of {a.size} elements differ"]
    if largest is not None:
        parts.append(f"max abs difference {_number(largest)}{_unit(a.dtype)}")
        if largest == 0:
            parts.append("only bit patterns differ (signed zeros or NaN payloads)")
    if nans:
        parts.append(f"{nans} involve NaN")
    if a.ndim:
        parts.append(f"first at {path}{_index_text(np.unravel_index(first, a.shape))}")
    return f"{what}: " + "; ".join(parts)


def _bits_differ(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per element: do the bits differ? (The fingerprint's notion of equality.)"""
    import numpy as np  # loaded: an array was met

    size = a.dtype.itemsize
    if size in (1, 2, 4, 8):
        return a.view(f"u{size}") != b.view(f"u{size}")
    return (a.view(np.uint8).reshape(-1, size) != b.view(np.uint8).reshape(-1, size)).any(axis=1)


def _abs_differences(a: np.ndarray, b: np.ndarray) -> np.ndarray | None:
    """|a - b| exactly for integers and times, in float64 (or wider) for floats."""
    import numpy as np  # loaded: an array was met

    kind = a.dtype.kind
    if kind in "mM":
        a, b, kind = a.view(np.int64), b.view(np.int64), "i"
    if kind in "iu":
        high, low = np.maximum(a, b), np.minimum(a, b)
        unsigned = f"u{a.dtype.itemsize}"
        return high.astype(unsigned) - low.astype(unsigned)  # exact: wraps modulo 2**bits
    if kind not in "fc":
        return None  # bool, strings, raw bytes: no meaningful distance
    wide = np.result_type(a.dtype, np.float64 if kind == "f" else np.complex128)
    with np.errstate(invalid="ignore", over="ignore"):  # inf - inf is NaN, counted as such
        return np.abs(np.subtract(a, b, dtype=wide))


def _unit(dtype: np.dtype) -> str:
    if dtype.kind in "mM":
        import numpy as np  # loaded: an array was met

        unit, count = np.datetime_data(dtype)
        return f" x {count}{unit}" if count != 1 else f" {unit}"
    return ""


def _number(x: object) -> str:
    np = sys.modules.get("numpy")
    if isinstance(x, int) or (np is not None and isinstance(x, np.integer)):
        x = int(x)
        return str(x) if x.bit_length() < 10_000 else f"about 2**{x.bit_length() - 1}"
    return f"{float(x):.6g}"
