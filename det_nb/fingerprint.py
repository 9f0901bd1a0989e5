"""Fingerprints of notebook values, and what differs between two of them.

``%%det_check`` runs a cell several times and must tell whether what it produced is the
same each time. Comparing whole objects would mean keeping copies of every run's results,
so each value is reduced to a :class:`Fingerprint`: a 128-bit xxh3 hash of its type,
structure, dtype, shape and exact bits, plus a short summary for the report. Array buffers
are hashed in place (zero-copy when C-contiguous, in cache-sized C-order blocks when not),
so a fingerprint costs about one pass over memory and equal values hash equal whatever
their memory layout. Only when two fingerprints differ are the values themselves walked,
by :func:`describe_difference`, to say what differs and where, in the terms of the value's
family (``net: torch.nn.Module: state_dict['1.running_mean']: 3 of 3 elements differ``).

What a value is reduced to is decided by its family in :mod:`det_nb.values` (NumPy,
Python, torch, JAX, TensorFlow, Keras, pandas, scikit-learn, plain objects), each of which
recognises its values only if the user's code already imported its framework. NumPy is
never imported here either: plain Python values are hashed without it, to the same digest
with or without it. Anything no family can reduce yields :class:`Unfingerprintable` with
the reason, never a pass.

An object reached through many references is hashed once per call, so the cost is linear
in the number of objects, not of paths (``x = [x, x]`` forty times is 41 lists and 2**40
paths); a value that contains itself is refused. An exception from a value's own code (a
``__getattr__``, property or ``__len__`` that raises) makes it unfingerprintable, with
that exception as the reason, and is never raised to the caller.
"""

from __future__ import annotations

import functools
import os
import struct
import sys
import types
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import xxhash

from det_nb.values import Reduced, View, view_of
from det_nb.values.pandas import ROWS

if TYPE_CHECKING:  # NumPy is imported only where a NumPy value is met
    from concurrent.futures import ThreadPoolExecutor

    import numpy as np

# The view every value is reduced to (det_nb.values.base.View), under its former name.
_View = View
# Non-contiguous arrays are copied to C order this many bytes at a time (fits in cache).
_BLOCK_BYTES = 4 << 20
# Columns per tile when such a block is laid out transposed (see _copy_in_c_order).
_TILE_COLUMNS = 256
# Exactly these types (not subclasses such as numpy.float64) take the fast path.
_PLAIN_SCALARS = frozenset({type(None), bool, int, float, complex, str, bytes})
# A container's arrays are hashed in threads when they take this many bytes together (see
# _Walk._hash_arrays_ahead); one with more children than this is fed in order.
_AHEAD_THREADS_MIN_BYTES = 4 << 20
_AHEAD_MAX_CHILDREN = 10_000
# Deeper nesting than this is reported as unfingerprintable rather than risking recursion.
_MAX_DEPTH = 100
# A path of more steps than this is shown by its first and last steps and its length.
_PATH_STEPS_SHOWN = 12
# How a plain scalar child starts inline ("s", then its length-prefixed tag); a child fed
# by digest starts with "d", so the two cannot be confused.
_SCALAR_TAGS = {
    kind: b"s" + struct.pack("<Q", len(tag)) + tag
    for kind in _PLAIN_SCALARS
    for tag in [f"scalar:{kind.__name__}".encode()]
}
# Types whose instances are code, not results: functions, methods, classes, modules.
_CODE_TYPES = (
    types.FunctionType, types.BuiltinFunctionType, types.MethodType, types.ModuleType, type,
    types.MethodWrapperType, types.WrapperDescriptorType, types.MethodDescriptorType,
    types.ClassMethodDescriptorType, staticmethod, classmethod,
)

#: One step of a path into a value: (the kind of the object whose part it enters, or None
#: for a step into a container; the step's text: ``[0]``, ``['k']``, ``state_dict``).
Step = tuple[str | None, str]


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
class Snapshot(Reduced):
    """An independent, materialised copy of a value, comparable like the value itself.

    Needed only for values changed in place between runs, whose earlier state would
    otherwise be lost before it can be compared. Made of the view categories only (arrays,
    plain scalars and containers of them), so the notebook runner can write it to a file.
    """


class _Unsupported(Exception):
    """Raised inside a walk; ``path`` grows as it leaves nested containers."""

    def __init__(self, path: tuple[Step, ...], reason: str) -> None:
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
        where = f"at {_path_text('', exc.path, root_kind=False)}: " if exc.path else ""
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

    The answer starts with the path of the difference below ``name``: container steps as
    ``d['meta']['t']``, an object's parts after its kind (``net: torch.nn.Module:
    state_dict['0.weight']``, ``frame: DataFrame: column 'a'``). It gives type, dtype,
    shape or length, the first differing key or index, and for numbers the (maximum)
    absolute difference. ``labels`` name the two sides.
    """
    walk = _Walk()
    try:
        if _same(a, b, walk):
            return None
        found = _diff(a, b, name, (), labels, walk)
    except Exception as exc:  # the values' own code raised while they were read
        return f"{name}: cannot be compared ({_raised(exc)})"
    return found or f"{name}: differs in a way no element shows (e.g. the type of a dict key)"


def is_code(value: object) -> bool:
    """Whether ``value`` is code rather than a result: a function, builtin, method, class or
    module, a NumPy ufunc, or a wrapper of one (``functools.wraps``, ``jax.jit``,
    ``tf.function``: anything callable with code as its ``__wrapped__``). A
    ``functools.partial`` is not: its arguments are values (``partial(np.multiply, scale)``),
    compared with its function.

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


#: What :func:`as_result` gives for code that holds no data: no result at all.
NOT_A_RESULT = object()
# The notebook's own code lives in this module (IPython runs cells in ``__main__``).
_NOTEBOOK_MODULE = "__main__"
# Class attributes that Python's own machinery puts on a class (ABC's cache, Protocol's flag).
_CLASS_MACHINERY = frozenset({"_abc_impl", "_is_protocol"})


def as_result(value: object) -> object:
    """What a name holding ``value`` is compared by: the value itself; for code, the data
    it holds (:func:`code_data`), or :data:`NOT_A_RESULT` where it holds none."""
    if not is_code(value):
        return value
    data = code_data(value)
    return NOT_A_RESULT if data is None else data


def code_data(value: object) -> Reduced | None:
    """The data held by code the notebook defines, as named parts; None where there is none.

    Code is not a result, but what it holds is: a notebook function's ``__defaults__``,
    ``__kwdefaults__``, closure cells (by their variable names) and ``__dict__``; a notebook
    class's own data attributes (not dunders, functions, methods, properties or other
    descriptors); a notebook class's callable instance made with ``functools.update_wrapper``
    by its ``__dict__`` less the wrapper's attributes. Notebook code held there is entered
    in turn (once: a function that holds itself ends there); library code held there is
    code, left out. A library wrapper (``jax.jit``, ``torch.no_grad()``) is entered only
    through the notebook function it wraps (``__wrapped__``). Never raises: where reading the
    code's parts raises, the parts it could not read are left out.
    """
    try:
        return _code_data(value, set())
    except Exception:  # the code's own __getattr__ or a class's metaclass raised
        return None


def _code_data(value: object, entered: set[int]) -> Reduced | None:
    if id(value) in entered:
        return None
    entered.add(id(value))
    if isinstance(value, types.MethodType):
        value = value.__func__
    named: dict[str, object] = {}
    if isinstance(value, types.FunctionType):
        kind = "function"
        if value.__globals__.get("__name__") == _NOTEBOOK_MODULE:
            named = _function_data(value, entered)
    elif isinstance(value, type):
        kind = "class"
        if value.__module__ == _NOTEBOOK_MODULE:
            named = _held({name: member for name, member in vars(value).items()
                           if not _is_dunder(name) and name not in _CLASS_MACHINERY
                           and not hasattr(type(member), "__get__")}, entered)
    else:
        kind = type(value).__name__
        if type(value).__module__ == _NOTEBOOK_MODULE:
            named = _held(_own_dict(value), entered)
    wrapped = _own_dict(value).get("__wrapped__")
    if wrapped is not None and is_code(wrapped):
        inner = _code_data(wrapped, entered)
        if inner is not None:
            named["__wrapped__"] = inner
    if not named:
        return None
    name = getattr(value, "__qualname__", None)
    title = f"{kind} {name}" if isinstance(name, str) else kind
    return Reduced(View("attrs", kind, named, f"{title} (the data it holds)"))


def _function_data(function: types.FunctionType, entered: set[int]) -> dict[str, object]:
    """A notebook function's defaults, keyword defaults, closure cells and attributes."""
    named: dict[str, object] = {}
    cells = {}
    for variable, cell in zip(function.__code__.co_freevars, function.__closure__ or (),
                              strict=False):
        try:
            cells[variable] = cell.cell_contents
        except ValueError:  # a cell not filled yet
            continue
    parts = {"__defaults__": dict(enumerate(function.__defaults__ or ())),
             "__kwdefaults__": function.__kwdefaults__ or {},
             "__closure__": cells,
             "__dict__": _own_dict(function)}
    for part, members in parts.items():
        held = _held(members, entered)
        if held:
            named[part] = held
    return named


def _held(members: dict[Any, object], entered: set[int]) -> dict[Any, object]:
    """``members`` that are data: notebook code by the data it holds, other code left out;
    dunder names (a wrapper's ``__wrapped__``, ``__name__``, ...) left out too."""
    held: dict[Any, object] = {}
    for key, member in members.items():
        if isinstance(key, str) and _is_dunder(key):
            continue
        if is_code(member):
            member = _code_data(member, entered)
            if member is None:
                continue
        held[key] = member
    return held


def _own_dict(value: object) -> dict[str, object]:
    """``value.__dict__`` when it has one of its own (a mapping), else empty."""
    try:
        found = object.__getattribute__(value, "__dict__")
    except Exception:
        return {}
    return dict(found) if isinstance(found, dict) else {}


def _is_dunder(name: str) -> bool:
    return len(name) > 4 and name.startswith("__") and name.endswith("__")


# -- classification --------------------------------------------------------------------


def _view_of(value: object) -> View:
    """How ``value`` is walked, with an exception from its own code as the reason it is bad."""
    kind = type(value)
    if kind in _PLAIN_SCALARS:  # fast path for the elements of big lists
        size = f" (len {len(value)})" if kind is str or kind is bytes else ""
        return View("scalar", kind.__name__, value, kind.__name__ + size)
    try:
        return view_of(value)
    except Exception as exc:
        name = kind.__name__
        return View("bad", name, _raised(exc), name)


def _raised(exc: BaseException) -> str:
    """One line naming an exception raised by a user's object (its text may raise too)."""
    try:
        text = str(exc).strip().splitlines()[0][:120] if str(exc).strip() else ""
    except Exception:
        text = ""
    return f"reading it raised {type(exc).__name__}" + (f": {text}" if text else "")


# -- paths -----------------------------------------------------------------------------


def _step(view: View, key: object) -> Step:
    """One step into ``view``'s child ``key``."""
    if view.category in ("attrs", "state"):
        return (view.kind, str(key))
    if view.category == "seq":
        return (None, f" row {key}" if view.kind == ROWS else f"[{key}]")
    return (None, f"[{key!r}]")


def _path_text(name: str, path: tuple[Step, ...], root_kind: bool = True) -> str:
    """``name`` and the steps below it: ``net: torch.nn.Module: state_dict['w'][0]``.

    ``root_kind=False`` leaves out the kind of an object entered first (an unfingerprintable
    value's reason follows its kind already). A long path shows its first two steps and its
    last, with its length: ``[0][0]...[0] (101 levels)``.
    """
    texts = [f": {kind}: {text}" if kind is not None and (root_kind or i) else text
             for i, (kind, text) in enumerate(path)]
    if len(texts) > _PATH_STEPS_SHOWN:
        texts = [*texts[:2], "...", texts[-1], f" ({len(path)} levels)"]
    return name + "".join(texts)


def _inside_object(path: tuple[Step, ...]) -> bool:
    return any(kind is not None for kind, _ in path)


def _last_segment(name: str, path: tuple[Step, ...]) -> str:
    """The path from the innermost object's part on: what "first at" repeats."""
    starts = [i for i, (kind, _) in enumerate(path) if kind is not None]
    if not starts:
        return _path_text(name, path)
    return _path_text("", ((None, path[starts[-1]][1]), *path[starts[-1] + 1:]))


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
        self._views: dict[int, View] = {}  # children's views made by _hash_arrays_ahead

    def digest(self, value: object, view: View | None = None, depth: int = 0) -> bytes:
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
            raise _Unsupported((), _raised(exc)) from None
        digest = hasher.digest()
        if view.category != "scalar":
            self._digests[ident] = digest
            self._alive.append(value)
        return digest

    def _feed_view(self, hasher: Any, view: View, ident: int, depth: int) -> None:
        """Stream a value into ``hasher``: a tag for category and type, then its contents.

        Every variable-length part is length-prefixed, so distinct values cannot collide
        by concatenation.
        """
        if view.category == "bad":
            raise _Unsupported((), view.payload)
        if depth > _MAX_DEPTH:
            raise _Unsupported((), f"nested more than {_MAX_DEPTH} levels deep")
        hasher.update(_tag(view.category, view.kind))
        if view.category == "array" and not view.payload.dtype.hasobject:
            _feed_array(hasher, view)
            return
        if view.category == "scalar":
            _feed_scalar(hasher, view.payload)
            return
        # A container, or an object array (which may hold itself: o[0] = o).
        if ident in self._active:
            raise _Unsupported((), "it contains itself")
        self._active.add(ident)
        try:
            if view.category == "array":
                self._feed_objects(hasher, view, depth)
            else:
                self._feed_children(hasher, view, depth)
        finally:
            self._active.discard(ident)

    def _feed_children(self, hasher: Any, view: View, depth: int) -> None:
        payload = view.payload
        hasher.update(struct.pack("<Q", len(payload)))
        if view.category == "set":
            digests = []
            for item in payload:
                sub = xxhash.xxh3_128()
                self._feed_child(sub, item, lambda: (None, "{...}"), depth)
                digests.append(sub.digest())
            hasher.update(b"".join(sorted(digests)))
            return
        ahead = self._hash_arrays_ahead(view, depth + 1)
        try:
            for key, child in _children(view):
                if view.category != "seq":
                    self._feed_child(hasher, key, lambda k=key: _key_step(view, k), depth)
                self._feed_child(hasher, child, lambda k=key: _step(view, k), depth)
        finally:
            for ident in ahead:
                self._views.pop(ident, None)

    def _hash_arrays_ahead(self, view: View, depth: int) -> list[int]:
        """Hash a container's arrays of plain data (a model's tensors) before its children
        are fed in order: in one tight loop, and where they are big in threads (xxhash
        releases the GIL, so they are hashed in parallel). The children's views are kept for
        _feed_child; returns the ids they are kept under."""
        if len(view.payload) > _AHEAD_MAX_CHILDREN or depth > _MAX_DEPTH:
            return []
        kept, arrays, size = [], [], 0
        for _, child in _children(view):
            ident = id(child)
            if type(child) in _PLAIN_SCALARS or ident in self._digests or ident in self._views:
                continue
            child_view = _view_of(child)
            self._views[ident] = child_view
            kept.append(ident)
            payload = child_view.payload
            if child_view.category == "array" and not payload.dtype.hasobject and (
                    payload.flags.c_contiguous):
                arrays.append((child, child_view))
                size += payload.nbytes
        threads = _hashing_threads() if size >= _AHEAD_THREADS_MIN_BYTES else 1
        own, *others = _shares(arrays, threads) if arrays else [[]]
        done = [(share, _hashing_pool().submit(_array_digests, share)) for share in others]
        results = [(own, _array_digests(own))]  # this thread hashes a share too
        results += [(share, future.result()) for share, future in done]
        for share, digests in results:
            for (child, _), digest in zip(share, digests, strict=True):
                self._digests[id(child)] = digest
                self._alive.append(child)
        return kept

    def _feed_child(self, hasher: Any, child: object, step: Callable[[], Step],
                    depth: int) -> None:
        """Feed a scalar inline, anything else as its digest; if it is unsupported, prefix
        its path with ``step()`` (made lazily)."""
        kind = type(child)
        if kind in _PLAIN_SCALARS:  # the common case, without a view
            if _cacheable(kind, child):
                hasher.update(_scalar_bytes(kind, child))
            else:
                hasher.update(_SCALAR_TAGS[kind])
                _feed_scalar(hasher, child)
            return
        digest = self._digests.get(id(child))
        if digest is None:
            view = self._views.get(id(child)) or _view_of(child)
            if view.category == "scalar":  # a str subclass, a bytearray, a scalar's Snapshot
                hasher.update(b"s")
                _feed_bytes(hasher, f"scalar:{view.kind}".encode())
                _feed_scalar(hasher, view.payload)
                return
            try:
                digest = self.digest(child, view, depth + 1)
            except _Unsupported as exc:
                raise _Unsupported((step(), *exc.path), exc.reason) from None
        hasher.update(b"d")
        hasher.update(digest)

    def _feed_objects(self, hasher: Any, view: View, depth: int) -> None:
        """An object array: summary, dtype and shape, then each element as a child."""
        import numpy as np  # loaded: an array was met

        array = view.payload
        _feed_array_header(hasher, view)
        for index, item in enumerate(array.ravel()):
            self._feed_child(
                hasher, item,
                lambda i=index: (None, _index_text(np.unravel_index(i, array.shape))), depth,
            )


def _feed_array_header(hasher: Any, view: View) -> None:
    # The summary carries the framework's dtype: a bfloat16 tensor is hashed through
    # float32 values, and must not equal the float32 tensor of them.
    _feed_bytes(hasher, view.summary.encode())
    _feed_bytes(hasher, _dtype_text(view.payload.dtype))
    _feed_bytes(hasher, repr(tuple(view.payload.shape)).encode())


def _feed_array(hasher: Any, view: View) -> None:
    """Hash summary, dtype, shape and the elements in C order, without copying the whole
    array (a non-contiguous one is copied a block at a time)."""
    import numpy as np  # loaded: an array was met

    array = view.payload
    _feed_array_header(hasher, view)
    if array.flags.c_contiguous:
        hasher.update(array.reshape(-1).view(np.uint8))
        return
    buffer = np.empty(0, array.dtype)  # reused: one allocation, not one per block
    for _, (block,) in _blocks((array,)):
        if buffer.size < block.size:
            buffer = np.empty(block.size, array.dtype)
        out = buffer[: block.size].reshape(block.shape)
        _copy_in_c_order(out, block)
        hasher.update(out.reshape(-1).view(np.uint8))


def _array_digests(share: list[tuple[object, View]]) -> list[bytes]:
    """The digests _Walk.digest gives these arrays of plain data (run in a hashing thread)."""
    digests = []
    for _, view in share:
        hasher = xxhash.xxh3_128()
        hasher.update(_tag(view.category, view.kind))
        _feed_array(hasher, view)
        digests.append(hasher.digest())
    return digests


def _shares(arrays: list[tuple[object, View]], count: int) -> list[list[tuple[object, View]]]:
    """``arrays`` split into ``count`` shares of about equal bytes (one task per thread:
    a task per array would cost more than hashing a small one)."""
    shares: list[list[tuple[object, View]]] = [[] for _ in range(count)]
    loads = [0] * count
    for item in sorted(arrays, key=lambda item: -item[1].payload.nbytes):
        lightest = loads.index(min(loads))
        shares[lightest].append(item)
        loads[lightest] += item[1].payload.nbytes
    return [share for share in shares if share]


@functools.cache
def _hashing_threads() -> int:
    """How many threads hash arrays side by side: the CPUs this process may use, up to 4."""
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return min(4, usable or 1)


@functools.cache
def _hashing_pool() -> ThreadPoolExecutor:
    """The threads that hash the shares the walking thread leaves to them."""
    from concurrent.futures import ThreadPoolExecutor

    return ThreadPoolExecutor(_hashing_threads() - 1, thread_name_prefix="det_nb-hash")


if hasattr(os, "register_at_fork"):  # a forked child has none of its parent's threads
    os.register_at_fork(after_in_child=_hashing_pool.cache_clear)


@functools.lru_cache(maxsize=1024)
def _dtype_text(dtype: np.dtype) -> bytes:
    return str(dtype.descr if dtype.fields else dtype.str).encode()


def _key_step(view: View, key: object) -> Step:
    kind, text = _step(view, key)
    return (kind, text + " (key)")


def _cacheable(kind: type, value: object) -> bool:
    """Whether a plain scalar's fed bytes may be cached: short, and equal only to itself
    (a float is not: -0.0 == 0.0)."""
    if kind is int:
        return -(1 << 62) < value < 1 << 62
    return (kind is str and len(value) <= 64) or kind is bool or value is None


@functools.lru_cache(maxsize=8192)
def _scalar_bytes(kind: type, value: object) -> bytes:
    """What feeding a None, bool, int, str or bytes child feeds (tag, then the value), made
    once: a model's attribute names and sizes repeat across its layers. ``kind`` is part of
    the key, so 1 and True stay apart."""
    collected = bytearray()
    collected += _SCALAR_TAGS[kind]
    _feed_scalar(_Collect(collected), value)
    return bytes(collected)


class _Collect:
    """A hasher stand-in that collects the bytes fed to it."""

    def __init__(self, into: bytearray) -> None:
        self.update = into.extend


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
    if len(data) < 4096:  # one call for the many short tags and names
        hasher.update(struct.pack("<Q", len(data)) + data)
    else:  # no copy of a big one
        hasher.update(struct.pack("<Q", len(data)))
        hasher.update(data)


@functools.lru_cache(maxsize=4096)
def _tag(category: str, kind: str) -> bytes:
    """What starts a value's hash: its category and kind, length-prefixed (made once)."""
    data = f"{category}:{kind}".encode()
    return struct.pack("<Q", len(data)) + data


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


def _children(view: View) -> Iterable[tuple[object, object]]:
    if view.category == "seq":
        return enumerate(view.payload)
    return view.payload.items()


def _index_text(index: tuple) -> str:
    """``[2, 1]``; ``[()]`` for the one element of a 0-d array."""
    return "[" + (", ".join(str(int(i)) for i in index) if index else "()") + "]"


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
    a: object, b: object, name: str, path: tuple[Step, ...], labels: tuple[str, str],
    walk: _Walk,
) -> str | None:
    """The first difference between ``a`` and ``b`` at ``path`` below ``name``, or None.

    Children that hash equal are skipped without a walk.
    """
    va, vb = _view_of(a), _view_of(b)
    here = _path_text(name, path)
    if "bad" in (va.category, vb.category):
        reason = va.payload if va.category == "bad" else vb.payload
        return f"{here}: {va.kind}: cannot be compared ({reason})"
    if (va.category, va.kind) != (vb.category, vb.kind):
        return f"{here}: type {va.kind} vs {vb.kind}"
    if len(path) > _MAX_DEPTH:
        return None
    try:
        return _diff_views(va, vb, name, path, labels, walk)
    except Exception as exc:  # the values' own code raised while their parts were read
        return f"{here}: cannot be compared ({_raised(exc)})"


def _diff_views(
    va: View, vb: View, name: str, path: tuple[Step, ...], labels: tuple[str, str],
    walk: _Walk,
) -> str | None:
    """:func:`_diff` of two views of the same category and kind."""
    here = _path_text(name, path)
    if va.category == "array":
        return _array_diff(va, vb, name, path, labels, walk)
    if va.category == "scalar":
        return _scalar_diff(va.kind, va.payload, vb.payload, here, labels)
    if va.category == "state":
        return f"{here}: {va.kind} state differs, so its next draws differ"
    if va.category == "set":
        return _set_diff(va.payload, vb.payload, here, labels, walk)
    if va.category == "seq" and len(va.payload) != len(vb.payload):
        return f"{here}: {va.kind} length {len(va.payload)} vs {len(vb.payload)}"
    if va.category == "map":
        found = _keys_diff(va, vb, here, labels, walk)
        if found:
            return found
    if va.category == "seq":
        pairs = ((key, child, vb.payload[key]) for key, child in _children(va))
    else:  # an object's common parts come before its missing ones: labels explain keys
        children_b = dict(_children(vb))
        pairs = ((key, child, children_b[key]) for key, child in _children(va)
                 if key in children_b)
    for key, child_a, child_b in pairs:
        if _same(child_a, child_b, walk):
            continue
        found = _diff(child_a, child_b, name, (*path, _step(va, key)), labels, walk)
        if found:
            return found
    return _keys_diff(va, vb, here, labels, walk) if va.category == "attrs" else None


def _keys_diff(va: View, vb: View, here: str, labels: tuple[str, str], walk: _Walk) -> str | None:
    """Keys are compared by fingerprint, so 1 and True or 1 and 1.0 count as different."""
    keys_a = {_digest(k, walk): k for k in va.payload}
    keys_b = {_digest(k, walk): k for k in vb.payload}
    what = f"{va.kind}: part" if va.category == "attrs" else "key"
    for digest, key in keys_a.items():
        if digest not in keys_b:
            return f"{here}: {what} {key!r} only in {labels[0]}"
    for digest, key in keys_b.items():
        if digest not in keys_a:
            return f"{here}: {what} {key!r} only in {labels[1]}"
    if list(keys_a) != list(keys_b):
        return f"{here}: same keys in a different order"
    return None


def _set_diff(a: Iterable, b: Iterable, here: str, labels: tuple[str, str], walk: _Walk) -> str:
    digests_a, digests_b = {_digest(x, walk) for x in a}, {_digest(x, walk) for x in b}
    only_a, only_b = digests_a - digests_b, digests_b - digests_a
    return (f"{here}: {len(only_a)} elements only in {labels[0]}, "
            f"{len(only_b)} only in {labels[1]}")


def _scalar_diff(kind: str, a: Any, b: Any, here: str, labels: tuple[str, str]) -> str | None:
    if isinstance(a, float | complex):
        if struct.pack("<dd", a.real, a.imag) == struct.pack("<dd", b.real, b.imag):
            return None
        if a == b or (a != a and b != b):
            return f"{here}: {kind} same value, different bits ({a!r} vs {b!r})"
        if a != a or b != b:
            return f"{here}: {kind} is NaN in {labels[0] if a != a else labels[1]} only"
        return f"{here}: {kind} differs by {_number(abs(a - b))}"
    if isinstance(a, bool):
        return None if a is b else f"{here}: {kind} {a} vs {b}"
    if isinstance(a, int):
        return None if a == b else f"{here}: {kind} differs by {_number(abs(a - b))}"
    if isinstance(a, str | bytes):
        if a == b:
            return None
        pairs = enumerate(zip(a, b, strict=False))
        at = next((i for i, (x, y) in pairs if x != y), min(len(a), len(b)))
        return f"{here}: {kind} differs at position {at} (lengths {len(a)} and {len(b)})"
    return None  # None is always equal to None


def _array_diff(
    va: View, vb: View, name: str, path: tuple[Step, ...], labels: tuple[str, str], walk: _Walk
) -> str | None:
    """Count, largest difference and first index of the elements whose bits differ.

    Inside an object the array's summary is left out (its part says what it is); the
    values of a column, series or index (kind ``ROWS``) are counted in rows.
    """
    import numpy as np  # loaded: an array was met

    a, b = va.payload, vb.payload
    here = _path_text(name, path)
    if a.dtype != b.dtype:
        return f"{here}: dtype {a.dtype.name} vs {b.dtype.name}"
    if a.shape != b.shape:
        return f"{here}: shape {tuple(a.shape)} vs {tuple(b.shape)}"
    if va.summary != vb.summary:  # e.g. bfloat16 and float32 tensors of the same values
        return f"{here}: {va.summary} vs {vb.summary}"
    if a.dtype.hasobject:
        for index in np.ndindex(a.shape):
            if _same(a[index], b[index], walk):
                continue
            found = _diff(a[index], b[index], name, (*path, (None, _index_text(index))), labels,
                          walk)
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
    rows = va.kind == ROWS and a.ndim == 1
    parts = [f"{count} of {a.size} {'rows' if rows else 'elements'} differ"]
    if largest is not None:
        parts.append(f"max abs difference {_number(largest)}{_unit(a.dtype)}")
        if largest == 0:
            parts.append("only bit patterns differ (signed zeros or NaN payloads)")
    if nans:
        parts.append(f"{nans} involve NaN")
    if rows:
        parts.append(f"first at row {first}")
    elif a.ndim:
        where = _index_text(np.unravel_index(first, a.shape))
        parts.append(f"first at {_last_segment(name, path)}{where}")
    what = here if _inside_object(path) else f"{here}: {va.summary}"
    return f"{what}: " + "; ".join(parts)


def _bits_differ(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per element: do the bits differ? (The fingerprint's notion of equality.)"""
    import numpy as np  # loaded: an array was met

    size = a.dtype.itemsize
    if size in (1, 2, 4, 8):
        return a.view(f"u{size}") != b.view(f"u{size}")
    return (a.view(np.uint8).reshape(-1, size) != b.view(np.uint8).reshape(-1, size)).any(axis=1)


def _abs_differences(a: np.ndarray, b: np.ndarray) -> np.ndarray | None:
    """|a - b| exactly for integers and times, in float64 (or wider) for floats and for
    float types NumPy knows only as extensions (JAX's bfloat16)."""
    import numpy as np  # loaded: an array was met

    kind = a.dtype.kind
    if kind in "mM":
        a, b, kind = a.view(np.int64), b.view(np.int64), "i"
    if kind in "iu":
        high, low = np.maximum(a, b), np.minimum(a, b)
        unsigned = f"u{a.dtype.itemsize}"
        return high.astype(unsigned) - low.astype(unsigned)  # exact: wraps modulo 2**bits
    if kind == "V" and a.dtype.fields is None:
        try:  # ml_dtypes' bfloat16, float8: NumPy extension types that convert to float64
            a, b, kind = a.astype(np.float64), b.astype(np.float64), "f"
        except (TypeError, ValueError):
            return None
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
