"""Rows "audit": what the entropy audit costs at ``%load_ext`` and per seeded call.

Both rows count the CPU time of the process (``time.process_time``), not wall time: on a
machine shared with other work, waiting for a core is not the audit's cost.

"audit: load" times ``%load_ext det_nb`` inside fresh interpreters, with the audit against
det_nb whose audit module is replaced by a stub that does nothing (so importing the
audit counts as its cost). It also times the first cell after loading, where the audit
registers its post-import hooks (importing wrapt). Modules load from bytecode, as from an
installed package: the interpreters share a bytecode cache in a temporary folder (the
warm-up pairs fill it) even where PYTHONDONTWRITEBYTECODE is set.

"audit: default_rng(seed)" runs, in one IPython shell, a cell calling
``np.random.default_rng(seed)`` in a tight loop with the audit watching (NumPy's
``default_rng`` wrapped for clock seeds) against the same cell with the audit uninstalled.
Run as ``python benchmarks/row_audit.py --loop [--quick]`` for the second row alone.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from typing import Any

from bench import BENCH_DIR, Goal, Row, bytecode_env, emit, interleave, row_from_json, run_json

STUB = (
    "import sys, types\n"
    "stub = types.ModuleType('det_nb.entropy_audit')\n"
    "stub.install = stub.activate = stub.uninstall = lambda *args: None\n"
    "sys.modules['det_nb.entropy_audit'] = stub\n"
)
LOAD = (
    "import json, time\n"
    "from IPython.core.interactiveshell import InteractiveShell\n"
    "shell = InteractiveShell.instance()\n"
    "start = time.process_time()\n"
    "shell.run_line_magic('load_ext', 'det_nb')\n"
    "loaded = time.process_time()\n"
    "shell.run_cell('pass')\n"
    "print(json.dumps([loaded - start, time.process_time() - loaded]))\n"
)
LOOP = "for _ in range({calls}):\n    np.random.default_rng(seed)\n"


def _load(stubbed: bool, first_cells: list[float], env: dict[str, str]) -> float:
    """Seconds ``%load_ext det_nb`` took in a fresh interpreter; notes the first cell's."""
    code = (STUB if stubbed else "") + LOAD
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, cwd=BENCH_DIR.parent, check=True)
    load, first_cell = json.loads(done.stdout.strip().splitlines()[-1])
    first_cells.append(first_cell)
    return load


def load_row(quick: bool) -> Row:
    """``%load_ext det_nb`` with the audit against it stubbed out, in fresh interpreters."""
    pairs, warmups = (2, 1) if quick else (15, 2)
    first_without: list[float] = []
    first_with: list[float] = []
    with bytecode_env() as env:
        base, det = interleave(lambda: _load(True, first_without, env),
                               lambda: _load(False, first_with, env), pairs, warmups)
    kept = slice(warmups, None)
    extra_first = sorted((w - b) * 1000 for b, w in zip(first_without[kept], first_with[kept],
                                                          strict=True))
    return Row(
        "audit: load", "%load_ext det_nb with the entropy audit",
        "the same with the audit module stubbed out", "s", "candidate / baseline", base, det,
        warmups, Goal("<=", 5, "extra_ms"),
        facts={"first cell extra ms (median)": round(extra_first[len(extra_first) // 2], 1)},
        note=("CPU time inside fresh interpreters (InteractiveShell.instance() untimed), modules "
              "loaded from a bytecode cache; the first cell after loading registers the "
              "audit's post-import hooks, which imports wrapt (%det_seed imports it anyway): "
              "its extra time is a fact"),
    )


def loop_rows(quick: bool) -> list[dict[str, Any]]:
    """In this process: the default_rng(seed) loop with and without the audit."""
    from IPython.core.interactiveshell import InteractiveShell

    from det_nb import entropy_audit

    calls = 2_000 if quick else 100_000
    pairs, warmups = (2, 1) if quick else (20, 2)
    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "det_nb")
    shell.run_cell("import numpy as np\nseed = 42", store_history=True)
    cell = LOOP.format(calls=calls)
    wrapped: list[bool] = []

    def timed_cell(audit: bool) -> float:
        if audit:
            entropy_audit.install(shell)
            entropy_audit.activate()
        else:
            entropy_audit.uninstall()
        np = shell.user_ns["np"]
        wrapped.append(hasattr(np.random.default_rng, "__wrapped__") == audit)
        start = time.process_time()
        result = shell.run_cell(cell, store_history=True)
        elapsed = time.process_time() - start
        if not result.success:
            raise RuntimeError(f"the loop failed: {result.error_in_exec}")
        return elapsed

    base, det = interleave(lambda: timed_cell(False), lambda: timed_cell(True), pairs, warmups)
    per_call_ns = (sorted(det)[len(det) // 2] - sorted(base)[len(base) // 2]) / calls * 1e9
    row = Row(
        "audit: default_rng(seed)",
        f"a cell calling np.random.default_rng(seed) {calls} times, audit watching",
        "the same cell with the audit uninstalled", "s", "candidate / baseline", base, det,
        warmups, Goal("<=", 1.05),
        facts={"default_rng wrapped only with the audit": all(wrapped),
               "no records made": not entropy_audit.records(),
               "extra ns per call (medians)": round(per_call_ns)},
        note=("CPU time; the loop runs in a cell, so every call comes from the notebook's "
              "code"),
    )
    return [row.to_json()]


def measure(quick: bool) -> list[Row]:
    """Both rows: the load row from fresh interpreters, the loop row in a fresh shell."""
    loop = run_json([str(BENCH_DIR / "row_audit.py"), "--loop"] + (["--quick"] if quick else []))
    return [load_row(quick), *(row_from_json(data) for data in loop)]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny sizes, few repeats")
    parser.add_argument("--loop", action="store_true", help="the default_rng row only")
    args = parser.parse_args()
    if args.loop:
        emit(loop_rows(args.quick))
    else:
        emit([row.to_json() for row in measure(args.quick)])
