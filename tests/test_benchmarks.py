"""The benchmark runs and reports what it should; timings are never asserted here."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
# Loaded by path under its own name: benchmarks/ is not a package and stays off sys.path.
_spec = importlib.util.spec_from_file_location("det_nb_benchmarks_bench", BENCHMARKS / "bench.py")
bench = sys.modules[_spec.name] = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)
Goal, Row, interleave = bench.Goal, bench.Row, bench.interleave

ROWS = [
    "load", "seed", "dashboard (first)", "dashboard (update)", "modes: single-thread",
    "modes: pinned {n}", "modes: op determinism", "modes: both", "fingerprint",
    "check (keras)", "check (svd)",
]


def test_interleave_alternates_order_and_drops_warmups() -> None:
    calls: list[str] = []

    def measure(name: str, seconds: float):
        def run() -> float:
            calls.append(name)
            return seconds
        return run

    base, cand = interleave(measure("A", 1.0), measure("B", 2.0), pairs=3, warmups=1)
    assert calls == ["A", "B", "B", "A", "A", "B", "B", "A"]
    assert (base, cand) == ([1.0] * 3, [2.0] * 3)


def test_a_row_judges_its_goal_on_the_median_and_its_facts() -> None:
    row = Row("r", "m", "b", "s", "candidate / baseline", [1.0, 1.0, 1.0], [1.0, 1.2, 3.0], 1,
              Goal("<=", 1.25), facts={"ok": True})
    assert row.to_json()["ratio"] == {"min": 1.0, "median": 1.2, "max": 3.0}
    assert row.met() is True
    row.facts["ok"] = False
    assert row.met() is False
    speed = Row("r", "m", "b", "s", "baseline / candidate", [1.0], [2.0], 0, Goal(">=", 0.6))
    assert speed.ratios == [0.5] and speed.met() is False
    extra = Row("r", "m", "b", "s", "candidate / baseline", [0.1], [0.105], 0,
                Goal("<=", 20, "extra_ms"))
    assert abs(extra.measured() - 5) < 1e-9 and extra.met() is True


def test_quick_run_prints_the_table_and_writes_its_json(tmp_path: Path) -> None:
    out = tmp_path / "quick.json"
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / "run.py"), "--quick", "--out", str(out)],
        capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(out.read_text())
    cores = result["machine"]["cores"]
    assert cores >= 1 and result["quick"] is True
    assert {"numpy", "tensorflow", "keras", "ipython", "ipywidgets", "det_nb"} <= set(
        result["versions"])
    names = [row["row"] for row in result["rows"]]
    assert names == [name.format(n=cores) for name in ROWS]
    for row in result["rows"]:
        assert set(row["ratio"]) == {"min", "median", "max"}
        assert row["pairs"] == len(row["baseline_values"]) == len(row["candidate_values"]) >= 1
        assert row["met"] in (True, False, None)
        assert (row["goal"] is None) == (row["met"] is None)
        assert row["row"] in done.stdout
    assert result["rows"][0]["facts"] == {"no ML framework in sys.modules": True}
    assert "ratio min / median / max" in done.stdout
    assert f"cores {cores}" in done.stdout
