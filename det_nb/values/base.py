"""The one interface every value family implements, and the view it reduces a value to."""

from __future__ import annotations

import functools
from abc import ABC, abstractmethod
from dataclasses import dataclass
from types import ModuleType
from typing import Any, NamedTuple


class View(NamedTuple):
    """How a value is hashed, copied and compared: a category, a type name and its contents.

    category  payload
    array     a NumPy ndarray (the value's data, in its own memory where possible)
    scalar    an immutable plain value (None, bool, int, float, complex, str, bytes)
    seq       a sequence of children, addressed ``[i]``
    map       a mapping of children, addressed ``[key]``
    attrs     a mapping of named parts of one object, addressed by name after its kind
              (``net: torch.nn.Module: state_dict['0.weight']``)
    state     like attrs, for a random generator's state: its parts are not shown
    set       an iterable of children, compared regardless of order
    bad       the reason the value cannot be compared

    Snapshots (and the notebook runner's ``.npz`` files) are made of these categories only,
    so every family reduces its values to them.
    """

    category: str
    kind: str
    payload: Any
    summary: str


@dataclass(frozen=True, eq=False)  # compared by fingerprint, never with ==
class Reduced:
    """A part of a value that its family has already reduced to a view.

    A family returns one where a part needs a view of its own rather than the one its type
    would get: a DataFrame column's values (counted in rows), an index's labels.
    """

    view: View


class Family(ABC):
    """A family of values (NumPy, torch, pandas, ...) that fingerprints understand.

    A family never imports its framework: :meth:`view` is called only once ``module`` is in
    ``sys.modules``, that is once the user's code (or a library it uses) imported it.
    """

    #: Name shown in docs and tests.
    name: str
    #: Top-level module whose presence in ``sys.modules`` makes the family look at values;
    #: None for plain Python values.
    module: str | None = None

    @abstractmethod
    def view(self, value: object, module: ModuleType | None) -> View | None:
        """Reduce ``value`` to a view, or None where it is not of this family.

        ``module`` is the framework's loaded module. An exception raised by the value's own
        code propagates: the caller makes the value unfingerprintable with it as the reason.
        """


def bad(value: object, reason: str) -> View:
    """The view of a value that cannot be compared, and why."""
    kind = type(value).__name__
    return View("bad", kind, reason, kind)


def parts(kind: str, named: dict[str, object], summary: str) -> View:
    """An object reduced to named parts (compared part by part, each by its own view)."""
    return View("attrs", kind, named, summary)


def state(kind: str, named: dict[str, object], summary: str | None = None) -> View:
    """A random generator reduced to its state, which decides its next draws."""
    return View("state", kind, named, summary or f"{kind} (by its state)")


def scalar(kind: str, value: object, summary: str | None = None) -> View:
    """A value reduced to one plain immutable value (its text, its name, ...)."""
    return View("scalar", kind, value, summary or kind)


@functools.lru_cache(maxsize=1024)  # looked up for every value a family is offered
def find(module: ModuleType, dotted: str) -> tuple[type, ...]:
    """The class at ``module.dotted`` as a 1-tuple for ``isinstance``, or ``()`` where this
    version of the framework lacks it (then no value is of it, and nothing fails)."""
    found: Any = module
    try:
        for name in dotted.split("."):
            found = getattr(found, name)
    except Exception:  # AttributeError, or a lazy module that cannot load
        return ()
    return (found,) if isinstance(found, type) else ()


def count(number: int, noun: str) -> str:
    """``1 weight``, ``2 weights``."""
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"
