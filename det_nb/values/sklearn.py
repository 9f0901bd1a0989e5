"""scikit-learn: estimators by their parameters and fitted state, meta-estimators
(``Pipeline``, ``ColumnTransformer``, searches, ensembles) through their named steps, and
compiled helpers (a tree's nodes) by the arguments and state their ``__reduce__`` gives."""

from __future__ import annotations

import sys
from types import ModuleType
from typing import Any

from det_nb.values.base import Family, Reduced, View, parts

# Wall-clock measurements a search keeps with its results: no seed fixes them, and they
# are not results, so they are left out (docs/values.md says so).
_TIMINGS = frozenset({"mean_fit_time", "std_fit_time", "mean_score_time", "std_score_time"})


class Sklearn(Family):
    """``BaseEstimator`` subclasses, and scikit-learn's compiled objects (``Tree``, losses)."""

    name = "scikit-learn"
    module = "sklearn"

    def view(self, value: object, module: ModuleType | None) -> View | None:
        base: Any = sys.modules.get("sklearn.base")  # loaded with any estimator
        if base is not None and isinstance(value, base.BaseEstimator):
            return _estimator_view(value)
        kind = type(value)
        if kind.__module__.startswith("sklearn.") and not hasattr(value, "__dict__"):
            return _compiled_view(value)
        return None


def _estimator_view(estimator: Any) -> View:
    """Parameters (``get_params(deep=False)``, in name order), then the rest of the
    instance's attributes: fitted ones (``coef_``) and private state (a histogram gradient
    boosting's trees are in ``_predictors``). Lists of named steps become maps by name."""
    kind = type(estimator).__name__
    params = estimator.get_params(deep=False)
    named = {name: _by_name(value) for name, value in params.items()}
    for name, value in vars(estimator).items():
        if name in params or name == "refit_time_":
            continue
        if name == "cv_results_" and isinstance(value, dict):
            value = {key: item for key, item in value.items() if key not in _TIMINGS}
        named[name] = _by_name(value)
    return parts(kind, named, f"{kind} ({'fitted' if _fitted(estimator) else 'not fitted'})")


def _fitted(estimator: Any) -> bool:
    """scikit-learn's own test (``check_is_fitted``), without importing its module."""
    own_test = getattr(estimator, "__sklearn_is_fitted__", None)
    if callable(own_test):
        return bool(own_test())
    return any(name.endswith("_") and not name.startswith("__") for name in vars(estimator))


def _by_name(value: object) -> object:
    """A list of ``(name, estimator, ...)`` steps as a map from name to the rest, so a
    report says ``steps['scaler']`` rather than ``steps[0][1]``."""
    if not isinstance(value, list) or not value:
        return value
    if not all(isinstance(step, tuple) and len(step) >= 2 and isinstance(step[0], str)
               for step in value):
        return value
    names = [step[0] for step in value]
    if len(set(names)) != len(names):
        return value
    steps = {step[0]: step[1] if len(step) == 2 else step[1:] for step in value}
    return Reduced(View("map", "steps", steps, f"steps ({len(steps)})"))


def _compiled_view(value: Any) -> View:
    """A compiled (Cython) object by the arguments and state its ``__reduce__`` gives
    (nothing is serialised: the parts are walked like any other value)."""
    kind = type(value).__name__
    reduced = value.__reduce__()
    arguments = reduced[1] if len(reduced) > 1 else ()
    state = reduced[2] if len(reduced) > 2 else None
    return parts(kind, {"arguments": arguments, "state": state}, f"{kind} (scikit-learn)")
