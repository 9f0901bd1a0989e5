"""Hostile command lines and results files for ``trials`` and ``verify``, generated (issue 19).

Hypothesis throws argument lists at ``python -m det_nb trials`` and ``verify`` (their
``main``, in this process) built from the options each command's own ``--help`` lists,
misspelt options and odd values; and damaged results files at ``det_nb.trials.load`` and
verify's ``load_report``. For every input: the command refuses it with exactly one line
on stderr and exit 2 (or prints its help), never a traceback, never starts a kernel or a
cluster for it, and changes no file; a loader returns or raises exactly a one-line
ValueError, and what it returns prints on lines of their own.

The engines are replaced by a sentinel (no cluster, no kernel ever starts here), so an
input that passes every check ends at the sentinel: then it was valid.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import re
import threading
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any
from unittest import mock

import nbformat
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from test_hostile import (
    ODD_TEXT,
    damaged_bytes,
    duplicate_key,
    encoded,
    files_in,
    mutated_json,
    release_fifos,
    retexted,
)

from det_nb import trials, verify
from det_nb.trials import TrialResult, TrialsResult, Verification

COMMANDS = settings(
    max_examples=80, deadline=timedelta(seconds=5), derandomize=True, database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                           HealthCheck.data_too_large],
)
SECONDS = 10  # past this a call counts as hung
NOTEBOOK, OTHER, GARBAGE, FIFO, FOLDER, REPORT = (
    "book.ipynb", "other.ipynb", "bad.json", "pipe", "sub", "report.json")
VALUES = [
    "0", "1", "3", "42", "0-1", "0,1", "1-0", "0-2147483648", "2147483647", "-1", "+5", "4_2",
    "٤٢", "1e3", "0x10", "nan", "inf", "-inf", "1e300", "1e-300", "0.5", "9" * 5000, "", " ",
    "\x00", "determined", "seedsequence", "threads", "hashseed", "cpu", "loss", "loss,loss",
    "1loss", "tcp://127.0.0.1:1", "garbage", "http://x:1", NOTEBOOK, OTHER, GARBAGE, FIFO,
    FOLDER, f"{FOLDER}/x.json", "missing/x.json", "new.json", "~nosuchuser/x.json",
    "a" * 300 + ".json", "\udcff.json", "a\nb.json", REPORT,
]


class WouldRun(BaseException):
    """Raised where a cluster or a kernel would start: the input passed every check."""


def options_of(main: Callable[[list[str]], int]) -> list[str]:
    """The options a command's ``--help`` lists (so the fuzz follows the command as it grows)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        try:
            status = main(["--help"])
        except SystemExit as stop:  # argparse's way out, which `python -m det_nb` passes on
            status = stop.code
    assert status in (0, None), status
    return sorted(set(re.findall(r"(?<![\w-])(--?[a-zA-Z][\w-]*)", out.getvalue())))


def valid_notebook(path: Path) -> None:
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_code_cell("x = 1")]
    notebook.metadata["kernelspec"] = {"name": "python3", "language": "python",
                                       "display_name": "Python 3"}
    nbformat.write(notebook, path)


@pytest.fixture
def folder(tmp_path: Path) -> Iterator[Path]:
    """The current directory: two notebooks, garbage, a FIFO, a folder and a report."""
    valid_notebook(tmp_path / NOTEBOOK)
    valid_notebook(tmp_path / OTHER)
    (tmp_path / GARBAGE).write_bytes(b"\xff\xfe not json {")
    (tmp_path / FOLDER).mkdir()
    (tmp_path / REPORT).write_text('{"format": "det_nb-verify", "version": 0}')
    os.mkfifo(tmp_path / FIFO)
    previous = os.getcwd()
    os.chdir(tmp_path)
    try:
        yield tmp_path
    finally:
        os.chdir(previous)
        release_fifos(tmp_path)


def within_seconds(call: Callable[[], object], folder: Path) -> tuple[object, BaseException | None]:
    """Run ``call`` in a thread; fail if it is still running after SECONDS."""
    results: list[object] = []
    raised: list[BaseException] = []

    def run() -> None:
        try:
            results.append(call())
        except BaseException as error:  # judged by the caller, in the test's thread
            raised.append(error)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(SECONDS)
    if thread.is_alive():
        release_fifos(folder)
        thread.join(SECONDS)
        pytest.fail(f"still running after {SECONDS} s (a blocking open or a wait)")
    return (results[0] if results else None), (raised[0] if raised else None)


@contextlib.contextmanager
def no_engine() -> Iterator[None]:
    """Every way to a cluster or a kernel ends in WouldRun."""
    def would_run(*args: object, **kwargs: object) -> Any:
        raise WouldRun()

    with mock.patch.object(trials, "_dask_client", would_run), \
            mock.patch("det_nb.notebook_runner.KernelRun.start", would_run), \
            mock.patch("det_nb.notebook_runner.run_notebook", would_run):
        yield


def judge(main: Callable[[list[str]], int], prog: str, argv: list[str], folder: Path) -> None:
    """``main(argv)`` exits 2 with one line, prints help, or reaches the sentinel: nothing else.

    The line is printable: odd text from the command line is escaped in it.
    """
    before = files_in(folder)
    out, err = io.StringIO(), io.StringIO()

    def call() -> object:
        with no_engine(), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            return main(argv)

    status, raised = within_seconds(call, folder)
    if isinstance(raised, SystemExit):  # how argparse ends; the process exits with its code
        status, raised = raised.code or 0, None
    printed, complained = out.getvalue(), err.getvalue()
    if raised is not None:
        assert isinstance(raised, WouldRun), f"{type(raised).__name__}: {raised!r} for {argv!r}"
        assert complained == "", complained  # valid: nothing to say yet
    elif status == 2:
        assert printed == "", printed
        assert complained.count("\n") == 1 and complained.endswith("\n"), complained
        assert complained.startswith(f"{prog}: error: "), complained
        assert complained[:-1].isprintable(), complained
    else:
        assert status == 0 and {"-h", "--help"} & set(argv[:argv.index("--")] if "--" in argv
                                                       else argv), (status, argv)
        assert printed and complained == "", (printed, complained)
    assert files_in(folder) == before, f"changed by {argv!r}"


@st.composite
def command_lines(draw: st.DrawFn, options: list[str], positional: int,
                  printable_only: bool = False) -> list[str]:
    """An argument list: notebooks, real and misspelt options, odd values, odd forms
    (``printable_only``: no newline, control character or lone surrogate in them)."""
    argv: list[str] = []
    for _ in range(draw(st.integers(0, positional))):
        argv.append(draw(st.sampled_from([NOTEBOOK, NOTEBOOK, OTHER, GARBAGE, FIFO, FOLDER,
                                          "missing.ipynb", "", "-", "\udcff.ipynb"])))
    spelt = st.one_of(st.sampled_from(options), st.sampled_from(options).map(lambda o: o[:-1]),
                      st.sampled_from(["--", "-", "--=", "-x", "--see", "--seeds"]))
    value = st.one_of(st.sampled_from(VALUES), ODD_TEXT)
    if printable_only:
        value = value.filter(str.isprintable)
    for _ in range(draw(st.integers(0, 6))):
        option = draw(spelt)
        how = draw(st.sampled_from(["pair", "pair", "equals", "alone"]))
        if how == "alone":
            argv.append(option)
        elif how == "equals":
            argv.append(f"{option}={draw(value)}")
        else:
            argv += [option, draw(value)]
    return argv


TRIALS_OPTIONS = options_of(trials.main)
VERIFY_OPTIONS = options_of(verify.main)
TRIALS_PROG, VERIFY_PROG = "python -m det_nb trials", "python -m det_nb verify"


@COMMANDS
@given(argv=command_lines(TRIALS_OPTIONS, 2))
@example(argv=[NOTEBOOK, "--seed", "42", "--trials", "0", "--timeout", "1e300"])
@example(argv=[NOTEBOOK, "--seed", "42", "--trials", "0", "--workers-timeout", "nan"])
@example(argv=[NOTEBOOK, "--seed", "42", "--trials", "0", "--out", NOTEBOOK])
@example(argv=[NOTEBOOK, "--seed", "42", "--trials", "0", "--out", FIFO])
@example(argv=[NOTEBOOK, "--seed", "42", "--trials", "0", "--collect", "1loss"])
@example(argv=[NOTEBOOK, "--seed", "42", "--trials", "0", "--scheduler", "garbage"])
@example(argv=[NOTEBOOK, "--seed", "42", "--trials", "0", "--minimize", "a\nb"])
@example(argv=[NOTEBOOK, "--seed", "42", "--trials", "0-99999999"])
@example(argv=[NOTEBOOK, "--seed", "42", "--trials", "0", "--workers", "5000"])
def test_trials_command_lines(folder: Path, argv: list[str]) -> None:
    judge(trials.main, TRIALS_PROG, argv, folder)


@COMMANDS
@given(argv=command_lines(VERIFY_OPTIONS, 3, printable_only=True))
@example(argv=[NOTEBOOK, "--runs", "1e300"])
@example(argv=[NOTEBOOK, "--json", NOTEBOOK])
@example(argv=[NOTEBOOK, "--against", GARBAGE])
@example(argv=[NOTEBOOK, "--against", FIFO])
@example(argv=[NOTEBOOK, "--timeout", "nan"])
@example(argv=[NOTEBOOK, "--vary", "threads", "--vary", "threads"])
def test_verify_command_lines(folder: Path, argv: list[str]) -> None:
    judge(verify.main, VERIFY_PROG, argv, folder)  # odd text: see the test below


@pytest.mark.parametrize("argv", [[NOTEBOOK, "--agains", "\ud800"],
                                  [NOTEBOOK, "--agains", "a\nb"]])
def test_verify_error_lines_are_escaped(folder: Path, argv: list[str]) -> None:
    judge(verify.main, VERIFY_PROG, argv, folder)


def test_valid_command_lines_reach_the_engine_and_nothing_before(folder: Path) -> None:
    """The sentinel is reachable: the properties above are not vacuous."""
    for main, prog, argv in (
        (trials.main, TRIALS_PROG, [NOTEBOOK, "--seed", "42", "--trials", "0-1"]),
        (verify.main, VERIFY_PROG, [NOTEBOOK]),
    ):
        with no_engine(), pytest.raises(WouldRun):
            main(argv)
        judge(main, prog, argv, folder)


# -- results files --------------------------------------------------------------------------


def valid_trials_file() -> bytes:
    """A trials file as ``--out`` writes one: NaN, infinities, an unchecked value, a check."""
    cells = [{"cell": 1, "first_line": "%det_seed 42", "names": {}, "unchecked": {},
              "outputs": "0" * 32},
             {"cell": 2, "first_line": "loss = train()", "names": {"loss": "ab" * 16},
              "unchecked": {"model": "Model: unchecked"}, "outputs": "1" * 32}]
    big = {"digest": "", "description": "int: not moved out of the kernel", "kind": "unchecked"}
    results = [
        TrialResult(0, 536987300, "tcp://127.0.0.1:1", 1.25,
                    {"loss": 0.5, "curve": [1.0, math.nan, math.inf], "big": big}, cells,
                    {"lineage": {"experiment_seed": 42}}, None, ["threads: not pinned"]),
        TrialResult(1, 1944468666, "tcp://127.0.0.1:2", 2.0,
                    {"loss": math.nan, "curve": [], "big": big}, cells, None,
                    "cell 2: ValueError: diverged"),
    ]
    check = Verification(0, "tcp://127.0.0.1:1", "tcp://127.0.0.1:2", [], ["big: int"],
                         ["curve holds NaN in both runs"])
    result = TrialsResult("train.ipynb", 42, "seedsequence", ("loss", "curve", "big"),
                          results, [check])
    return (json.dumps(result.to_json(), indent=1, allow_nan=False) + "\n").encode()


VALID_TRIALS = valid_trials_file()


@st.composite
def damaged_files(draw: st.DrawFn, valid: bytes) -> bytes:
    """A valid file's JSON mutated, its text made odd, a key given twice, or bytes damaged."""
    how = draw(st.sampled_from(["json", "json", "json", "text", "duplicate", "bytes", "deep"]))
    if how == "bytes":
        return draw(damaged_bytes(valid))
    document = json.loads(valid)
    if how == "text":
        return encoded(draw(retexted(document)), draw(st.booleans()))
    if how == "duplicate":
        return draw(duplicate_key(valid.decode("utf-8"))).encode("utf-8", "surrogatepass")
    if how == "deep":  # a value nested about as deep as the parser allows, or deeper
        depth = draw(st.integers(90, 3000))
        if "trials" not in document:
            return ("[" * depth + json.dumps(document) + "]" * depth).encode()
        document["trials"][0]["collected"]["loss"] = "DEEP"
        deep = "[" * depth + "0.5" + "]" * depth
        return json.dumps(document).replace('"DEEP"', deep, 1).encode()
    return encoded(draw(mutated_json(document)), draw(st.booleans()))


def judge_loader(load: Callable[[str], object], data: bytes, folder: Path) -> object:
    """``load`` returns, or raises exactly ValueError with one printable line."""
    (folder / "results.json").write_bytes(data)
    returned, raised = within_seconds(lambda: load("results.json"), folder)
    if raised is not None:
        assert type(raised) is ValueError, f"{type(raised).__name__}: {raised!r}"
        message = str(raised)
        assert message.strip() and "\n" not in message and message.isprintable(), message
    return returned


@COMMANDS
@given(data=damaged_files(VALID_TRIALS))
@example(data=VALID_TRIALS)
@example(data=VALID_TRIALS.replace(b'"non_finite": {', b'"non_finite": {"/trials/0/seconds": '
                                   b'"NaN", ', 1))
@example(data=VALID_TRIALS.replace(b'"experiment_seed": 42', b'"experiment_seed": 43', 1))
@example(data=VALID_TRIALS.replace(b'"loss": 0.5', b'"loss": NaN', 1))
@example(data=VALID_TRIALS.replace(b'"loss": 0.5', b'"loss": ' + b"9" * 5000, 1))
def test_trials_files(folder: Path, data: bytes) -> None:
    loaded = judge_loader(trials.load, data, folder)
    if loaded is None:
        return
    assert isinstance(loaded, TrialsResult)
    for metric in loaded.collect:
        loaded.best(metric)
        lines = loaded.summary(minimize=metric).splitlines()
        assert all(line.isprintable() for line in lines), lines
        "\n".join(lines).encode("utf-8")  # a strict UTF-8 terminal prints it
    json.dumps(loaded.to_json(), allow_nan=False)  # and writes it back strictly


def test_the_valid_trials_file_loads_as_written(folder: Path) -> None:
    loaded = judge_loader(trials.load, VALID_TRIALS, folder)
    assert isinstance(loaded, TrialsResult)
    assert (json.dumps(loaded.to_json(), indent=1, allow_nan=False) + "\n").encode() == \
        VALID_TRIALS


@pytest.fixture(scope="module")
def valid_report(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """A report that ``verify --json`` wrote for a tiny notebook (two real kernels)."""
    folder = tmp_path_factory.mktemp("report")
    valid_notebook(folder / NOTEBOOK)
    with contextlib.redirect_stdout(io.StringIO()):
        assert verify.main([str(folder / NOTEBOOK), "--json", str(folder / REPORT)]) == 0
    return (folder / REPORT).read_bytes()


@settings(COMMANDS, max_examples=60)
@given(data=st.data())
def test_verify_reports(folder: Path, valid_report: bytes, data: st.DataObject) -> None:
    judge_loader(verify.load_report, data.draw(damaged_files(valid_report)), folder)
