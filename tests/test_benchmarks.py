"""The benchmark runs and reports what it should; timings are never asserted here."""

from __future__ import annotations

import importlib.util
import json
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
# Loaded by path under its own name: benchmarks/ is not a package and stays off sys.path.
_spec = importlib.util.spec_from_file_location("det_nb_benchmarks_bench", BENCHMARKS / "bench.py")
bench = sys.modules[_spec.name] = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)
Goal, Row, interleave = bench.Goal, bench.Row, bench.interleave

ROWS = [
    "load", "audit: load", "audit: default_rng(seed)", "seed", "dashboard (first)",
    "dashboard (update)", "modes: single-thread",
    "modes: pinned {n}", "modes: op determinism", "modes: both", "fingerprint",
    "fingerprint (torch model)",
    "check (keras)", "check (svd)", "portable: numpy", "portable: torch", "portable: keras",
    "threads: lapack", "threads: torch", "verify", "trials",
]
# TF threads (intra, inter) and op determinism each mode must have read back from TF
# ({n}: the core count; 0: TF's default pools).
MODES = {
    "modes: single-thread": ([1, 1], False), "modes: pinned {n}": (["{n}", "{n}"], False),
    "modes: op determinism": ([0, 0], True), "modes: both": ([1, 1], True),
}


def check_numbers_follow_from_the_values(row: dict) -> None:
    """A row's ratios, medians and verdict, recomputed from the times it stored."""
    baseline, candidate = row["baseline_values"], row["candidate_values"]
    assert all(value > 0 for value in baseline + candidate), row["row"]
    pairs = list(zip(baseline, candidate, strict=True))
    if row["ratio_is"] == "candidate / baseline":
        ratios = [c / b for b, c in pairs]
    else:
        assert row["ratio_is"] == "baseline / candidate"
        ratios = [b / c for b, c in pairs]
    assert row["ratio"] == pytest.approx(
        {"min": min(ratios), "median": statistics.median(ratios), "max": max(ratios)})
    assert row["baseline_median"] == pytest.approx(statistics.median(baseline))
    assert row["candidate_median"] == pytest.approx(statistics.median(candidate))
    extra = [(c - b) * 1000 for b, c in pairs]
    if row["unit"] == "s":
        assert row["extra_ms"]["median"] == pytest.approx(statistics.median(extra))
    goal = row["goal"]
    if goal is None:
        assert row["met"] is None
        return
    measured = statistics.median(extra if goal["metric"] == "extra_ms" else ratios)
    within = measured <= goal["value"] if goal["op"] == "<=" else measured >= goal["value"]
    facts_hold = all(value is True for value in row["facts"].values() if isinstance(value, bool))
    assert row["met"] is (within and facts_hold), row["row"]


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
    table = done.stdout.splitlines()
    for row in result["rows"]:
        assert row["pairs"] == len(row["baseline_values"]) == len(row["candidate_values"]) >= 1
        check_numbers_follow_from_the_values(row)
        line = next(line for line in table if line.startswith(row["row"] + "  "))
        shown = {"PASS": row["met"] is True, "FAIL": row["met"] is False}
        assert all((f"  {word}" in line) is wanted for word, wanted in shown.items()), line
    by_name = {row["row"]: row for row in result["rows"]}
    assert by_name["load"]["facts"] == {"no ML framework in sys.modules": True}
    for name in ("check (keras)", "check (svd)"):
        assert by_name[name]["facts"]["verdict deterministic"] is True
    assert by_name["trials"]["facts"]["same losses on the cluster as in one process"] is True
    for name, (threads, op_determinism) in MODES.items():
        facts = by_name[name.format(n=cores)]["facts"]
        assert facts["TF threads (intra, inter)"] == [
            cores if count == "{n}" else count for count in threads]
        assert facts["op determinism"] is op_determinism
    assert "ratio min / median / max" in done.stdout
    assert f"cores {cores}" in done.stdout
