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

``python -m det_nb trials NOTEBOOK --seed S --trials 0-7`` or :func:`run_trials`.
"""

from __future__ import annotations

import argparse
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
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from det_nb.command_line import Terminated
from det_nb.cpu_kernels import pin_environment
from det_nb.files import read_limited, writable_target, write_atomically
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
VERSION = 1
# A spec such as 0-2147483647 would plan two billion trials: refuse before any work.
MAX_TRIALS = 100_000
DEFAULT_CONNECT_TIMEOUT = 10.0
# A trials file holds every trial's run record (a few kB each).
MAX_FILE_BYTES = 200_000_000
DEFAULT_TIMEOUT = 600.0


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
    timeout: float
    env: dict[str, str]


@dataclass(frozen=True)
class TrialResult:
    """One trial's outcome; ``error`` is ``cell k: ename: evalue`` (or why it never ran)."""

    trial: int
    trial_seed: int
    worker: str | None
    seconds: float
    collected: dict[str, Any]
    fingerprints: list[dict[str, Any]]  # per code cell: cell, first_line, names, outputs
    record: dict[str, Any] | None
    error: str | None
    status_warnings: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (the ``trials`` entries of ``--out``)."""
        return asdict(self)


def run_trial(job: TrialJob) -> TrialResult:
    """Run one trial in a fresh kernel here (on a worker) and fingerprint what it made."""
    from det_nb.notebook_runner import run_notebook

    lineage = Lineage(job.experiment_seed, job.trial, job.scheme)
    with _notebook_here(job) as path:
        run = run_notebook(path, env=job.env, seed=job.experiment_seed, trial=job.trial,
                           scheme=job.scheme, collect=job.collect, timeout=job.timeout)
    return TrialResult(
        trial=job.trial, trial_seed=lineage.trial_seed, worker=_worker_name(),
        seconds=run.seconds, collected={k: _plain(v) for k, v in run.collected.items()},
        fingerprints=[{
            "cell": cell.index, "first_line": cell.first_line,
            "names": {name: fp.digest for name, fp in cell.names.items()},
            "outputs": cell.outputs_digest,
        } for cell in run.cells],
        record=run.record, error=run.error or _lineage_mismatch(lineage, run.record),
        status_warnings=list(run.status_warnings),
    )


def _lineage_mismatch(expected: Lineage, record: dict[str, Any] | None) -> str | None:
    """Why the kernel's lineage is not the trial's (e.g. a ``--scheme`` on the notebook's
    own ``%det_seed`` line, which stands), or None when it is."""
    ran = (record or {}).get("lineage")
    if ran is None:
        return "det_nb was not seeded in the kernel: the trial's lineage was not in force"
    if ran["trial_seed"] == expected.trial_seed and ran["scheme"] == expected.scheme:
        return None
    return (f"the notebook ran with scheme {ran['scheme']} (trial seed {ran['trial_seed']}), "
            f"not {expected.scheme}: run the trials with --scheme {ran['scheme']}")


@contextlib.contextmanager
def _notebook_here(job: TrialJob) -> Iterator[Path]:
    """The notebook's own path where this machine has it unchanged, else a private copy.

    In its own folder the notebook finds the files beside it; on a machine without them
    it runs from a temporary folder holding the copy that travelled with the task.
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


# -- comparing two runs of a trial --------------------------------------------------------


@dataclass(frozen=True)
class Verification:
    """A trial run again (on another worker where there is one), and what differs."""

    trial: int
    first_worker: str | None
    again_worker: str | None
    differences: list[str]

    @property
    def identical(self) -> bool:
        """True when every collected value, fingerprint and output was the same."""
        return not self.differences

    @property
    def elsewhere(self) -> bool:
        """Whether the second run had a different worker than the first."""
        return self.again_worker != self.first_worker


def compare(first: TrialResult, again: TrialResult) -> list[str]:
    """What differs between two runs of a trial, one line each (empty: identical)."""
    found: list[str] = []
    if first.error != again.error:
        found.append(f"error: {first.error!r} then {again.error!r}")
    for name in sorted(set(first.collected) | set(again.collected)):
        a, b = first.collected.get(name), again.collected.get(name)
        if a != b or json.dumps(a) != json.dumps(b):  # json tells 0.0 from -0.0 and NaNs apart
            found.append(f"{name}: {_value_difference(a, b)}")
    cells_a = {cell["cell"]: cell for cell in first.fingerprints}
    cells_b = {cell["cell"]: cell for cell in again.fingerprints}
    for index in sorted(set(cells_a) | set(cells_b)):
        a_cell, b_cell = cells_a.get(index), cells_b.get(index)
        if a_cell is None or b_cell is None:
            found.append(f"cell {index}: ran only {'once' if a_cell or b_cell else 'never'}")
            continue
        changed = sorted(name for name in set(a_cell["names"]) | set(b_cell["names"])
                         if a_cell["names"].get(name) != b_cell["names"].get(name))
        if changed:
            found.append(f"cell {index}: {', '.join(changed)} differ")
        if a_cell["outputs"] != b_cell["outputs"]:
            found.append(f"cell {index}: outputs differ")
    return found


def _value_difference(a: object, b: object) -> str:
    """``max abs diff 1e-07`` for numbers and lists of numbers, else both values, short."""
    def numbers(value: object) -> list[float] | None:
        items = value if isinstance(value, list) else [value]
        if all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in items):
            return [float(x) for x in items]
        return None

    xs, ys = numbers(a), numbers(b)
    if xs is not None and ys is not None and len(xs) == len(ys):
        gaps = [abs(x - y) for x, y in zip(xs, ys, strict=True)]
        gap = max((g for g in gaps if not math.isnan(g)), default=math.nan)
        return f"max abs diff {gap:.3g}"
    return f"{_short(a)} then {_short(b)}"


def _short(value: object, width: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= width else text[: width - 3] + "..."


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
        """Every trial ran and every verification was identical."""
        return not self.failed and all(check.identical for check in self.verifications)

    def recreate(self, trial: int) -> str:
        """The line that re-creates ``trial`` in a notebook."""
        return Lineage(self.experiment_seed, trial, self.scheme).command()

    def best(self, name: str, *, maximize: bool = False) -> TrialResult | None:
        """The trial with the lowest (or highest) number collected as ``name``, if any."""
        scored = [(result.collected[name], result.trial, result) for result in self.trials
                  if _is_number(result.collected.get(name))]
        if not scored:
            return None
        pick = max if maximize else min
        return pick(scored, key=lambda item: (item[0], -item[1] if maximize else item[1]))[2]

    def rows(self, *, runtime: bool = True) -> list[list[str]]:
        """The table's header and one row per trial; ``runtime`` adds worker and seconds."""
        head = ["trial", "trial seed", *(["worker", "seconds"] if runtime else []),
                *self.collect, "error"]
        rows = [head]
        for result in self.trials:
            row = [str(result.trial), str(result.trial_seed)]
            if runtime:
                row += [result.worker or "-", f"{result.seconds:.2f}"]
            row += [_cell_text(result.collected.get(name)) for name in self.collect]
            rows.append([*row, result.error or ""])
        return rows

    def table(self, *, runtime: bool = True) -> str:
        """:meth:`rows` as fixed-width text."""
        rows = self.rows(runtime=runtime)
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
                 for row in rows]
        return "\n".join(lines)

    def summary(self, *, minimize: str | None = None, maximize: str | None = None,
                runtime: bool = True) -> str:
        """The table, the best trial, the verifications and the re-create line."""
        lines = [f"{self.notebook}: experiment seed {self.experiment_seed}, scheme "
                 f"{self.scheme}, {len(self.trials)} trials, {len(self.failed)} failed", "",
                 self.table(runtime=runtime), ""]
        for name, biggest in ((minimize, False), (maximize, True)):
            if name is None:
                continue
            best = self.best(name, maximize=biggest)
            lines.append(f"best {name} ({'max' if biggest else 'min'}imize): " + (
                f"trial {best.trial} = {best.collected[name]!r}" if best
                else "no trial collected a number"))
        for check in self.verifications:
            where = ("on another worker" if check.elsewhere else "on the same worker "
                     "(no other worker)")
            if runtime:
                where += f": {check.first_worker} then {check.again_worker}"
            verdict = "identical" if check.identical else "DIFFERS: " + "; ".join(
                check.differences)
            lines.append(f"verify trial {check.trial} ({where}): {verdict}")
        example = self.trials[0].trial if self.trials else 0
        generic = self.recreate(example).replace(f"--trial {example}", "--trial k")
        lines.append(f"re-create trial k in a notebook: {generic}")
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        """The ``--out`` document (versioned)."""
        return {
            "format": FORMAT, "version": VERSION, "notebook": self.notebook,
            "experiment_seed": self.experiment_seed, "scheme": self.scheme,
            "collect": list(self.collect),
            "trials": [result.to_json() for result in self.trials],
            "verified": [{**asdict(check), "identical": check.identical}
                         for check in self.verifications],
        }

    def write(self, path: str | os.PathLike[str]) -> Path:
        """Write :meth:`to_json` to ``path`` atomically; return the path."""
        text = json.dumps(self.to_json(), indent=1) + "\n"
        return write_atomically(path, text.encode("utf-8"), "trials output")

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
        ax.set_title(f"{self.notebook}: {name} per trial (experiment seed "
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


def load(path: str | os.PathLike[str]) -> TrialsResult:
    """Read what ``--out`` (:meth:`TrialsResult.write`) wrote, e.g. to plot it later.

    ValueError (one line) for a file that is not a det_nb trials file of this version.
    """
    data = json.loads(read_limited(path, "trials file", MAX_FILE_BYTES))
    if not (isinstance(data, dict) and data.get("format") == FORMAT):
        raise ValueError(f"{str(path)!r} is not a det_nb trials file")
    if data.get("version") != VERSION:
        raise ValueError(f"{str(path)!r} has trials format version {data.get('version')!r}; "
                         f"this det_nb reads version {VERSION}")
    checks = [Verification(c["trial"], c["first_worker"], c["again_worker"], c["differences"])
              for c in data["verified"]]
    return TrialsResult(data["notebook"], data["experiment_seed"], data["scheme"],
                        tuple(data["collect"]), [TrialResult(**t) for t in data["trials"]],
                        checks)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _cell_text(value: object) -> str:
    """A collected value in the table: exact numbers, list length and last item, digests."""
    if isinstance(value, dict) and "digest" in value:
        return f"{value.get('description', '')} {str(value['digest'])[:12]}".strip()
    if isinstance(value, list):
        return f"[{len(value)}] last {value[-1]!r}" if value else "[]"
    return "-" if value is None else _short(value, 30) if isinstance(value, str) else repr(value)


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
                         f"got {verify!r}")
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
    """ValueError (one line) unless ``seconds`` is a finite number above 0 (NaN is not)."""
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not (
            0 < seconds < math.inf):
        raise ValueError(f"{name} must be a finite number of seconds above 0, got {seconds!r}")


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
    progress: Callable[[str], object] | None = None,
) -> TrialsResult:
    """Run ``notebook`` once per trial, each in a fresh kernel with its lineage in force.

    ``trials``: ``"0-7"``, ``"0,3,5"`` or a list of numbers. ``collect``: names read
    from each trial's namespace after its last cell. The engine: a running Dask
    ``scheduler`` (``tcp://host:port``), else an embedded LocalCluster of ``workers``
    single-threaded processes (default: one per core), else the given ``executor``.
    ``verify``: re-run that many trials (chosen by the seed) on another worker and compare.
    ``progress`` is called with a line as each trial and verification finishes.
    Raises ValueError on bad input before anything runs, OSError when the scheduler
    cannot be reached within ``connect_timeout`` seconds.
    """
    plan = _plan(notebook, seed, trials, scheme, collect, verify, timeout)
    _check_seconds(connect_timeout, "connect timeout")
    if sum(x is not None for x in (workers, scheduler, executor)) > 1:
        raise ValueError("give at most one of workers, scheduler and executor")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int)
                                or not 1 <= workers <= 1024):
        raise ValueError(f"workers must be an integer in [1, 1024], got {workers!r}")
    if executor is not None:
        results, checks = _execute(plan, executor, lambda _worker: executor, progress)
    else:
        with _dask_client(workers, scheduler, connect_timeout) as client:
            results, checks = _execute(plan, client.get_executor(pure=False),
                                       lambda worker: _elsewhere(client, worker), progress)
    first = plan.jobs[0]
    return TrialsResult(plan.notebook.name, first.experiment_seed, first.scheme, first.collect,
                        results, checks)


@contextlib.contextmanager
def _dask_client(workers: int | None, scheduler: str | None,
                 connect_timeout: float) -> Iterator[Any]:
    """A Dask client: on the given scheduler, or on a LocalCluster closed on the way out."""
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise ImportError("trials run on Dask: pip install 'det_nb[dask]'") from None
    quiet = logging.ERROR  # the scheduler's and workers' start and stop chatter
    if scheduler is not None:
        with _quiet_logs(quiet):
            try:
                client = _connect(Client, scheduler, connect_timeout)
            except Exception as error:  # whatever answers there, e.g. MemoryError from junk
                why = ("what answers there is not a Dask scheduler" if isinstance(
                    error, MemoryError) else _first_line(error))
                raise OSError(f"cannot reach the Dask scheduler at {scheduler!r} within "
                              f"{connect_timeout:g} s: {why}") from None
            with client:
                yield client
        return
    count = workers or os.cpu_count() or 1
    # On loopback only; the scheduler's HTTP server (health routes; no dashboard) takes a
    # free port, as 8787 may belong to another cluster.
    with _quiet_logs(quiet):
        with _workers_ignore_ctrl_c():
            cluster = LocalCluster(
                n_workers=count, threads_per_worker=1, processes=True, host="127.0.0.1",
                dashboard_address="127.0.0.1:0", scheduler_kwargs={"dashboard": False},
                silence_logs=quiet,
            )
        with cluster, Client(cluster, set_as_default=False) as client:
            yield client


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


@contextlib.contextmanager
def _workers_ignore_ctrl_c() -> Iterator[None]:
    """Ignore SIGINT while the cluster starts, so its worker processes inherit that.

    A terminal's Ctrl-C reaches the whole process group: without this each worker would
    die on its own, logging errors, instead of being closed by the cluster (this process
    still gets KeyboardInterrupt once the workers run). Only the main thread can do it.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    before = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, before)


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
) -> tuple[list[TrialResult], list[Verification]]:
    """Run every job; as a chosen trial finishes, start its re-run on another worker."""
    jobs = {job.trial: job for job in plan.jobs}
    futures = {executor.submit(run_trial, job): job for job in plan.jobs}
    results: dict[int, TrialResult] = {}
    again: dict[concurrent.futures.Future, TrialResult] = {}
    try:
        for future in concurrent.futures.as_completed(futures):
            job = futures[future]
            result = _outcome(future, job)
            results[job.trial] = result
            if progress is not None:
                outcome = f"failed: {result.error}" if result.error else "done"
                progress(f"[{len(results)}/{len(jobs)}] trial {job.trial} {outcome} "
                         f"({result.seconds:.1f} s)")
            if job.trial in plan.verify:
                again[elsewhere(result.worker).submit(run_trial, job)] = result
        checks = []
        for future, first in again.items():
            second = _outcome(future, jobs[first.trial])
            checks.append(Verification(first.trial, first.worker, second.worker,
                                       compare(first, second)))
            if progress is not None:
                progress(f"verified trial {first.trial}: "
                         f"{'identical' if not checks[-1].differences else 'differs'}")
    except BaseException:
        for future in [*futures, *again]:
            future.cancel()
        raise
    return ([results[job.trial] for job in plan.jobs],
            sorted(checks, key=lambda check: check.trial))


def _outcome(future: concurrent.futures.Future, job: TrialJob) -> TrialResult:
    """The trial's result, or a failed result saying why the task itself failed."""
    try:
        return future.result()
    except Exception as error:  # e.g. KilledWorker after repeated worker deaths
        lineage = Lineage(job.experiment_seed, job.trial, job.scheme)
        return TrialResult(job.trial, lineage.trial_seed, None, 0.0, {}, [], None,
                           f"not run: {type(error).__name__}: {_first_line(error)}")


# -- command line ------------------------------------------------------------------------


class _OneLineParser(argparse.ArgumentParser):
    """Argument errors as one line on stderr and exit status 2."""

    def error(self, message: str) -> Any:
        self.exit(2, f"{self.prog}: error: {message}\n")


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
        "its lineage in force from the first cell; collect values, verify, write JSON.",
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
    best.add_argument("--minimize", metavar="NAME", help="report the trial with the lowest NAME")
    best.add_argument("--maximize", metavar="NAME", help="report the trial with the highest NAME")
    parser.add_argument("--out", metavar="PATH", help="write the results as JSON")
    parser.add_argument("--verify", type=_whole_number, default=0, metavar="K",
                        help="re-run K trials on another worker and compare (exit 1 if any differ)")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, metavar="S",
                        help=f"seconds per cell (default: {DEFAULT_TIMEOUT:g})")
    parser.add_argument("--connect-timeout", type=float, default=DEFAULT_CONNECT_TIMEOUT,
                        metavar="S", help="seconds to reach --scheduler (default: "
                        f"{DEFAULT_CONNECT_TIMEOUT:g})")
    return parser


def main(argv: list[str]) -> int:
    """``python -m det_nb trials``: 0 when all ran (and verified), 1 if not, 2 on bad input."""
    parser = _parser()
    try:
        try:
            refuse_repeated_options(parser, argv)
        except ValueError as error:
            parser.error(str(error))
        args = parser.parse_args(argv)
    except SystemExit as stop:  # --help, or a usage error already printed on one line
        return int(stop.code or 0)
    metric = args.minimize or args.maximize
    collect = [*_split(args.collect), *([metric] if metric else [])]
    try:
        if args.out is not None:
            writable_target(args.out, "trials output")
            refuse_notebook_target(args.out, [args.notebook], "--out")
        _check_seconds(args.timeout, "--timeout")
        _check_seconds(args.connect_timeout, "--connect-timeout")
        result = run_trials(
            args.notebook, args.seed, args.trials, scheme=args.scheme, collect=collect,
            workers=args.workers, scheduler=args.scheduler, verify=args.verify,
            timeout=args.timeout, connect_timeout=args.connect_timeout,
            progress=lambda line: print(line, flush=True),
        )
    except BrokenPipeError:
        raise  # stdout closed by its reader: the command-line guard ends quietly
    except (ValueError, OSError, ImportError) as error:
        print(f"{parser.prog}: error: {_first_line(error)}", file=sys.stderr)
        return 2
    except (KeyboardInterrupt, Terminated) as stop:  # the guard prints the line
        stop.add_note("the scheduler keeps its workers" if args.scheduler else
                      "the cluster it started is stopped")
        raise
    print()
    print(result.summary(minimize=args.minimize, maximize=args.maximize), flush=True)
    if args.out is not None:  # after the table, so a failed write loses no results
        try:
            print(f"written to {result.write(args.out)}")
        except ValueError as error:
            print(f"{parser.prog}: error: {_first_line(error)}", file=sys.stderr)
            return 2
    return 0 if result.ok else 1


def _split(text: str) -> list[str]:
    return [name.strip() for name in text.split(",") if name.strip()]


if __name__ == "__main__":
    # Through the imported module, so that tasks pickle as det_nb.trials.*, not __main__.*.
    from det_nb.command_line import run as _guarded
    from det_nb.trials import main as _main

    sys.exit(_guarded("python -m det_nb trials", lambda: _main(sys.argv[1:])))
