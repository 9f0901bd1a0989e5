"""Plain Python values: scalars, containers, named tuples, ``random.Random`` by its state,
dates and times, enums, and code reached inside a value (compared by its qualified name).

An instance of a subclass of a scalar or container type (``class History(list)``) is
compared by its items and also by its own attributes (its ``__dict__`` and slots).
"""

from __future__ import annotations

import array
import collections
import datetime
import decimal
import enum
import fractions
import functools
import io
import pathlib
import random
import types
import uuid
from types import ModuleType

from det_nb.values.base import Family, Reduced, View, bad, count, parts, scalar, state
from det_nb.values.objects import subclass_attributes

_PLAIN = (type(None), bool, int, float, complex, str, bytes)
# The exact base value of a subclass of a plain type (its own methods are not called).
_EXACT = {int: int.__int__, float: float.__float__, complex: complex.__complex__,
          str: str.__str__, bytes: bytes.__bytes__}
# Values compared by their text: what str() gives is their whole value.
_BY_TEXT = (decimal.Decimal, fractions.Fraction, uuid.UUID, pathlib.PurePath)
# Scalars and containers: a subclass's instances are compared by their attributes too.
_BUILTIN = (*_PLAIN, bytearray, list, tuple, collections.deque, dict, set, frozenset)
_BUILTIN_EXACT = frozenset(_BUILTIN)
# Code that is compared by its qualified name when a value holds it.
_NAMED_CODE = (types.FunctionType, types.BuiltinFunctionType, type, types.ModuleType)


class Python(Family):
    """Plain scalars and containers, named tuples, ``random.Random``, dates and times,
    ``Decimal``/``Fraction``/``UUID``/paths, enums, ranges, ``SimpleNamespace``, ``array``,
    and functions, classes and modules inside a value."""

    name = "python"

    def view(self, value: object, module: ModuleType | None) -> View | None:
        found = self._view(value)
        if (found is None or type(value) in _BUILTIN_EXACT or not isinstance(value, _BUILTIN)
                or isinstance(value, enum.Enum)):
            return found
        attributes = subclass_attributes(value)  # a subclass's own, such as History.best
        if not attributes:
            return found
        named = {"contents": Reduced(found), "attributes": attributes}
        return parts(found.kind, named, f"{found.summary} with "
                                        f"{count(len(attributes), 'attribute')}")

    def _view(self, value: object) -> View | None:
        kind = type(value).__name__
        if isinstance(value, enum.Enum):  # before int: an IntEnum is an int too
            name = value.name if value.name is not None else str(value._value_)  # Flag mixes
            return parts(kind, {"name": name, "value": value._value_}, f"{kind}.{name}")
        if isinstance(value, _PLAIN):
            return _plain(value, kind)
        if isinstance(value, (bytearray, memoryview)):
            data = bytes(value) if isinstance(value, bytearray) else value.tobytes()
            return scalar(kind, data, f"{kind} (len {len(data)})")
        if isinstance(value, tuple) and _is_named_tuple(type(value)):
            named = {field: getattr(value, field) for field in type(value)._fields}
            return parts(kind, named, f"{kind} ({count(len(named), 'field')})")
        if isinstance(value, (list, tuple, collections.deque)):
            return View("seq", kind, value, f"{kind} (len {len(value)})")
        if isinstance(value, dict):
            return View("map", kind, value, f"{kind} ({count(len(value), 'key')})")
        if isinstance(value, (set, frozenset)):
            return View("set", kind, value, f"{kind} (len {len(value)})")
        if isinstance(value, random.SystemRandom):
            return bad(value, "SystemRandom draws from the operating system and has no state")
        if isinstance(value, random.Random):
            return state(kind, {"getstate()": value.getstate()})
        if isinstance(value, datetime.date | datetime.time):
            zone = getattr(value, "tzinfo", None)
            text = value.isoformat() + (f" {zone}" if zone is not None else "")
            return scalar(kind, text, kind)
        if isinstance(value, datetime.timedelta):
            return scalar(kind, str(value), kind)
        if isinstance(value, _BY_TEXT):
            return scalar(kind, str(value), kind)
        if isinstance(value, range | slice):
            named = {"start": value.start, "stop": value.stop, "step": value.step}
            return parts(kind, named, f"{kind}({value.start}, {value.stop}, {value.step})")
        if isinstance(value, types.SimpleNamespace):
            named = dict(sorted(vars(value).items()))
            return parts(kind, named, f"{kind} ({count(len(named), 'attribute')})")
        if isinstance(value, array.array):
            named = {"typecode": value.typecode, "data": value.tobytes()}
            return parts(kind, named, f"array {value.typecode!r} (len {len(value)})")
        return _code(value, kind)


def _plain(value: object, kind: str) -> View:
    """A plain scalar; a subclass's value as its exact base type (for snapshots' files)."""
    base = next(base for base in _PLAIN if isinstance(value, base))
    exact = value if type(value) is base else _EXACT[base](value)
    size = f" (len {len(exact)})" if isinstance(exact, (str, bytes)) else ""
    return scalar(kind, exact, kind + size)


def _is_named_tuple(kind: type) -> bool:
    fields = getattr(kind, "_fields", None)
    return isinstance(fields, tuple) and all(isinstance(f, str) for f in fields)


def _code(value: object, kind: str) -> View | None:
    """Code held by a value: named code by its qualified name, bound methods and partials by
    their parts; lambdas and local functions cannot be named, so they are not compared."""
    if isinstance(value, types.MethodType):
        return parts(kind, {"__func__": value.__func__, "__self__": value.__self__},
                     f"method {getattr(value, '__qualname__', '?')}")
    owner = getattr(value, "__self__", None) if isinstance(value, types.BuiltinMethodType) else None
    if owner is not None and not isinstance(owner, ModuleType):  # [].append: bound to a value
        return parts(kind, {"name": value.__qualname__, "__self__": owner},
                     f"method {value.__qualname__}")
    if isinstance(value, functools.partial):
        named = {"func": value.func, "args": value.args, "keywords": value.keywords}
        return parts(kind, named, f"partial of {getattr(value.func, '__qualname__', '?')}")
    if isinstance(value, _NAMED_CODE):
        name = getattr(value, "__qualname__", None) or getattr(value, "__name__", None)
        owner = getattr(value, "__module__", None) if not isinstance(value, ModuleType) else None
        if not isinstance(name, str) or "<" in name:
            return bad(value, "lambdas and functions defined inside functions have no name "
                              "to compare them by")
        qualified = f"{owner}.{name}" if isinstance(owner, str) else name
        return scalar(kind, qualified, f"{kind} {qualified}")
    if isinstance(value, io.IOBase):
        return bad(value, "files and streams have no comparable value")
    if isinstance(value, types.GeneratorType | types.CoroutineType | types.AsyncGeneratorType):
        return bad(value, "generators have no value to compare until they are consumed")
    return None


def why_unsupported(value: object) -> str:
    """The reason given for a value no family recognised."""
    if callable(value):
        return "functions and other callables are not fingerprinted"
    if _has_attribute(value, "read") or _has_attribute(value, "write"):
        return "files and streams have no comparable value"
    if _has_attribute(value, "__next__"):
        return "iterators have no value to compare until they are consumed"
    return f"{type(value).__name__} is not a supported type"


def _has_attribute(value: object, name: str) -> bool:
    """``hasattr``, False also where the object's ``__getattr__`` raises something else."""
    try:
        return hasattr(value, name)
    except Exception:
        return False
