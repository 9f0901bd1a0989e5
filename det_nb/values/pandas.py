"""pandas: data frames by column (values, dtypes, labels) and ``attrs``, series, indexes
(multi-level ones by levels and codes), categoricals, extension arrays and missing values."""

from __future__ import annotations

from types import ModuleType
from typing import Any

from det_nb.values.base import Family, Reduced, View, find, parts, scalar
from det_nb.values.numpy import array_view

#: Kind of the arrays and lists holding a column's or an index's values: compared by rows.
ROWS = "column"
# Labels shown as themselves in a part's name; any other label is shown by position.
_SHOWN_LABELS = (str, int, float, bool, type(None))


class Pandas(Family):
    """``DataFrame``, ``Series``, ``Index``/``MultiIndex``, ``Categorical``, extension
    arrays (nullable, string, datetime-with-zone, ...), ``NA``, ``Period``, ``Interval``."""

    name = "pandas"
    module = "pandas"

    def view(self, value: object, module: ModuleType | None) -> View | None:
        pd: Any = module
        if isinstance(value, pd.DataFrame):
            return _frame_view(pd, value)
        if isinstance(value, pd.Series):
            named = {"name": value.name, "dtype": str(value.dtype), "index": value.index,
                     "values": rows(pd, value.array)}
            if value.attrs:  # the user's metadata; left out while empty (as most are)
                named["attrs"] = dict(value.attrs)
            return parts("Series", named, f"Series {value.dtype} ({len(value)} rows)")
        if isinstance(value, pd.Index):
            return _index_view(pd, value)
        if isinstance(value, pd.Categorical):
            return _categorical(value)
        if isinstance(value, pd.api.extensions.ExtensionArray):
            return rows(pd, value).view
        if value is pd.NA:
            return scalar("NA", "NA")
        if isinstance(value, pd.Period):
            return scalar("Period", f"{value} {value.freqstr}", "Period")
        if isinstance(value, pd.Interval):
            named = {"left": value.left, "right": value.right, "closed": value.closed}
            return parts("Interval", named, f"Interval {value}")
        return None


def _frame_view(pd: Any, frame: Any) -> View:
    """Labels, dtypes, then each column's values as its own part (``column 'a'``), then
    ``attrs`` where set."""
    labels = list(frame.columns)
    named: dict[str, object] = {"columns": frame.columns, "index": frame.index,
                                "dtypes": tuple(str(dtype) for dtype in frame.dtypes)}
    repeated = {label for label in labels if labels.count(label) > 1} if (
        not frame.columns.is_unique) else set()
    for position, label in enumerate(labels):
        key = column_key(label, position)
        if label in repeated:
            key += f" (position {position})"
        named[key] = rows(pd, frame.iloc[:, position].array)
    if frame.attrs:  # the user's metadata; left out while empty (as most are)
        named["attrs"] = dict(frame.attrs)
    rows_count, columns = frame.shape
    return parts("DataFrame", named, f"DataFrame ({rows_count} rows, {columns} columns)")


def column_key(label: object, position: int) -> str:
    """How a column is named in a report: ``column 'a'``, or ``column #3`` for a label whose
    text could change from run to run (an object's repr)."""
    pieces = label if isinstance(label, tuple) else (label,)
    if all(type(piece) in _SHOWN_LABELS for piece in pieces):
        return f"column {label!r}"
    return f"column #{position}"


def _index_view(pd: Any, index: Any) -> View:
    kind = type(index).__name__
    if isinstance(index, pd.MultiIndex):
        named = {"names": list(index.names), "levels": list(index.levels),
                 "codes": [Reduced(array_view(codes, ROWS)) for codes in index.codes]}
        return parts(kind, named, f"{kind} ({len(index)} labels, {index.nlevels} levels)")
    if isinstance(index, pd.RangeIndex):
        named = {"name": index.name, "start": index.start, "stop": index.stop,
                 "step": index.step}
        return parts(kind, named, f"{kind} ({len(index)} labels)")
    named = {"name": index.name, "dtype": str(index.dtype), "labels": rows(pd, index.array)}
    return parts(kind, named, f"{kind} ({len(index)} labels)")


def rows(pd: Any, values: Any) -> Reduced:
    """The values of a column, series or index, compared row by row.

    NumPy-backed values as they are (naive datetimes included); categoricals by codes and
    categories; datetimes with a zone by their UTC times; periods by their ordinals;
    nullable numbers by values and a missing-value mask; anything else (strings, Arrow
    types, objects) as a list of Python values, with None where a value is missing (a
    list, not an object array, so that a snapshot of it can be written to a file).
    """
    import numpy as np  # loaded by pandas

    dtype = str(values.dtype)
    if isinstance(values, find(pd, "arrays.NumpyExtensionArray")) or isinstance(
            values.dtype, np.dtype):
        data = values.to_numpy()
        if data.dtype.hasobject:
            return _listed(data, dtype)
        return Reduced(array_view(data, ROWS, dtype))
    if isinstance(values, pd.Categorical):
        return Reduced(_categorical(values))
    unit = getattr(values.dtype, "unit", None)
    if unit is not None and hasattr(values, "asi8"):  # datetimes with a zone
        return Reduced(array_view(values.asi8.view(f"M8[{unit}]"), ROWS, dtype))
    if hasattr(values, "asi8"):  # periods
        return Reduced(array_view(values.asi8, ROWS, dtype))
    numbers = getattr(values.dtype, "numpy_dtype", None)
    if isinstance(numbers, np.dtype) and numbers.kind in "biufc":
        missing = np.asarray(values.isna(), dtype=bool)
        data = values.to_numpy(dtype=numbers, na_value=numbers.type(0))
        named = {"values": Reduced(array_view(data, ROWS, dtype)),
                 "missing": Reduced(array_view(missing, ROWS))}
        return Reduced(parts(f"{dtype} values", named, f"{dtype} ({len(values)} rows)"))
    return _listed(values.to_numpy(dtype=object, na_value=None), dtype)


def _listed(data: Any, dtype: str) -> Reduced:
    return Reduced(View("seq", ROWS, data.tolist(), f"{ROWS} {dtype} ({len(data)} rows)"))


def _categorical(values: Any) -> View:
    named = {"ordered": bool(values.ordered), "categories": values.categories,
             "codes": Reduced(array_view(values.codes, ROWS))}
    return parts("Categorical", named,
                 f"Categorical ({len(values)} rows, {len(values.categories)} categories)")
