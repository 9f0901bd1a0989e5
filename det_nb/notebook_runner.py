"""Run a notebook top to bottom in a fresh kernel and fingerprint what every cell changed.

Shared by ``python -m det_nb verify``, its pytest plugin and the trials runner. Each run
starts a new kernel (nbclient) in the notebook's folder, with extra environment variables
that act at start (hash seed, thread counts, CPU kernels). A small det_nb probe installed
in the kernel (a ``post_run_cell`` callback) fingerprints, after every code cell, each
name the cell assigned, deleted or changed in place, with :mod:`det_nb.fingerprint` (the
hashes ``%%det_check`` uses); the runner fetches them with silent requests that leave no
trace in the notebook's namespace, history or outputs.

The probe leaves NumPy's import to the notebook: CPU-kernel pins that ``%det_seed`` sets
act only if NumPy loads after them, so until the notebook imports NumPy plain Python values
are hashed without it and other values are listed as unchecked.

:class:`KernelRun` drives one kernel cell by cell, so several runs can go in lockstep
(verify compares them as they go); :func:`run_notebook` is one run from start to end.
"""

from __future__ import annotations

import ast
import copy
import hashlib
import json
import os
import re
import shlex
import struct
import subprocess
import sys
import time
import types
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "CellResult", "KernelRun", "NameFingerprint", "NotebookRun", "load_notebook",
    "outputs_digest", "prepare_seed", "run_notebook", "run_sync", "validate_names",
]

#: Added to every kernel's environment: TensorFlow's start-up logs say nothing useful here.
QUIET_ENV = {"TF_CPP_MIN_LOG_LEVEL": "3"}
#: Cells that are meant to raise (nbval's markers); their errors do not stop a run.
_RAISES_TAG = "raises-exception"
_RAISES_MARKER = "# NBVAL_RAISES_EXCEPTION"
#: A ``%det_seed`` line magic, with its indentation and arguments.
_DET_SEED_LINE = re.compile(r"^(?P<indent>[ \t]*)%det_seed(?P<args>(?:[ \t].*)?)$", re.MULTILINE)
#: %det_seed options that take a value (the runner replaces seed, trial and --load).
_VALUE_OPTIONS = {"--trial", "-t", "--scheme", "--threads", "--save", "--load"}
#: Larger notebooks are refused before they are read (outputs with images included).
MAX_NOTEBOOK_BYTES = 256 << 20
#: Outputs that det_nb's dashboard shows: they describe the environment, which the run
#: records compare; their text would otherwise make every varied run differ.
_DASHBOARD_MARK = 'class="det-nb-dashboard"'
_WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
_ADDRESS = re.compile(r"\b0x[0-9a-fA-F]{6,16}\b")
_MODULE = "det_nb.notebook_runner"
_CALL = f"__import__({_MODULE!r}, fromlist=['_'])"


@dataclass
class NameFingerprint:
    """One name's value after a cell: its hash and what it is."""

    name: str
    digest: str  # hex; "" when unchecked or deleted
    description: str  # e.g. "ndarray float32 (3, 2)", or why it is unchecked
    kind: str  # "value" | "unchecked"


@dataclass
class CellResult:
    """What one code cell left behind: the names it changed and a hash of its outputs."""

    index: int  # 1-based among code cells
    first_line: str
    names: dict[str, NameFingerprint]
    outputs_digest: str
    error: str | None = None  # "ename: evalue"


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


def run_notebook(
    path: str | os.PathLike[str],
    *,
    env: dict[str, str] | None = None,
    seed: int | None = None,
    trial: int | None = None,
    collect: Sequence[str] = (),
    timeout: float = 600,
    kernel_name: str = "python3",
    scheme: str | None = None,
) -> NotebookRun:
    """Execute ``path`` top to bottom in a fresh kernel and fingerprint every code cell.

    ``env`` is added to the kernel's environment. With ``seed`` (and ``trial``, and
    ``scheme``), the notebook's ``%det_seed`` lines take them (their other flags stand), and
    a notebook without one is seeded before its first cell. ``collect``: names read after the last
    cell (JSON values as they are, other values as :class:`NameFingerprint`; undefined
    names are left out). A cell error stops the run and is reported in ``error``.
    ValueError (one line) for a path that is not a readable notebook or bad arguments.
    """
    notebook = load_notebook(path)
    prepare_seed(notebook, seed, trial, scheme)
    collect = validate_names(collect)

    async def one_run() -> NotebookRun:
        run = KernelRun(path, notebook, env=env, timeout=timeout, kernel_name=kernel_name)
        try:
            await run.start()
            while run.error is None and await run.next_cell() is not None:
                pass
            if run.error is None:
                await run.finish(collect)
        finally:
            await run.stop()
        return run.result()

    return run_sync(one_run())


# -- preparing a notebook --------------------------------------------------------------


def load_notebook(path: str | os.PathLike[str]) -> Any:
    """Read a notebook (nbformat 4); ValueError with one line if it is not a valid one.

    Read through :func:`det_nb.files.read_limited` (a FIFO or device is refused, never
    waited on) and checked against the notebook schema, so a malformed notebook (a
    kernelspec that is a string, a cell source that is a number) is refused here, before
    any kernel starts.
    """
    import nbformat

    from det_nb.files import read_limited, shown

    raw = read_limited(path, "notebook", MAX_NOTEBOOK_BYTES)
    where = shown(path)
    try:
        notebook = nbformat.reads(raw.decode("utf-8-sig"), as_version=4)
        nbformat.validate(notebook)
    except UnicodeDecodeError:
        raise ValueError(f"notebook {where} is not UTF-8 text") from None
    except Exception as error:  # nbformat raises several kinds for bad JSON and schemas
        raise ValueError(f"{where} is not a Jupyter notebook: {_schema_problem(error)}") from None
    kernelspec = notebook.metadata.get("kernelspec", {})
    if kernelspec.get("language", "python") != "python":
        raise ValueError(f"notebook {where} is not a Python notebook")
    for index, cell in enumerate(notebook.cells, start=1):
        if not isinstance(cell.source, str):
            raise ValueError(f"{where} is not a Jupyter notebook: cell {index}'s source "
                             "is not text")
    return notebook


def _schema_problem(error: Exception) -> str:
    """The first line of a reading or validation error, with where in the notebook it is."""
    from det_nb.files import printable

    lines = str(error).strip().splitlines()
    first = printable(lines[0]) if lines else type(error).__name__
    location = getattr(error, "absolute_path", None) if hasattr(error, "original") else None
    if location:
        first = f"{'.'.join(str(part) for part in location)}: {first}"
    return first[:200]


def refuse_notebook_target(target: str | os.PathLike[str],
                           notebooks: Sequence[str | os.PathLike[str]], option: str) -> None:
    """ValueError (one line) if the output file ``target`` is one of ``notebooks``.

    Written output must never replace the user's notebook: the same file when both exist
    (links and hard links included), else the same resolved path.
    """
    from det_nb.files import shown

    written = Path(os.fspath(target)).expanduser()
    for notebook in notebooks:
        given = Path(os.fspath(notebook)).expanduser()
        try:
            same = os.path.samefile(written, given)
        except OSError:
            same = os.path.realpath(written) == os.path.realpath(given)
        if same:
            raise ValueError(f"{option} {shown(target)} is the notebook {shown(notebook)}: "
                             f"give {option} another file")


def prepare_seed(notebook: Any, seed: int | None, trial: int | None,
                 scheme: str | None = None) -> None:
    """Make the notebook run under ``seed``, ``trial`` and ``scheme`` (in place).

    None leaves it as is. Every ``%det_seed`` line keeps its other flags but takes the seed,
    trial and scheme; a notebook without one gets a seeding step before its first cell
    (see :class:`KernelRun`).
    """
    if seed is None:
        if trial is not None or scheme is not None:
            raise ValueError("a trial or scheme needs an experiment seed: give seed too")
        return
    if scheme is not None:
        from det_nb.lineage import validate_scheme

        validate_scheme(scheme)
    for number, name in ((seed, "seed"), (trial, "trial")):
        if number is not None and (
            isinstance(number, bool) or not isinstance(number, int) or not 0 <= number < 2**31
        ):
            raise ValueError(f"{name} must be an integer in [0, 2**31-1], got {number!r}")
    found = False
    for cell in notebook.cells:
        if cell.cell_type != "code":
            continue
        source, count = _DET_SEED_LINE.subn(
            lambda match: _reseeded(match, seed, trial, scheme), cell.source
        )
        if count:
            cell.source, found = source, True
    if not found:
        notebook.metadata["det_nb_seed"] = {"seed": seed, "trial": trial, "scheme": scheme}


def _reseeded(match: re.Match[str], seed: int, trial: int | None, scheme: str | None) -> str:
    """A ``%det_seed`` line with its seed, trial (and scheme) replaced and --load dropped."""
    try:
        tokens = shlex.split(match["args"])
    except ValueError:
        tokens = match["args"].split()
    kept = _keep_option_values(tokens, ("--scheme",) if scheme else ())
    extra = (f" --trial {trial}" if trial is not None else "") + (
        f" --scheme {scheme}" if scheme else "")
    rest = f" {shlex.join(kept)}" if kept else ""
    return f"{match['indent']}%det_seed {seed}{extra}{rest}"


def _keep_option_values(tokens: list[str], replaced: tuple[str, ...] = ()) -> list[str]:
    """The tokens minus the seed, --trial, --load and ``replaced`` (with their values).

    Short options may be combined or carry their value (``-t3``, ``-qt3``, ``-qt 3``):
    the trial part goes, the other flags stay.
    """
    kept: list[str] = []
    position = 0
    while position < len(tokens):
        token = tokens[position]
        if token.startswith("-") and not token.startswith("--") and len(token) > 1:
            letters = token[1:]
            trial_at = letters.find("t")  # the only short option that takes a value
            if trial_at < 0:
                kept.append(token)
            elif trial_at > 0:
                kept.append(f"-{letters[:trial_at]}")
            # "-t" or "-qt" alone: the trial's value is the next token
            position += 2 if trial_at == len(letters) - 1 else 1
            continue
        option = token.split("=", 1)[0]
        takes_value = option in _VALUE_OPTIONS and "=" not in token
        if option in ("--trial", "--load", *replaced):
            position += 2 if takes_value else 1
            continue
        if token.startswith("-"):
            kept.append(token)
            if takes_value and position + 1 < len(tokens):
                kept.append(tokens[position + 1])
                position += 1
        position += 1
    return kept


def refuse_repeated_options(parser: Any, argv: Sequence[str]) -> None:
    """ValueError (one line) for an option given twice: an error, not "the last one wins".

    Options that collect (``append``) may repeat. Like ``%det_seed``'s parser, which
    refuses ``--trial 3 --trial 4``. Call it with a parser that allows no abbreviations.
    """
    import argparse

    given: set[str] = set()
    for token in argv:
        if token == "--":
            break
        name = token.split("=", 1)[0]
        if not token.startswith("--"):
            name = token[:2]  # "-n3": a short option with its value attached
        action = parser._option_string_actions.get(name)
        if action is None or isinstance(action, argparse._AppendAction):
            continue
        if action.dest in given:
            raise ValueError(f"argument {'/'.join(action.option_strings)}: given more than once")
        given.add(action.dest)


def validate_names(names: Sequence[str]) -> tuple[str, ...]:
    """``names`` as a tuple of Python identifiers; ValueError naming the first that is not."""
    if isinstance(names, str):
        raise ValueError(f"collect must be a list of names, got the string {names!r}")
    for name in names:
        if not isinstance(name, str) or not name.isidentifier():
            raise ValueError(f"collect: {name!r} is not a Python name")
    return tuple(names)


def outputs_digest(outputs: list[Any]) -> str:
    """A hash of a cell's outputs as the notebook stores them.

    Left out: stderr (warnings, progress bars), widget model ids, execution counts,
    memory addresses in text (``<Line2D at 0x7f...>`` differs in every process) and
    det_nb's dashboard (it shows the environment, which the run records compare).
    """
    kept = []
    for output in outputs:
        kind = output.get("output_type")
        if kind == "stream":
            if output.get("name") == "stdout":
                kept.append(["stdout", _without_addresses(output.get("text", ""))])
        elif kind in ("display_data", "execute_result"):
            data = {mime: _without_addresses(value) if mime.startswith("text/") else value
                    for mime, value in output.get("data", {}).items() if mime != _WIDGET_MIME}
            if _DASHBOARD_MARK not in str(data.get("text/html", "")):
                kept.append([kind, data])
        elif kind == "error":
            kept.append(["error", output.get("ename"), output.get("evalue")])
    encoded = json.dumps(kept, sort_keys=True, ensure_ascii=False).encode()
    return hashlib.blake2b(encoded, digest_size=16).hexdigest()


def _without_addresses(text: str | list[str]) -> str:
    """Text output with memory addresses masked (nbformat may store it as a line list)."""
    joined = text if isinstance(text, str) else "".join(text)
    return _ADDRESS.sub("0x?", joined)


# -- one kernel, cell by cell ----------------------------------------------------------


class KernelRun:
    """One fresh kernel executing one notebook, a code cell at a time (async).

    ``start()``, then ``next_cell()`` until it returns None or ``error`` is set, then
    ``finish()`` and always ``stop()``; ``result()`` is the :class:`NotebookRun`.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        notebook: Any,
        *,
        env: dict[str, str] | None = None,
        timeout: float = 600,
        kernel_name: str = "python3",
    ) -> None:
        from nbclient import NotebookClient

        self.path = str(path)
        self.notebook = copy.deepcopy(notebook)
        self.env = {**os.environ, **QUIET_ENV, **(env or {})}
        self.timeout = timeout
        self.client = NotebookClient(
            self.notebook, timeout=timeout, kernel_name=kernel_name, allow_errors=True,
            record_timing=False, resources={"metadata": {"path": str(Path(path).parent)}},
            extra_arguments=["--IPKernelApp.capture_fd_output=False"],
        )
        self.cells: list[CellResult] = []
        self.error: str | None = None
        self.record: dict[str, Any] | None = None
        self.status_warnings: list[str] = []
        self.collected: dict[str, object] = {}
        self.environment: dict[str, Any] = {}
        self._positions = [i for i, c in enumerate(self.notebook.cells) if c.cell_type == "code"]
        self._started = 0.0
        self._seconds = 0.0

    async def start(self) -> None:
        """Start the kernel and install the probe (and the runner's seed, if any)."""
        self._started = time.perf_counter()
        try:
            self.client.km = self.client.create_kernel_manager()
            await self.client.async_start_new_kernel(
                env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                cwd=str(Path(self.path).parent),
            )
            await self.client.async_start_new_kernel_client()
            await self._call(f"{_CALL}.install_probe(get_ipython())")
            seeding = self.notebook.metadata.get("det_nb_seed")
            if seeding:
                await self._call(f"{_CALL}.seed_kernel({seeding['seed']!r}, "
                                 f"{seeding['trial']!r}, {seeding.get('scheme')!r})")
        except Exception as error:  # no such kernel, kernel died at start, probe failed
            self.error = f"the kernel did not start: {_one_line(error)}"

    async def next_cell(self) -> CellResult | None:
        """Execute the next code cell and fingerprint it; None when all have run."""
        if self.error is not None or len(self.cells) == len(self._positions):
            return None
        position = self._positions[len(self.cells)]
        cell = self.notebook.cells[position]
        number = len(self.cells) + 1
        from nbclient.exceptions import CellTimeoutError, DeadKernelError

        try:
            await self.client.async_execute_cell(cell, position)
        except CellTimeoutError:
            self.error = f"cell {number}: timed out after {self.timeout:g} s"
            return None
        except DeadKernelError:
            self.error = f"cell {number}: the kernel died"
            return None
        error = next((f"{o.get('ename')}: {_one_line(o.get('evalue', ''))}"
                      for o in cell.outputs if o.get("output_type") == "error"), None)
        names: dict[str, NameFingerprint] = {}
        if error is None or _raises_on_purpose(cell):
            try:
                names = {name: NameFingerprint(name, *fields)
                         for name, fields in (await self._call(f"{_CALL}.take_cell()")).items()}
            except RuntimeError as probe_error:
                self.error = f"cell {number}: det_nb could not fingerprint it: {probe_error}"
                return None
        result = CellResult(number, _first_line(cell.source), names,
                            outputs_digest(cell.outputs), error)
        self.cells.append(result)
        if error is not None and not _raises_on_purpose(cell):
            self.error = f"cell {number}: {error}"
        return result

    async def finish(self, collect: Sequence[str] = ()) -> None:
        """Read the run record, det_nb's warnings and the ``collect`` names."""
        if self.error is not None:
            return
        try:
            final = await self._call(f"{_CALL}.final_report({list(collect)!r})")
        except RuntimeError as error:
            self.error = f"after the last cell: det_nb could not read the results: {error}"
            return
        self.record = final["record"]
        self.status_warnings = final["warnings"]
        self.environment = final["environment"]
        self.collected = {
            name: NameFingerprint(name, *value["fingerprint"]) if "fingerprint" in value
            else value["value"]
            for name, value in final["collected"].items()
        }

    async def dump_values(self, names: Sequence[str], file: str | os.PathLike[str]) -> None:
        """Pickle snapshots of ``names`` as they are now (for describing differences)."""
        await self._call(f"{_CALL}.dump_values({list(names)!r}, {str(file)!r})")

    async def stop(self) -> None:
        """Shut the kernel down (safe to call more than once)."""
        if self._started and not self._seconds:
            self._seconds = time.perf_counter() - self._started
        if self.client.km is not None:
            await self.client._async_cleanup_kernel()

    def result(self) -> NotebookRun:
        """What this run found."""
        return NotebookRun(
            self.path, self.cells, self.record, self.status_warnings, self.collected,
            self._seconds, self.error, self.environment,
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


def run_sync(coroutine: Any) -> Any:
    """Run a coroutine to completion, also where an event loop already runs (Jupyter)."""
    from jupyter_core.utils import run_sync

    async def wrapped() -> Any:
        return await coroutine

    return run_sync(wrapped)()


# -- inside the kernel -----------------------------------------------------------------
# Called through _CALL by KernelRun; they return JSON text and add no user names.

_IGNORED = re.compile(r"_+|_i+|_i\d+|_\d+|_[ido]h|__\w+__|In|Out|exit|quit|get_ipython|_exit_code")
_PLAIN = (type(None), bool, int, float, complex, str, bytes)
_INERT = (types.ModuleType, type, types.FunctionType, types.BuiltinFunctionType,
          types.MethodType, *_PLAIN)
_BEFORE_NUMPY = "not fingerprinted before the notebook imports NumPy"


@dataclass
class _Tracked:
    value: object
    digest: str
    plain: bool  # hashed without NumPy (see _plain_print)


class _Probe:
    """Kernel side: after each cell, the names it changed and their fingerprints."""

    def __init__(self, shell: Any) -> None:
        self.shell = shell
        self.tracked: dict[str, _Tracked] = {}
        self.cell: dict[str, list[str]] = {}
        self.failure: str | None = None

    def after_cell(self, result: Any) -> None:
        """post_run_cell: fingerprint the cell's names; a failure is kept for take_cell.

        IPython would print an exception raised here into the cell's outputs, where it
        would pass for the user's own error.
        """
        try:
            self.failure = None
            self.cell = self._changes(result.info.raw_cell or "")
        except Exception as error:
            self.failure = f"{type(error).__name__}: {error}"

    def _changes(self, source: str) -> dict[str, list[str]]:
        """{name: [digest, description, kind]} for each name the cell changed."""
        shell, tracked = self.shell, self.tracked
        hidden = shell.user_ns_hidden
        now = {n: v for n, v in shell.user_ns.items()
               if not _IGNORED.fullmatch(n) and not (n in hidden and hidden[n] is v)}
        watched = _watched(shell, source)
        changes: dict[str, list[str]] = {}
        for name in tracked.keys() - now.keys():
            del tracked[name]
            changes[name] = ["", "(deleted)", "value"]
        for name, value in now.items():
            old = tracked.get(name)
            if old is not None and old.value is value and (
                isinstance(value, _INERT) or (watched is not None and name not in watched)
            ):
                continue
            fields, plain = _print(value, same_as=old)
            if old is not None and old.value is value and fields[0] == old.digest:
                continue
            tracked[name] = _Tracked(value, fields[0], plain)
            if not isinstance(value, (types.ModuleType, types.FunctionType, type)):
                changes[name] = fields
        return changes


def _watched(shell: Any, source: str) -> frozenset[str] | None:
    """Names whose in-place changes the cell can make (None: any), as %%det_check finds."""
    if "numpy" not in sys.modules:
        return None  # only plain values so far: cheap to hash them all
    from det_nb.check import _names_used

    return _names_used(shell, source)[1]


def _print(value: object, same_as: _Tracked | None) -> tuple[list[str], bool]:
    """([digest, description, kind], hashed without NumPy?) for ``value``.

    A value last hashed without NumPy is hashed the same way again, so NumPy's import
    alone never looks like a change.
    """
    if "numpy" not in sys.modules or (same_as is not None and same_as.plain):
        plain = _plain_print(value)
        if plain is not None or "numpy" not in sys.modules:
            return plain or ["", f"{type(value).__name__}: {_BEFORE_NUMPY}", "unchecked"], True
    from det_nb.fingerprint import Fingerprint, fingerprint

    found = fingerprint(value)
    if isinstance(found, Fingerprint):
        return [found.digest.hex(), found.summary, "value"], False
    return ["", f"{found.summary}: {found.reason}", "unchecked"], False


def _plain_print(value: object) -> list[str] | None:
    """A fingerprint of plain Python data made without NumPy, or None for anything else."""
    import xxhash

    hasher = xxhash.xxh3_128()
    try:
        _feed_plain(hasher, value, 0)
    except (TypeError, RecursionError):
        return None
    size = f" (len {len(value)})" if isinstance(value, (str, bytes, list, tuple, dict,
                                                         set, frozenset)) else ""
    return [hasher.hexdigest(), f"{type(value).__name__}{size}", "value"]


def _feed_plain(hasher: Any, value: object, depth: int) -> None:
    kind = type(value)
    if depth > 100:
        raise TypeError("too deep")
    hasher.update(kind.__name__.encode() + b"\0")
    if kind in (int, bool):
        hasher.update(hex(value).encode() + b"\0")
    elif kind is float:
        hasher.update(struct.pack("<d", value))
    elif kind is complex:
        hasher.update(struct.pack("<dd", value.real, value.imag))
    elif kind in (str, bytes):
        data = value.encode("utf-8", "surrogatepass") if kind is str else value
        hasher.update(struct.pack("<Q", len(data)) + data)
    elif value is None:
        return
    elif kind in (list, tuple):
        hasher.update(struct.pack("<Q", len(value)))
        for item in value:
            _feed_plain(hasher, item, depth + 1)
    elif kind is dict:
        hasher.update(struct.pack("<Q", len(value)))
        for key, item in value.items():
            _feed_plain(hasher, key, depth + 1)
            _feed_plain(hasher, item, depth + 1)
    elif kind in (set, frozenset):
        import xxhash

        digests = []
        for item in value:
            sub = xxhash.xxh3_128()
            _feed_plain(sub, item, depth + 1)
            digests.append(sub.digest())
        hasher.update(struct.pack("<Q", len(value)) + b"".join(sorted(digests)))
    else:
        raise TypeError(kind.__name__)


_PROBE: _Probe | None = None


def install_probe(shell: Any) -> str:
    """Kernel side: register the probe after every cell (once per kernel)."""
    global _PROBE
    if _PROBE is None:
        _PROBE = _Probe(shell)
        shell.events.register("post_run_cell", _PROBE.after_cell)
    return "null"


def seed_kernel(seed: int, trial: int | None, scheme: str | None = None) -> str:
    """Kernel side: load det_nb and seed it quietly (a notebook without %det_seed)."""
    shell = _PROBE.shell if _PROBE is not None else None
    assert shell is not None
    shell.run_line_magic("load_ext", "det_nb")
    shell.run_line_magic("det_seed", f"{seed}" + (f" --trial {trial}" if trial is not None else "")
                         + (f" --scheme {scheme}" if scheme else "") + " --quiet")
    return "null"


def take_cell() -> str:
    """Kernel side: the last cell's names as JSON {name: [digest, description, kind]}."""
    assert _PROBE is not None
    if _PROBE.failure is not None:
        raise RuntimeError(_PROBE.failure)
    return json.dumps(_PROBE.cell)


def final_report(collect: list[str]) -> str:
    """Kernel side: run record, det_nb warnings, environment and collected names (JSON)."""
    from det_nb.run_record import environment

    record, warnings = None, []
    session_module = sys.modules.get("det_nb.session")
    if session_module is not None:
        session = session_module.get_session()
        if session.lineage is not None:
            from det_nb.run_record import build

            record = build(session)
            warnings = [f"{c.name}: {c.detail}" for c in session.status().checks
                        if c.state == "warn"]
    namespace = _PROBE.shell.user_ns if _PROBE is not None else {}
    collected = {name: _collected(namespace[name]) for name in collect if name in namespace}
    return json.dumps({"record": record, "warnings": warnings, "environment": environment(),
                       "collected": collected})


def _collected(value: object) -> dict[str, object]:
    """{"value": v} for JSON data (NumPy scalars included), else {"fingerprint": [...]}."""
    numpy = sys.modules.get("numpy")
    if numpy is not None and isinstance(value, numpy.generic) and value.ndim == 0:
        value = value.item()
    if _is_json(value, 0):
        return {"value": value}
    return {"fingerprint": _print(value, None)[0]}


def _is_json(value: object, depth: int) -> bool:
    if depth > 100:
        return False
    if value is None or type(value) in (bool, int, float, str):
        return True
    if type(value) in (list, tuple):
        return all(_is_json(item, depth + 1) for item in value)
    if type(value) is dict:
        return all(type(k) is str and _is_json(v, depth + 1) for k, v in value.items())
    return False


def dump_values(names: list[str], file: str) -> str:
    """Kernel side: write snapshots of ``names`` to ``file`` (None where none can be made).

    An ``.npz`` with no pickle: arrays as arrays, the snapshot trees as JSON (a flat list
    of nodes, so an object shared by several containers is written once).
    """
    import numpy as np

    from det_nb.fingerprint import snapshot

    namespace = _PROBE.shell.user_ns if _PROBE is not None else {}
    arrays: dict[str, Any] = {}
    nodes: list[list[object]] = []
    roots: dict[str, int | None] = {}
    for name in names:
        mark, known = len(nodes), set(arrays)
        try:
            roots[name] = _encode(snapshot(namespace[name]), nodes, arrays, {})
        except Exception:  # absent, unsupported, or its own code raised: no detail
            del nodes[mark:]
            for key in set(arrays) - known:
                del arrays[key]
            roots[name] = None
    np.savez(file, tree=np.array(json.dumps({"roots": roots, "nodes": nodes})), **arrays)
    return "null"


def _encode(snap: Any, nodes: list[list[object]], arrays: dict[str, Any],
            done: dict[int, int]) -> int:
    """Append ``snap``'s view (and its children) to ``nodes``; return its index."""
    if id(snap) in done:
        return done[id(snap)]
    category, kind, payload, summary = snap.view
    if category == "array":
        if payload.dtype.hasobject:
            raise ValueError("object arrays are not written")
        encoded: object = f"a{len(arrays)}"
        arrays[encoded] = payload
    elif category == "scalar":
        encoded = _encode_scalar(payload)
    elif category in ("seq", "set"):
        encoded = [_encode(child, nodes, arrays, done) for child in payload]
    else:  # map, attrs, state
        encoded = [[_encode_scalar(key), _encode(child, nodes, arrays, done)]
                   for key, child in payload.items()]
    nodes.append([category, kind, encoded, summary])
    done[id(snap)] = len(nodes) - 1
    return len(nodes) - 1


def _encode_scalar(value: object) -> object:
    if value is None or type(value) in (bool, int, float, str):
        return {"v": value}
    if type(value) is complex:
        return {"complex": [value.real, value.imag]}
    if type(value) is bytes:
        return {"bytes": value.hex()}
    raise ValueError(f"{type(value).__name__} is not written")


def _decode_scalar(encoded: dict[str, Any]) -> object:
    if "complex" in encoded:
        return complex(*encoded["complex"])
    if "bytes" in encoded:
        return bytes.fromhex(encoded["bytes"])
    return encoded["v"]


def load_values(file: str | os.PathLike[str]) -> dict[str, object]:
    """Read what :meth:`KernelRun.dump_values` wrote (a file this runner made)."""
    import numpy as np

    from det_nb.fingerprint import Snapshot, _View

    with np.load(file, allow_pickle=False) as stored:
        tree = json.loads(str(stored["tree"]))
        arrays = {key: stored[key] for key in stored.files if key != "tree"}
    built: dict[int, Any] = {}

    def build(index: int) -> Any:
        if index not in built:
            category, kind, encoded, summary = tree["nodes"][index]
            if category == "array":
                payload: object = arrays[encoded]
            elif category == "scalar":
                payload = _decode_scalar(encoded)
            elif category in ("seq", "set"):
                payload = [build(child) for child in encoded]
            else:
                payload = {_decode_scalar(key): build(child) for key, child in encoded}
            built[index] = Snapshot(_View(category, kind, payload, summary))
        return built[index]

    return {name: None if root is None else build(root) for name, root in tree["roots"].items()}
