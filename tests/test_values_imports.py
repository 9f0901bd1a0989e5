"""Recognising values never imports a framework: a fresh process per family fingerprints
values of every other family (and plain objects) and finds the family's framework absent.

A fresh interpreter, not this test process: pytest and IPython's testing shell import
NumPy themselves, which would hide an import made by a family.
"""

from __future__ import annotations

import pytest
from conftest import run_python

# For each family's framework: the frameworks the fresh process imports and whose values
# it fingerprints (none of which imports the family's framework itself).
LOADED = {
    "numpy": (),
    "torch": ("numpy", "pandas", "sklearn", "tqdm"),
    "jax": ("numpy", "pandas", "torch", "matplotlib"),
    "tensorflow": ("numpy", "pandas", "torch"),
    "keras": ("numpy", "pandas", "torch"),
    "pandas": ("numpy", "torch", "tqdm"),
    "tqdm": ("numpy", "pandas", "sklearn", "matplotlib"),  # torch imports tqdm itself
    "sklearn": ("numpy", "pandas", "torch"),
    "matplotlib": ("numpy", "pandas", "torch"),
}

VALUES = '''
import collections, dataclasses, datetime, enum, json, logging, random, re, sys, threading, types
from det_nb.check import run_check
from det_nb.fingerprint import describe_difference, fingerprint, is_code, snapshot

@dataclasses.dataclass
class Config:
    lr: float
    layers: list

class Colour(enum.Enum):
    RED = 1

class Plain:
    def __init__(self):
        self.steps = [1, 2]

Point = collections.namedtuple("Point", "x y")
values = [None, 1, 2.5, "s", b"b", [1, (2, 3)], {"k": {1, 2}}, Config(0.1, [3]), Point(1, 2),
          Plain(), random.Random(3), datetime.datetime(2024, 1, 2), Colour.RED,
          types.SimpleNamespace(a=1), json.dumps, print, object(), iter([1]), re.compile("a+"),
          threading.Lock(), threading.Event(), logging.getLogger("nb")]
if "numpy" in LOADED:
    import numpy as np
    values += [np.arange(6.0).reshape(2, 3), np.float32(1), np.random.default_rng(1),
               np.ma.masked_array([1, 2], mask=[0, 1]), np.broadcast_to(np.ones(1), (10**8,))]
if "pandas" in LOADED:
    import pandas as pd
    values += [pd.DataFrame({"a": [1.0], "b": ["x"]}), pd.Series([1, None], dtype="Int64"),
               pd.MultiIndex.from_tuples([("a", 1)]), pd.Categorical(["u"]), pd.NA]
if "sklearn" in LOADED:
    from sklearn.linear_model import LinearRegression
    values += [LinearRegression().fit(np.ones((2, 1)), [1.0, 2.0])]
if "torch" in LOADED:
    import torch
    net = torch.nn.Linear(2, 1)
    values += [torch.ones(2), net, torch.optim.SGD(net.parameters(), lr=0.1),
               torch.Generator(), torch.zeros(1).expand(10**4, 10**4)]
if "tqdm" in LOADED:
    import io
    import tqdm
    values += [tqdm.tqdm(total=2, file=io.StringIO())]
if "matplotlib" in LOADED:
    import matplotlib
    matplotlib.use("agg")
    import matplotlib.pyplot as plt
    figure, axes = plt.subplots()
    values += [figure, axes, axes.plot([1, 2])[0]]
for value in values:
    printed = fingerprint(value)
    snapshot(value) if not hasattr(printed, "reason") else None
    describe_difference(value, value, "v")
    is_code(value)
print(json.dumps({"loaded": sorted(m for m in sys.modules if m.split(".")[0] == FRAMEWORK),
                  "values": len(values)}))
'''


@pytest.mark.parametrize("framework", sorted(LOADED))
def test_recognising_values_does_not_import_a_framework(framework: str) -> None:
    code = f"LOADED = {LOADED[framework]!r}\nFRAMEWORK = {framework!r}\n" + VALUES
    found = run_python(code)
    assert found["loaded"] == [], f"{framework} was imported: {found['loaded'][:5]}"
    assert found["values"] >= 22
