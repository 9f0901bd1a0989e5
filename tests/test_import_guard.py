"""A framework imported after seeding moves none of the user's Python and NumPy draws.

Each test draws between seeding and the import, so a guard that let the import draw (or
let the framework's seeding restart the streams) gives other numbers after the import
than a run without it.
"""

from __future__ import annotations

import os
from pathlib import Path

from conftest import run_python

# A stand-in for a framework det_nb watches (jax: det_nb seeds nothing in it, so only the
# guard can undo what its import draws), drawing from both global streams as it loads.
FAKE_JAX = """
import random
import numpy
random.random()
numpy.random.rand(3)
"""

DRAWS = """
import json
import random
import numpy as np
import det_nb

def draw():
    return [random.random(), float(np.random.rand())]

det_nb.seed(42)
first = draw()
import {module}
after_import = draw()
det_nb.seed(42)
draw()
print(json.dumps({{"module": {module}.__file__, "after import": after_import,
                   "without import": draw(), "pending": det_nb.get_session().pending_hooks}}))
"""


def test_an_import_that_draws_leaves_the_streams_where_they_were(tmp_path: Path) -> None:
    (tmp_path / "jax").mkdir()
    (tmp_path / "jax" / "__init__.py").write_text(FAKE_JAX)
    path = os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")]))
    result = run_python(DRAWS.format(module="jax"), env={"PYTHONPATH": path})
    assert result["module"] == str(tmp_path / "jax" / "__init__.py")  # the fake, not JAX
    assert "jax" not in result["pending"]  # the hook ran at the import
    assert result["after import"] == result["without import"]


def test_keras_imported_after_a_draw_continues_the_streams() -> None:
    # Keras draws from random while it loads (rich) and det_nb re-seeds it at import, which
    # also re-seeds random and NumPy: both must be undone for the draws to run on.
    result = run_python(DRAWS.format(module="keras"))
    assert result["after import"] == result["without import"]
