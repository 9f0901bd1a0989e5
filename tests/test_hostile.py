"""Hostile input, generated: every outcome is success or one line that changes nothing.

Hypothesis throws generated ``%det_seed`` / ``%det_state`` / ``%%det_check`` lines, run
records and state files (mutations of valid ones) at det_nb through a real IPython shell
and the Python API. For every input: it works, or it raises exactly UsageError (magics)
or ValueError (API) with a one-line message, and then the lineage, every PRNG stream,
the settings and the files in the test's folder are as they were; and it returns within
seconds (a FIFO that blocks a read fails the test instead of hanging it). The cases an
adversarial pass found (issue 10) are named regression tests below.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shlex
import stat
import threading
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pytest
from conftest import prng_states
from hypothesis import HealthCheck, currently_in_test_context, event, example, given, settings
from hypothesis import strategies as st
from IPython.core.error import UsageError

import det_nb
from det_nb.__main__ import main as cli_main

# Repeatable in CI (derandomize), small enough for its budget, and a time limit per input.
HOSTILE = settings(
    max_examples=100,
    deadline=timedelta(seconds=5),
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                           HealthCheck.data_too_large],
)
SECONDS = 10  # past this a call counts as hung (hypothesis' deadline judges the rest)
BASE_SEED = "42 --trial 3"

RECORD, STATE, FIFO, FOLDER, GARBAGE = "run.json", "state.npz", "pipe", "sub", "bad.json"
LONG_NAME = "a" * 300 + ".json"
# Path tokens: all inside the test's folder (the current directory) or refused before use.
PATHS = [
    RECORD, STATE, FIFO, FOLDER, GARBAGE, f"{FOLDER}/x.json", "missing/x.json", "new.json",
    "~nosuchuser/x.json", LONG_NAME, "my run.json", ".", "..", "\udcff.json", "\ud800.json",
    "a\nb.json", "",
]
OPTIONS = [
    "--trial", "-t", "--scheme", "--threads", "--single-thread", "--no-single-thread",
    "--deterministic-ops", "--no-deterministic-ops", "--per-cell", "--no-per-cell",
    "--portable", "--no-portable", "--save", "--load", "--quiet", "-q",
    "--tri", "--thread", "--sav", "--lo", "--seed", "-h", "--help", "--", "-", "--=",
]
NUMBERS = [
    "0", "3", "42", "2147483647", "2147483648", "-1", "-0", "+5", "00042", "+-5", "4_2",
    "٤٢", "4.5", "1e3", "0x10", "nan", "9" * 5000, "", " ", "\x00", "determined",
    "seedsequence", "DETERMINED", "1000001",
]
# Free text never holds "/" or "~", so no generated token can name a path outside the folder.
SAFE_TEXT = st.text(
    alphabet=st.characters(exclude_characters="/~", exclude_categories=("Cs",)),
    max_size=12,
)
NASTY_TEXT = st.sampled_from([
    "\ud800", "\udfff", "a\nb", "\r\n", "\x1b[31m", "\u2028", "\u202e", "\x00",
    "\n[ok  ] forged: all fine", "é" * 300,
])
ODD_TEXT = st.one_of(NASTY_TEXT, st.text(max_size=20),
                     st.tuples(st.text(max_size=8), NASTY_TEXT).map("".join))


# -- the harness -------------------------------------------------------------------------


def files_in(folder: Path) -> dict[str, object]:
    """What is in ``folder``: each regular file's bytes, the kind of everything else."""
    found: dict[str, object] = {}
    for path in sorted(folder.rglob("*")):
        mode = path.lstat().st_mode
        found[str(path.relative_to(folder))] = (
            path.read_bytes() if stat.S_ISREG(mode) else stat.S_IFMT(mode))
    return found


def release_fifos(folder: Path) -> None:
    """Open each FIFO's write end once, so a reader blocked on it returns."""
    for path in folder.rglob("*"):
        if stat.S_ISFIFO(path.lstat().st_mode):
            with contextlib.suppress(OSError):  # ENXIO: nobody is reading, as it should be
                os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))


def note_outcome(what: str) -> None:
    """Count outcomes in hypothesis' statistics (``--hypothesis-show-statistics``)."""
    if currently_in_test_context():
        event(what)


def strict_stdout() -> io.TextIOWrapper:
    """A stdout like a terminal's: UTF-8, strict, so printing a lone surrogate raises."""
    return io.TextIOWrapper(io.BytesIO(), encoding="utf-8", errors="strict",
                            write_through=True)


class Outcome(NamedTuple):
    """What a call returned, or the one-line error it was refused with, and what it printed."""

    returned: object
    refused: Exception | None
    printed: str


def outcome(call: Callable[[], object], error: type[Exception], folder: Path,
            plain_output: bool = True) -> Outcome:
    """Run ``call``; it must succeed, or raise exactly ``error`` in one line, changing nothing.

    Returns what ``call`` returned or raised, and what it printed. Runs in a thread, so a
    call that blocks fails after SECONDS instead of hanging the suite. What it prints must
    encode as UTF-8 and, with ``plain_output``, have no control characters (text from a
    file is escaped; a user's cell may print what it likes, IPython's coloured tracebacks too).
    """
    before = (prng_states(), files_in(folder))
    results: list[object] = []
    raised: list[BaseException] = []
    out = strict_stdout()

    def run() -> None:
        try:
            with contextlib.redirect_stdout(out):
                results.append(call())
        except BaseException as exc:  # judged below, in the test's thread
            raised.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(SECONDS)
    if thread.is_alive():
        release_fifos(folder)
        thread.join(SECONDS)
        pytest.fail(f"still running after {SECONDS} s (a blocking open or a runaway loop)")
    printed = out.buffer.getvalue().decode("utf-8")
    assert not plain_output or all(line.isprintable() for line in printed.splitlines()), (
        f"printed raw: {printed!r}")
    if not raised:
        note_outcome("worked")
        return Outcome(results[0], None, printed)
    exc = raised[0]
    assert type(exc) is error, f"{type(exc).__name__} instead of {error.__name__}: {exc!r}"
    note_outcome("refused")
    message = str(exc)
    assert message.strip() and "\n" not in message, f"not one line: {message!r}"
    assert (prng_states(), files_in(folder)) == before, f"changed though refused: {message}"
    return Outcome(None, exc, printed)


class ValidFiles(dict):
    """File name -> bytes, shown short in hypothesis' reports."""

    def __repr__(self) -> str:
        return "<a valid run record and state file>"


@pytest.fixture(scope="module")
def valid_files(shell, tmp_path_factory: pytest.TempPathFactory) -> ValidFiles:
    """A valid run record and state file, made under the base lineage."""
    prng_states()  # imports TensorFlow now, not within the first example's time limit
    folder = tmp_path_factory.mktemp("valid")
    shell.run_line_magic("det_seed", f"{BASE_SEED} --quiet")
    det_nb.rng()
    det_nb.save_record(str(folder / RECORD))
    det_nb.save_state(str(folder / STATE))
    return ValidFiles({RECORD: (folder / RECORD).read_bytes(),
                       STATE: (folder / STATE).read_bytes()})


@pytest.fixture
def folder(shell, valid_files: dict[str, bytes], tmp_path: Path) -> Iterator[Path]:
    """The current directory for the test: a record, a state file, a FIFO, a folder, garbage.

    Seeded with the base lineage; afterwards the shell is seeded as the other tests expect.
    """
    for name, data in valid_files.items():
        (tmp_path / name).write_bytes(data)
    (tmp_path / GARBAGE).write_bytes(b"\xff\xfe not json {")
    (tmp_path / FOLDER).mkdir()
    os.mkfifo(tmp_path / FIFO)
    shell.run_line_magic("det_seed", f"{BASE_SEED} --quiet")
    previous = os.getcwd()
    os.chdir(tmp_path)
    try:
        yield tmp_path
    finally:
        os.chdir(previous)
        release_fifos(tmp_path)
        shell.run_line_magic("det_seed", f"{BASE_SEED} --no-per-cell --quiet")


# -- strategies ------------------------------------------------------------------------


@st.composite
def path_tokens(draw: st.DrawFn) -> str:
    """A path as typed on a magic line: plain, shell-quoted, or with an unclosed quote."""
    path = draw(st.one_of(st.sampled_from(PATHS), SAFE_TEXT))
    quoting = draw(st.sampled_from(["plain", "quoted", "unclosed"]))
    if quoting == "quoted":
        return shlex.quote(path)
    return f'"{path}' if quoting == "unclosed" else path


@st.composite
def seed_lines(draw: st.DrawFn) -> str:
    """A ``%det_seed`` line: real, abbreviated, repeated and odd options with odd values."""
    words: list[str] = []
    if draw(st.booleans()):
        words.append(draw(st.one_of(st.sampled_from(NUMBERS), SAFE_TEXT)))
    for _ in range(draw(st.integers(0, 4))):
        option = draw(st.sampled_from(OPTIONS))
        value = draw(st.one_of(st.sampled_from(NUMBERS), path_tokens(), st.just(None)))
        if value is None:
            words.append(option)
        elif draw(st.booleans()):
            words.append(f"{option}={value}")
        else:
            words += [option, value]
    return " ".join(words)


@st.composite
def state_lines(draw: st.DrawFn) -> str:
    """A ``%det_state`` line: an action (or a wrong one) and paths."""
    if draw(st.integers(0, 3)) == 0:  # a line that works, now and then
        return draw(st.sampled_from(["save new.npz", f"restore {STATE}", f"save {FOLDER}/x.npz",
                                     "save 'my state.npz'"]))
    action = draw(st.sampled_from(["save", "restore", "restor", "", "SAVE", "load"]))
    paths = draw(st.lists(path_tokens(), max_size=2))
    return " ".join([action, *paths])


CHECK_LINES = st.one_of(
    st.sampled_from(["", "--runs 3", "-n 2"]),
    st.lists(st.sampled_from(["--runs", "-n", "--run", "--runs=", "2", "3", "1", "0", "-1",
                              "٤", "4_2", "+-5", "9" * 5000, "2.0", "--quiet", '"2']),
             max_size=4).map(" ".join),
)
CHECK_CELLS = st.sampled_from([
    "x = random.random()",
    "x = np.random.rand(3)",
    "x = []\nfor _ in range(40):\n    x = [x, x]",
    "class Odd:\n    def __getattr__(self, name):\n        raise RuntimeError('no')\nx = Odd()",
    "x = {'\\ud800': '\\n[ok  ] forged'}",
    "raise ValueError('boom')",
    "x = 1/0",
    "",
    "x = (",
])


def json_values() -> st.SearchStrategy[Any]:
    """JSON-able values of every type, at odd sizes and with odd text."""
    scalars = st.one_of(
        st.none(), st.booleans(), st.floats(allow_nan=True, allow_infinity=True),
        st.integers(-(2**70), 2**70),
        st.sampled_from([-1, 0, 2**31 - 1, 2**31, 2**32, 2**40, 2**63, 2**64, 10**4000]),
        ODD_TEXT,
    )
    return st.recursive(scalars, lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(ODD_TEXT, inner, max_size=3)),
        max_leaves=6)


@st.composite
def mutated_json(draw: st.DrawFn, document: object) -> object:
    """``document`` with one place replaced, removed, wrapped or given an extra key."""
    if isinstance(document, dict) and document and draw(st.integers(0, 3)):
        key = draw(st.sampled_from(sorted(document)))
        return {**document, key: draw(mutated_json(document[key]))}
    if isinstance(document, list) and document and draw(st.integers(0, 3)):
        index = draw(st.integers(0, len(document) - 1))
        return [*document[:index], draw(mutated_json(document[index])), *document[index + 1:]]
    how = draw(st.sampled_from(["same type", "same type", "replace", "wrap", "remove", "add"]))
    if how == "same type" and isinstance(document, str):
        return draw(ODD_TEXT)
    if how == "same type" and type(document) is int:
        return draw(hostile_numbers())
    if how == "wrap":
        return draw(st.sampled_from([[document], {"value": document}]))
    if how == "remove" and isinstance(document, dict | list) and document:
        if isinstance(document, dict):
            key = draw(st.sampled_from(sorted(document)))
            return {name: value for name, value in document.items() if name != key}
        return document[1:]
    if how == "add" and isinstance(document, dict):
        return {**document, draw(ODD_TEXT): draw(json_values())}
    return draw(json_values())


def text_places(document: object, path: tuple = ()) -> Iterator[tuple[tuple, bool]]:
    """Every (path, is a key) of a string in ``document``: values and dict keys."""
    if isinstance(document, str):
        yield path, False
    elif isinstance(document, dict):
        for key, value in document.items():
            yield (*path, key), True
            yield from text_places(value, (*path, key))
    elif isinstance(document, list):
        for index, value in enumerate(document):
            yield from text_places(value, (*path, index))


def with_text(document: object, path: tuple, is_key: bool, text: str) -> object:
    """``document`` with the string at ``path`` (a value, or a dict key) replaced by ``text``."""
    if not path:
        return text
    head, rest = path[0], path[1:]
    if isinstance(document, list):
        return [with_text(v, rest, is_key, text) if i == head else v
                for i, v in enumerate(document)]
    if is_key and not rest:
        return {text if key == head else key: value for key, value in document.items()}
    return {key: with_text(value, rest, is_key, text) if key == head else value
            for key, value in document.items()}


@st.composite
def retexted(draw: st.DrawFn, document: object) -> object:
    """``document`` with one string, often one of the environment's, made odd."""
    places = list(text_places(document))
    environment = [place for place in places if place[0][:1] == ("environment",)]
    path, is_key = draw(st.sampled_from(draw(st.sampled_from([places, environment or places]))))
    return with_text(document, path, is_key, draw(ODD_TEXT))


def encoded(document: object, ascii_only: bool) -> bytes:
    """JSON bytes; without ``ascii_only`` a lone surrogate becomes invalid UTF-8."""
    return json.dumps(document, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")


@st.composite
def damaged_bytes(draw: st.DrawFn, data: bytes) -> bytes:
    """``data`` truncated, with a byte changed, or with bytes inserted."""
    position = draw(st.integers(0, len(data)))
    how = draw(st.sampled_from(["truncate", "flip", "insert"]))
    if how == "truncate":
        return data[:position]
    if how == "flip" and position < len(data):
        return data[:position] + bytes([data[position] ^ 0xFF]) + data[position + 1:]
    return data[:position] + draw(st.binary(min_size=1, max_size=8)) + data[position:]


@st.composite
def duplicate_key(draw: st.DrawFn, text: str) -> str:
    """The JSON object ``text`` with one of its top-level keys given again, first."""
    key = draw(st.sampled_from(sorted(json.loads(text))))
    extra = json.dumps({key: draw(json_values())})[1:-1]
    return "{" + extra + ", " + text.lstrip()[1:]


@st.composite
def record_files(draw: st.DrawFn, valid: bytes) -> bytes:
    """A valid record's JSON mutated, its text given a duplicate key, or its bytes damaged."""
    how = draw(st.sampled_from(["json", "json", "text", "text", "duplicate", "bytes"]))
    if how == "bytes":
        return draw(damaged_bytes(valid))
    document = json.loads(valid)
    if how == "text":
        return encoded(draw(retexted(document)), draw(st.booleans()))
    if how == "duplicate":
        return draw(duplicate_key(valid.decode("utf-8"))).encode("utf-8", "surrogatepass")
    return encoded(draw(mutated_json(document)), draw(st.booleans()))


def hostile_numbers() -> st.SearchStrategy[int]:
    return st.one_of(st.integers(-(2**64), 2**64),
                     st.sampled_from([0, -1, 2, 2**31, 2**32, 2**40, 2**63 - 1, 2**64 - 1]))


@st.composite
def mutated_array(draw: st.DrawFn, array: np.ndarray) -> np.ndarray:
    """``array`` with a hostile value, another dtype or shape, all zeros, or cut short."""
    how = draw(st.sampled_from(["in range", "in range", "value", "dtype", "shape", "zeros",
                                "short", "text"]))
    if how == "in range" and array.size:  # a value the dtype holds: often a valid state
        changed = array.copy().reshape(-1)
        if np.issubdtype(array.dtype, np.integer):
            limits = np.iinfo(array.dtype)
            value = draw(st.integers(int(limits.min), int(limits.max)))
        else:
            value = draw(st.floats(width=64))
        changed[draw(st.integers(0, array.size - 1))] = value
        return changed.reshape(array.shape)
    if how == "value":
        value = draw(hostile_numbers())
        if array.ndim == 0:
            return np.array(value)  # may need int64, uint64 or object (pickled when saved)
        changed = array.astype(object)
        changed[draw(st.integers(0, array.size - 1))] = value
        return np.array(changed.tolist())
    if how == "dtype":
        return array.astype(draw(st.sampled_from(["int8", "uint64", "float32", "float64",
                                                  "bool", "complex64", "U3"])))
    if how == "shape":
        return np.resize(array, draw(st.sampled_from([(0,), (1,), (2, 2), (625,), (10**4,)])))
    if how == "zeros":
        return np.zeros_like(array)
    if how == "short" and array.ndim:
        return array[: draw(st.integers(0, max(array.size - 1, 0)))]
    return np.array(draw(ODD_TEXT))


@st.composite
def state_files(draw: st.DrawFn, valid: bytes) -> bytes:
    """A valid state file with a mutated array or metadata, a member added or dropped,
    or its bytes damaged."""
    how = draw(st.sampled_from(["array", "array", "meta", "meta", "duplicate", "drop", "add",
                                "bytes"]))
    if how == "bytes":
        return draw(damaged_bytes(valid))
    with np.load(io.BytesIO(valid), allow_pickle=False) as stored:
        arrays = {name: stored[name] for name in stored.files}
    names = sorted(arrays)
    if how == "meta":
        meta = draw(mutated_json(json.loads(str(arrays["meta"]))))
        arrays["meta"] = np.array(json.dumps(meta, ensure_ascii=draw(st.booleans())))
    elif how == "duplicate":
        arrays["meta"] = np.array(draw(duplicate_key(str(arrays["meta"]))))
    elif how == "drop":
        del arrays[draw(st.sampled_from(names))]
    elif how == "add":
        arrays[draw(st.sampled_from([*names, "numpy.extra", "../x", "x.npy"]))] = np.arange(3)
    else:
        name = draw(st.sampled_from([name for name in names if name != "meta"]))
        arrays[name] = draw(mutated_array(arrays[name]))
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


# -- the generated suites ----------------------------------------------------------------


@HOSTILE
@given(line=seed_lines())
@example(line="--trial 3 --trial 4")
@example(line="42 --tri 3")
@example(line="42 --save=")
@example(line="--load=")
@example(line='42 --save "my run.json')
@example(line="42 --save ~nosuchuser/x.json")
@example(line=f"42 --save {LONG_NAME}")
@example(line=f"42 --save {FIFO}")
@example(line=f"--load {FIFO}")
@example(line="+-5")
@example(line="9" * 5000)
@example(line="٤٢")
@example(line="4_2")
def test_det_seed_lines(shell, folder: Path, line: str) -> None:
    outcome(lambda: shell.run_line_magic("det_seed", line), UsageError, folder)


@HOSTILE
@given(line=state_lines())
@example(line=f"restore {FIFO}")
@example(line=f"save {FIFO}")
@example(line=f"save {LONG_NAME}")
@example(line="save ~nosuchuser/x.npz")
@example(line='save "unclosed')
def test_det_state_lines(shell, folder: Path, line: str) -> None:
    outcome(lambda: shell.run_line_magic("det_state", line), UsageError, folder)


@settings(HOSTILE, max_examples=30)
@given(line=CHECK_LINES, cell=CHECK_CELLS)
@example(line="", cell="x = []\nfor _ in range(40):\n    x = [x, x]")
@example(line="--runs 2 --runs 3", cell="x = 1")
def test_det_check_lines_and_cells(shell, folder: Path, line: str, cell: str) -> None:
    shell.run_cell("import random\nimport numpy as np")
    outcome(lambda: shell.run_cell_magic("det_check", line, cell), UsageError, folder,
            plain_output=False)


def _write_record(folder: Path, data: bytes) -> None:
    (folder / RECORD).write_bytes(data)


@HOSTILE
@given(data=st.data())
def test_run_records_through_the_magic(shell, folder: Path, valid_files, data) -> None:
    _write_record(folder, data.draw(record_files(valid_files[RECORD])))
    outcome(lambda: shell.run_line_magic("det_seed", f"--load {RECORD}"), UsageError, folder)


@HOSTILE
@given(data=st.data())
def test_run_records_through_the_api(shell, folder: Path, valid_files, data) -> None:
    _write_record(folder, data.draw(record_files(valid_files[RECORD])))
    differences = outcome(lambda: det_nb.load_record(RECORD), ValueError, folder).returned
    for line in differences or []:
        assert line.isprintable(), f"record text printed raw: {line!r}"


def assert_streams_live() -> None:
    """The global streams draw something other than zeros (an all-zero state draws only 0)."""
    import random

    assert random.getrandbits(64) | random.getrandbits(64), "Python random draws only zeros"
    assert np.random.randint(0, 2**62, size=2, dtype=np.int64).any(), "NumPy draws only zeros"
    assert det_nb.rng().integers(0, 2**62, size=2).any(), "det_nb.rng() draws only zeros"


@HOSTILE
@given(data=st.data())
def test_state_files_through_the_magic(shell, folder: Path, valid_files, data) -> None:
    shell.run_line_magic("det_seed", f"{BASE_SEED} --quiet")  # the lineage the file was saved under
    (folder / STATE).write_bytes(data.draw(state_files(valid_files[STATE])))
    if outcome(lambda: shell.run_line_magic("det_state", f"restore {STATE}"), UsageError,
               folder).refused is None:
        assert_streams_live()


@HOSTILE
@given(data=st.data())
def test_state_files_through_the_api(shell, folder: Path, valid_files, data) -> None:
    shell.run_line_magic("det_seed", f"{BASE_SEED} --quiet")
    (folder / STATE).write_bytes(data.draw(state_files(valid_files[STATE])))
    if outcome(lambda: det_nb.load_state(STATE), ValueError, folder).refused is None:
        assert_streams_live()


# -- named regression cases (issue 10) ------------------------------------------------------


@pytest.mark.parametrize(("line", "says"), [
    ("42 --trial 3 --trial 4", "more than once"),
    ("42 --tri 3", "--tri"),
    ("42 --save=", "--save needs a file path"),
    ("--load=", "--load needs a file path"),
    ('42 --save "my run.json', "unterminated quote"),
    ("42 --save ~nosuchuser/x.json", "nosuchuser"),
    (f"42 --save {LONG_NAME}", "too long"),
    ("+-5", "'+-5'"),
    ("9" * 5000, "5002 characters"),
    ("٤٢", "'٤٢'"),
    ("4_2", "'4_2'"),
])
def test_named_magic_regressions_are_refused_in_one_line(
    shell, folder: Path, line: str, says: str
) -> None:
    before = (prng_states(), files_in(folder))
    with pytest.raises(UsageError) as refused:
        shell.run_line_magic("det_seed", line)
    assert says in str(refused.value) and "\n" not in str(refused.value)
    assert (prng_states(), files_in(folder)) == before


@pytest.mark.parametrize("call", [
    lambda: det_nb.load_record(FIFO),
    lambda: det_nb.load_state(FIFO),
    lambda: det_nb.save_record(FIFO),
    lambda: det_nb.save_state(FIFO),
], ids=["load_record", "load_state", "save_record", "save_state"])
def test_a_fifo_is_refused_at_once_and_left_a_fifo(folder: Path, call) -> None:
    refused = outcome(call, ValueError, folder).refused
    assert "a FIFO" in str(refused)
    assert stat.S_ISFIFO((folder / FIFO).lstat().st_mode)


@pytest.mark.parametrize("line", [f"--load {FIFO}", f"42 --save {FIFO}"])
def test_a_fifo_named_to_det_seed_is_refused_at_once(shell, folder: Path, line: str) -> None:
    refused = outcome(lambda: shell.run_line_magic("det_seed", line), UsageError, folder).refused
    assert "a FIFO" in str(refused)


@pytest.mark.parametrize("value", [np.array([5]), "+-5", "9" * 5000, "٤٢", "4_2", 5.0, True])
def test_api_seeds_that_are_not_integers_are_one_line_value_errors(
    folder: Path, value: object
) -> None:
    refused = outcome(lambda: det_nb.seed(value), ValueError, folder).refused
    assert "experiment seed must be an integer in [0, 2147483647]" in str(refused)


def test_a_path_with_a_lone_surrogate_is_a_plain_value_error_naming_it(folder: Path) -> None:
    for call in (det_nb.save_record, det_nb.load_record, det_nb.save_state, det_nb.load_state):
        with pytest.raises(ValueError) as refused:
            call("\ud800.json")
        assert type(refused.value) is ValueError, repr(refused.value)
        assert "\\ud800.json" in str(refused.value)


@pytest.mark.parametrize("seed", ["٤٢", "4_2", "+-5", "9" * 5000])
def test_the_kernel_command_refuses_what_the_magic_refuses(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], seed: str
) -> None:
    with pytest.raises(SystemExit) as exited:
        cli_main(["kernel", "install", "--prefix", str(tmp_path), "--seed", seed])
    assert exited.value.code == 2
    assert "seed must be an integer in [0, 2147483647]" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_det_check_of_shared_references_40_deep_ends_at_once_and_compares(
    shell, folder: Path
) -> None:
    cell = "deep = []\nfor _ in range(40):\n    deep = [deep, deep]"
    printed = outcome(lambda: shell.run_cell_magic("det_check", "", cell), UsageError,
                      folder).printed
    assert printed.splitlines()[:3] == [
        "deterministic across 2 runs", "compared:", "  deep: list (len 2)"]


def test_det_check_names_a_value_whose_own_code_raises_and_proves_nothing(shell,
                                                                          folder: Path) -> None:
    """A mapping whose iteration raises cannot be compared: 'not proven', never a pass."""
    cell = ("from collections.abc import Mapping\n"
            "class Hostile(Mapping):\n"
            "    def __getitem__(self, key):\n        raise KeyError(key)\n"
            "    def __len__(self):\n        return 1\n"
            "    def __iter__(self):\n        raise RuntimeError('no')\n"
            "hostile = Hostile()\ndrawn = random.random()")
    shell.run_cell("import random")
    printed = outcome(lambda: shell.run_cell_magic("det_check", "", cell), UsageError,
                      folder).printed
    assert "not proven across 2 runs: 1 value could not be compared" in printed
    assert "  drawn: float" in printed
    unchecked = printed.split("could not be compared:\n", 1)[1]
    assert "  hostile: Hostile: reading it raised RuntimeError: no" in unchecked
