"""``python -m det_nb verify``: prove notebooks reproducible by running them in fresh kernels.

Each notebook runs N times (default 2), its kernels alive together and taking turns cell
by cell, with det_nb fingerprinting every name a cell assigned or changed (see
:mod:`det_nb.notebook_runner`). The report names the first code cell where the runs part,
every name that differs there and how, how many later cells differ in consequence, and
what differed between the runs' environments. ``--vary`` changes, between runs, a
condition that must not matter (set at kernel start); ``--against`` compares fresh runs
with a JSON report written by ``--json``, on this machine or another.

Exit status: 0 all identical, 1 some notebook's runs parted, 2 bad input or a notebook
that failed to run.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from det_nb import notebook_runner
from det_nb.cpu_kernels import EMULATED
from det_nb.notebook_runner import CellResult, KernelRun, NameFingerprint

PROG = "python -m det_nb verify"
FORMAT = "det_nb-verify"
#: The report format this det_nb writes and the only one it reads.
VERSION = 1
#: The runs' kernels are alive together (side by side), so their number is bounded.
MAX_RUNS = 16
#: A stored report larger than this is refused before it is read (reports hold digests
#: and run records, a few kB per cell).
MAX_REPORT_BYTES = 64 << 20

#: Conditions ``--vary`` changes between runs: run i gets values[i % len(values)], set in
#: the kernel's environment at start. Thread counts 1 and 8: on a 2-core machine a
#: 4M-element tf.reduce_sum gave the same float with 1, 2 or 4 intra-op threads and a
#: different one with 8 (measured).
VARIATIONS: dict[str, tuple[dict[str, str], ...]] = {
    "threads": tuple(
        {"TF_NUM_INTRAOP_THREADS": n, "TF_NUM_INTEROP_THREADS": n,
         "OPENBLAS_NUM_THREADS": n, "OMP_NUM_THREADS": n}
        for n in ("1", "8")
    ),
    "hashseed": ({"PYTHONHASHSEED": "1"}, {"PYTHONHASHSEED": "2"}),
    # Another CPU generation, emulated: OpenBLAS's Prescott kernels instead of those it
    # picks for this CPU. Marked as emulation, so det_nb's portable pin overrides it as it
    # overrides a CPU's own choice.
    "cpu": ({}, {"OPENBLAS_CORETYPE": "Prescott", EMULATED: "OPENBLAS_CORETYPE"}),
}


class UsageError(Exception):
    """Bad command-line input: one line, exit status 2."""


# -- comparing runs --------------------------------------------------------------------


@dataclass
class RunData:
    """One run as compared: fresh from a kernel, or read from a stored report."""

    label: str  # "run 2", "stored run 1"
    varied: dict[str, str]
    cells: list[CellResult]
    environment: dict[str, Any]
    record: dict[str, Any] | None
    status_warnings: list[str]
    error: str | None
    values: dict[str, object] | None = None  # snapshots of the differing names, if read


@dataclass
class Parting:
    """Where a run first differs from the reference run."""

    cell: CellResult  # the reference run's cell
    other: RunData
    names: dict[str, str]  # name -> what differs
    outputs_differ: bool
    later: list[int] = field(default_factory=list)  # later cells that differ too


@dataclass
class NotebookVerdict:
    """The verification of one notebook."""

    path: str
    runs: list[RunData]
    parting: Parting | None = None
    error: str | None = None  # a run failed to execute

    @property
    def status(self) -> str:
        """"failed", "parted" or "identical"."""
        return "failed" if self.error else "parted" if self.parting else "identical"

    def text(self) -> str:
        """The report: one line when identical (and nothing to note); free of temp paths."""
        runs = self.runs
        if self.error is not None:
            return f"{self.path}: could not run: {self.error}"
        if self.parting is None:
            cells, names = _counts(runs)
            line = (f"{self.path}: identical across {_run_count(runs)} "
                    f"({cells} cells, {names} names compared)")
            lineage = (runs[0].record or {}).get("lineage", {})
            if lineage.get("experiment_seed_origin") == "assigned":
                line += (f"\n  note: det_nb assigned experiment seed {lineage['experiment_seed']}"
                         " from the clock, and runs started together got the same one; a"
                         " later run gets another: give the seed in %det_seed")
            return line
        parting, reference = self.parting, runs[0]
        cell = parting.cell
        lines = [f"{self.path}: runs parted at cell {cell.index}: {cell.first_line}",
                 f"  {reference.label} vs {parting.other.label}:"]
        lines += [f"    {detail}" for _, detail in sorted(parting.names.items())]
        if parting.outputs_differ:
            lines.append("    the cell's outputs differ")
        if parting.later:
            shown = ", ".join(str(k) for k in parting.later[:10])
            more = ", ..." if len(parting.later) > 10 else ""
            word = "cell" if len(parting.later) == 1 else "cells"
            lines.append(f"  later cells that differ as a consequence: {len(parting.later)} "
                         f"({word} {shown}{more})")
        differences = environment_differences(reference, parting.other)
        if differences:
            lines.append("  what differed between the runs (likely causes):")
            lines += [f"    {line}" for line in differences]
        if reference.status_warnings:
            lines.append(f"  det_nb warnings in {reference.label}:")
            lines += [f"    {warning}" for warning in reference.status_warnings]
        return "\n".join(lines)


def compare_runs(path: str, runs: list[RunData]) -> NotebookVerdict:
    """Compare every run with the first, cell by cell; find the first parting."""
    failed = next((run for run in runs if run.error is not None), None)
    if failed is not None:
        return NotebookVerdict(path, runs, error=f"{failed.label}: {failed.error}")
    reference = runs[0]
    verdict = NotebookVerdict(path, runs)
    for other in runs[1:]:
        if len(other.cells) != len(reference.cells):
            verdict.error = (f"{reference.label} has {len(reference.cells)} code cells, "
                             f"{other.label} {len(other.cells)}: not the same notebook")
            return verdict
        for position, (mine, theirs) in enumerate(zip(reference.cells, other.cells, strict=True)):
            names = differing_names(mine, theirs)
            outputs = mine.outputs_digest != theirs.outputs_digest
            if not names and not outputs:
                continue
            if verdict.parting is None or mine.index < verdict.parting.cell.index:
                verdict.parting = Parting(mine, other, names, outputs)
                verdict.parting.later = [
                    later.index for later, theirs_later in
                    zip(reference.cells[position + 1:], other.cells[position + 1:], strict=True)
                    if differing_names(later, theirs_later)
                    or later.outputs_digest != theirs_later.outputs_digest
                ]
            break
    return verdict


def differing_names(mine: CellResult, theirs: CellResult) -> dict[str, str]:
    """Names whose fingerprints differ between two runs of one cell (unchecked ones skip)."""
    found = {}
    for name in sorted(mine.names.keys() | theirs.names.keys()):
        a, b = mine.names.get(name), theirs.names.get(name)
        if a is not None and b is not None:
            if "unchecked" in (a.kind, b.kind) and a.kind == b.kind:
                continue
            if (a.kind, a.digest, a.description) == (b.kind, b.digest, b.description):
                continue
        found[name] = _brief(name, a, b)
    return found


def _brief(name: str, a: NameFingerprint | None, b: NameFingerprint | None) -> str:
    """What differs, from fingerprints alone (values are read only for fresh runs)."""
    if a is None or b is None:
        return f"{name}: the cell assigned or changed it in one run only"
    if a.description != b.description:
        return f"{name}: {a.description} vs {b.description}"
    return f"{name}: {a.description}: different values"


def environment_differences(first: RunData, second: RunData) -> list[str]:
    """What differed between two runs' start conditions and recorded environments."""
    lines = []
    for name in sorted(first.varied.keys() | second.varied.keys()):
        a, b = first.varied.get(name), second.varied.get(name)
        if a != b:
            lines.append(f"{name}: {_shown(a)} in {first.label}, {_shown(b)} in {second.label}"
                         " (set by --vary)")
    from det_nb.run_record import LOGGING_VARIABLES

    flat_a, flat_b = _conditions(first), _conditions(second)
    for key in sorted(flat_a.keys() | flat_b.keys()):
        a, b = flat_a.get(key), flat_b.get(key)
        variable = key.removeprefix("variables.")
        if a == b or variable in LOGGING_VARIABLES or variable in first.varied | second.varied:
            continue
        lines.append(f"{key}: {_shown(a)} in {first.label}, {_shown(b)} in {second.label}")
    return lines


def _conditions(run: RunData) -> dict[str, object]:
    """The run's environment, lineage and settings as flat "a.b" keys."""
    record = run.record or {}
    return dict(_flatten({**run.environment, "lineage": record.get("lineage"),
                          "settings": record.get("settings")}))


def _flatten(value: object, prefix: str = "") -> Iterator[tuple[str, object]]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _flatten(item, f"{prefix}.{key}" if prefix else str(key))
    else:
        yield prefix, value


def _shown(value: object) -> str:
    return "unset" if value is None else repr(value)


def _counts(runs: list[RunData]) -> tuple[int, int]:
    """(code cells, names compared: a name counts once per cell it was compared in)."""
    cells = runs[0].cells
    names = sum(1 for cell in cells for fp in cell.names.values() if fp.kind == "value")
    return len(cells), names


def _run_count(runs: list[RunData]) -> str:
    stored = sum(run.label.startswith("stored") for run in runs)
    fresh = len(runs) - stored
    if stored:
        return f"the stored run and {fresh} fresh run{'s' * (fresh != 1)}"
    return f"{fresh} runs"


# -- running ---------------------------------------------------------------------------


def variation_env(conditions: Sequence[str], run: int) -> dict[str, str]:
    """The environment that ``--vary`` gives run ``run`` (0-based)."""
    env: dict[str, str] = {}
    for condition in conditions:
        values = VARIATIONS[condition]
        env.update(values[run % len(values)])
    return env


async def _run_in_lockstep(
    path: str, notebook: Any, envs: list[dict[str, str]], timeout: float, folder: str,
) -> list[RunData]:
    """Run the notebook once per env, all kernels alive together, a cell at a time.

    The kernels start side by side but take turns on each cell: run side by side, two
    kernels doing BLAS work on 2 cores took 5.7 s where taking turns took 1.3 s (each
    library's thread pool assumes the cores are its own).

    At the first cell where a run's fingerprints differ from the first run's, both
    kernels write snapshots of the differing names, so the report can say exactly what
    differs (the values are gone by the end of the notebook).
    """
    kernels = [KernelRun(path, notebook, env=env, timeout=timeout) for env in envs]
    labels = [f"run {i + 1}" for i in range(len(kernels))]
    values: list[dict[str, object] | None] = [None] * len(kernels)
    try:
        await asyncio.gather(*(kernel.start() for kernel in kernels))
        dumped = False
        while all(kernel.error is None for kernel in kernels):
            cells = [await kernel.next_cell() for kernel in kernels]
            if any(cell is None for cell in cells):
                break
            if not dumped:
                dumped = await _dump_first_difference(kernels, cells, values, folder)
        await asyncio.gather(*(kernel.finish() for kernel in kernels))
    finally:
        await asyncio.gather(*(kernel.stop() for kernel in kernels), return_exceptions=True)
    runs = []
    for label, env, kernel, snapshot in zip(labels, envs, kernels, values, strict=True):
        result = kernel.result()
        runs.append(RunData(label, env, result.cells, result.environment, result.record,
                            result.status_warnings, result.error, snapshot))
    return runs


async def _dump_first_difference(
    kernels: list[KernelRun], cells: Sequence[CellResult | None],
    values: list[dict[str, object] | None], folder: str,
) -> bool:
    """If some run differs from the first at this cell, snapshot the differing names."""
    first = cells[0]
    assert first is not None
    for index, cell in enumerate(cells[1:], start=1):
        assert cell is not None
        names = sorted(differing_names(first, cell))
        if not names:
            continue
        files = [os.path.join(folder, f"values-{i}.npz") for i in (0, index)]
        try:
            await asyncio.gather(kernels[0].dump_values(names, files[0]),
                                 kernels[index].dump_values(names, files[1]))
        except RuntimeError:  # the values could not be written: fingerprints only
            return True
        values[0] = notebook_runner.load_values(files[0])
        values[index] = notebook_runner.load_values(files[1])
        return True
    return False


def describe(verdict: NotebookVerdict) -> None:
    """Replace the fingerprint-only details with exact differences where values were read."""
    parting = verdict.parting
    if parting is None:
        return
    mine, theirs = verdict.runs[0].values, parting.other.values
    if mine is None or theirs is None:
        return
    from det_nb.fingerprint import describe_difference

    labels = (verdict.runs[0].label, parting.other.label)
    for name in parting.names:
        a, b = mine.get(name), theirs.get(name)
        if a is None or b is None:
            continue
        detail = describe_difference(a, b, name, labels)
        if detail:
            parting.names[name] = detail


def verify_notebook(
    path: str, *, runs: int, vary: Sequence[str], timeout: float,
    stored: RunData | None = None, label: str | None = None,
) -> NotebookVerdict:
    """Run and compare one notebook, named ``label`` (default: ``path``) in the report.

    ValueError if it is not a readable notebook.
    """
    notebook = notebook_runner.load_notebook(path)
    envs = [variation_env(vary, run) for run in range(runs)]
    with tempfile.TemporaryDirectory(prefix="det_nb-verify-") as folder:
        fresh = notebook_runner.run_sync(
            _run_in_lockstep(path, notebook, envs, timeout, folder)
        )
    if stored is not None:
        for run in fresh:
            run.label = f"fresh {run.label}"
        fresh.insert(0, stored)
    verdict = compare_runs(label or path, fresh)
    describe(verdict)
    return verdict


# -- JSON reports ----------------------------------------------------------------------


def to_json(verdicts: list[NotebookVerdict]) -> dict[str, Any]:
    """The versioned JSON report: per run, per code cell, per name; and the run records."""
    return {
        "format": FORMAT,
        "version": VERSION,
        "notebooks": [
            {
                "path": verdict.path,
                "verdict": verdict.status,
                "first_parting_cell": verdict.parting.cell.index if verdict.parting else None,
                "report": verdict.text(),
                "runs": [_run_json(run) for run in verdict.runs],
            }
            for verdict in verdicts
        ],
    }


def _run_json(run: RunData) -> dict[str, Any]:
    return {
        "label": run.label,
        "varied": run.varied,
        "error": run.error,
        "record": run.record,
        "environment": run.environment,
        "status_warnings": run.status_warnings,
        "cells": [
            {
                "index": cell.index,
                "first_line": cell.first_line,
                "outputs_digest": cell.outputs_digest,
                "error": cell.error,
                "names": {name: {"digest": fp.digest, "description": fp.description,
                                 "kind": fp.kind} for name, fp in cell.names.items()},
            }
            for cell in run.cells
        ],
    }


def _report_schema() -> dict[str, object]:
    from det_nb.files import MapOf

    cell = {"index": int, "first_line": str, "outputs_digest": str, "error": (str, None),
            "names": MapOf({"digest": str, "description": str, "kind": str})}
    run = {"label": str, "varied": MapOf(str), "error": (str, None), "record": (dict, None),
           "environment": dict, "status_warnings": [str], "cells": [cell]}
    notebook = {"path": str, "verdict": str, "first_parting_cell": (int, None),
                "report": str, "runs": [run]}
    return {"format": str, "version": int, "notebooks": [notebook]}


def load_report(path: str) -> dict[str, RunData]:
    """A stored report's first run of each notebook, by path; ValueError (one line) if bad."""
    from det_nb.files import check_fields, parse_json, read_limited, shown

    where = f"report {shown(path)}"
    raw = read_limited(path, "report", MAX_REPORT_BYTES)
    data = parse_json(raw, where)
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ValueError(f"{where} is not a det_nb verify report (no \"format\": \"{FORMAT}\")")
    if data.get("version") != VERSION:
        raise ValueError(f"{where} has version {data.get('version')!r}; "
                         f"this det_nb reads version {VERSION}")
    try:
        check_fields(data, _report_schema(), "")
    except ValueError as error:
        raise ValueError(f"{where}: {error}") from None
    stored = {}
    for notebook in data["notebooks"]:
        if not notebook["runs"]:
            raise ValueError(f"{where}: notebook {notebook['path']!r} has no runs")
        run = notebook["runs"][0]
        cells = [
            CellResult(c["index"], c["first_line"],
                       {n: NameFingerprint(n, f["digest"], f["description"], f["kind"])
                        for n, f in c["names"].items()},
                       c["outputs_digest"], c["error"])
            for c in run["cells"]
        ]
        stored[notebook["path"]] = RunData(
            f"stored {run['label']}", run["varied"], cells, run["environment"], run["record"],
            run["status_warnings"], run["error"],
        )
    return stored


def _stored_run(stored: dict[str, RunData], path: str, where: str) -> RunData:
    """The stored run of ``path``: same path as given, else the one with its file name."""
    if path in stored:
        return stored[path]
    named = [key for key in stored if Path(key).name == Path(path).name]
    if len(named) == 1:
        return stored[named[0]]
    raise ValueError(f"report {where!r} has no run of notebook {path!r} "
                     f"(it has: {', '.join(sorted(stored)) or 'none'})")


# -- command line ----------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage error in one line (no usage block)."""

    def error(self, message: str) -> Any:
        raise UsageError(message)


def parser() -> argparse.ArgumentParser:
    """The ``verify`` command's arguments (also used by ``python -m det_nb``)."""
    command = _Parser(prog=PROG, allow_abbrev=False, description=(
        "Prove notebooks reproducible: run each in fresh kernels and name the first cell "
        "and the names where two runs part. Exit status: 0 identical, 1 parted, 2 bad "
        "input or a notebook that failed to run."))
    command.add_argument("notebooks", nargs="+", metavar="NOTEBOOK", help=".ipynb files")
    command.add_argument("--runs", "-n", type=_runs, default=None, metavar="N",
                         help="fresh runs per notebook (default 2; 1 with --against)")
    command.add_argument("--vary", action="append", default=[], choices=sorted(VARIATIONS),
                         metavar="CONDITION",
                         help="change between runs, at kernel start: threads (TF/BLAS 1 vs "
                         "8), hashseed (PYTHONHASHSEED 1 vs 2), cpu (OpenBLAS Prescott "
                         "kernels in run 2); repeatable")
    command.add_argument("--json", metavar="PATH", help="write the full report as JSON")
    command.add_argument("--against", metavar="REPORT",
                         help="compare fresh runs with the first run stored in a --json report")
    command.add_argument("--timeout", type=_seconds, default=600.0, metavar="S",
                         help="seconds one cell may run (default 600)")
    return command


def _runs(text: str) -> int:
    from det_nb.lineage import validate_integer  # the one integer check: no ٤٢ or 4_2

    try:
        return validate_integer(text, "--runs", 1, MAX_RUNS)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _seconds(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number of seconds, got {text!r}") from None
    if not 0 < seconds < float("inf"):  # NaN fails this too
        raise argparse.ArgumentTypeError(f"must be a finite number more than 0, got {text}")
    return seconds


def check_arguments(args: argparse.Namespace) -> tuple[int, dict[str, RunData] | None]:
    """Validate everything before any kernel starts: (runs, stored runs or None)."""
    for path in args.notebooks:
        notebook_runner.load_notebook(path)
    if len(set(args.vary)) != len(args.vary):
        raise ValueError("give each --vary condition once")
    if args.json is not None:
        from det_nb.files import writable_target

        writable_target(args.json, "--json report")
        notebook_runner.refuse_notebook_target(args.json, args.notebooks, "--json")
    stored = None
    if args.against is not None:
        reports = load_report(args.against)
        stored = {path: _stored_run(reports, path, args.against) for path in args.notebooks}
    runs = args.runs if args.runs is not None else (1 if stored else 2)
    if stored is None and runs < 2:
        raise ValueError(f"--runs must be at least 2 to compare runs, got {runs} "
                         "(or give --against REPORT)")
    return runs, stored


def main(argv: list[str]) -> int:
    """Verify the notebooks in ``argv``; print the report; return the exit status."""
    try:
        command = parser()
        notebook_runner.refuse_repeated_options(command, argv)
        args = command.parse_args(argv)
        runs, stored = check_arguments(args)
    except (UsageError, ValueError) as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return 2
    verdicts = []
    for path in args.notebooks:
        verdict = verify_notebook(
            path, runs=runs, vary=args.vary, timeout=args.timeout,
            stored=stored[path] if stored else None,
        )
        print(verdict.text(), flush=True)
        verdicts.append(verdict)
    if args.json is not None:
        import json

        from det_nb.files import write_atomically

        text = json.dumps(to_json(verdicts), indent=1) + "\n"
        try:
            write_atomically(args.json, text.encode("utf-8"))
        except ValueError as error:
            print(f"{PROG}: error: {error}", file=sys.stderr)
            return 2
    statuses = {verdict.status for verdict in verdicts}
    return 2 if "failed" in statuses else 1 if "parted" in statuses else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
