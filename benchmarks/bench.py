"""Shared benchmark machinery: interleaved timing, statistics, rows, fresh interpreters.

A row compares a candidate with its baseline measured in the same run. Baseline and
candidate are timed in pairs, interleaved in ABBA order (A B, B A, A B, ...) so that drift
in a shared machine's load hits both alike; the first pairs are warm-ups and are dropped.
Each pair gives one ratio; a row reports min / median / max of those ratios and the
median of each side's times, and its goal is judged on the median.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
# Keep TensorFlow's start-up chatter out of the output; this is a CPU benchmark.
QUIET_ENV = {"TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
SEED, TRIAL = 42, 3
TRIAL_SEED = 1129302213  # (42, trial 3) under the default scheme (DESIGN.md)
SEED_LINE = f"{SEED} --trial {TRIAL} --quiet"
FRAMEWORKS = ("tensorflow", "keras", "torch", "jax")


@contextlib.contextmanager
def bytecode_env() -> Iterator[dict[str, str]]:
    """The environment for timing fresh interpreters that load modules from bytecode, as
    from an installed package: a bytecode cache shared in a temporary folder (the warm-up
    pairs fill it), even where PYTHONDONTWRITEBYTECODE is set (compiling det_nb's modules
    at every start is no cost a user pays)."""
    cache = tempfile.mkdtemp(prefix="det_nb-bench-pycache-")
    env = {**os.environ, **QUIET_ENV, "PYTHONPYCACHEPREFIX": cache}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    try:
        yield env
    finally:
        shutil.rmtree(cache, ignore_errors=True)

Measure = Callable[[], float]  # runs once, returns the seconds of its timed part


def timed(action: Callable[[], object]) -> Measure:
    """A measure that times ``action()`` after collecting garbage (untimed)."""

    def measure() -> float:
        gc.collect()
        start = time.perf_counter()
        action()
        return time.perf_counter() - start

    return measure


def interleave(baseline: Measure, candidate: Measure, pairs: int,
               warmups: int) -> tuple[list[float], list[float]]:
    """Time ``warmups + pairs`` pairs in ABBA order; return the kept (baseline, candidate)."""
    kept_a: list[float] = []
    kept_b: list[float] = []
    for index in range(warmups + pairs):
        if index % 2 == 0:
            a, b = baseline(), candidate()
        else:
            b, a = candidate(), baseline()
        if index >= warmups:
            kept_a.append(a)
            kept_b.append(b)
    return kept_a, kept_b


def spread(values: list[float]) -> dict[str, float]:
    """min / median / max."""
    return {"min": min(values), "median": statistics.median(values), "max": max(values)}


@dataclass(frozen=True)
class Goal:
    """``metric op value``; metric "ratio" is the median ratio, "extra_ms" the median
    per-pair (candidate - baseline) in milliseconds."""

    op: str  # "<=" or ">="
    value: float
    metric: str = "ratio"

    def text(self) -> str:
        sign = "≤" if self.op == "<=" else "≥"
        if self.metric == "extra_ms":
            return f"extra {sign} {self.value:g} ms"
        return f"{sign} {self.value:g}x"

    def met(self, measured: float) -> bool:
        return measured <= self.value if self.op == "<=" else measured >= self.value


@dataclass
class Row:
    """One line of the table, with the raw values it was computed from."""

    row: str
    measure: str
    baseline: str
    unit: str  # of the values: "s" or "samples/s"
    ratio_is: str  # how a pair's ratio is formed, e.g. "candidate / baseline"
    baseline_values: list[float]
    candidate_values: list[float]
    warmups: int  # excluded: pairs, or as ``warmup_is`` says
    goal: Goal | None = None
    facts: dict[str, Any] = field(default_factory=dict)  # non-timing; with a goal, bools must hold
    note: str = ""
    warmup_is: str = "pairs"

    @property
    def ratios(self) -> list[float]:
        pairs = zip(self.baseline_values, self.candidate_values, strict=True)
        if self.ratio_is == "candidate / baseline":
            return [b / a for a, b in pairs]
        return [a / b for a, b in pairs]

    @property
    def extra_ms(self) -> list[float]:
        pairs = zip(self.baseline_values, self.candidate_values, strict=True)
        return [(b - a) * 1000 for a, b in pairs]

    def measured(self) -> float:
        """The value the goal is judged on."""
        values = self.extra_ms if self.goal and self.goal.metric == "extra_ms" else self.ratios
        return statistics.median(values)

    def met(self) -> bool | None:
        """Goal met (and every boolean fact true), or None where the row is only reported."""
        if self.goal is None:
            return None
        return self.goal.met(self.measured()) and all(
            value is True for value in self.facts.values() if isinstance(value, bool))

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["goal"] = None if self.goal is None else {**asdict(self.goal),
                                                       "text": self.goal.text()}
        data.update(
            pairs=len(self.ratios), ratio=spread(self.ratios),
            baseline_median=statistics.median(self.baseline_values),
            candidate_median=statistics.median(self.candidate_values),
            extra_ms=spread(self.extra_ms) if self.unit == "s" else None,
            met=self.met(),
        )
        return data


def row_from_json(data: dict[str, Any]) -> Row:
    """Rebuild a row sent as JSON by a fresh interpreter or a kernel."""
    fields = {name: data[name] for name in Row.__dataclass_fields__}
    goal = fields["goal"]
    if goal is not None:
        fields["goal"] = Goal(goal["op"], goal["value"], goal["metric"])
    return Row(**fields)


def run_json(args: list[str], timeout: float = 600) -> Any:
    """Run ``python ARGS`` in a fresh interpreter; return the JSON it printed last."""
    done = subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, timeout=timeout,
        env={**os.environ, **QUIET_ENV}, cwd=BENCH_DIR.parent,
    )
    if done.returncode != 0:
        raise RuntimeError(f"python {' '.join(args)} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def emit(value: Any) -> None:
    """Print ``value`` as the last line of output, for :func:`run_json`."""
    print(json.dumps(value), flush=True)


def serve(hello: dict[str, Any], actions: dict[str, Callable[[], object]]) -> None:
    """A side's worker loop: say ``hello`` (JSON), then time each action named on stdin."""
    emit(hello)
    for line in sys.stdin:
        action = actions[line.strip()]
        start = time.perf_counter()
        action()
        emit(time.perf_counter() - start)


class Side:
    """One long-lived worker process of a row (its script run with ``--worker`` and
    ``flags``), started without the variables in ``unset``; it is sent ``sizes``, answers
    with its hello (:attr:`hello`), then times one task per :meth:`run`."""

    def __init__(self, script: str, flags: list[str], sizes: dict[str, int],
                 unset: tuple[str, ...]) -> None:
        env = {k: v for k, v in {**os.environ, **QUIET_ENV}.items() if k not in unset}
        self.script = script
        self.process = subprocess.Popen(
            [sys.executable, str(BENCH_DIR / script), "--worker", *flags],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
            cwd=BENCH_DIR.parent,
        )
        self._send(json.dumps(sizes))
        self.hello: dict[str, Any] = self._receive()

    def _send(self, line: str) -> None:
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()

    def _receive(self) -> Any:
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"a {self.script} worker died; run it by hand to see why")
        return json.loads(line)

    def run(self, task: str) -> float:
        """Seconds the worker took for ``task``."""
        self._send(task)
        return self._receive()

    def close(self) -> None:
        """End the worker (it ends when its stdin closes)."""
        self.process.stdin.close()
        self.process.wait(timeout=60)
