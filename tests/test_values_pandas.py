"""The pandas family: frames by labels, dtypes and column values, series, indexes,
categoricals, nullable and string columns, missing values."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import pandas as hpd

from det_nb.fingerprint import describe_difference, fingerprint, snapshot

pd = pytest.importorskip("pandas")


def frame(seed: int) -> object:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "a": rng.standard_normal(4),
        "label": pd.Series(["x", "y", None, "z"], dtype="string"),
        "kind": pd.Categorical(["u", "v", "u", "v"]),
        "count": pd.array([1, None, 3, 4], dtype="Int64"),
        "when": pd.date_range("2024-01-01", periods=4, tz="Europe/Paris"),
    })


def test_frames_from_the_same_seed_are_equal_and_a_changed_cell_is_located() -> None:
    a, b = frame(0), frame(0)
    assert fingerprint(a) == fingerprint(b)
    assert fingerprint(a).summary == "DataFrame (4 rows, 5 columns)"
    b.loc[1, "a"] += 0.5
    assert describe_difference(a, b, "frame") == (
        "frame: DataFrame: column 'a': 1 of 4 rows differ; max abs difference 0.5; "
        "first at row 1")
    assert fingerprint(snapshot(a)) == fingerprint(a)


@pytest.mark.parametrize(("column", "value", "expected"), [
    ("label", "w", "frame: DataFrame: column 'label' row 0: str differs at position 0 "
                   "(lengths 1 and 1)"),
    ("kind", "u", "frame: DataFrame: column 'kind': Categorical: codes: 1 of 4 rows differ; "
                  "max abs difference 1; first at row 1"),
    ("count", 7, "frame: DataFrame: column 'count': Int64 values: values: 1 of 4 rows differ; "
                 "max abs difference 3; first at row 3"),
    ("when", pd.Timestamp("2024-01-09", tz="Europe/Paris"),
     "frame: DataFrame: column 'when': 1 of 4 rows differ; max abs difference "
     "518400000000 us; first at row 2"),
])
def test_each_kind_of_column_names_the_row(column: str, value: object, expected: str) -> None:
    changed = frame(0)
    row = {"label": 0, "kind": 1, "count": 3, "when": 2}[column]
    changed.loc[row, column] = value
    assert describe_difference(frame(0), changed, "frame") == expected


def test_missing_values_labels_and_dtypes() -> None:
    a = frame(0)
    filled = a.copy()
    filled.loc[1, "count"] = 0  # NA and 0: the values agree, the mask does not
    assert describe_difference(a, filled, "f") == (
        "f: DataFrame: column 'count': Int64 values: missing: 1 of 4 rows differ; "
        "first at row 1")
    renamed = a.rename(columns={"a": "A"})
    assert describe_difference(a, renamed, "f") == (
        "f: DataFrame: columns: Index: labels row 0: str differs at position 0 "
        "(lengths 1 and 1)")
    widened = a.astype({"a": "float32"})
    assert describe_difference(a, widened, "f").startswith("f: DataFrame: dtypes[0]: str")
    assert fingerprint(a.set_index("kind")) != fingerprint(a)


def test_series_indexes_and_categoricals() -> None:
    s = pd.Series([1.0, 2.0, 3.0], index=["a", "b", "c"], name="s")
    other = s.copy()
    other["c"] = 4.0
    assert fingerprint(s).summary == "Series float64 (3 rows)"
    assert describe_difference(s, other, "s") == (
        "s: Series: values: 1 of 3 rows differ; max abs difference 1; first at row 2")
    multi = pd.MultiIndex.from_product([["a", "b"], [1, 2]], names=["k", "n"])
    assert fingerprint(multi) == fingerprint(multi.copy())
    assert fingerprint(multi).summary == "MultiIndex (4 labels, 2 levels)"
    assert describe_difference(multi, multi.set_names(["k", "m"]), "i") == (
        "i: MultiIndex: names[1]: str differs at position 0 (lengths 1 and 1)")
    categories = pd.Categorical(["u", "v"], ordered=True)
    assert describe_difference(categories, pd.Categorical(["u", "v"]), "c") == (
        "c: Categorical: ordered: bool True vs False")
    assert fingerprint(pd.NA) != fingerprint(None)
    assert fingerprint(pd.Period("2024-01", "M")) != fingerprint(pd.Period("2024-01", "D"))


FRAMES = hpd.data_frames(
    columns=[hpd.column("x", dtype=float),
             hpd.column("n", dtype="int64", elements=st.integers(-2**62, 2**62)),
             hpd.column("s", elements=st.text(max_size=3) | st.none()),
             hpd.column("b", dtype=bool)],
    index=hpd.range_indexes(min_size=1, max_size=6),
)


@settings(max_examples=40, deadline=None)
@given(FRAMES, st.data())
def test_any_frame_equals_its_copy_and_a_changed_cell_is_located(
    frame: object, data: st.DataObject
) -> None:
    assert fingerprint(frame) == fingerprint(frame.copy(deep=True))
    assert fingerprint(snapshot(frame)) == fingerprint(frame)
    row = data.draw(st.integers(0, len(frame) - 1), label="row")
    changed = frame.copy(deep=True)
    changed.iloc[row, 1] += 1  # the elements leave room: no int64 wraps round
    assert describe_difference(frame, changed, "f") == (
        f"f: DataFrame: column 'n': 1 of {len(frame)} rows differ; max abs difference 1; "
        f"first at row {row}")


def test_attrs_are_compared_where_set() -> None:
    """``DataFrame.attrs`` and ``Series.attrs`` hold the user's metadata (a scale, a
    source); empty ones leave a frame's view as it was."""
    from det_nb.values import view_of

    assert "attrs" not in view_of(frame(0)).payload
    a, b = frame(0), frame(0)
    a.attrs["scale"], b.attrs["scale"] = 1.5, 1.5
    assert fingerprint(a) == fingerprint(b)
    b.attrs["scale"] = 2.0
    assert describe_difference(a, b, "frame") == (
        "frame: DataFrame: attrs['scale']: float differs by 0.5")
    assert fingerprint(snapshot(a)) == fingerprint(a)
    series, other = pd.Series([1.0, 2.0]), pd.Series([1.0, 2.0])
    series.attrs["source"], other.attrs["source"] = "a.csv", "b.csv"
    assert describe_difference(series, other, "s").startswith("s: Series: attrs['source']: ")
