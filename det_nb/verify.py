"""``python -m det_nb verify``: prove notebooks reproducible by running them in fresh kernels.

Each notebook runs N times (default 2), its kernels alive together and taking turns cell
by cell, with det_nb fingerprinting every name a cell assigned or changed and hashing its
outputs as a reader sees them (see :mod:`det_nb.notebook_runner`). The report names the
first code cell where the runs part, every name that differs there and how (or, where only
printed output differs, its first differing line), how many later cells differ, and what
differed between the runs' environments. ``--vary`` changes, between runs, a condition
that must not matter (set at kernel start); ``--against`` compares fresh runs with a JSON
report written by ``--json``, on this machine or another.

The verdict rules are ``%%det_check``'s: code a cell defines (functions, classes,
modules) is not a result and is neither compared nor listed; "identical" means every
value was compared and equal; a value that could not be compared makes the verdict
"not proven", naming the value, its type and why, and so does a call that drew from OS
entropy or seeded from a clock (det_nb's entropy audit) still on record after the last
cell: what it drew is not reproducible even where the runs happened to agree.

After the last cell every name is fingerprinted once more, so a value a cell changed
without naming it (an optimizer's ``step()`` changes its model) is compared too; where
only that last look differs, the runs run again with those names fingerprinted after
every cell, to find the cell that changed them.

Exit status: 0 all identical, 1 some notebook's runs parted, 2 bad input or a notebook
that failed to run, 3 not proven (some value could not be compared, or unseeded
randomness is on record; 0 with ``--allow-unchecked``).
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
from det_nb.files import printable
from det_nb.notebook_runner import BUILT_IN, CellResult, KernelRun, NameFingerprint, Sanitizer
from det_nb.notebook_runner.outputs import first_differing_line
from det_nb.notebook_runner.snapshots import load_values

PROG = "python -m det_nb verify"
FORMAT = "det_nb-verify"
#: The report format this det_nb writes and the only one it reads (3: stderr in the
#: outputs digests, displayed results, the look after the last cell, the audit's records
#: in force).
VERSION = 3
#: The runs' kernels are alive together (side by side), so their number is bounded.
MAX_RUNS = 16
#: A stored report larger than this is refused before it is read (reports hold digests
#: and run records, a few kB per cell).
MAX_REPORT_BYTES = 64 << 20
#: Exit statuses.
IDENTICAL, PARTED, FAILED, NOT_PROVEN = 0, 1, 2, 3
#: Longest output line shown in a report.
_SHOWN_LINE = 160


@dataclass(frozen=True)
class Variation:
    """One run's side of a ``--vary`` condition: variables at kernel start, and CPUs.

    ``cpus``: "one" runs the kernel on one CPU, "all" on every CPU this process may use
    (OpenBLAS, OpenMP and torch size their thread pools from that); None leaves it.
    """

    env: tuple[tuple[str, str], ...] = ()
    cpus: str | None = None


#: Conditions ``--vary`` changes between runs: run i gets values[i % len(values)].
VARIATIONS: dict[str, tuple[Variation, ...]] = {
    # Another core count, emulated through the kernel's CPU affinity. Thread variables
    # would not do: they are machine defaults, which det_nb's own thread setting overrides.
    "threads": (Variation(cpus="one"), Variation(cpus="all")),
    "hashseed": (Variation((("PYTHONHASHSEED", "1"),)), Variation((("PYTHONHASHSEED", "2"),))),
    # Another CPU generation, emulated: OpenBLAS's Prescott kernels instead of those it
    # picks for this CPU. Marked as emulation, so det_nb's portable pin overrides it as it
    # overrides a CPU's own choice.
    "cpu": (Variation(), Variation((("OPENBLAS_CORETYPE", "Prescott"),
                                     (EMULATED, "OPENBLAS_CORETYPE")))),
}


@dataclass(frozen=True)
class RunConditions:
    """What ``--vary`` sets for one run: kernel variables, CPUs, and how the report says it."""

    env: dict[str, str]
    cpus: frozenset[int] | None
    shown: dict[str, str]  # e.g. {"PYTHONHASHSEED": "1"}, {"CPU affinity": "1 CPU"}


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
    after_last: CellResult | None = None  # every name once more, after the last cell
    unseeded: list[str] = field(default_factory=list)  # audit records in force at the end


@dataclass(frozen=True)
class NotCompared:
    """A value some cell produced that could not be compared, and why."""

    cell: int
    name: str
    description: str  # "TypeName: why"


@dataclass
class Parting:
    """Where a run first differs from the reference run."""

    cell: CellResult  # the reference run's cell
    other: RunData
    names: dict[str, str]  # name -> what differs
    outputs_differ: bool
    theirs: CellResult | None = None  # the other run's cell
    later: list[int] = field(default_factory=list)  # later cells that differ too


@dataclass
class NotebookVerdict:
    """The verification of one notebook."""

    path: str
    runs: list[RunData]
    parting: Parting | None = None
    error: str | None = None  # a run failed to execute
    not_compared: list[NotCompared] = field(default_factory=list)
    repairs: tuple[str, ...] = ()  # schema repairs made to the copy that ran
    values_differ: bool = False  # some cell's values differ (not only outputs)
    #: The entropy audit's records still in force after the last cell, in any run.
    unseeded: list[str] = field(default_factory=list)
    notes: tuple[str, ...] = ()  # how the runs were made (the kernel that ran instead)
    #: Where the parting was found again with the names fingerprinted after every cell.
    located: str | None = None

    @property
    def parted_after_last_cell(self) -> bool:
        """Whether the runs part only in the look at every name after the last cell."""
        return self.parting is not None and self.parting.cell is self.runs[0].after_last

    @property
    def status(self) -> str:
        """"failed", "parted", "not proven" or "identical"."""
        if self.error:
            return "failed"
        if self.parting:
            return "parted"
        return "not proven" if self.not_compared or self.unseeded else "identical"

    def text(self) -> str:
        """The report; one line when identical with nothing to note; free of temp paths.

        Names, paths and text read from the notebook are escaped (a newline in a path
        never splits a report line).
        """
        path = printable(self.path)
        if self.error is not None:
            lines = [f"{path}: could not run: {printable(self.error)}"]
        elif self.parting is not None:
            lines = self._parted_lines(path)
        else:
            lines = [self._headline(path)]
            lines += self._not_compared_lines("not compared")
            if self.unseeded:
                lines.append("  unseeded randomness (det_nb's entropy audit; what it drew is "
                             "not reproducible):")
                lines += [f"    {printable(line)}" for line in self.unseeded]
            lineage = (self.runs[0].record or {}).get("lineage", {})
            if lineage.get("experiment_seed_origin") == "assigned":
                lines.append(f"  note: det_nb assigned experiment seed "
                             f"{lineage['experiment_seed']} from the clock, and runs started "
                             "together got the same one; a later run gets another: give the "
                             "seed in %det_seed")
        lines += [f"  note: {printable(note)}" for note in self.notes]
        lines += [f"  note: repaired in the copy that ran: {printable(repair)}"
                  for repair in self.repairs]
        return "\n".join(lines)

    def _headline(self, path: str) -> str:
        cells, names, errors = _counts(self.runs)
        compared = f"{names} names" + (f" and {errors} error{'s' * (errors != 1)}"
                                       if errors else "")
        runs = _run_count(self.runs)
        if self.status == "identical":
            return f"{path}: identical across {runs} ({cells} cells, {compared} compared)"
        why = []
        if self.not_compared:
            count = len(self.not_compared)
            why.append(f"{count} value{'s' * (count != 1)} could not be compared")
        if self.unseeded:
            count = len(self.unseeded)
            why.append(f"{count} call{'s' * (count != 1)} drew unseeded randomness")
        return (f"{path}: not proven across {runs}: {' and '.join(why)} ({cells} cells, "
                f"{compared} compared and equal)")

    def _not_compared_lines(self, title: str) -> list[str]:
        if not self.not_compared:
            return []
        last = len(self.runs[0].cells)
        return [f"  {title}:", *(
            f"    {f'cell {item.cell}' if item.cell <= last else 'after the last cell'}: "
            f"{printable(item.name)}: {printable(item.description)}"
            for item in self.not_compared)]

    def _parted_lines(self, path: str) -> list[str]:
        parting, reference = self.parting, self.runs[0]
        assert parting is not None
        cell = parting.cell
        if self.parted_after_last_cell:
            last = len(reference.cells)
            lines = [f"{path}: runs parted after the last cell (cell {last})"]
        else:
            lines = [f"{path}: runs parted at cell {cell.index}: {printable(cell.first_line)}"]
        lines.append(f"  {reference.label} vs {parting.other.label}:")
        lines += [f"    {printable(detail)}" for _, detail in sorted(parting.names.items())]
        if self.parted_after_last_cell:
            lines += self._unnamed_change_lines(parting)
        elif self.located is not None:
            lines.append(f"    {printable(self.located)}")
        theirs = parting.theirs
        if theirs is not None and cell.error != theirs.error:
            lines.append(f"    error: {_error_shown(cell.error)} in {reference.label}, "
                         f"{_error_shown(theirs.error)} in {parting.other.label}")
        if parting.outputs_differ:
            lines += self._output_lines(parting)
        lines += self._unseeded_lines(parting)
        if parting.later:
            shown = ", ".join(str(k) for k in parting.later[:10])
            more = ", ..." if len(parting.later) > 10 else ""
            word = "cell" if len(parting.later) == 1 else "cells"
            how = "as a consequence" if parting.names else "too"
            lines.append(f"  later cells that differ {how}: {len(parting.later)} "
                         f"({word} {shown}{more})")
        lines += self._not_compared_lines("also not compared")
        differences = environment_differences(reference, parting.other)
        if differences:
            lines.append("  what differed between the runs (likely causes):")
            lines += [f"    {printable(line)}" for line in differences]
        if reference.status_warnings:
            lines.append(f"  det_nb warnings in {reference.label}:")
            lines += [f"    {printable(warning)}" for warning in reference.status_warnings]
        return lines

    def _unnamed_change_lines(self, parting: Parting) -> list[str]:
        """Why values differ only in the look after the last cell: some cell changed them
        without naming them. Each was equal after the last cell it was compared in."""
        cells = self.runs[0].cells
        lines = ["  a cell changed these values without naming them (through another "
                 "reference: an optimizer's step() changes its model, a closure writes into "
                 "an array), so no cell is blamed:"]
        for name in sorted(parting.names):
            compared = [cell.index for cell in cells
                        if name in cell.names or name in cell.looked_at]
            if not compared:
                where = "changed by a cell that did not name it"
            elif compared[-1] == len(cells):
                where = (f"equal after cell {compared[-1]}, the last cell; changed after it "
                         "ran (by a thread or callback still running)")
            else:
                where = (f"equal after cell {compared[-1]}, the last cell it was compared in; "
                         f"changed by cell {compared[-1] + 1} or a later one")
            lines.append(f"    {printable(name)}: {where}")
        return lines

    def _unseeded_lines(self, parting: Parting) -> list[str]:
        """The entropy audit's records of the parting cell (else of the cells before it):
        calls that drew from OS entropy or seeded from a clock, the likely cause."""
        index = parting.cell.index
        runs = (self.runs[0], parting.other)
        found = list(dict.fromkeys(line for run in runs for cell in run.cells
                                   if cell.index == index for line in cell.unseeded))
        title = "  likely cause, unseeded randomness in this cell (det_nb's entropy audit):"
        if not found:
            found = list(dict.fromkeys(line for run in runs for cell in run.cells
                                       if cell.index < index for line in cell.unseeded))
            title = ("  likely cause, unseeded randomness in earlier cells (det_nb's entropy "
                     "audit):")
        if not found:
            return []
        return [title, *(f"    {printable(line)}" for line in found)]

    def _output_lines(self, parting: Parting) -> list[str]:
        """What differs in the parting cell's outputs: its first differing line if known."""
        mine, theirs = parting.cell, parting.theirs
        error_differs = theirs is not None and mine.error != theirs.error
        if parting.names or error_differs:
            lines = ["    the cell's outputs differ"]
        elif self.values_differ:
            lines = ["    only the printed output differs here; values differ in later cells"]
        else:
            lines = ["    only the printed output differs; every value is equal"]
        if theirs is None or mine.outputs_text is None or theirs.outputs_text is None:
            return lines
        found = first_differing_line(mine.outputs_text, theirs.outputs_text)
        if found is None:
            return lines
        number, a, b = found
        labels = (self.runs[0].label, parting.other.label)
        lines.append(f"    first differing output line (line {number}):")
        lines += [f"      {label}: {_line_shown(line)}" for label, line in zip(labels, (a, b),
                                                                               strict=True)]
        return lines


def compare_runs(path: str, runs: list[RunData], repairs: Sequence[str] = (),
                 notes: Sequence[str] = ()) -> NotebookVerdict:
    """Compare every run with the first, cell by cell and then the look after the last
    cell; find the first parting."""
    failed = next((run for run in runs if run.error is not None), None)
    if failed is not None:
        return NotebookVerdict(path, runs, error=f"{failed.label}: {failed.error}",
                               repairs=tuple(repairs), notes=tuple(notes))
    reference = runs[0]
    unseeded = list(dict.fromkeys(line for run in runs for line in run.unseeded))
    verdict = NotebookVerdict(path, runs, repairs=tuple(repairs),
                              not_compared=not_compared(runs), unseeded=unseeded,
                              notes=tuple(notes))
    for other in runs[1:]:
        if len(other.cells) != len(reference.cells):
            verdict.error = (f"{reference.label} has {len(reference.cells)} code cells, "
                             f"{other.label} {len(other.cells)}: not the same notebook")
            return verdict
        pairs = list(zip(reference.cells, other.cells, strict=True))
        if reference.after_last is not None and other.after_last is not None:
            pairs.append((reference.after_last, other.after_last))
        verdict.values_differ |= any(differing_names(a, b) for a, b in pairs)
        for position, (mine, theirs) in enumerate(pairs):
            if not cells_differ(mine, theirs):
                continue
            if verdict.parting is None or mine.index < verdict.parting.cell.index:
                verdict.parting = Parting(mine, other, differing_names(mine, theirs),
                                          mine.outputs_digest != theirs.outputs_digest, theirs)
                verdict.parting.later = [later.index for later, theirs_later in
                                         pairs[position + 1:]
                                         if later is not reference.after_last
                                         and cells_differ(later, theirs_later)]
            break
    return verdict


def cells_differ(mine: CellResult, theirs: CellResult) -> bool:
    """Whether two runs of one cell differ: a value, the error, or the outputs."""
    return bool(differing_names(mine, theirs) or mine.error != theirs.error
                or mine.outputs_digest != theirs.outputs_digest)


def differing_names(mine: CellResult, theirs: CellResult) -> dict[str, str]:
    """Names whose fingerprints differ between two runs of one cell.

    A name that could be compared in neither run is not listed here: it is neither equal
    nor different, and :func:`not_compared` names it.
    """
    found = {}
    for name in sorted(mine.names.keys() | theirs.names.keys()):
        a, b = mine.names.get(name), theirs.names.get(name)
        if a is not None and b is not None:
            if a.kind == b.kind == "unchecked":
                continue
            if (a.kind, a.digest, a.description) == (b.kind, b.digest, b.description):
                continue
        found[name] = _brief(name, a, b)
    return found


def not_compared(runs: Sequence[RunData]) -> list[NotCompared]:
    """Every (cell, name) whose value some run could not fingerprint, in cell order."""
    found: dict[tuple[int, str], NotCompared] = {}
    for run in runs:
        for cell in [*run.cells, *([run.after_last] if run.after_last else [])]:
            for name, print_ in cell.names.items():
                if print_.kind == "unchecked" and (cell.index, name) not in found:
                    found[cell.index, name] = NotCompared(cell.index, name, print_.description)
    return [found[key] for key in sorted(found)]


def _brief(name: str, a: NameFingerprint | None, b: NameFingerprint | None) -> str:
    """What differs, from fingerprints alone (values are read only for fresh runs)."""
    if a is None or b is None:
        return f"{name}: the cell assigned or changed it in one run only"
    if a.description != b.description:
        return f"{name}: {a.description} vs {b.description}"
    return f"{name}: {a.description}: different values"


def _error_shown(error: str | None) -> str:
    return "no error" if error is None else _line_shown(error)


def _line_shown(line: str | None) -> str:
    """An output line for the report: escaped, quoted, cut at a readable length."""
    if line is None:
        return "(no such line)"
    text = printable(line)
    return repr(text if len(text) <= _SHOWN_LINE else text[:_SHOWN_LINE] + "...")


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


def _counts(runs: list[RunData]) -> tuple[int, int, int]:
    """(code cells, names compared, errors compared) in the first run; a name counts
    once per cell it was compared in."""
    cells = runs[0].cells
    looked = [*cells, *([runs[0].after_last] if runs[0].after_last else [])]
    names = sum(1 for cell in looked for fp in cell.names.values() if fp.kind == "value")
    errors = sum(cell.error is not None for cell in cells)
    return len(cells), names, errors


def _run_count(runs: list[RunData]) -> str:
    stored = sum(run.label.startswith("stored") for run in runs)
    fresh = len(runs) - stored
    if stored:
        return f"the stored run and {fresh} fresh run{'s' * (fresh != 1)}"
    return f"{fresh} runs"


# -- running ---------------------------------------------------------------------------


def run_conditions(conditions: Sequence[str], run: int,
                   usable: frozenset[int] | None = None) -> RunConditions:
    """What ``--vary`` gives run ``run`` (0-based); ``usable``: this process's CPUs."""
    env: dict[str, str] = {}
    cpus: frozenset[int] | None = None
    shown: dict[str, str] = {}
    for condition in conditions:
        values = VARIATIONS[condition]
        variation = values[run % len(values)]
        env.update(variation.env)
        shown.update(variation.env)
        if variation.cpus is not None:
            if usable is None:
                raise ValueError(f"--vary {condition} needs the CPUs this process may use")
            cpus = frozenset({min(usable)}) if variation.cpus == "one" else usable
            shown["CPU affinity"] = f"{len(cpus)} CPU{'s' * (len(cpus) != 1)}"
    return RunConditions(env, cpus, shown)


def check_cpus_for(vary: Sequence[str]) -> frozenset[int] | None:
    """The CPUs ``--vary`` may spread kernels over, or None when no condition needs them;
    ValueError (one line) where another core count cannot be emulated here."""
    needing = [name for name in vary if any(v.cpus for v in VARIATIONS.get(name, ()))]
    if not needing:
        return None
    from det_nb.notebook_runner.cpu_affinity import usable_cpus

    usable = usable_cpus()
    if len(usable) < 2:
        raise ValueError(f"--vary {needing[0]} runs one kernel on 1 CPU and one on all CPUs "
                         "this process may use, and it may use only 1: run it where 2 or "
                         "more CPUs are available")
    return usable


async def _run_in_lockstep(
    path: str, notebook: Any, conditions: list[RunConditions], timeout: float, folder: str,
    allow_errors: bool, sanitizer: Sanitizer, kernel_name: str, watched: Sequence[str] = (),
) -> list[RunData]:
    """Run the notebook once per conditions, all kernels alive together, a cell at a time.

    The kernels start side by side but take turns on each cell: run side by side, two
    kernels doing BLAS work on 2 cores took 5.7 s where taking turns took 1.3 s (each
    library's thread pool assumes the cores are its own).

    At the first cell where a run's fingerprints differ from the first run's (or, failing
    that, in the look at every name after the last cell), both kernels write snapshots of
    the differing names, so the report can say exactly what differs (the values are gone
    by the end of the notebook). ``watched``: names fingerprinted after every cell.
    """
    kernels = [KernelRun(path, notebook, env=condition.env, timeout=timeout, cpus=condition.cpus,
                         allow_errors=allow_errors, sanitizer=sanitizer,
                         kernel_name=kernel_name, watched=watched)
               for condition in conditions]
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
        last = [kernel.after_last for kernel in kernels]
        if not dumped and all(look is not None for look in last):
            await _dump_first_difference(kernels, last, values, folder)
    finally:
        await asyncio.gather(*(kernel.stop() for kernel in kernels), return_exceptions=True)
    runs = []
    for label, condition, kernel, snapshot in zip(labels, conditions, kernels, values,
                                                  strict=True):
        result = kernel.result()
        runs.append(RunData(label, condition.shown, result.cells, result.environment,
                            result.record, result.status_warnings, result.error, snapshot,
                            result.after_last, result.unseeded))
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
        values[0] = load_values(files[0])
        values[index] = load_values(files[1])
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
    stored: RunData | None = None, label: str | None = None, allow_errors: bool = False,
    sanitizer: Sanitizer = BUILT_IN,
) -> NotebookVerdict:
    """Run and compare one notebook, named ``label`` (default: ``path``) in the report.

    ValueError (one line) if it is not a readable notebook, or ``vary`` asks for another
    core count where none can be emulated.
    """
    loaded = notebook_runner.load_notebook(path)
    usable = check_cpus_for(vary)
    conditions = [run_conditions(vary, run, usable) for run in range(runs)]
    kernel_name, note = notebook_runner.notebook_kernel(loaded.node)
    notes = (note,) if note else ()

    def run_and_compare(watched: Sequence[str] = ()) -> NotebookVerdict:
        with tempfile.TemporaryDirectory(prefix="det_nb-verify-") as folder:
            fresh = notebook_runner.run_sync(_run_in_lockstep(
                path, loaded.node, conditions, timeout, folder, allow_errors, sanitizer,
                kernel_name, watched))
        if stored is not None:
            for run in fresh:
                run.label = f"fresh {run.label}"
            fresh.insert(0, stored)
        verdict = compare_runs(label or path, fresh, loaded.repairs, notes)
        describe(verdict)
        return verdict

    verdict = run_and_compare()
    suspects = _suspects(verdict) if stored is None else []
    if suspects:
        return _located(verdict, run_and_compare(suspects), suspects)
    return verdict


def _suspects(verdict: NotebookVerdict) -> list[str]:
    """Names where the runs part that an earlier cell may have changed unseen.

    A value is fingerprinted after the cells that name it (or call code that does), so one
    changed through another reference (an optimizer's ``step()`` changes its model) is
    seen to differ only at the next cell that names it, or after the last cell: suspects
    are the differing names last fingerprinted (changed or not) more than one cell before.
    """
    parting = verdict.parting
    if parting is None:
        return []
    reference = verdict.runs[0]
    before = [cell for cell in reference.cells if cell.index < parting.cell.index]
    suspects = []
    for name in parting.names:
        seen = [cell.index for cell in before if name in cell.names or name in cell.looked_at]
        if seen and seen[-1] < parting.cell.index - 1:
            suspects.append(name)
    return sorted(suspects)


def _located(first: NotebookVerdict, again: NotebookVerdict,
             suspects: Sequence[str]) -> NotebookVerdict:
    """The verdict of runs made again with the ``suspects`` fingerprinted after every cell,
    where they part before the first runs did; else the first verdict."""
    parting, earlier = again.parting, first.parting
    assert earlier is not None
    if parting is None or again.parted_after_last_cell or (
            not first.parted_after_last_cell and parting.cell.index >= earlier.cell.index):
        return first
    found = sorted(parting.names.keys() & set(suspects))
    if found:
        them = "it" if len(found) == 1 else "them"
        again.located = (f"{', '.join(found)}: changed by this cell through another reference "
                         f"(found by runs made again that fingerprinted {them} after every "
                         "cell)")
    return again


def exit_status(verdicts: Sequence[NotebookVerdict], allow_unchecked: bool = False) -> int:
    """2 if a notebook failed, else 1 if one parted, else 3 if one is not proven (0 when
    ``allow_unchecked``), else 0."""
    statuses = {verdict.status for verdict in verdicts}
    if "failed" in statuses:
        return FAILED
    if "parted" in statuses:
        return PARTED
    if "not proven" in statuses and not allow_unchecked:
        return NOT_PROVEN
    return IDENTICAL


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
                "parted_after_last_cell": verdict.parted_after_last_cell,
                "not_compared": [{"cell": item.cell, "name": item.name,
                                  "description": item.description}
                                 for item in verdict.not_compared],
                "unseeded": verdict.unseeded,
                "repairs": list(verdict.repairs),
                "notes": list(verdict.notes),
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
        "cells": [_cell_json(cell) for cell in run.cells],
        "after_last": None if run.after_last is None else _cell_json(run.after_last),
        "unseeded": run.unseeded,
    }


def _cell_json(cell: CellResult) -> dict[str, Any]:
    return {
        "index": cell.index,
        "first_line": cell.first_line,
        "outputs_digest": cell.outputs_digest,
        "error": cell.error,
        "names": {name: {"digest": fp.digest, "description": fp.description,
                         "kind": fp.kind} for name, fp in cell.names.items()},
        "unseeded": cell.unseeded,
    }


def _cell_from_json(cell: dict[str, Any]) -> CellResult:
    return CellResult(cell["index"], cell["first_line"],
                      {name: NameFingerprint(name, fp["digest"], fp["description"], fp["kind"])
                       for name, fp in cell["names"].items()},
                      cell["outputs_digest"], cell["error"], unseeded=cell["unseeded"])


def _cell_schema() -> dict[str, object]:
    from det_nb.files import MapOf

    return {"index": int, "first_line": str, "outputs_digest": str, "error": (str, None),
            "names": MapOf({"digest": str, "description": str, "kind": str}),
            "unseeded": [str]}


def _report_schema() -> dict[str, object]:
    """The report's fields (``after_last``, a cell or null, is checked on its own)."""
    from det_nb.files import MapOf

    cell = _cell_schema()
    run = {"label": str, "varied": MapOf(str), "error": (str, None), "record": (dict, None),
           "environment": dict, "status_warnings": [str], "cells": [cell],
           "after_last": (dict, None), "unseeded": [str]}
    notebook = {"path": str, "verdict": str, "first_parting_cell": (int, None),
                "not_compared": [{"cell": int, "name": str, "description": str}],
                "parted_after_last_cell": bool, "unseeded": [str], "repairs": [str],
                "notes": [str], "report": str,
                "runs": [run]}
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
        for n, notebook in enumerate(data["notebooks"]):
            for r, run in enumerate(notebook["runs"]):
                if run["after_last"] is not None:
                    check_fields(run["after_last"], _cell_schema(),
                                 f"notebooks[{n}].runs[{r}].after_last")
    except ValueError as error:
        raise ValueError(f"{where}: {error}") from None
    stored = {}
    for notebook in data["notebooks"]:
        if not notebook["runs"]:
            raise ValueError(f"{where}: notebook {notebook['path']!r} has no runs")
        run = notebook["runs"][0]
        after_last = run["after_last"]
        stored[notebook["path"]] = RunData(
            f"stored {run['label']}", run["varied"], list(map(_cell_from_json, run["cells"])),
            run["environment"], run["record"], run["status_warnings"], run["error"],
            after_last=None if after_last is None else _cell_from_json(after_last),
            unseeded=run["unseeded"],
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
        "input or a notebook that failed to run, 3 not proven (a value could not be "
        "compared, or a cell drew unseeded randomness)."))
    command.add_argument("notebooks", nargs="+", metavar="NOTEBOOK", help=".ipynb files")
    command.add_argument("--runs", "-n", type=_runs, default=None, metavar="N",
                         help="fresh runs per notebook (default 2; 1 with --against)")
    command.add_argument("--vary", action="append", default=[], choices=sorted(VARIATIONS),
                         metavar="CONDITION",
                         help="change between runs, at kernel start: threads (the kernel on "
                         "1 CPU, then on all: another core count), hashseed (PYTHONHASHSEED "
                         "1 vs 2), cpu (OpenBLAS Prescott kernels in run 2); repeatable")
    command.add_argument("--json", metavar="PATH", help="write the full report as JSON")
    command.add_argument("--against", metavar="REPORT",
                         help="compare fresh runs with the first run stored in a --json report")
    command.add_argument("--timeout", type=_seconds, default=600.0, metavar="S",
                         help="seconds one cell may run (default 600)")
    command.add_argument("--allow-unchecked", action="store_true",
                         help="exit 0, not 3, when every compared value is equal but some "
                         "could not be compared or a cell drew unseeded randomness (the "
                         "report still says not proven)")
    command.add_argument("--allow-errors", action="store_true",
                         help="go on past a cell that raises, and compare its error (type "
                         "and message) between the runs")
    command.add_argument("--sanitize", metavar="FILE",
                         help="more output text to replace before comparing: 'regex:' and "
                         "'replace:' lines, as nbval's sanitize files")
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


@dataclass(frozen=True)
class _Checked:
    """The command line, validated: what each notebook's verification needs."""

    runs: int
    stored: dict[str, RunData] | None
    sanitizer: Sanitizer
    json_target: Path | None  # --json, resolved (links followed) before anything ran


def check_arguments(args: argparse.Namespace) -> _Checked:
    """Validate everything before any kernel starts."""
    for path in args.notebooks:
        notebook_runner.load_notebook(path)
    if len(set(args.vary)) != len(args.vary):
        raise ValueError("give each --vary condition once")
    check_cpus_for(args.vary)
    sanitizer = (BUILT_IN if args.sanitize is None
                 else notebook_runner.load_sanitize_file(args.sanitize))
    json_target = None
    if args.json is not None:
        from det_nb.files import writable_target

        json_target = writable_target(args.json, "--json report")
        notebook_runner.refuse_notebook_target(args.json, args.notebooks, "--json")
    stored = None
    if args.against is not None:
        reports = load_report(args.against)
        stored = {path: _stored_run(reports, path, args.against) for path in args.notebooks}
    runs = args.runs if args.runs is not None else (1 if stored else 2)
    if stored is None and runs < 2:
        raise ValueError(f"--runs must be at least 2 to compare runs, got {runs} "
                         "(or give --against REPORT)")
    return _Checked(runs, stored, sanitizer, json_target)


def main(argv: list[str]) -> int:
    """Verify the notebooks in ``argv``; print the report; return the exit status."""
    try:
        command = parser()
        notebook_runner.refuse_repeated_options(command, argv)
        args = command.parse_args(argv)
        checked = check_arguments(args)
    except (UsageError, ValueError) as error:
        print(f"{PROG}: error: {printable(str(error))}", file=sys.stderr)
        return FAILED
    verdicts = []
    try:
        for path in args.notebooks:
            verdict = verify_notebook(
                path, runs=checked.runs, vary=args.vary, timeout=args.timeout,
                stored=checked.stored[path] if checked.stored else None,
                allow_errors=args.allow_errors, sanitizer=checked.sanitizer,
            )
            print(verdict.text(), flush=True)
            verdicts.append(verdict)
    except (KeyboardInterrupt, SystemExit) as stopped:  # Ctrl-C, or SIGTERM under the guard
        _note_clean_up(stopped)
        raise
    if checked.json_target is not None:
        import json

        from det_nb.files import write_atomically

        text = json.dumps(to_json(verdicts), indent=1) + "\n"
        try:  # checked again now: a link or a notebook that appeared there is refused
            write_atomically(checked.json_target, text.encode("utf-8"), "--json report",
                             refuse=args.notebooks, refused_as="the notebook",
                             follow_links=False)
        except ValueError as error:
            print(f"{PROG}: error: {printable(str(error))}", file=sys.stderr)
            return FAILED
    return exit_status(verdicts, args.allow_unchecked)


def _note_clean_up(stopped: BaseException) -> None:
    """Add what the interrupted run left, as checked now, to the guard's one line."""
    left = notebook_runner.live_kernels()
    note = ("every kernel it started is stopped and its connection file removed" if not left
            else f"{left} kernel{'s' * (left != 1)} it started could not be stopped")
    if hasattr(stopped, "add_note"):  # Python 3.11+
        stopped.add_note(note)


if __name__ == "__main__":
    from det_nb.command_line import run

    sys.exit(run(PROG, lambda: main(sys.argv[1:])))
