"""The shared notebook runner: the runner's lineage replaces the notebook's own, and a
notebook that is not a valid one (or an output that would replace it) is refused in one line."""

from __future__ import annotations

import json
import os
from pathlib import Path

import nbformat
import pytest

from det_nb.notebook_runner import load_notebook, prepare_seed, refuse_notebook_target


def notebook(*sources: str) -> nbformat.NotebookNode:
    return nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in sources])


@pytest.mark.parametrize(("line", "expected"), [
    ("%det_seed 7 --trial 2 --threads 4", "%det_seed 42 --trial 3 --threads 4"),
    ("%det_seed --scheme determined --per-cell",
     "%det_seed 42 --trial 3 --scheme determined --per-cell"),
    ("%det_seed 7 --load run.json", "%det_seed 42 --trial 3"),
    # Short options with their value attached, combined, or both: the trial part goes.
    ("%det_seed 7 -t3", "%det_seed 42 --trial 3"),
    ("%det_seed 7 -t=3 --per-cell", "%det_seed 42 --trial 3 --per-cell"),
    ("%det_seed 7 -qt3 --threads 4", "%det_seed 42 --trial 3 -q --threads 4"),
    ("%det_seed 7 -qt 3 --no-portable", "%det_seed 42 --trial 3 -q --no-portable"),
    ("%det_seed 7 -t 3 -q", "%det_seed 42 --trial 3 -q"),
])
def test_det_seed_lines_take_the_runners_seed_and_trial_and_keep_other_flags(line, expected):
    book = notebook("import numpy", line)
    prepare_seed(book, 42, 3)
    assert book.cells[1].source == expected
    assert "det_nb_seed" not in book.metadata


def test_a_scheme_given_to_the_runner_replaces_the_notebooks():
    book = notebook("%det_seed 7 --scheme seedsequence --quiet")
    prepare_seed(book, 42, 1, "determined")
    assert book.cells[0].source == "%det_seed 42 --trial 1 --scheme determined --quiet"


def test_a_notebook_without_det_seed_is_seeded_before_its_first_cell():
    book = notebook("x = 1")
    prepare_seed(book, 42, 1, "determined")
    assert book.metadata["det_nb_seed"] == {"seed": 42, "trial": 1, "scheme": "determined"}


@pytest.mark.parametrize(("arguments", "message"), [
    ((None, 3, None), "a trial or scheme needs an experiment seed"),
    ((42, 3, "nope"), "scheme must be one of seedsequence, determined, got 'nope'"),
    ((-1, None, None), r"seed must be an integer in \[0, 2\*\*31-1\], got -1"),
])
def test_bad_runner_lineage_is_one_line(arguments, message):
    book = notebook("%det_seed 7")
    with pytest.raises(ValueError, match=message):
        prepare_seed(book, *arguments)
    assert book.cells[0].source == "%det_seed 7"


@pytest.mark.parametrize("line", ["%det_seed 7 -t3 -q", "%det_seed 7 -qt3", "%det_seed 7 -qt 5"])
def test_a_rewritten_line_with_short_options_runs_in_a_real_shell(shell, line):
    book = notebook(line)
    prepare_seed(book, 42, 3)
    shell.run_line_magic("load_ext", "det_nb")
    magic_line = book.cells[0].source.removeprefix("%det_seed ")
    shell.run_line_magic("det_seed", magic_line)  # raised "--trial given more than once"
    import det_nb

    assert (det_nb.lineage().experiment_seed, det_nb.lineage().trial) == (42, 3)


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
