"""One notebook in one fresh kernel, a code cell at a time, every cell fingerprinted.

Each run starts a new kernel (nbclient) in the notebook's folder, with extra environment
variables that act at start (hash seed, CPU kernels) and, where asked, restricted to
some CPUs (:mod:`~det_nb.notebook_runner.cpu_affinity`). The probe
(:mod:`~det_nb.notebook_runner.probe`) fingerprints, after every code cell, each name the
cell assigned, deleted or changed in place, and its displayed result; its answers and a
hash of the cell's outputs as a reader sees them (:mod:`~det_nb.notebook_runner.outputs`)
make the :class:`CellResult`. After the last cell every name is fingerprinted once more
(:attr:`NotebookRun.after_last`). The kernel is the notebook's own kernelspec where it is
installed (:func:`notebook_kernel`).

:class:`KernelRun` drives one kernel cell by cell, so several runs can go in lockstep
(verify compares them as they go); :func:`run_notebook` is one run from start to end.

A run never leaves a kernel behind: :func:`run_sync` stops, synchronously, every kernel a
run started when it ends by an exception of any kind (a KeyboardInterrupt or SystemExit
raised while the event loop runs included): the kernel's process group is killed and its
connection file (it holds the kernel's HMAC key) removed.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import copy
import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from det_nb.notebook_runner.cli_checks import validate_names
from det_nb.notebook_runner.det_seed_lines import Seeding, reseed_notebook, seeding_from
from det_nb.notebook_runner.loading import load_notebook
from det_nb.notebook_runner.outputs import BUILT_IN, Sanitizer, error_text, reader_text, text_digest

#: Added to every kernel's environment: TensorFlow's start-up logs say nothing useful here.
QUIET_ENV = {"TF_CPP_MIN_LOG_LEVEL": "3"}
#: The kernel a notebook runs in when its own is not installed here (or it names none).
DEFAULT_KERNEL = "python3"
#: Cells that are meant to raise (nbval's markers); their errors do not stop a run.
_RAISES_TAG = "raises-exception"
_RAISES_MARKER = "# NBVAL_RAISES_EXCEPTION"
_PROBE = "__import__('det_nb.notebook_runner.probe', fromlist=['_'])"
_SNAPSHOTS = "__import__('det_nb.notebook_runner.snapshots', fromlist=['_'])"
#: Kernels started and not yet stopped, so an interrupted run can stop them (see run_sync).
_LIVE: set[KernelRun] = set()
#: How long an interrupted run's own clean-up may take once its kernels are killed.
_CLEAN_UP_SECONDS = 5.0
_Result = TypeVar("_Result")


@dataclass
class NameFingerprint:
    """One name's value after a cell: its hash and what it is."""

    name: str
    digest: str  # hex; "" when unchecked or deleted
    description: str  # e.g. "ndarray float32 (3, 2)", or why it is unchecked
    kind: str  # "value" | "unchecked"


@dataclass
class CellResult:
    """What one code cell left behind: the names it changed and a hash of its outputs.

    ``names`` holds the cell's displayed result too (the value of its last expression), as
    ``Out[k]`` (k: ``index``). After the last cell, a run looks at every name once more:
    that look is a :class:`CellResult` too (:attr:`NotebookRun.after_last`), with the
    names whose values a cell changed without naming them (through another reference).
    """

    index: int  # 1-based among code cells
    first_line: str
    names: dict[str, NameFingerprint]
    outputs_digest: str
    error: str | None = None  # "ename: evalue", normalised as outputs are
    #: The outputs as a reader sees them (fresh runs only; not stored in reports).
    outputs_text: str | None = None
    #: The cell's calls that drew from OS entropy or seeded from a clock, as the entropy
    #: audit describes them, cells numbered as here ("cell 6, line 1: uuid.uuid4()").
    unseeded: list[str] = field(default_factory=list)
    #: Names fingerprinted again after the cell and found unchanged (fresh runs only).
    looked_at: tuple[str, ...] = ()


@dataclass
class NotebookRun:
    """One execution of a notebook in a fresh kernel."""

    path: str
    cells: list[CellResult]
    record: dict[str, Any] | None  # det_nb's run record, when the notebook seeded det_nb
    status_warnings: list[str]
    collected: dict[str, object]
    seconds: float
    error: str | None = None  # "cell k: ename: evalue" for the first failing cell
    environment: dict[str, Any] = field(default_factory=dict)  # run_record.environment()
    repairs: tuple[str, ...] = ()  # schema repairs made to the copy that ran
    #: Every name looked at once more after the last cell (None if the run did not end).
    after_last: CellResult | None = None
    #: The entropy audit's records still in force after the last cell (what det_nb's
    #: status lists; a hard %reset clears them), one line each.
    unseeded: list[str] = field(default_factory=list)
    #: Notes on how the run was made, one line each (the kernel that ran instead).
    notes: tuple[str, ...] = ()


def run_notebook(
    path: str | os.PathLike[str],
    *,
    env: dict[str, str] | None = None,
    seed: int | None = None,
    trial: int | None = None,
    collect: Sequence[str] = (),
    timeout: float = 600,
    kernel_name: str | None = None,
    scheme: str | None = None,
    allow_errors: bool = False,
    sanitizer: Sanitizer = BUILT_IN,
) -> NotebookRun:
    """Execute ``path`` top to bottom in a fresh kernel and fingerprint every code cell.

    ``env`` is added to the kernel's environment. With ``seed`` (and ``trial``, and
    ``scheme``), the notebook's ``%det_seed`` lines take them (their other flags stand),
    and a notebook without one is seeded before its first cell. ``collect``: names read
    after the last cell (JSON values as they are, other values as
    :class:`NameFingerprint`; undefined names are left out). A cell error stops the run
    and is reported in ``error``, unless ``allow_errors``: then the error is part of the
    cell's result and the run goes on. ``kernel_name``: None starts the notebook's own
    kernel (see :func:`notebook_kernel`). ValueError (one line) for a path that is not a
    readable notebook, a ``%det_seed`` line the magic refuses, or bad arguments.
    """
    loaded = load_notebook(path)
    seeding = seeding_from(seed, trial, scheme)
    collect = validate_names(collect)
    run = KernelRun(path, loaded.node, env=env, timeout=timeout, kernel_name=kernel_name,
                    seeding=seeding, allow_errors=allow_errors, sanitizer=sanitizer)

    async def one_run() -> NotebookRun:
        try:
            await run.start()
            while run.error is None and await run.next_cell() is not None:
                pass
            if run.error is None:
                await run.finish(collect)
        finally:
            await run.stop()
        result = run.result()
        result.repairs = loaded.repairs
        return result

    return run_sync(one_run())


def notebook_kernel(notebook: Any) -> tuple[str, str | None]:
    """(the kernel to start for ``notebook``, a note or None).

    The notebook's own kernelspec (``metadata.kernelspec.name``) where it is installed
    here, as Jupyter would start it: a det_nb kernelspec sets what acts only at start (hash
    seed, thread and CPU-kernel variables) and may seed the kernel. Else ``python3``, with
    a one-line note saying which kernel ran instead.
    """
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    from det_nb.files import printable

    wanted = notebook.metadata.get("kernelspec", {}).get("name")
    if not wanted or wanted == DEFAULT_KERNEL:
        return DEFAULT_KERNEL, None
    try:
        KernelSpecManager().get_kernel_spec(wanted)
    except NoSuchKernel:
        why = "is not installed here"
    except Exception as error:  # a kernel.json that cannot be read
        why = f"cannot be read here ({_one_line(error)})"
    else:
        return wanted, None
    return DEFAULT_KERNEL, (f"the notebook's kernel {printable(wanted)!r} {why}: ran "
                            f"{DEFAULT_KERNEL!r} instead")


def live_kernels() -> int:
    """How many kernels this process started and has not stopped yet."""
    return len(_LIVE)


def run_sync(coroutine: Coroutine[Any, Any, _Result]) -> _Result:
    """Run a coroutine to completion, also where an event loop already runs (Jupyter).

    Whatever ends it, kernels it started and did not stop are stopped before this
    returns or raises. An interrupt (KeyboardInterrupt, or SystemExit from a signal
    handler) that escapes the event loop leaves the coroutine suspended mid-cell: the
    kernels are killed first, synchronously (nbclient would take the cancellation of a
    running cell for a dead kernel and go on to the next run's cell), then the coroutine
    is cancelled so that its own clean-up runs, for a few seconds at most.
    """
    before = set(_LIVE)

    def kill_started(reason: str | None = None) -> None:
        for run in _LIVE - before:
            run.kill_now(reason)

    try:
        try:
            asyncio.get_running_loop()
        except RuntimeError:  # the usual case: no loop in this thread
            return _run_in_new_loop(coroutine, lambda: kill_started("interrupted"))
        from jupyter_core.utils import run_sync as run_beside_running_loop

        async def wrapped() -> _Result:
            return await coroutine

        return run_beside_running_loop(wrapped)()
    finally:
        kill_started()


def _run_in_new_loop(coroutine: Coroutine[Any, Any, _Result],
                     on_interrupt: Callable[[], None]) -> _Result:
    """``asyncio.run``, with ``on_interrupt`` called first when an exception escapes the loop
    while the coroutine waits (then its tasks are cancelled and given a bounded clean-up)."""
    loop = asyncio.new_event_loop()
    try:
        task = loop.create_task(coroutine)
        try:
            return loop.run_until_complete(task)
        except BaseException:
            if task.done():
                raise
            on_interrupt()
            pending = [waiting for waiting in asyncio.all_tasks(loop) if not waiting.done()]
            for waiting in pending:
                waiting.cancel()
            with contextlib.suppress(BaseException):  # a second interrupt cuts it short
                loop.run_until_complete(asyncio.wait(pending, timeout=_CLEAN_UP_SECONDS))
            raise
    finally:
        with contextlib.suppress(BaseException):
            loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


class KernelRun:
    """One fresh kernel executing one notebook, a code cell at a time (async).

    ``start()``, then ``next_cell()`` until it returns None or ``error`` is set, then
    ``finish()`` and always ``stop()``; ``result()`` is the :class:`NotebookRun`.
    ``seeding`` imposes a lineage (see :mod:`~det_nb.notebook_runner.det_seed_lines`);
    ``cpus`` restricts the kernel to those CPUs from its start; ``allow_errors`` lets a
    run go on past a cell that raises (the error is compared as the cell's result).
    ``kernel_name``: None starts the notebook's own kernel where it is installed, else
    ``python3`` (:func:`notebook_kernel`; the note is in ``notes``). ``env`` is set at
    the kernel's start over the kernelspec's own variables. ``watched``: names
    fingerprinted after every cell, whether or not the cell names them. ValueError (one
    line) for a ``%det_seed`` line the magic refuses.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        notebook: Any,
        *,
        env: dict[str, str] | None = None,
        timeout: float = 600,
        kernel_name: str | None = None,
        seeding: Seeding | None = None,
        cpus: frozenset[int] | None = None,
        allow_errors: bool = False,
        sanitizer: Sanitizer = BUILT_IN,
        watched: Sequence[str] = (),
    ) -> None:
        from nbclient import NotebookClient

        self.path = str(path)
        self.notebook = copy.deepcopy(notebook)
        self._seed_at_start = seeding
        if seeding is not None and reseed_notebook(self.notebook, seeding):
            self._seed_at_start = None  # the notebook's own %det_seed lines apply it
        self.notes: tuple[str, ...] = ()
        if kernel_name is None:
            kernel_name, note = notebook_kernel(self.notebook)
            self.notes = (note,) if note else ()
        self.given_env = dict(env or {})
        self.env = {**os.environ, **QUIET_ENV, **self.given_env}
        self.timeout = timeout
        self.kernel_name = kernel_name
        self.watched = validate_names(watched)
        self.cpus = cpus
        self.allow_errors = allow_errors
        self.sanitizer = sanitizer
        self.client = NotebookClient(
            self.notebook, timeout=timeout, kernel_name=kernel_name, allow_errors=True,
            record_timing=False, shutdown_kernel="immediate",
            resources={"metadata": {"path": str(Path(path).parent)}},
            extra_arguments=["--IPKernelApp.capture_fd_output=False"],
        )
        self.cells: list[CellResult] = []
        self.error: str | None = None
        self.record: dict[str, Any] | None = None
        self.status_warnings: list[str] = []
        self.collected: dict[str, object] = {}
        self.environment: dict[str, Any] = {}
        self.after_last: CellResult | None = None
        self.unseeded: list[str] = []
        self._positions = [i for i, c in enumerate(self.notebook.cells) if c.cell_type == "code"]
        self._cell_of_count: dict[int, int] = {}  # the kernel's execution count -> code cell
        self._started = 0.0
        self._seconds = 0.0

    async def start(self) -> None:
        """Start the kernel and install the probe (and the runner's seed, if any)."""
        from det_nb.notebook_runner.cpu_affinity import pinned_manager

        self._started = time.perf_counter()
        _LIVE.add(self)
        try:
            self.client.km = pinned_manager(self.cpus, kernel_name=self.kernel_name,
                                            config=self.client.config)
            _set_over_kernelspec(self.client.km, self.given_env)
            await self.client.async_start_new_kernel(
                env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                cwd=str(Path(self.path).parent),
            )
            await self.client.async_start_new_kernel_client()
            started = await self._call(
                f"{_PROBE}.install_probe(get_ipython(), {list(self.watched)!r})")
            if self.cpus is not None and set(started["cpus"] or ()) != self.cpus:
                self.error = (f"the kernel did not start on the CPUs asked for: it may use "
                              f"{_cpu_list(started['cpus'])}, not {_cpu_list(self.cpus)}")
                return
            seeding = self._seed_at_start
            if seeding is not None:
                await self._call(f"{_PROBE}.seed_kernel({seeding.seed!r}, {seeding.trial!r}, "
                                 f"{seeding.scheme!r})")
        except Exception as error:  # no such kernel, kernel died at start, probe failed
            self.error = f"the kernel did not start: {_one_line(error)}"

    async def next_cell(self) -> CellResult | None:
        """Execute the next code cell and fingerprint it; None when all have run."""
        if self.error is not None or len(self.cells) == len(self._positions):
            return None
        position = self._positions[len(self.cells)]
        cell = self.notebook.cells[position]
        number = len(self.cells) + 1
        if not cell.source.strip():  # nbclient runs no empty cell: nothing to fingerprint
            result = CellResult(number, "", {}, text_digest(""), outputs_text="")
            self.cells.append(result)
            return result
        from nbclient.exceptions import CellTimeoutError, DeadKernelError

        try:
            await self.client.async_execute_cell(cell, position)
        except CellTimeoutError:
            self.error = f"cell {number}: timed out after {self.timeout:g} s"
            return None
        except DeadKernelError:
            self.error = f"cell {number}: the kernel died"
            return None
        error = next((error_text(o, self.sanitizer) for o in cell.outputs
                      if o.get("output_type") == "error"), None)
        try:
            taken = await self._call(f"{_PROBE}.take_cell()")
        except RuntimeError as probe_error:
            self.error = f"cell {number}: det_nb could not fingerprint it: {probe_error}"
            return None
        names = {name: NameFingerprint(name, *fields) for name, fields in taken["names"].items()}
        if taken["result"] is not None:
            shown = result_name(number)
            names[shown] = NameFingerprint(shown, *taken["result"])
        self._cell_of_count[taken["count"]] = number
        text = reader_text(cell.outputs, self.sanitizer)
        result = CellResult(number, _first_line(cell.source), names, text_digest(text), error,
                            text, [self._unseeded(record) for record in taken["unseeded"]],
                            tuple(taken["looked"]))
        self.cells.append(result)
        if error is not None and not self.allow_errors and not _raises_on_purpose(cell):
            self.error = f"cell {number}: {error}"
        return result

    def _unseeded(self, record: dict[str, Any]) -> str:
        """An entropy audit record in one line, its cells numbered as the notebook's code
        cells (the kernel numbers them by execution count)."""
        from det_nb.entropy_audit import describe

        numbered = {**record, **{key: self._cell_of_count.get(record[key])
                                 for key in ("cell", "run_by") if record[key] is not None}}
        return describe(numbered)

    async def finish(self, collect: Sequence[str] = ()) -> None:
        """After the last cell: look at every name once more (``after_last``), read the
        audit's records still in force (``unseeded``), the run record, det_nb's warnings
        and the ``collect`` names."""
        if self.error is not None:
            return
        try:
            final = await self._call(f"{_PROBE}.final_report({list(collect)!r})")
        except RuntimeError as error:
            self.error = f"after the last cell: det_nb could not read the results: {error}"
            return
        after = final["after_last"]
        number = len(self.cells) + 1
        self.after_last = CellResult(
            number, "", {name: NameFingerprint(name, *fields)
                         for name, fields in after["names"].items()},
            text_digest(""), outputs_text="",
            unseeded=[self._unseeded(record) for record in after["unseeded"]])
        self.unseeded = [self._unseeded(record) for record in final["unseeded"]]
        self.record = final["record"]
        self.status_warnings = final["warnings"]
        self.environment = final["environment"]
        self.collected = {
            name: NameFingerprint(name, *value["fingerprint"]) if "fingerprint" in value
            else value["value"]
            for name, value in final["collected"].items()
        }

    async def dump_values(self, names: Sequence[str], file: str | os.PathLike[str]) -> None:
        """Write snapshots of ``names`` as they are now to ``file`` (to describe differences);
        the last cell's ``Out[k]`` is its displayed result."""
        shown = result_name(len(self.cells))
        await self._call(f"{_SNAPSHOTS}.dump_values({list(names)!r}, {str(file)!r}, "
                         f"{shown!r})")

    async def stop(self) -> None:
        """Shut the kernel down (safe to call more than once)."""
        if self._started and not self._seconds:
            self._seconds = time.perf_counter() - self._started
        try:
            if self.client.km is not None:
                await self.client._async_cleanup_kernel()
        finally:
            self.kill_now()

    def kill_now(self, reason: str | None = None) -> None:
        """Stop the kernel at once, without the event loop; remove its connection file.

        For a run ended by an interrupt: the kernel's whole process group is killed (it
        runs in its own session), then its connection and IPC files are removed. With a
        ``reason``, the run also ends there (``error``): no further cell is started.
        """
        _LIVE.discard(self)
        if reason is not None and self.error is None:
            self.error = f"stopped: {reason}"
        manager = self.client.km
        if manager is None:
            return
        process = getattr(manager.provisioner, "process", None) if manager.has_kernel else None
        if process is not None and process.poll() is None:
            with contextlib.suppress(OSError):
                os.killpg(process.pid, signal.SIGKILL)
            with contextlib.suppress(OSError):
                process.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=10)
        if self.client.kc is not None:
            with contextlib.suppress(Exception):
                self.client.kc.stop_channels()
        manager.cleanup_connection_file()
        manager.cleanup_ipc_files()

    def result(self) -> NotebookRun:
        """What this run found."""
        return NotebookRun(
            self.path, self.cells, self.record, self.status_warnings, self.collected,
            self._seconds, self.error, self.environment, after_last=self.after_last,
            unseeded=self.unseeded, notes=self.notes,
        )

    async def _call(self, expression: str) -> Any:
        """Evaluate a det_nb expression silently in the kernel; its JSON answer, decoded."""
        reply = await self.client.kc.execute(
            "", silent=True, user_expressions={"r": expression}, reply=True,
            timeout=self.timeout,
        )
        answer = reply["content"].get("user_expressions", {}).get("r", {})
        if answer.get("status") != "ok":
            raise RuntimeError(f"{answer.get('ename')}: {_one_line(answer.get('evalue', ''))}")
        return json.loads(ast.literal_eval(answer["data"]["text/plain"]))


def result_name(number: int) -> str:
    """The name a code cell's displayed result is compared under: ``Out[number]``."""
    return f"Out[{number}]"


def _set_over_kernelspec(manager: Any, env: dict[str, str]) -> None:
    """Make ``env`` win over the kernelspec's own ``env`` (which Jupyter applies last):
    what a run was asked to set at start (``verify --vary``) is what the kernel gets."""
    if not env:
        return
    spec = manager.kernel_spec
    if spec is not None and spec.env:
        spec.env = {**spec.env, **env}


def _cpu_list(cpus: Sequence[int] | frozenset[int] | None) -> str:
    if not cpus:
        return "an unknown set of CPUs"
    listed = sorted(cpus)
    return f"CPU{'s' * (len(listed) != 1)} {', '.join(map(str, listed))}"


def _raises_on_purpose(cell: Any) -> bool:
    tags = cell.get("metadata", {}).get("tags", [])
    return _RAISES_TAG in tags or cell.source.lstrip().startswith(_RAISES_MARKER)


def _first_line(source: str) -> str:
    line = next((ln.strip() for ln in source.splitlines() if ln.strip()), "")
    return line if len(line) <= 80 else line[:77] + "..."


def _one_line(error: object) -> str:
    text = str(error).strip()
    text = re.sub(r"\x1b\[[0-9;]*m", "", text)  # colours from IPython tracebacks
    return text.splitlines()[0] if text else type(error).__name__
