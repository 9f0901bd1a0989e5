"""Trials at scale: run one notebook as many seeded trials on Dask, collect and verify them.

Each trial executes the notebook top to bottom in a fresh kernel on a worker, with the
trial's lineage (experiment seed, trial) in force from the first cell (see
:mod:`det_nb.notebook_runner`). The lineage is a pure function of those two numbers and
every kernel starts with the same environment (one thread, hash seed, portable CPU
kernels), so trial k gives the same values on any worker, on any run, and in the user's
own notebook after ``%det_seed S --trial k``.

The engine is Dask distributed: by default an embedded ``LocalCluster`` of single-threaded
worker processes, or a running scheduler's address. Underneath, trials go to a
``concurrent.futures.Executor``, so any executor whose workers can import det_nb works;
re-running a trial on a *different* worker (``verify``) needs Dask. A worker that dies
mid-trial loses nothing: Dask's scheduler runs the trial again on another worker.

Every wait is bounded by an option: reaching a scheduler and its handshake
(``connect_timeout``), a scheduler without workers (``workers_timeout``) and each trial
in its kernel (``timeout``). Interrupted (Ctrl-C, SIGTERM), trials are cancelled, their
kernels killed with their connection files and folders, and the embedded cluster closed.

``python -m det_nb trials NOTEBOOK --seed S --trials 0-7`` or :func:`run_trials`.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import html
import json
import logging
import math
import os
import random
import signal
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from det_nb.command_line import Terminated
from det_nb.cpu_kernels import pin_environment
from det_nb.files import (
    AnyJSON,
    MapOf,
    check_fields,
    parse_json,
    printable,
    read_limited,
    shown,
    writable_target,
    write_atomically,
)
from det_nb.lineage import SCHEMES, Lineage, validate_integer, validate_scheme, validate_seed
from det_nb.notebook_runner import (
    MAX_NOTEBOOK_BYTES,
    NameFingerprint,
    load_notebook,
    refuse_notebook_target,
    refuse_repeated_options,
    validate_names,
)
from det_nb.threads import pool_environment

FORMAT = "det_nb.trials"
#: The first line of the fingerprint entry for every name, looked at after the last cell.
AFTER_LAST = "(after the last cell: every name)"
#: Version 2: strict JSON (non-finite floats as null, listed in ``non_finite``), unchecked
#: names per cell, verifications with ``unchecked`` and ``notes``.
VERSION = 2
# A spec such as 0-2147483647 would plan two billion trials: refuse before any work.
MAX_TRIALS = 100_000
#: Seconds to reach a scheduler and exchange Dask's handshake with it.
DEFAULT_CONNECT_TIMEOUT = 10.0
#: Seconds to wait for a worker while the scheduler has none (at the start, during a run).
DEFAULT_WORKERS_TIMEOUT = 120.0
#: Seconds one trial may take in its kernel: its start, every cell, reading the results.
DEFAULT_TIMEOUT = 3600.0
#: No wait is longer (threading and ZeroMQ refuse timeouts of about 1e13 s and more).
MAX_SECONDS = 10_000_000
# A trials file holds every trial's run record (a few kB each).
MAX_FILE_BYTES = 200_000_000
#: A collected value nested deeper is unchecked; a trials file nested deeper is refused.
MAX_VALUE_DEPTH = 100
MAX_FILE_DEPTH = MAX_VALUE_DEPTH + 8
#: How often a running trial asks whether Dask gave it up, and the client whether the
#: scheduler still has workers.
_POLL_SECONDS = 0.25
_STALL_CHECK_SECONDS = 1.0
#: Exit status of ``--verify`` when nothing differed but something was not compared.
NOT_PROVEN = 3
#: How a non-finite float is named in a trials file's ``non_finite`` map.
_NON_FINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


def trial_environment() -> dict[str, str]:
    """What every trial's kernel starts with: what only acts at process start, fixed.

    String hashing (``PYTHONHASHSEED``), one thread in every pool that splits float
    reductions (so trials give the same floats on any worker, and do not fight over
    cores) and the portable CPU kernel pins. Re-create a trial elsewhere in a kernel
    started with the same variables (``python -m det_nb kernel install`` sets them all).
    """
    return {"PYTHONHASHSEED": "0", **pool_environment(1), **pin_environment()}


def parse_trials(spec: str) -> list[int]:
    """Trial numbers from ``0-7`` (a range, both ends included), ``0,3,5`` or a mix of both.

    Raises ValueError saying what is allowed for anything else: a backwards range, a
    number repeated, a trial outside [0, 2**31 - 1], more than MAX_TRIALS trials.
    """
    allowed = "trials must be a range such as 0-7 or a list such as 0,3,5"
    trials: list[int] = []
    for part in str(spec).split(","):
        first, dash, last = part.strip().partition("-")
        try:
            low = validate_seed(first, "trial")
            high = validate_seed(last, "trial") if dash else low
        except ValueError:
            raise ValueError(f"{allowed}, got {spec!r}") from None
        if high < low:
            raise ValueError(f"{allowed}, got {spec!r}: the range {part.strip()} runs backwards")
        if len(trials) + high - low + 1 > MAX_TRIALS:
            raise ValueError(f"at most {MAX_TRIALS} trials per run, got {spec!r}")
        trials.extend(range(low, high + 1))
    seen: set[int] = set()
    for trial in trials:
        if trial in seen:
            raise ValueError(f"{allowed}, each trial once; {spec!r} repeats {trial}")
        seen.add(trial)
    return trials


def _names(collect: str | Sequence[str]) -> tuple[str, ...]:
    """Collected names from ``"loss,acc"`` or a sequence, each once; ValueError for a bad one."""
    names = collect.split(",") if isinstance(collect, str) else collect
    return validate_names(tuple(dict.fromkeys(
        name.strip() if isinstance(name, str) else name for name in names
        if not isinstance(name, str) or name.strip())))


# -- one trial, on a worker ---------------------------------------------------------------


@dataclass(frozen=True)
class TrialJob:
    """Everything a worker needs to run one trial: the notebook travels with it."""

    notebook_name: str
    notebook_source: bytes
    origin: str  # the notebook's path where the run was started
    experiment_seed: int
    trial: int
    scheme: str
    collect: tuple[str, ...]
    timeout: float  # seconds for the whole trial in its kernel
    env: dict[str, str]


@dataclass(frozen=True)
class TrialResult:
    """One trial's outcome; ``error`` is ``cell k: ename: evalue`` (or why it never ran).

    ``collected``: name -> the value (JSON data), or for other values a fingerprint
    ``{"digest", "description", "kind"}``; a value that could not be moved out of the
    kernel or stored is one of kind ``"unchecked"`` saying why (that name only: the
    others are kept). ``fingerprints``: per code cell, its number (``cell``), first line,
    ``names`` (name -> digest), ``unchecked`` (name -> why it was not hashed) and a digest
    of its ``outputs``; then one more entry, first line :data:`AFTER_LAST`, for every name
    looked at once more after the last cell (values a cell changed without naming them).
    ``unseeded``: the calls that drew OS entropy or seeded from a clock (det_nb's entropy
    audit) and still stood after the last cell: while any did, a verification proves
    nothing.
    """

    trial: int
    trial_seed: int
    worker: str | None
    seconds: float
    collected: dict[str, Any]
    fingerprints: list[dict[str, Any]]
    record: dict[str, Any] | None
    error: str | None
    status_warnings: list[str] = field(default_factory=list)
    unseeded: list[str] = field(default_factory=list)

    def _det_nb_value_(self) -> dict[str, Any]:
        """What ``%%det_check`` and ``verify`` compare: every field but where and how long
        the trial ran (``worker``, ``seconds``), facts of the run that no seed fixes."""
        return {name: value for name, value in vars(self).items()
                if name not in ("worker", "seconds")}

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (the ``trials`` entries of ``--out``)."""
        return asdict(self)

    def unchecked(self) -> dict[str, str]:
        """Collected names whose values could not be moved or stored -> why."""
        return {name: reason for name, value in self.collected.items()
                if (reason := _unchecked_reason(value)) is not None}


def run_trial(job: TrialJob) -> TrialResult:
    """Run one trial in a fresh kernel here (on a worker) and fingerprint what it made.

    The trial has ``job.timeout`` seconds in all: its kernel's start, every cell, reading
    the results. On a Dask worker it is given up as soon as its task is cancelled or its
    worker closes (``trials`` interrupted, a cluster closing): the kernel is killed, its
    connection file and the trial's folder removed, and the task ends with
    ``distributed.Reschedule``.
    """
    lineage = Lineage(job.experiment_seed, job.trial, job.scheme)
    with _notebook_here(job) as path:
        run = _run_in_kernel(path, job)
    return TrialResult(
        trial=job.trial, trial_seed=lineage.trial_seed, worker=_worker_name(),
        seconds=run.seconds,
        collected={name: _storable(value) for name, value in run.collected.items()},
        fingerprints=[_cell_fingerprints(cell) for cell in run.cells]
        + ([_cell_fingerprints(run.after_last, AFTER_LAST)] if run.after_last else []),
        record=run.record, error=run.error or _lineage_mismatch(lineage, run.record),
        status_warnings=list(run.status_warnings), unseeded=list(run.unseeded),
    )


def _run_in_kernel(path: Path, job: TrialJob) -> Any:
    """The notebook run in a fresh kernel under the trial's lineage (a NotebookRun)."""
    from det_nb.notebook_runner import KernelRun, Seeding, run_sync

    notebook = load_notebook(path).node
    kernel = KernelRun(path, notebook, env=job.env, timeout=job.timeout,
                       seeding=Seeding(job.experiment_seed, job.trial, job.scheme))
    cells = sum(cell.cell_type == "code" for cell in notebook.cells)
    try:
        given_up = run_sync(_drive(kernel, job, cells, _abandonment_check()))
    finally:
        _kill(kernel)  # nothing to do unless an exception left the loop before stop()
    if given_up is not None:
        from distributed import Reschedule

        raise Reschedule(given_up)
    return kernel.result()


async def _drive(kernel: Any, job: TrialJob, cells: int,
                 abandoned: Callable[[], str | None]) -> str | None:
    """Run the notebook in ``kernel`` within ``job.timeout``; why it was given up, or None.

    Every ``_POLL_SECONDS`` the trial asks ``abandoned`` whether Dask still wants it. A
    trial past its time, or given up, has its kernel killed (not asked to shut down: it
    may be stuck in a cell) and stopped as usual, connection file included.
    """
    work = asyncio.ensure_future(_every_cell(kernel, job.collect))
    deadline = time.monotonic() + job.timeout
    try:
        while True:
            left = deadline - time.monotonic()
            done, _ = await asyncio.wait({work}, timeout=max(0.0, min(_POLL_SECONDS, left)))
            if done:
                work.result()
                return None
            why = abandoned()
            if why is not None or time.monotonic() >= deadline:
                break
        # Not done (nothing ran since the wait): stop it. nbclient may turn the cancellation
        # into "the kernel died"; the trial ends either way, for the reason given here.
        where = _where(kernel, cells)
        kernel.client.shutdown_kernel = "immediate"
        work.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await work
        await _cancel_the_rest()
        if why is None:
            kernel.error = f"timed out after {job.timeout:g} s {where} (--timeout)"
        return why
    finally:
        work.cancel()  # already done, unless this coroutine itself was cancelled


async def _cancel_the_rest() -> None:
    """Cancel every other task of this thread's event loop (one trial's, on a worker).

    A cell cancelled mid-way leaves nbclient's own polling tasks behind; destroyed
    pending, they would print "Task was destroyed but it is pending!" on the worker.
    """
    others = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
    for task in others:
        task.cancel()
    await asyncio.gather(*others, return_exceptions=True)


def _where(kernel: Any, cells: int) -> str:
    """Where a trial is: starting its kernel, in cell k, or reading the results."""
    if kernel.client.kc is None:
        return "while its kernel started"
    done = len(kernel.cells)
    return f"in cell {done + 1}" if done < cells else "while det_nb read the results"


async def _every_cell(kernel: Any, collect: Sequence[str]) -> None:
    """Start the kernel, run every code cell, read the results; always stop the kernel."""
    try:
        await kernel.start()
        while kernel.error is None and await kernel.next_cell() is not None:
            pass
        if kernel.error is None:
            await kernel.finish(collect)
    finally:
        await kernel.stop()


def _abandonment_check() -> Callable[[], str | None]:
    """A check saying why Dask gave this trial up (its task cancelled, its worker
    closing), or None while it stands; off a Dask worker, nothing gives a trial up."""
    try:
        from distributed import get_worker
        from distributed.worker import WORKER_ANY_RUNNING

        worker = get_worker()
    except (ImportError, ValueError):
        return lambda: None
    key = worker.get_current_task()

    def abandoned() -> str | None:
        if worker.status not in WORKER_ANY_RUNNING:
            return "its worker is closing"
        task = worker.state.tasks.get(key)
        if task is None or task.state in ("cancelled", "released", "forgotten"):
            return "its task was cancelled"
        return None

    return abandoned


def _kill(kernel: Any) -> None:
    """If ``kernel`` still runs, kill its process group and remove its connection file.

    ``KernelRun.stop`` does this inside the event loop; a KeyboardInterrupt or SystemExit
    that leaves the loop first (a process pool's worker interrupted) would skip it.
    """
    manager = kernel.client.km
    if manager is None:  # stopped as usual
        return
    process = getattr(getattr(manager, "provisioner", None), "process", None)
    if process is not None and process.poll() is None:
        with contextlib.suppress(OSError):  # jupyter_client gives kernels a session each
            os.killpg(process.pid, signal.SIGKILL)
        with contextlib.suppress(Exception):
            process.wait(10)
    with contextlib.suppress(Exception):
        manager.cleanup_connection_file()
        manager.cleanup_ipc_files()


def dask_setup(worker: Any) -> None:
    """Dask preload of the embedded cluster's workers: Ctrl-C and SIGTERM leave them be.

    A terminal's Ctrl-C, and a SIGTERM sent to the whole process group (``timeout``,
    systemd), reach the workers too: each would die at once and orphan its kernels.
    ``trials`` stops them instead: it cancels the trials (their kernels are killed) and
    closes the cluster. A worker whose parent dies still exits (Dask watches for that).
    """
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)


def _lineage_mismatch(expected: Lineage, record: dict[str, Any] | None) -> str | None:
    """Why the kernel's lineage is not the trial's, and the fix; None when it is.

    The trial's seed, trial and scheme replace those of the notebook's ``%det_seed`` lines,
    and a notebook without one is seeded before its first cell; so a kernel that ran with
    another seed or trial was seeded by the notebook itself (``det_nb.seed(...)``,
    ``run_line_magic``), and one with the trial's seed and trial under another scheme had
    only the scheme set by the notebook.
    """
    ran = (record or {}).get("lineage")
    if ran is None:
        return "det_nb was not seeded in the kernel: the trial's lineage was not in force"
    if ran["trial_seed"] == expected.trial_seed and ran["scheme"] == expected.scheme:
        return None
    if (ran["experiment_seed"], ran["trial"]) == (expected.experiment_seed, expected.trial):
        return (f"the notebook ran with scheme {ran['scheme']} (trial seed "
                f"{ran['trial_seed']}), not {expected.scheme}: run the trials with --scheme "
                f"{ran['scheme']}")
    origin = ran.get("experiment_seed_origin", "given")
    return (f"the notebook seeds det_nb itself: it ran with experiment seed "
            f"{ran['experiment_seed']}{'' if origin == 'given' else f' ({origin})'} -> trial "
            f"{'none' if ran['trial'] is None else ran['trial']} -> trial seed "
            f"{ran['trial_seed']} [{ran['scheme']}], not this trial's {expected.summary()}: "
            "seed it with a %det_seed line, which trials rewrites with each trial's seed and "
            "trial, instead of det_nb.seed(...) or run_line_magic('det_seed', ...)")


@contextlib.contextmanager
def _notebook_here(job: TrialJob) -> Iterator[Path]:
    """The notebook's own path where this machine has it unchanged, else a private copy.

    In its own folder the notebook finds the files beside it; on a machine without them
    it runs from a temporary folder holding the copy that travelled with the task
    (removed however the trial ends).
    """
    origin = Path(job.origin)
    try:
        here = origin.is_file() and origin.read_bytes() == job.notebook_source
    except OSError:
        here = False
    if here:
        yield origin
        return
    with tempfile.TemporaryDirectory(prefix="det_nb-trial-") as folder:
        copy = Path(folder) / job.notebook_name
        copy.write_bytes(job.notebook_source)
        yield copy


def _worker_name() -> str:
    """The Dask worker's address, or host:pid under another executor."""
    try:
        from distributed import get_worker

        return get_worker().address
    except (ImportError, ValueError):
        return f"{socket.gethostname()}:{os.getpid()}"


def _plain(value: object) -> object:
    """A collected value as JSON: numbers, strings, lists as they are; fingerprints as dicts."""
    if isinstance(value, NameFingerprint):
        return {"digest": value.digest, "description": value.description, "kind": value.kind}
    return value


def _storable(value: object) -> object:
    """:func:`_plain`, or an unchecked entry saying why the value cannot be stored.

    The trials file must hold it as JSON and read it back (nested at most
    ``MAX_VALUE_DEPTH`` levels).
    """
    plain = _plain(value)
    problem = None
    if _depth(plain) > MAX_VALUE_DEPTH:
        problem = f"nested more than {MAX_VALUE_DEPTH} levels deep"
    else:
        try:
            json.dumps(plain)
        except (ValueError, TypeError, RecursionError) as error:
            problem = _first_line(error)
    if problem is None:
        return plain
    return {"digest": "", "description": f"{type(value).__name__}: cannot be stored: "
            f"{printable(problem)}", "kind": "unchecked"}


def _depth(value: object) -> int:
    """How deeply lists and objects nest in ``value`` (a scalar: 0), without recursion."""
    deepest, stack = 0, [(value, 0)]
    while stack:
        item, depth = stack.pop()
        deepest = max(deepest, depth)
        if isinstance(item, dict):
            stack.extend((child, depth + 1) for child in item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend((child, depth + 1) for child in item)
    return deepest


def _cell_fingerprints(cell: Any, first_line: str | None = None) -> dict[str, Any]:
    """A cell's fingerprints as stored: hashed names, unchecked names with why, outputs."""
    return {
        "cell": cell.index, "first_line": cell.first_line if first_line is None else first_line,
        "names": {name: fp.digest for name, fp in cell.names.items() if fp.kind != "unchecked"},
        "unchecked": {name: fp.description for name, fp in cell.names.items()
                      if fp.kind == "unchecked"},
        "outputs": cell.outputs_digest,
    }


def _unchecked_reason(value: object) -> str | None:
    """Why a collected value is unchecked (an unchecked fingerprint), else None."""
    if (isinstance(value, dict) and value.keys() == {"digest", "description", "kind"}
            and value["kind"] == "unchecked"):
        return str(value["description"])
    return None


# -- comparing two runs of a trial --------------------------------------------------------


@dataclass(frozen=True)
class Verification:
    """A trial run again (on another worker where there is one), and what differs.

    ``unchecked``: what could not be compared (then nothing is proven); ``notes``: what
    to know about values that were the same (NaN in both runs).
    """

    trial: int
    first_worker: str | None
    again_worker: str | None
    differences: list[str]
    unchecked: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def _det_nb_value_(self) -> dict[str, Any]:
        """What ``%%det_check`` and ``verify`` compare: every field but the workers the two
        runs happened to get (facts of the run, not results)."""
        return {name: value for name, value in vars(self).items()
                if name not in ("first_worker", "again_worker")}

    @property
    def identical(self) -> bool:
        """True when nothing that was compared differed."""
        return not self.differences

    @property
    def proven(self) -> bool:
        """True when everything was compared and nothing differed."""
        return not self.differences and not self.unchecked

    @property
    def elsewhere(self) -> bool:
        """Whether the second run had a different worker than the first."""
        return self.again_worker != self.first_worker

    def verdict(self) -> str:
        """``identical``, ``DIFFERS: ...`` or ``NOT proven: ...``, on one line."""
        if self.differences:
            return "DIFFERS: " + "; ".join(map(printable, self.differences))
        notes = "".join(f"; note: {printable(note)}" for note in self.notes)
        if self.unchecked:
            return ("NOT proven: nothing that was compared differed, but not compared: "
                    + "; ".join(map(printable, self.unchecked)) + notes)
        return f"identical{notes}"


def compare(first: TrialResult, again: TrialResult) -> list[str]:
    """What differs between two runs of a trial, one line each (empty: identical)."""
    return _comparison(first, again)[0]


def _comparison(first: TrialResult, again: TrialResult
                ) -> tuple[list[str], list[str], list[str]]:
    """(differences, what could not be compared, notes) between two runs of a trial.

    Values compare bit for bit: NaN equals NaN (noted), 0.0 is not -0.0, 1 is not 1.0.
    """
    differences: list[str] = []
    unchecked: list[str] = []
    notes: list[str] = []
    if first.error != again.error:
        differences.append(f"error: {_text(first.error)} then {_text(again.error)}")
    for name in sorted(set(first.collected) | set(again.collected)):
        a, b = first.collected.get(name), again.collected.get(name)
        why_a, why_b = _unchecked_reason(a), _unchecked_reason(b)
        if why_a is not None and why_b is not None:
            unchecked.append(f"{name}: {why_a}")
        elif why_a is not None or why_b is not None:
            differences.append(f"{name}: unchecked in one run only ({why_a or why_b})")
        elif not _same(a, b):
            differences.append(f"{name}: {_value_difference(a, b)}")
        elif _holds_nan(a):
            notes.append(f"{name} {'is' if isinstance(a, float) else 'holds'} NaN in both runs")
    cells_a = {cell["cell"]: cell for cell in first.fingerprints}
    cells_b = {cell["cell"]: cell for cell in again.fingerprints}
    for index in sorted(set(cells_a) | set(cells_b)):
        a_cell, b_cell = cells_a.get(index), cells_b.get(index)
        if a_cell is None or b_cell is None:
            differences.append(f"cell {index}: ran only {'once' if a_cell or b_cell else 'never'}")
            continue
        where = "after the last cell" if a_cell["first_line"] == AFTER_LAST else f"cell {index}"
        names_a, names_b = a_cell["names"], b_cell["names"]
        loose_a, loose_b = a_cell.get("unchecked", {}), b_cell.get("unchecked", {})
        changed = sorted(name for name in set(names_a) | set(names_b)
                         if names_a.get(name) != names_b.get(name)
                         and name not in loose_a and name not in loose_b)
        once = sorted(set(loose_a) ^ set(loose_b))
        if changed or once:
            differences.append(f"{where}: {', '.join(changed + once)} differ")
        unchecked += [f"{where}: {name}: {loose_a[name]}"
                      for name in sorted(set(loose_a) & set(loose_b))]
        if a_cell["outputs"] != b_cell["outputs"]:
            differences.append(f"{where}: outputs differ")
    unchecked += [f"unseeded randomness: {call}"
                  for call in dict.fromkeys([*first.unseeded, *again.unseeded])]
    return differences, unchecked, notes


def _same(a: object, b: object) -> bool:
    """Equal as JSON data, bit for bit: NaN is NaN, 0.0 is not -0.0, 1 is not 1.0 or True."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        assert isinstance(b, float)
        return (math.isnan(a) and math.isnan(b)) or (
            a == b and math.copysign(1.0, a) == math.copysign(1.0, b))
    if isinstance(a, list):
        assert isinstance(b, list)
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        assert isinstance(b, dict)
        return a.keys() == b.keys() and all(_same(a[key], b[key]) for key in a)
    return a == b


def _holds_nan(value: object) -> bool:
    """Whether ``value`` is NaN or holds one (fingerprints hold none)."""
    if isinstance(value, float):
        return math.isnan(value)
    if isinstance(value, list):
        return any(_holds_nan(item) for item in value)
    if isinstance(value, dict) and _unchecked_reason(value) is None and "digest" not in value:
        return any(_holds_nan(item) for item in value.values())
    return False


def _numbers(value: object) -> list[float] | None:
    """A number or a list of numbers as floats; None for anything else (or a huge int)."""
    items = value if isinstance(value, list) else [value]
    if not all(_is_number(item) for item in items):
        return None
    try:
        return [float(item) for item in items]
    except OverflowError:  # an int beyond float's range
        return None


def _value_difference(a: object, b: object) -> str:
    """``max abs diff 1e-07`` for numbers and lists of numbers (and where NaN is in one run
    only), else both values, short."""
    xs, ys = _numbers(a), _numbers(b)
    if xs is None or ys is None or len(xs) != len(ys):
        return f"{_short(a)} then {_short(b)}"
    pairs = list(zip(xs, ys, strict=True))
    gaps = [abs(x - y) for x, y in pairs if not (math.isnan(x) or math.isnan(y))]
    gaps = [gap for gap in gaps if not math.isnan(gap)]  # inf then inf: no gap
    parts = [f"max abs diff {max(gaps):.3g}"] if gaps and max(gaps) > 0 else []
    once = sum(math.isnan(x) != math.isnan(y) for x, y in pairs)
    if once:
        parts.append("NaN in one run only" + (
            f" ({once} of {len(pairs)} values)" if isinstance(a, list) else ""))
    return ", ".join(parts) or f"{_short(a)} then {_short(b)}"


def _short(value: object, width: int = 40) -> str:
    """A user's value for a line of text: as repr writes it (quoted, escaped), cut short."""
    text = repr(value)
    return text if len(text) <= width else text[: width - 3] + "..."


def _text(text: str | None) -> str:
    """Text from a kernel or a file for a line of the report: escaped, or ``none``."""
    return "none" if text is None else f"'{printable(text)}'"


# -- the experiment -----------------------------------------------------------------------


@dataclass
class TrialsResult:
    """All trials of one run, their verifications and how to re-create each one."""

    notebook: str
    experiment_seed: int
    scheme: str
    collect: tuple[str, ...]
    trials: list[TrialResult]
    verifications: list[Verification] = field(default_factory=list)

    @property
    def failed(self) -> list[TrialResult]:
        """Trials whose notebook raised (or that never finished)."""
        return [result for result in self.trials if result.error is not None]

    @property
    def ok(self) -> bool:
        """Every trial ran, and every verification compared everything and was identical."""
        return not self.failed and all(check.proven for check in self.verifications)

    def exit_status(self, *, allow_unchecked: bool = False) -> int:
        """0 all ran (and verified), 1 a trial failed or a verification differed, 3 a
        verification found no difference but could not compare everything (0 with
        ``allow_unchecked``)."""
        if self.failed or not all(check.identical for check in self.verifications):
            return 1
        if not allow_unchecked and not all(check.proven for check in self.verifications):
            return NOT_PROVEN
        return 0

    def recreate(self, trial: int) -> str:
        """The line that re-creates ``trial`` in a notebook."""
        return Lineage(self.experiment_seed, trial, self.scheme).command()

    def ranked(self, name: str, *, maximize: bool = False) -> list[TrialResult]:
        """Every trial, best ``name`` first: numbers in order (ties by trial number), then
        trials whose value is NaN, then those with no number (NaN is never best)."""
        def key(result: TrialResult) -> tuple[int, float | int, int]:
            value = result.collected.get(name)
            if not _is_number(value):
                return (2, 0, result.trial)
            if isinstance(value, float) and math.isnan(value):
                return (1, 0, result.trial)
            return (0, -value if maximize else value, result.trial)

        return sorted(self.trials, key=key)

    def best(self, name: str, *, maximize: bool = False) -> TrialResult | None:
        """The trial with the lowest (or highest) number collected as ``name``, if any.

        NaN is never best; an infinity is a number like any other.
        """
        ranked = self.ranked(name, maximize=maximize)
        top = ranked[0].collected.get(name) if ranked else None
        if not _is_number(top) or (isinstance(top, float) and math.isnan(top)):
            return None
        return ranked[0]

    def rows(self, *, runtime: bool = True,
             order: Sequence[TrialResult] | None = None) -> list[list[str]]:
        """The table's header and one row per trial (in ``order``, default as run);
        ``runtime`` adds worker and seconds. Text from kernels and files is escaped."""
        head = ["trial", "trial seed", *(["worker", "seconds"] if runtime else []),
                *self.collect, "error"]
        rows = [head]
        for result in self.trials if order is None else order:
            row = [str(result.trial), str(result.trial_seed)]
            if runtime:
                row += [printable(result.worker or "-"), f"{result.seconds:.2f}"]
            row += [_cell_text(result.collected.get(name)) for name in self.collect]
            rows.append([*row, printable(result.error or "")])
        return rows

    def table(self, *, runtime: bool = True,
              order: Sequence[TrialResult] | None = None) -> str:
        """:meth:`rows` as fixed-width text."""
        rows = self.rows(runtime=runtime, order=order)
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
                 for row in rows]
        return "\n".join(lines)

    def summary(self, *, minimize: str | None = None, maximize: str | None = None,
                runtime: bool = True) -> str:
        """The table (best trial first, with a metric), the best trial, what was
        unchecked, the verifications and the re-create line."""
        metric = minimize or maximize
        order = self.ranked(metric, maximize=maximize is not None) if metric else None
        lines = [f"{printable(self.notebook)}: experiment seed {self.experiment_seed}, "
                 f"scheme {self.scheme}, {len(self.trials)} trials, {len(self.failed)} failed",
                 "", self.table(runtime=runtime, order=order), ""]
        if metric is not None:
            lines.append(self._best_line(metric, maximize is not None))
        for result in self.trials:
            lines += [f"unchecked: trial {result.trial} {name}: {printable(reason)}"
                      for name, reason in result.unchecked().items()]
        for check in self.verifications:
            where = ("on another worker" if check.elsewhere else "on the same worker "
                     "(no other worker)")
            if runtime:
                where += (f": {printable(check.first_worker or '-')} then "
                          f"{printable(check.again_worker or '-')}")
            lines.append(f"verify trial {check.trial} ({where}): {check.verdict()}")
        example = self.trials[0].trial if self.trials else 0
        generic = self.recreate(example).replace(f"--trial {example}", "--trial k")
        lines.append(f"re-create trial k in a notebook: {generic}")
        return "\n".join(lines)

    def _best_line(self, name: str, maximize: bool) -> str:
        """``best NAME (minimize): trial k = v``, and which trials got NaN."""
        best = self.best(name, maximize=maximize)
        nan = [result.trial for result in self.trials
               if isinstance(value := result.collected.get(name), float) and math.isnan(value)]
        line = f"best {name} ({'max' if maximize else 'min'}imize): " + (
            f"trial {best.trial} = {_short(best.collected[name], 60)}" if best
            else "no trial collected a number")
        if nan:
            line += (f"; NaN in trial{'s' * (len(nan) > 1)} {', '.join(map(str, nan))}"
                     " (never best, listed last)")
        return line

    def to_json(self) -> dict[str, Any]:
        """The ``--out`` document (versioned, strict JSON).

        Non-finite floats are written as null, and ``non_finite`` maps each one's place
        (a JSON Pointer, e.g. ``/trials/3/collected/loss``) to ``NaN``, ``Infinity`` or
        ``-Infinity``; :func:`load` puts them back.
        """
        document = {
            "format": FORMAT, "version": VERSION, "notebook": self.notebook,
            "experiment_seed": self.experiment_seed, "scheme": self.scheme,
            "collect": list(self.collect),
            "trials": [result.to_json() for result in self.trials],
            "verified": [{**asdict(check), "identical": check.identical}
                         for check in self.verifications],
        }
        non_finite: dict[str, str] = {}
        finite = _finite_only(document, "", non_finite)
        assert isinstance(finite, dict)
        return {**finite, "non_finite": non_finite}

    def write(self, path: str | os.PathLike[str], *,
              refuse: Sequence[str | os.PathLike[str]] = (), follow_links: bool = True) -> Path:
        """Write :meth:`to_json` to ``path`` atomically; return the path.

        ``refuse``: the notebook (and any other input) that the output may never
        replace, checked again at the moment of writing; ``follow_links=False`` for a
        path resolved when the run began (a link on it now appeared since and is refused).
        ValueError (one line) and nothing written when the path cannot be written.
        """
        text = json.dumps(self.to_json(), indent=1, allow_nan=False) + "\n"
        return write_atomically(path, text.encode("utf-8"), "trials output", refuse=refuse,
                                refused_as="the notebook", follow_links=follow_links)

    def plot(self, name: str, ax: Any = None, *, log: bool = False) -> Any:
        """Plot collected ``name`` per trial: a line per trial for lists, else one bar each.

        ``log`` puts the values on a log scale. Returns the matplotlib Figure (matplotlib
        is imported only here).
        """
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(figsize=(7, 4))
        values = [(r.trial, r.collected.get(name)) for r in self.trials]
        series = [(t, v) for t, v in values if isinstance(v, list) and all(map(_is_number, v))]
        if series:
            for trial, value in series:
                ax.plot(range(1, len(value) + 1), value, marker="o", label=f"trial {trial}")
            ax.set(xlabel="step", ylabel=name)
            ax.legend(fontsize="small", ncols=2)
        else:
            points = [(t, v) for t, v in values if _is_number(v)]
            ax.bar([str(t) for t, _ in points], [v for _, v in points], color="tab:blue")
            ax.set(xlabel="trial", ylabel=name)
        if log:
            ax.set_yscale("log")
        ax.set_title(f"{printable(self.notebook)}: {name} per trial (experiment seed "
                     f"{self.experiment_seed})")
        return ax.figure

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, str]:
        """Text and HTML without workers or times, so stored notebook outputs stay identical."""
        head, *body = self.rows(runtime=False)
        cells = "".join(f"<th>{html.escape(cell)}</th>" for cell in head)
        for row in body:
            cells += "</tr><tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in row)
        lines = self.summary(runtime=False).split("\n\n", 2)
        notes = "".join(f"<li>{html.escape(line)}</li>" for line in lines[2].splitlines())
        return {"text/plain": self.summary(runtime=False),
                "text/html": f"<p>{html.escape(lines[0])}</p><table><tr>{cells}</tr></table>"
                             f"<ul>{notes}</ul>"}


def _finite_only(value: object, pointer: str, non_finite: dict[str, str]) -> object:
    """``value`` with every non-finite float replaced by None, its place recorded."""
    if isinstance(value, float) and not math.isfinite(value):
        non_finite[pointer] = "NaN" if math.isnan(value) else (
            "Infinity" if value > 0 else "-Infinity")
        return None
    if isinstance(value, dict):
        return {key: _finite_only(item, f"{pointer}/{_pointer_token(key)}", non_finite)
                for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_only(item, f"{pointer}/{index}", non_finite)
                for index, item in enumerate(value)]
    return value


def _pointer_token(key: str) -> str:
    """A key as one JSON Pointer token (RFC 6901: ``~`` is ``~0``, ``/`` is ``~1``)."""
    return key.replace("~", "~0").replace("/", "~1")


# -- reading a trials file ----------------------------------------------------------------


def _file_schema() -> dict[str, object]:
    cell = {"cell": int, "first_line": str, "names": MapOf(str), "unchecked": MapOf(str),
            "outputs": str}
    trial = {"trial": int, "trial_seed": int, "worker": (str, None), "seconds": (float, int),
             "collected": MapOf(AnyJSON), "fingerprints": [cell], "record": (dict, None),
             "error": (str, None), "status_warnings": [str], "unseeded": [str]}
    check = {"trial": int, "first_worker": (str, None), "again_worker": (str, None),
             "differences": [str], "unchecked": [str], "notes": [str], "identical": bool}
    return {"format": str, "version": int, "notebook": str, "experiment_seed": int,
            "scheme": str, "collect": [str], "trials": [trial], "verified": [check],
            "non_finite": MapOf(str)}


def load(path: str | os.PathLike[str]) -> TrialsResult:
    """Read what ``--out`` (:meth:`TrialsResult.write`) wrote, e.g. to plot it later.

    Checked like det_nb's other files: size, strict JSON (UTF-8, no duplicate keys, no
    bare NaN), depth, every field's type, and that the lineage adds up (each trial's seed
    is the one its experiment seed, trial and scheme give). ValueError (one line) for
    anything else.
    """
    where = f"trials file {shown(path)}"
    data = parse_json(read_limited(path, "trials file", MAX_FILE_BYTES), where)
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ValueError(f'{where} is not a det_nb trials file (no "format": "{FORMAT}")')
    if data.get("version") != VERSION:
        raise ValueError(f"{where} has trials format version {_short(data.get('version'))}; "
                         f"this det_nb reads version {VERSION}")
    if _depth(data) > MAX_FILE_DEPTH:
        raise ValueError(f"{where} is nested more than {MAX_FILE_DEPTH} levels deep: not a "
                         "det_nb trials file")
    try:
        check_fields(data, _file_schema(), "", whole="the file")
        return _from_json(data)
    except ValueError as error:
        raise ValueError(f"{where}: {printable(str(error))}") from None


def _from_json(data: dict[str, Any]) -> TrialsResult:
    """The result a checked document describes; ValueError naming what does not add up."""
    seed = validate_seed(data["experiment_seed"], "experiment_seed")
    scheme = data["scheme"]
    validate_scheme(scheme)
    collect = validate_names(data["collect"])
    if len(set(collect)) != len(collect):
        raise ValueError("collect names a name twice")
    _restore_non_finite(data)
    seen: set[int] = set()
    trials = []
    for index, entry in enumerate(data["trials"]):
        number = entry["trial"]
        try:
            lineage = Lineage(seed, number, scheme)
        except ValueError as error:
            raise ValueError(f"trials[{index}]: {error}") from None
        if number in seen:
            raise ValueError(f"trials[{index}]: trial {number} appears twice")
        seen.add(number)
        if entry["trial_seed"] != lineage.trial_seed:
            raise ValueError(f"trials[{index}].trial_seed is {entry['trial_seed']}, but "
                             f"experiment seed {seed}, trial {number} and scheme {scheme} "
                             f"give {lineage.trial_seed}")
        if not 0 <= entry["seconds"] < math.inf:
            raise ValueError(f"trials[{index}].seconds must be a number of seconds >= 0")
        extra = sorted(set(entry["collected"]) - set(collect))
        if extra:
            raise ValueError(f"trials[{index}].collected has {extra}, which collect does "
                             "not name")
        for place, cell in enumerate(entry["fingerprints"]):
            if cell["cell"] < 1:
                raise ValueError(f"trials[{index}].fingerprints[{place}].cell must be >= 1")
        trials.append(TrialResult(**entry))
    checks = []
    for index, entry in enumerate(data["verified"]):
        if entry["trial"] not in seen:
            raise ValueError(f"verified[{index}] verifies trial {entry['trial']}, which the "
                             "file does not hold")
        if entry["identical"] != (not entry["differences"]):
            raise ValueError(f"verified[{index}].identical does not match its differences")
        checks.append(Verification(entry["trial"], entry["first_worker"], entry["again_worker"],
                                   entry["differences"], entry["unchecked"], entry["notes"]))
    return TrialsResult(data["notebook"], seed, scheme, collect, trials, checks)


def _restore_non_finite(data: dict[str, Any]) -> None:
    """Put the non-finite floats that ``non_finite`` lists back in place of their nulls.

    Each place must be a null inside a trial's collected values.
    """
    for pointer, name in data["non_finite"].items():
        if name not in _NON_FINITE:
            raise ValueError(f"non_finite[{pointer!r}] must be NaN, Infinity or -Infinity, "
                             f"got {_short(name)}")
        tokens = [token.replace("~1", "/").replace("~0", "~")
                  for token in pointer.split("/")[1:]]
        if (not pointer.startswith("/") or len(tokens) < 4 or tokens[0] != "trials"
                or tokens[2] != "collected"):
            raise ValueError(f"non_finite[{pointer!r}] is not a place among the collected "
                             "values (/trials/N/collected/NAME...)")
        container: Any = data
        for token in tokens[:-1]:
            container = _child(container, token, pointer)
        last = tokens[-1]
        if _child(container, last, pointer) is not None:
            raise ValueError(f"non_finite[{pointer!r}] names a place that is not null")
        container[int(last) if isinstance(container, list) else last] = _NON_FINITE[name]


def _child(container: object, token: str, pointer: str) -> object:
    """One step of a JSON Pointer; ValueError when it leads nowhere."""
    if isinstance(container, dict) and token in container:
        return container[token]
    if (isinstance(container, list) and token.isdigit() and token.isascii()
            and (token == "0" or not token.startswith("0")) and int(token) < len(container)):
        return container[int(token)]
    raise ValueError(f"non_finite[{pointer!r}] names a place the file does not have")


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _cell_text(value: object) -> str:
    """A collected value in the table: exact numbers, list length and last item, digests."""
    if _unchecked_reason(value) is not None:
        return "unchecked"
    if isinstance(value, dict) and "digest" in value:
        return printable(f"{value.get('description', '')} {str(value['digest'])[:12]}".strip())
    if isinstance(value, list):
        return f"[{len(value)}] last {_short(value[-1], 30)}" if value else "[]"
    return "-" if value is None else _short(value, 30)


@dataclass(frozen=True)
class _Plan:
    """Validated input: the jobs to run and which trials to verify."""

    notebook: Path
    jobs: list[TrialJob]
    verify: list[int]


def _plan(notebook: str | os.PathLike[str], seed: object, trials: str | Sequence[int],
          scheme: str, collect: str | Sequence[str], verify: int, timeout: float) -> _Plan:
    """Check every argument (ValueError, one line) before any cluster starts."""
    experiment_seed = validate_seed(seed, "seed")
    validate_scheme(scheme)
    numbers = parse_trials(trials) if isinstance(trials, str) else [
        validate_seed(t, "trial") for t in trials]
    if not numbers:
        raise ValueError("trials must name at least one trial")
    if len(set(numbers)) != len(numbers):
        raise ValueError("trials must name each trial once")
    for trial in numbers:
        Lineage(experiment_seed, trial, scheme)  # e.g. scheme determined counts from 1
    if isinstance(verify, bool) or not isinstance(verify, int) or not 0 <= verify <= len(
            numbers):
        raise ValueError(f"verify must be a number of trials in [0, {len(numbers)}], "
                         f"got {_short(verify)}")
    _check_seconds(timeout, "timeout")
    path = Path(notebook).expanduser()
    load_notebook(path)  # ValueError (one line) unless it is a readable Python notebook
    source = read_limited(path, "notebook", MAX_NOTEBOOK_BYTES)
    names = _names(collect)
    env = trial_environment()
    jobs = [TrialJob(path.name, source, str(path.resolve()), experiment_seed, trial, scheme,
                     names, float(timeout), env) for trial in numbers]
    # Chosen by the experiment seed alone: the same run verifies the same trials.
    chosen = sorted(random.Random(experiment_seed).sample(numbers, verify))
    return _Plan(path, jobs, chosen)


def _check_seconds(seconds: object, name: str) -> None:
    """ValueError (one line) unless ``seconds`` is a finite number above 0 (NaN is not)
    and at most MAX_SECONDS."""
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not (
            0 < seconds < math.inf):
        raise ValueError(f"{name} must be a finite number of seconds above 0, "
                         f"got {_short(seconds)}")
    if seconds > MAX_SECONDS:
        raise ValueError(f"{name} must be at most {MAX_SECONDS} seconds, got {seconds:g}")


def run_trials(
    notebook: str | os.PathLike[str],
    seed: int,
    trials: str | Sequence[int],
    *,
    scheme: str = "seedsequence",
    collect: str | Sequence[str] = (),
    workers: int | None = None,
    scheduler: str | None = None,
    executor: concurrent.futures.Executor | None = None,
    verify: int = 0,
    timeout: float = DEFAULT_TIMEOUT,
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
    workers_timeout: float = DEFAULT_WORKERS_TIMEOUT,
    progress: Callable[[str], object] | None = None,
) -> TrialsResult:
    """Run ``notebook`` once per trial, each in a fresh kernel with its lineage in force.

    ``trials``: ``"0-7"``, ``"0,3,5"`` or a list of numbers. ``collect``: names read
    from each trial's namespace after its last cell. The engine: a running Dask
    ``scheduler`` (``tcp://host:port``), else an embedded LocalCluster of ``workers``
    single-threaded processes (default: one per core), else the given ``executor``.
    ``verify``: re-run that many trials (chosen by the seed) on another worker and compare.
    ``progress`` is called with a line as each trial and verification finishes.

    Every wait is bounded: ``timeout`` seconds per trial (its kernel's start, every
    cell, reading the results; a trial past it fails), ``connect_timeout`` to reach the
    scheduler and exchange Dask's handshake with it, ``workers_timeout`` while a
    scheduler has no workers (at the start: OSError; during the run: the trials left
    fail with that reason). Raises ValueError on bad input before anything runs, OSError
    when the scheduler cannot be reached or has no workers.
    """
    plan = _plan(notebook, seed, trials, scheme, collect, verify, timeout)
    _check_seconds(connect_timeout, "connect timeout")
    _check_seconds(workers_timeout, "workers timeout")
    if sum(x is not None for x in (workers, scheduler, executor)) > 1:
        raise ValueError("give at most one of workers, scheduler and executor")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int)
                                or not 1 <= workers <= 1024):
        raise ValueError(f"workers must be an integer in [1, 1024], got {_short(workers)}")
    if scheduler is not None and not isinstance(scheduler, str):
        raise ValueError(f"scheduler must be an address such as tcp://host:8786, got "
                         f"{_short(scheduler)}")
    if executor is not None:
        results, checks = _execute(plan, executor, lambda _worker: executor, progress,
                                   lambda: None)
    else:
        with _dask_client(workers, scheduler, connect_timeout, workers_timeout) as client:
            results, checks = _execute(plan, client.get_executor(pure=False),
                                       lambda worker: _elsewhere(client, worker), progress,
                                       _no_workers_check(client, workers_timeout))
    first = plan.jobs[0]
    return TrialsResult(plan.notebook.name, first.experiment_seed, first.scheme, first.collect,
                        results, checks)


@contextlib.contextmanager
def _dask_client(workers: int | None, scheduler: str | None, connect_timeout: float,
                 workers_timeout: float) -> Iterator[Any]:
    """A Dask client: on the given scheduler (once it has a worker), or on a LocalCluster
    closed on the way out, its scratch folder with it."""
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise ImportError("trials run on Dask: pip install 'det_nb[dask]'") from None
    quiet = logging.ERROR  # the scheduler's and workers' start and stop chatter
    if scheduler is not None:
        with _quiet_logs(quiet):
            try:
                _handshake(scheduler, connect_timeout)
                client = _connect(Client, scheduler, connect_timeout)
            except ValueError as error:  # from the address alone
                raise ValueError(f"--scheduler {_short(scheduler, 200)} is not a Dask scheduler "
                                 f"address: {printable(_first_line(error))}; give "
                                 "tcp://HOST:PORT") from None
            except Exception as error:
                raise OSError(f"cannot reach the Dask scheduler at {_short(scheduler, 200)} "
                              f"within {connect_timeout:g} s: {_unreachable(error)}") from None
        with client:
            _wait_for_a_worker(client, scheduler, workers_timeout)
            yield client
        return
    count = workers or os.cpu_count() or 1
    # On loopback only; the scheduler's HTTP server (health routes; no dashboard) takes a
    # free port, as 8787 may belong to another cluster. Its workers keep their scratch
    # files in a folder of this run's, and ignore Ctrl-C and SIGTERM (see dask_setup).
    with _quiet_logs(quiet), tempfile.TemporaryDirectory(
            prefix="det_nb-dask-", ignore_cleanup_errors=True) as scratch:
        cluster = LocalCluster(
            n_workers=count, threads_per_worker=1, processes=True, host="127.0.0.1",
            dashboard_address="127.0.0.1:0", silence_logs=quiet, local_directory=scratch,
            scheduler_kwargs={"dashboard": False, "local_directory": scratch},
            preload=["det_nb.trials"],
        )
        with cluster, Client(cluster, set_as_default=False) as client:
            yield client


def _handshake(scheduler: str, seconds: float) -> None:
    """Connect to ``scheduler`` and exchange Dask's handshake within ``seconds``, or raise.

    distributed bounds the TCP connect but not the handshake after it (on purpose:
    dask/distributed#7698), so a peer that accepts and never answers (another TCP
    service, an HTTP server) would hold a ``Client`` for minutes. This attempt runs in
    its own thread and event loop under a hard deadline; past it, it is cancelled and its
    socket closed. ``TimeoutError``: something accepted the connection and did not answer.
    """
    from distributed.comm import connect

    async def shake() -> None:
        comm = await connect(scheduler, timeout=seconds * 0.9)  # refused: said before the deadline
        await comm.close()

    outcome: list[BaseException | None] = []

    def attempt() -> None:
        try:
            asyncio.run(asyncio.wait_for(shake(), seconds))
            outcome.append(None)
        except BaseException as error:  # handed to the caller's thread
            outcome.append(error)

    thread = threading.Thread(target=attempt, name="det_nb scheduler handshake", daemon=True)
    thread.start()
    thread.join(seconds + 5)  # the attempt's own deadline ends it first
    if not outcome:
        raise TimeoutError()
    if outcome[0] is not None:
        raise outcome[0]


def _connect(client_class: type, scheduler: str, connect_timeout: float) -> Any:
    """A client of ``scheduler``; one that fails to connect is closed at once, quietly.

    Left alone, a half-built ``Client`` tries to close itself when collected, waits
    twice the timeout and prints "Exception ignored in Client.__del__" (measured).
    """

    class _ClosedOnFailure(client_class):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            try:
                super().__init__(*args, **kwargs)
            except BaseException:
                self.status = "closed"  # Client.close (and __del__) then do nothing
                with contextlib.suppress(Exception):
                    self._loop_runner.stop()
                raise

    return _ClosedOnFailure(scheduler, timeout=connect_timeout, set_as_default=False)


def _unreachable(error: BaseException) -> str:
    """Why a scheduler could not be reached, in words."""
    causes: list[BaseException] = []
    cause: BaseException | None = error
    while cause is not None and len(causes) < 10:
        causes.append(cause)
        cause = cause.__cause__ or cause.__context__
    if type(error) is TimeoutError:  # the handshake's own deadline
        return "something accepted the connection but did not answer as a Dask scheduler"
    if any(isinstance(cause, ConnectionRefusedError) for cause in causes):
        return "the connection was refused (is a scheduler running there?)"
    if any(isinstance(cause, socket.gaierror) for cause in causes):
        return "the host name is not known"
    if isinstance(error, (MemoryError, AssertionError, EOFError)) or type(error).__name__ in (
            "CommClosedError", "StreamClosedError"):
        return "what answers there is not a Dask scheduler"
    if "identity()" in str(error):  # a worker's or nanny's identity takes other arguments
        return "what answers there is a Dask worker or nanny: give the scheduler's address"
    if str(error).startswith("Timed out trying to connect"):
        return "no connection could be made"
    return printable(_first_line(error))


def _wait_for_a_worker(client: Any, scheduler: str, seconds: float) -> None:
    """Return once the scheduler has a worker; OSError after ``seconds`` without one."""
    try:
        client.wait_for_workers(1, timeout=seconds)
    except TimeoutError:
        raise OSError(f"the scheduler at {_short(scheduler, 200)} has no workers: none came "
                      f"within {seconds:g} s (--workers-timeout); start one with: dask worker "
                      f"{printable(scheduler)}") from None


def _no_workers_check(client: Any, seconds: float) -> Callable[[], str | None]:
    """A check that says why to stop waiting once the scheduler has had no worker for
    ``seconds`` (None until then)."""
    since: list[float] = []

    def stalled() -> str | None:
        if client.nthreads():
            since.clear()
            return None
        if not since:
            since.append(time.monotonic())
        if time.monotonic() - since[0] < seconds:
            return None
        return f"the scheduler has no workers: none for {seconds:g} s (--workers-timeout)"

    return stalled


@contextlib.contextmanager
def _quiet_logs(level: int) -> Iterator[None]:
    """Raise the ``distributed`` logger's level for the duration (restored after)."""
    logger = logging.getLogger("distributed")
    before = logger.level
    logger.setLevel(level)
    try:
        yield
    finally:
        logger.setLevel(before)


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


def _elsewhere(client: Any, worker: str | None) -> concurrent.futures.Executor:
    """An executor whose tasks run on any worker but ``worker`` (where there is another)."""
    others = [address for address in client.scheduler_info()["workers"] if address != worker]
    if not others:
        return client.get_executor(pure=False)
    return client.get_executor(pure=False, workers=others, allow_other_workers=False)


def _execute(
    plan: _Plan, executor: concurrent.futures.Executor,
    elsewhere: Callable[[str | None], concurrent.futures.Executor],
    progress: Callable[[str], object] | None,
    stalled: Callable[[], str | None],
) -> tuple[list[TrialResult], list[Verification]]:
    """Run every job; as a chosen trial finishes, start its re-run on another worker.

    Each second without a finished task asks ``stalled`` whether to stop waiting; if so
    the trials left fail with its reason. On any exception (Ctrl-C, SIGTERM) every task is
    cancelled first: on Dask that gives up the running trials, whose kernels are killed.
    """
    jobs = {job.trial: job for job in plan.jobs}
    firsts = {executor.submit(run_trial, job): job for job in plan.jobs}
    again: dict[concurrent.futures.Future, TrialResult] = {}
    results: dict[int, TrialResult] = {}
    checks: dict[int, Verification] = {}

    def say(line: str) -> None:
        if progress is not None:
            progress(line)

    try:
        pending = set(firsts)
        while pending:
            done, pending = concurrent.futures.wait(
                pending, timeout=_STALL_CHECK_SECONDS,
                return_when=concurrent.futures.FIRST_COMPLETED)
            for future in done:
                if future in firsts:
                    job = firsts[future]
                    result = results[job.trial] = _outcome(future, job)
                    outcome = f"failed: {printable(result.error)}" if result.error else "done"
                    say(f"[{len(results)}/{len(jobs)}] trial {job.trial} {outcome} "
                        f"({result.seconds:.1f} s)")
                    if job.trial in plan.verify:
                        rerun = elsewhere(result.worker).submit(run_trial, job)
                        again[rerun] = result
                        pending.add(rerun)
                else:
                    first = again[future]
                    second = _outcome(future, jobs[first.trial])
                    check = checks[first.trial] = Verification(
                        first.trial, first.worker, second.worker, *_comparison(first, second))
                    word = ("identical" if check.proven else "differs" if check.differences
                            else "not proven")
                    say(f"verified trial {first.trial}: {word}")
            why = stalled() if not done else None
            if why is not None:
                for future in pending:
                    future.cancel()
                    if future in firsts:
                        results[firsts[future].trial] = _not_run(firsts[future], why)
                    else:
                        first = again[future]
                        checks[first.trial] = Verification(
                            first.trial, first.worker, None, [], [f"not run again: {why}"])
                say(f"stopped waiting: {why}")
                break
    except BaseException:
        for future in [*firsts, *again]:
            future.cancel()
        raise
    return ([results[job.trial] for job in plan.jobs],
            [checks[trial] for trial in sorted(checks)])


def _outcome(future: concurrent.futures.Future, job: TrialJob) -> TrialResult:
    """The trial's result, or a failed result saying why the task itself failed."""
    try:
        return future.result()
    except Exception as error:  # e.g. KilledWorker after repeated worker deaths
        return _not_run(job, f"{type(error).__name__}: {_first_line(error)}")


def _not_run(job: TrialJob, why: str) -> TrialResult:
    """A failed result for a trial that did not run to its end: ``not run: why``."""
    lineage = Lineage(job.experiment_seed, job.trial, job.scheme)
    return TrialResult(job.trial, lineage.trial_seed, None, 0.0, {}, [], None,
                       f"not run: {printable(why)}")


# -- command line ------------------------------------------------------------------------


class _OneLineParser(argparse.ArgumentParser):
    """Argument errors as one line on stderr and exit status 2."""

    def error(self, message: str) -> Any:
        self.exit(2, f"{self.prog}: error: {printable(message)}\n")


def _whole_number(text: str) -> int:
    """An argparse type: the one integer check (no ٤٢ or 4_2); ranges are run_trials'."""
    try:
        return validate_integer(text, "the value", 0)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _parser() -> argparse.ArgumentParser:
    parser = _OneLineParser(
        prog="python -m det_nb trials", allow_abbrev=False,
        description="Run a notebook as seeded trials on Dask, each in a fresh kernel with "
        "its lineage in force from the first cell; collect values, verify, write JSON. "
        "Exit status: 0 all ran (and verified identical), 1 a trial failed or a "
        "verification differed, 2 bad input, no scheduler or workers, or --out not "
        "written, 3 a verification could not compare everything (not proven), 130 "
        "Ctrl-C, 143 SIGTERM, 141 stdout closed.",
    )
    parser.add_argument("notebook", metavar="NOTEBOOK", help="the .ipynb to run")
    parser.add_argument("--seed", required=True, metavar="S", help="experiment seed")
    parser.add_argument("--trials", required=True, metavar="SPEC",
                        help="trial numbers: a range such as 0-7 or a list such as 0,3,5")
    parser.add_argument("--scheme", choices=SCHEMES, default="seedsequence",
                        help="trial seed derivation (default: seedsequence)")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--workers", type=_whole_number, metavar="N",
                       help="single-threaded workers of an embedded LocalCluster "
                       "(default: one per core)")
    where.add_argument("--scheduler", metavar="ADDRESS",
                       help="a running Dask scheduler, e.g. tcp://host:8786")
    parser.add_argument("--collect", default="", metavar="NAME,...",
                        help="names to read from each trial's namespace after its last cell")
    best = parser.add_mutually_exclusive_group()
    best.add_argument("--minimize", metavar="NAME",
                      help="rank the trials by NAME, lowest first (NaN last)")
    best.add_argument("--maximize", metavar="NAME",
                      help="rank the trials by NAME, highest first (NaN last)")
    parser.add_argument("--out", metavar="PATH", help="write the results as JSON")
    parser.add_argument("--verify", type=_whole_number, default=0, metavar="K",
                        help="re-run K trials on another worker and compare (exit 1 if any "
                        "differ, 3 if something could not be compared)")
    parser.add_argument("--allow-unchecked", action="store_true",
                        help="exit 0, not 3, when a verification found no difference but "
                        "could not compare everything")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, metavar="S",
                        help="seconds one trial may take in its kernel: its start, every "
                        f"cell, reading the results (default: {DEFAULT_TIMEOUT:g})")
    parser.add_argument("--connect-timeout", type=float, default=DEFAULT_CONNECT_TIMEOUT,
                        metavar="S", help="seconds to reach --scheduler and exchange Dask's "
                        f"handshake with it (default: {DEFAULT_CONNECT_TIMEOUT:g})")
    parser.add_argument("--workers-timeout", type=float, default=DEFAULT_WORKERS_TIMEOUT,
                        metavar="S", help="seconds to wait while the scheduler has no "
                        f"workers, at the start and during the run (default: "
                        f"{DEFAULT_WORKERS_TIMEOUT:g})")
    return parser


def main(argv: list[str]) -> int:
    """``python -m det_nb trials``: the exit statuses are in the parser's description.

    Run it under :func:`det_nb.command_line.run` (``python -m det_nb`` does), which ends
    Ctrl-C, SIGTERM and a closed stdout in one line.
    """
    parser = _parser()
    try:
        try:
            refuse_repeated_options(parser, argv)
        except ValueError as error:
            parser.error(str(error))
        args = parser.parse_args(argv)
    except SystemExit as stop:  # --help, or a usage error already printed on one line
        if isinstance(stop, Terminated):
            raise
        return int(stop.code or 0)
    metric = args.minimize or args.maximize
    collect = [*_split(args.collect), *([metric] if metric else [])]
    out = None
    try:
        if args.out is not None:  # resolved now: a link that appears on it later is refused
            out = writable_target(args.out, "trials output")
            refuse_notebook_target(args.out, [args.notebook], "--out")
        _check_seconds(args.timeout, "--timeout")
        _check_seconds(args.connect_timeout, "--connect-timeout")
        _check_seconds(args.workers_timeout, "--workers-timeout")
        result = run_trials(
            args.notebook, args.seed, args.trials, scheme=args.scheme, collect=collect,
            workers=args.workers, scheduler=args.scheduler, verify=args.verify,
            timeout=args.timeout, connect_timeout=args.connect_timeout,
            workers_timeout=args.workers_timeout,
            progress=lambda line: print(line, flush=True),
        )
    except BrokenPipeError:
        raise  # stdout closed by its reader: the command-line guard ends quietly
    except (ValueError, OSError, ImportError) as error:
        print(f"{parser.prog}: error: {printable(_first_line(error))}", file=sys.stderr)
        return 2
    except (KeyboardInterrupt, Terminated) as stop:  # the guard prints the line
        stop.add_note("its trials are cancelled; the scheduler keeps its workers"
                      if args.scheduler else "the cluster it started is stopped")
        raise
    print()
    print(result.summary(minimize=args.minimize, maximize=args.maximize), flush=True)
    if out is not None:  # after the table, so a failed write loses no results
        try:
            written = result.write(out, refuse=[args.notebook], follow_links=False)
        except ValueError as error:
            print(f"{parser.prog}: error: {printable(_first_line(error))}", file=sys.stderr)
            return 2
        print(f"written to {printable(str(written))}")
    return result.exit_status(allow_unchecked=args.allow_unchecked)


def _split(text: str) -> list[str]:
    return [name.strip() for name in text.split(",") if name.strip()]


if __name__ == "__main__":
    # Through the imported module, so that tasks pickle as det_nb.trials.*, not __main__.*.
    from det_nb.command_line import run as _guarded
    from det_nb.trials import main as _main

    sys.exit(_guarded("python -m det_nb trials", lambda: _main(sys.argv[1:])))
