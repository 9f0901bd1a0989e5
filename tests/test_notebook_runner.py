"""The shared notebook runner: the runner's lineage replaces the notebook's own (parsed with
the magic's parser), and a notebook that is not a valid one (or an output that would replace
it) is refused in one line."""

from __future__ import annotations

import argparse
import json
import os
import shlex
from pathlib import Path

import nbformat
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from det_nb.notebook_runner import (
    Seeding,
    load_notebook,
    refuse_notebook_target,
    reseed_notebook,
    seeding_from,
)


def notebook(*sources: str) -> nbformat.NotebookNode:
    return nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in sources])


@pytest.mark.parametrize(("line", "expected"), [
    ("%det_seed 7 --trial 2 --threads 4", "%det_seed 42 --trial 3 --threads=4"),
    ("%det_seed --scheme determined --per-cell",
     "%det_seed 42 --trial 3 --scheme=determined --per-cell"),
    ("%det_seed --load run.json", "%det_seed 42 --trial 3"),
    # One flag, three spellings, three meanings: each keeps its own.
    ("%det_seed 7 --deterministic-ops", "%det_seed 42 --trial 3 --deterministic-ops"),
    ("%det_seed 7 --no-deterministic-ops", "%det_seed 42 --trial 3 --no-deterministic-ops"),
    ("%det_seed 7 --deterministic-ops=warn", "%det_seed 42 --trial 3 --deterministic-ops=warn"),
    # Short options with their value attached, combined, or both: the trial part goes.
    ("%det_seed 7 -t3", "%det_seed 42 --trial 3"),
    ("%det_seed 7 -t=3 --per-cell", "%det_seed 42 --trial 3 --per-cell"),
    ("%det_seed 7 -qt3 --threads 4", "%det_seed 42 --trial 3 --threads=4 --quiet"),
    ("%det_seed 7 -qt 3 --no-portable", "%det_seed 42 --trial 3 --no-portable --quiet"),
    ("%det_seed 7 -t 3 -q", "%det_seed 42 --trial 3 --quiet"),
    # Values with spaces and quotes stay one word; indentation stays.
    ('  %det_seed 7 --save "my run.json"', "  %det_seed 42 --trial 3 '--save=my run.json'"),
    ("%det_seed --save \"it's.json\"", "%det_seed 42 --trial 3 '--save=it'\"'\"'s.json'"),
])
def test_det_seed_lines_take_the_runners_seed_and_trial_and_keep_other_flags(line, expected):
    book = notebook("import numpy", line)
    assert reseed_notebook(book, Seeding(42, 3)) is True
    assert book.cells[1].source == expected
    assert "det_nb_seed" not in book.metadata


def test_a_scheme_given_to_the_runner_replaces_the_notebooks():
    book = notebook("%det_seed 7 --scheme seedsequence --quiet")
    reseed_notebook(book, Seeding(42, 1, "determined"))
    assert book.cells[0].source == "%det_seed 42 --trial 1 --scheme determined --quiet"


def test_a_notebook_without_det_seed_is_left_to_the_kernel_run():
    book = notebook("x = 1")
    assert reseed_notebook(book, Seeding(42, 1, "determined")) is False
    assert book.cells[0].source == "x = 1" and "det_nb_seed" not in book.metadata


@pytest.mark.parametrize(("arguments", "message"), [
    ((None, 3, None), "a trial or scheme needs an experiment seed"),
    ((42, 3, "nope"), "scheme must be one of seedsequence, determined, got 'nope'"),
    ((-1, None, None), r"seed must be an integer in \[0, 2\*\*31-1\], got -1"),
    ((42, True, None), r"trial must be an integer in \[0, 2\*\*31-1\], got True"),
])
def test_bad_runner_lineage_is_one_line(arguments, message):
    with pytest.raises(ValueError, match=message):
        seeding_from(*arguments)


@pytest.mark.parametrize(("line", "says"), [
    ("%det_seed 7 --trial 3 --trial 4", "argument --trial/-t: given more than once"),
    ("%det_seed 7 --tri 3", "unrecognized arguments: --tri 3"),
    ("%det_seed 7 --save 'open", "unterminated quote"),
    ("%det_seed 7 # a comment", "unrecognized arguments: # a comment"),
    # what the magic refuses beyond its parser: a contradiction, a mode without "=", help
    ("%det_seed 7 --threads 4 --no-single-thread", "--threads N pins every thread pool and "
     "--no-single-thread leaves them alone"),
    ("%det_seed 7 --load run.json", "--load replays the recorded seed and settings"),
    ("%det_seed --deterministic-ops warn", "write --deterministic-ops=warn (with '=')"),
    ("%det_seed 7 --help", "%det_seed has no --help option"),
])
def test_a_det_seed_line_the_magic_refuses_is_refused_naming_its_cell(line, says):
    book = notebook("%det_seed 1 --quiet", "x = 1", line)
    with pytest.raises(ValueError) as refused:
        reseed_notebook(book, Seeding(42))
    message = str(refused.value)
    assert message.startswith("cell 3: its %det_seed line is refused by the magic: ")
    assert says in message and "\n" not in message
    assert [cell.source for cell in book.cells] == ["%det_seed 1 --quiet", "x = 1", line]


@pytest.mark.parametrize("line", ["%det_seed 7 -t3 -q", "%det_seed 7 -qt3", "%det_seed 7 -qt 5",
                                  '%det_seed 7 --save "a b.json" -q'])
def test_a_rewritten_line_runs_in_a_real_shell(shell, line, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    book = notebook(line)
    reseed_notebook(book, Seeding(42, 3))
    shell.run_line_magic("load_ext", "det_nb")
    magic_line = book.cells[0].source.removeprefix("%det_seed ")
    shell.run_line_magic("det_seed", magic_line)  # raised "--trial given more than once"
    import det_nb

    assert (det_nb.lineage().experiment_seed, det_nb.lineage().trial) == (42, 3)
    assert (tmp_path / "a b.json").exists() == ("a b.json" in line)


def test_options_of_every_kind_are_rebuilt_as_given():
    """Kinds %det_seed may gain: an optional value, a count, a repeatable option, a
    store_const, several values, a --flag/--no-flag."""
    from det_nb.notebook_runner.det_seed_lines import _option_words

    parser = argparse.ArgumentParser(add_help=False)
    actions = {
        "optional": parser.add_argument("--optional", nargs="?", const="on"),
        "count": parser.add_argument("--verbose", "-v", action="count"),
        "append": parser.add_argument("--tag", action="append"),
        "const": parser.add_argument("--fast", action="store_const", const=3),
        "many": parser.add_argument("--sizes", nargs="+"),
        "flag": parser.add_argument("--portable", action=argparse.BooleanOptionalAction),
    }

    def rebuilt(parsed: argparse.Namespace) -> list[str]:
        return [word for action in actions.values()
                for word in _option_words(parser, action, getattr(parsed, action.dest))]

    line = ["--optional", "--verbose", "-v", "--tag=a b", "--tag", "c", "--fast",
            "--sizes", "1", "2", "--no-portable"]
    parsed = parser.parse_args(line)
    words = rebuilt(parsed)
    assert words == ["--optional", "--verbose", "--verbose", "--tag=a b", "--tag=c", "--fast",
                     "--sizes", "1", "2", "--no-portable"]
    assert parser.parse_args(words) == parsed
    assert rebuilt(parser.parse_args(["--optional=warn", "--portable"])) == [
        "--optional=warn", "--portable"]


def _magic_parse(arguments: str) -> argparse.Namespace:
    """``arguments`` parsed as ``%det_seed`` parses them; UsageError where it refuses them."""
    from det_nb.magics import DetMagics, _check_combination, _parse

    parsed = _parse(DetMagics.det_seed, arguments)
    _check_combination(parsed)
    return parsed


def _kept_meaning(line: str, seeding: Seeding) -> tuple[dict, dict]:
    """(what %det_seed ``line`` means with the runner's lineage in place of its own, what
    the line rebuilt by the runner means)."""
    book = notebook(f"%det_seed {line}")
    reseed_notebook(book, seeding)
    expected = {**vars(_magic_parse(line)), "seed": str(seeding.seed), "load": None,
                "trial": None if seeding.trial is None else str(seeding.trial)}
    if seeding.scheme is not None:
        expected["scheme"] = seeding.scheme
    return expected, vars(_magic_parse(book.cells[0].source.removeprefix("%det_seed ")))


def _every_spelling() -> list[list[str]]:
    """Each option string of each action of the magic's real parser, with a value where it
    takes one."""
    from det_nb.magics import DetMagics

    spellings = []
    for action in DetMagics.det_seed.parser._actions:
        for option in action.option_strings:
            value = [] if action.nargs == 0 else [sorted(action.choices)[0] if action.choices
                                                  else "4"]
            spellings.append([option, *value])
    return spellings


@pytest.mark.parametrize("words", _every_spelling(), ids=" ".join)
def test_every_spelling_of_every_det_seed_option_keeps_its_meaning(words):
    """The runner's rebuilt line means what the notebook's line meant, option by option:
    ``--deterministic-ops`` (strict) was rebuilt as ``--deterministic-ops=warn``."""
    expected, rebuilt = _kept_meaning(shlex.join(words), Seeding(42, 3))
    assert rebuilt == expected


def _det_seed_words() -> st.SearchStrategy[list[str]]:
    """Words for any combination of %det_seed's options, each action at most once, in any
    of its spellings, built from the magic's real parser."""
    from det_nb.magics import DetMagics

    text = st.text(st.characters(exclude_characters="\n\r\x00"), min_size=1, max_size=12)
    per_option = []
    for action in DetMagics.det_seed.parser._actions:
        if not action.option_strings:
            continue
        if action.nargs == 0:  # flags: every spelling
            given = st.sampled_from([[option] for option in action.option_strings])
        else:
            values = (st.sampled_from(sorted({*action.choices, *map(str.upper, action.choices)}))
                      if action.choices else text)
            given = st.builds(_with_value, st.sampled_from(action.option_strings), values,
                              st.booleans())
        per_option.append(st.one_of(st.just([]), given))
    return st.tuples(*per_option).flatmap(
        lambda chosen: st.permutations([words for words in chosen if words])
    ).map(lambda groups: [word for words in groups for word in words])


def _with_value(option: str, value: str, one_word: bool) -> list[str]:
    """``option`` given ``value``: in one word (``--save=x``, ``-tx``) or two (``--save x``,
    when the value cannot pass for an option)."""
    if one_word or value.startswith("-"):
        return [f"{option}={value}" if option.startswith("--") else option + value]
    return [option, value]


@settings(max_examples=300, deadline=None)
@given(seed=st.one_of(st.none(), st.integers(0, 2**31 - 1)), words=_det_seed_words(),
       runner=st.tuples(st.integers(0, 2**31 - 1), st.one_of(st.none(), st.integers(0, 9)),
                        st.sampled_from([None, "seedsequence", "determined"])))
def test_any_det_seed_line_keeps_every_option_but_the_lineage(seed, words, runner):
    """parse(rebuild(parse(line))) == parse(line) but for the lineage, with the magic's
    real parser; a line the magic refuses, the runner refuses."""
    from IPython.core.error import UsageError

    line = shlex.join(([] if seed is None else [str(seed)]) + words)
    try:
        _magic_parse(line)
    except UsageError:
        with pytest.raises(ValueError, match=r"^cell 1: its %det_seed line is refused by the "
                           r"magic: "):
            reseed_notebook(notebook(f"%det_seed {line}"), Seeding(*runner))
        return
    expected, rebuilt = _kept_meaning(line, Seeding(*runner))
    assert rebuilt == expected


def test_a_line_that_would_change_meaning_is_refused(monkeypatch):
    """Rebuilt lines are parsed again: one that lost an option is refused, not run."""
    from det_nb.notebook_runner import det_seed_lines

    rebuild = det_seed_lines._option_words
    monkeypatch.setattr(det_seed_lines, "_option_words", lambda parser, action, value: (
        [] if action.dest == "deterministic_ops" else rebuild(parser, action, value)))
    book = notebook("%det_seed 7 --deterministic-ops --quiet")
    with pytest.raises(ValueError, match=r"^cell 1: its %det_seed line cannot take the "
                       "runner's seed without changing --deterministic-ops/"
                       "--deterministic-ops=warn/--no-deterministic-ops$"):
        reseed_notebook(book, Seeding(42))
    assert book.cells[0].source == "%det_seed 7 --deterministic-ops --quiet"


@pytest.mark.parametrize(("flag", "mode", "setting"), [
    ("--deterministic-ops", [True, False], True),
    ("--no-deterministic-ops", [False, False], False),
    ("--deterministic-ops=warn", [True, True], "warn"),
])
def test_a_run_under_the_runners_seed_keeps_the_deterministic_ops_mode(
    tmp_path, flag, mode, setting
):
    """End to end, as trials run a notebook: strict stays strict, off stays off."""
    from det_nb.notebook_runner import run_notebook

    path = tmp_path / "ops.ipynb"
    nbformat.write(notebook(f"%load_ext det_nb\n%det_seed 1 {flag} --quiet",
                            "import torch\nmode = [torch.are_deterministic_algorithms_enabled(),"
                            " torch.is_deterministic_algorithms_warn_only_enabled()]"), path)
    run = run_notebook(path, seed=42, trial=3, collect=["mode"])
    assert run.error is None
    assert run.record["lineage"]["trial"] == 3
    assert (run.collected["mode"], run.record["settings"]["deterministic_ops"]) == (
        mode, setting)


def write_json(path: Path, document: dict) -> Path:
    path.write_text(json.dumps(document))
    return path


def valid_document() -> dict:
    return json.loads(nbformat.writes(notebook("x = 1")))


@pytest.mark.parametrize(("change", "says"), [
    (lambda d: d["metadata"].update(kernelspec="python3"),
     "metadata.kernelspec: 'python3' is not of type 'object'"),
    (lambda d: d["metadata"].update(kernelspec=["python3"]),
     "metadata.kernelspec: ['python3'] is not of type 'object'"),
    (lambda d: d["cells"][0].update(source=5), "cells.0.source: 5 is not valid"),
    (lambda d: d.update(cells={}), "cells: {} is not of type 'array'"),
])
def test_a_malformed_notebook_is_refused_in_one_line(tmp_path, change, says):
    document = valid_document()
    change(document)
    path = write_json(tmp_path / "bad.ipynb", document)
    with pytest.raises(ValueError) as refused:
        load_notebook(path)
    message = str(refused.value)
    assert message.startswith(f"{str(path)!r} is not a Jupyter notebook: ") and "\n" not in message
    assert says in message


def test_a_notebook_that_is_a_fifo_is_refused_without_waiting(tmp_path):
    fifo = tmp_path / "pipe.ipynb"
    os.mkfifo(fifo)
    with pytest.raises(ValueError, match="is a FIFO, not a regular file"):
        load_notebook(fifo)


def test_an_output_that_is_the_notebook_is_refused(tmp_path):
    book = write_json(tmp_path / "victim.ipynb", valid_document())
    (tmp_path / "link.json").symlink_to(book)
    os.link(book, tmp_path / "hard.json")
    for target in (book, tmp_path / "link.json", tmp_path / "hard.json",
                   tmp_path / "sub" / ".." / "victim.ipynb"):
        with pytest.raises(ValueError, match=r"--out .* is the notebook .*: give --out another"):
            refuse_notebook_target(target, [tmp_path / "other.ipynb", book], "--out")
    refuse_notebook_target(tmp_path / "results.json", [book], "--out")
    # neither exists yet: compared by resolved path
    with pytest.raises(ValueError, match="is the notebook"):
        refuse_notebook_target(tmp_path / "new.ipynb", [tmp_path / "new.ipynb"], "--json")


def _document(minor: int, ids: list[str | None]) -> dict:
    cells = []
    for number, cell_id in enumerate(ids):
        cell = {"cell_type": "code", "metadata": {}, "source": f"x{number} = {number}",
                "outputs": [], "execution_count": None}
        if cell_id is not None:
            cell["id"] = cell_id
        cells.append(cell)
    return {"nbformat": 4, "nbformat_minor": minor, "metadata": {}, "cells": cells}


@pytest.mark.parametrize(("minor", "ids", "repairs"), [
    # Cell ids came with nbformat 4.5; JAX's documentation has 4.0 files that carry them.
    (0, ["a", "b"], ["cell ids in an nbformat 4.0 file (ids came with 4.5): ran as nbformat "
                     "4.5 with new ids"]),
    (4, ["a", None], ["cell ids in an nbformat 4.4 file (ids came with 4.5): ran as nbformat "
                      "4.5 with new ids"]),
    (5, ["a", "a", "b", "a"], ["2 duplicate cell ids: given new ids"]),
    (5, [None, "b"], ["1 cell without an id: given new ids"]),
    (5, ["a", "b"], []),
    (4, [None, None], []),
])
def test_cell_id_problems_are_repaired_in_the_copy_that_runs(tmp_path, minor, ids, repairs):
    path = write_json(tmp_path / "ids.ipynb", _document(minor, ids))
    before = path.read_bytes()
    loaded = load_notebook(path)
    assert list(loaded.repairs) == repairs
    nbformat.validate(loaded.node)  # the copy is valid
    assert [cell.source for cell in loaded.node.cells] == [f"x{n} = {n}" for n in range(len(ids))]
    assert path.read_bytes() == before  # the file is not changed


def test_a_cell_id_nbformat_cannot_repair_is_refused(tmp_path):
    path = write_json(tmp_path / "bad-id.ipynb", _document(5, ["not an id!", "b"]))
    with pytest.raises(ValueError, match=r"is not a Jupyter notebook: cells.0.id: 'not an id!' "
                                         "does not match"):
        load_notebook(path)
