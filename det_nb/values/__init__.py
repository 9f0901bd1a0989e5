"""Value families that fingerprints understand: one small module per family, all behind
:class:`det_nb.values.base.Family`.

Each family reduces its values to a :class:`~det_nb.values.base.View` made of arrays and
plain data, which :mod:`det_nb.fingerprint` hashes, copies and compares. A family looks at
values only once its framework is in ``sys.modules``: recognising a value never imports a
framework. docs/values.md lists what each family compares and what stays unchecked.

A class says itself what its comparable value is by defining ``_det_nb_value_(self)``
(:data:`VALUE_METHOD`): its values are then compared by what that returns, before any
family looks at them. That is how a class leaves out facts of a run (a duration, a host
name) that no seed fixes.
"""

from __future__ import annotations

import sys

from det_nb.values.base import Family, Reduced, View, bad, count, parts
from det_nb.values.jax import Jax
from det_nb.values.keras import Keras
from det_nb.values.matplotlib import Matplotlib
from det_nb.values.numpy import Numpy
from det_nb.values.objects import Objects
from det_nb.values.pandas import Pandas
from det_nb.values.progress import Tqdm
from det_nb.values.python import Python, why_unsupported
from det_nb.values.sklearn import Sklearn
from det_nb.values.stdlib import Stdlib
from det_nb.values.tensorflow import TensorFlow
from det_nb.values.torch import Torch

#: Every family, in the order values are offered to them: NumPy before Python (a NumPy
#: float64 is a Python float too), Keras before TensorFlow (a Keras variable is a TF
#: tensor), and plain objects last (every framework's objects are Python objects too).
FAMILIES: tuple[Family, ...] = (Numpy(), Python(), Torch(), Jax(), Keras(), TensorFlow(),
                                Pandas(), Sklearn(), Matplotlib(), Stdlib(), Tqdm(), Objects())


#: The method by which a class gives the value its instances are compared by.
VALUE_METHOD = "_det_nb_value_"

# The family that last reduced a value of each type, offered the next one first: a
# tensor then skips the NumPy and Python families' checks (a model has hundreds).
_CLAIMED: dict[type, Family] = {}
_CLAIMED_TYPES_KEPT = 4096


def view_of(value: object) -> View:
    """How ``value`` is hashed and compared; a "bad" view says why it cannot be.

    Raises whatever the value's own code raises while it is read.
    """
    if isinstance(value, Reduced):
        return value.view
    kind = type(value)
    own = getattr(kind, VALUE_METHOD, None)
    if own is not None:
        return _declared_view(value, own(value))
    known = _CLAIMED.get(kind)
    if known is not None:
        found = _offer(known, value)
        if found is not None:
            return found
    for family in FAMILIES:
        found = _offer(family, value)
        if found is not None:
            if len(_CLAIMED) >= _CLAIMED_TYPES_KEPT:
                _CLAIMED.clear()
            _CLAIMED[kind] = family
            return found
    return bad(value, why_unsupported(value))


def _declared_view(value: object, declared: object) -> View:
    """A value by what its class's ``_det_nb_value_`` returned: a dict as the value's named
    parts (as a dataclass's fields), anything else as its one part ``_det_nb_value_()``."""
    name = type(value).__name__
    if type(declared) is dict:
        return parts(name, declared, f"{name} ({count(len(declared), 'part')})")
    return parts(name, {f"{VALUE_METHOD}()": declared}, f"{name} (by {VALUE_METHOD})")


def _offer(family: Family, value: object) -> View | None:
    """``family``'s view of ``value``; None where its framework is not loaded."""
    if family.module is None:
        return family.view(value, None)
    module = sys.modules.get(family.module)
    return None if module is None else family.view(value, module)


__all__ = ["FAMILIES", "VALUE_METHOD", "Family", "Reduced", "View", "view_of"]
