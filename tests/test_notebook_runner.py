"""The shared notebook runner: the runner's lineage replaces the notebook's own."""

from __future__ import annotations

import nbformat
import pytest

from det_nb.notebook_runner import prepare_seed


def notebook(*sources: str) -> nbformat.NotebookNode:
    return nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in sources])


@pytest.mark.parametrize(("line", "expected"), [
    ("%det_seed 7 --trial 2 --threads 4", "%det_seed 42 --trial 3 --threads 4"),
    ("%det_seed --scheme determined --per-cell",
     "%det_seed 42 --trial 3 --scheme determined --per-cell"),
    ("%det_seed 7 --load run.json", "%det_seed 42 --trial 3"),
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
