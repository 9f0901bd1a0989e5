"""Plain Python objects: dataclasses by all their fields and any other attribute, any
``Mapping`` (flax's ``FrozenDict`` is one) by its items, and instances of Python classes by
their attributes.

Tried last, after every framework's family: a framework's objects are compared by what
holds their value (a module's ``state_dict``, an estimator's parameters), never by their
private attributes. A class that must leave a fact of the run out of the comparison (a
duration, a host name) says so with ``_det_nb_value_`` (see :mod:`det_nb.values`).
"""

from __future__ import annotations

import collections.abc
import contextlib
import dataclasses
import functools
import sys
from types import ModuleType

from det_nb.values.base import Family, View, count, parts

# Set in a type's flags when it was created by a class statement (or a heap type of an
# extension); static C types (list, io.FileIO, Cython classes) keep state out of reach.
_HEAP_TYPE = 1 << 9
# Packages whose own subclasses of containers and arrays keep bookkeeping, not values, in
# their attributes (TensorFlow's ListWrapper, Keras's TrackedList, NumPy's memmap): the
# standard library and the frameworks that det_nb.values has a family for.
_LIBRARIES = frozenset({*sys.stdlib_module_names, "numpy", "torch", "jax", "jaxlib", "keras",
                        "tensorflow", "pandas", "sklearn", "matplotlib"})


class Objects(Family):
    """Dataclasses, mappings, and objects of Python classes by ``__dict__`` and slots."""

    name = "objects"

    def view(self, value: object, module: ModuleType | None) -> View | None:
        kind = type(value)
        name = kind.__name__
        if dataclasses.is_dataclass(kind):
            return _dataclass_view(value, kind)
        if isinstance(value, collections.abc.Mapping):
            return View("map", name, value, f"{name} ({count(len(value), 'key')})")
        named = _attributes(value, kind) if _python_class(kind) else None
        if named is None:
            return None
        return parts(name, named, f"{name} ({count(len(named), 'attribute')})")


def _dataclass_view(value: object, kind: type) -> View:
    """Every field, ``compare=False`` ones included (array fields are marked so that ``==``
    works, yet they are results), in declaration order; then any other attribute (one set
    in ``__post_init__``), by name."""
    fields = dataclasses.fields(kind)
    named = {field.name: getattr(value, field.name) for field in fields}
    extra = instance_attributes(value, frozenset(named))
    named.update(extra)
    summary = f"{kind.__name__} ({count(len(fields), 'field')}"
    summary += f", {count(len(extra), 'other attribute')})" if extra else ")"
    return parts(kind.__name__, named, summary)


def _python_class(kind: type) -> bool:
    """Whether every class ``kind`` derives from, but ``object``, was made by a class
    statement (a heap type): then an instance keeps its state in ``__dict__`` and slots."""
    return kind is not object and all(
        base is object or base.__flags__ & _HEAP_TYPE for base in kind.__mro__)


def _attributes(value: object, kind: type) -> dict[str, object] | None:
    """The instance's attributes (:func:`instance_attributes`); None for an object that has
    neither ``__dict__`` nor slots (an extension's heap type, such as a lock, whose state is
    out of reach)."""
    try:
        object.__getattribute__(value, "__dict__")
    except AttributeError:
        if not all("__slots__" in vars(base) for base in kind.__mro__[:-1]):
            return None
    return instance_attributes(value)


def subclass_attributes(value: object) -> dict[str, object]:
    """The attributes of an instance of a user's subclass of a container, scalar or array
    type (``class History(list)`` with ``best`` set on it), which are part of its value;
    empty for the classes of the standard library and of the frameworks, which keep their
    bookkeeping there (the items of TensorFlow's ListWrapper are not even in its list)."""
    if type(value).__module__.partition(".")[0] in _LIBRARIES:
        return {}
    return instance_attributes(value)


def instance_attributes(value: object, leave_out: frozenset[str] = frozenset()
                        ) -> dict[str, object]:
    """The instance's own ``__dict__`` and filled slots, in name order, read without calling
    its class's ``__getattribute__``; empty for an object that has neither (a plain list).
    Names in ``leave_out`` are skipped (before sorting: a torch module has many)."""
    found: dict[str, object] = {}
    with contextlib.suppress(AttributeError):  # no __dict__: slots only, or neither
        own = object.__getattribute__(value, "__dict__")
        found.update(own if not leave_out else
                     {name: part for name, part in own.items() if name not in leave_out})
    for slot, stored in _slots(type(value)):
        if slot in leave_out:
            continue
        try:
            found[slot] = object.__getattribute__(value, stored)
        except AttributeError:  # a slot never assigned
            continue
    return dict(sorted(found.items(), key=lambda item: str(item[0])))


@functools.lru_cache(maxsize=1024)  # looked up for every object, of few classes
def _slots(kind: type) -> tuple[tuple[str, str], ...]:
    """(name, name it is stored under) of every slot the classes of ``kind`` declare."""
    found = []
    for base in kind.__mro__:
        slots = base.__dict__.get("__slots__", ())
        for slot in (slots,) if isinstance(slots, str) else slots:
            if slot not in ("__dict__", "__weakref__"):
                mangled = f"_{base.__name__.lstrip('_')}{slot}" if slot.startswith("__") else slot
                found.append((slot, mangled))
    return tuple(found)
