"""The scikit-learn family: estimators by parameters and fitted state, pipelines and
column transformers through their named steps, forests through their trees."""

from __future__ import annotations

import numpy as np
import pytest

from det_nb.fingerprint import describe_difference, fingerprint, snapshot

sklearn = pytest.importorskip("sklearn")
from sklearn.compose import ColumnTransformer  # noqa: E402
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.model_selection import GridSearchCV  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import FunctionTransformer, StandardScaler  # noqa: E402

X = np.random.default_rng(0).random((40, 3))
y = (X[:, 0] + X[:, 1] > 1).astype(int)


def test_estimators_fitted_from_the_same_seed_are_equal() -> None:
    for make in (lambda: RandomForestClassifier(4, random_state=0),
                 lambda: HistGradientBoostingClassifier(max_iter=3, random_state=0),
                 lambda: make_pipeline(StandardScaler(), LogisticRegression())):
        a, b = make().fit(X, y), make().fit(X, y)
        assert fingerprint(a) == fingerprint(b)
        assert fingerprint(snapshot(a)) == fingerprint(a)
        assert fingerprint(a).summary.endswith(" (fitted)")
    assert fingerprint(LogisticRegression()).summary == "LogisticRegression (not fitted)"


def test_a_changed_fitted_value_is_named_through_the_steps() -> None:
    a = make_pipeline(StandardScaler(), LogisticRegression()).fit(X, y)
    b = make_pipeline(StandardScaler(), LogisticRegression()).fit(X, y)
    b.named_steps["logisticregression"].coef_[0, 2] += 0.5
    assert describe_difference(a, b, "pipe") == (
        "pipe: Pipeline: steps['logisticregression']: LogisticRegression: coef_: 1 of 3 "
        "elements differ; max abs difference 0.5; first at coef_[0, 2]")
    c = ColumnTransformer([("scale", StandardScaler(), [0, 1]),
                           ("log", FunctionTransformer(np.log1p), [2])]).fit(X)
    d = ColumnTransformer([("scale", StandardScaler(), [0, 1]),
                           ("log", FunctionTransformer(np.log1p), [2])]).fit(X * 2)
    assert describe_difference(c, d, "ct").startswith(
        "ct: ColumnTransformer: transformers_['scale'][0]: StandardScaler: mean_: 2 of 2 "
        "elements differ")


def test_unseeded_forests_differ_in_their_trees() -> None:
    a = RandomForestClassifier(3, random_state=1).fit(X, y)
    b = RandomForestClassifier(3, random_state=2).fit(X, y)
    b.random_state = 1  # the same parameters, other trees
    found = describe_difference(a, b, "forest")
    assert found.startswith("forest: RandomForestClassifier: estimators_[0]: "
                            "DecisionTreeClassifier: random_state: int differs by ")


def test_search_timings_are_not_results() -> None:
    """A grid search records how long each fit took: no seed fixes that, so it is left out
    (docs/values.md), and two equal searches compare equal."""
    def search() -> GridSearchCV:
        return GridSearchCV(LogisticRegression(), {"C": [0.5, 1.0]}, cv=2).fit(X, y)

    a, b = search(), search()
    b.refit_time_ = a.refit_time_ + 1.0  # as a slower machine would measure
    for timing in ("mean_fit_time", "std_fit_time", "mean_score_time", "std_score_time"):
        b.cv_results_[timing] = a.cv_results_[timing] + 1.0
    assert fingerprint(a) == fingerprint(b)
    b.cv_results_["mean_test_score"][0] += 0.25
    assert describe_difference(a, b, "search").startswith(
        "search: GridSearchCV: cv_results_['mean_test_score']: 1 of 2 elements differ")
