"""Plain Python objects: dataclasses by their fields (those that take part in ``==``: a
field declared with ``compare=False``, such as a run's duration, is left out), any
``Mapping`` (flax's ``FrozenDict`` is one) by its items, and instances of Python classes by
their attributes.

Tried last, after every framework's family: a framework's objects are compared by what
holds their value (a module's ``state_dict``, an estimator's parameters), never by their
private attributes.
"""

from __future__ import annotations

import collections.abc
import dataclasses
from types import ModuleType

from det_nb.values.base import Family, View, count, parts

# Set in a type's flags when it was created by a class statement (or a heap type of an
# extension); static C types (list, io.FileIO, Cython classes) keep state out of reach.
_HEAP_TYPE = 1 << 9


class Objects(Family):
    """Dataclasses, mappings, and objects of Python classes by ``__dict__`` and slots."""

    name = "objects"

    def view(self, value: object, module: ModuleType | None) -> View | None:
        kind = type(value)
        name = kind.__name__
        if dataclasses.is_dataclass(kind):
            named = {field.name: getattr(value, field.name)
                     for field in dataclasses.fields(kind) if field.compare}
            return parts(name, named, f"{name} ({count(len(named), 'field')})")
        if isinstance(value, collections.abc.Mapping):
            return View("map", name, value, f"{name} ({count(len(value), 'key')})")
        named = _attributes(value, kind) if _python_class(kind) else None
        if named is None:
            return None
        return parts(name, named, f"{name} ({count(len(named), 'attribute')})")


def _python_class(kind: type) -> bool:
    """Whether every class ``kind`` derives from, but ``object``, was made by a class
    statement (a heap type): then an instance keeps its state in ``__dict__`` and slots."""
    return kind is not object and all(
        base is object or base.__flags__ & _HEAP_TYPE for base in kind.__mro__)


def _attributes(value: object, kind: type) -> dict[str, object] | None:
    """The instance's ``__dict__`` and filled slots, in name order (read without calling the
    class's own ``__getattribute__``); None for an object that has neither (an extension's
    heap type, such as a lock, whose state is out of reach)."""
    found: dict[str, object] = {}
    try:
        found.update(object.__getattribute__(value, "__dict__"))
        has_dict = True
    except AttributeError:
        has_dict = False
    declares_slots = all("__slots__" in vars(base) for base in kind.__mro__[:-1])
    if not has_dict and not declares_slots:
        return None
    for base in kind.__mro__:
        slots = base.__dict__.get("__slots__", ())
        for slot in (slots,) if isinstance(slots, str) else slots:
            if slot in ("__dict__", "__weakref__"):
                continue
            stored = f"_{base.__name__.lstrip('_')}{slot}" if slot.startswith("__") else slot
            try:
                found[slot] = object.__getattribute__(value, stored)
            except AttributeError:  # a slot never assigned
                continue
    return dict(sorted(found.items(), key=lambda item: str(item[0])))
