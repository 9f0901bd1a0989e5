"""Reading a notebook for a run: refused in one line when unreadable, repaired where nbformat can.

A notebook is read through :func:`det_nb.files.read_limited` (a FIFO or device is
refused, never waited on) and checked against the nbformat 4 schema before any kernel
starts, so a notebook whose kernelspec is a string or whose cell source is a number is
refused here, not half-way through a run.

Schema problems that Jupyter, nbclient and nbconvert run through without complaint are
repaired in the copy that runs, with nbformat's own functions, and each repair is named
in one line for the report: cell ids in an nbformat 4.0-4.4 file (the ids came with 4.5:
the copy is upgraded to 4.5, as ``nbformat.v4.upgrade`` does), and duplicate or missing
cell ids in a 4.5 file (``nbformat.validator.normalize``). The file itself is never
changed.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from typing import Any

#: Larger notebooks are refused before they are read (outputs with images included).
MAX_NOTEBOOK_BYTES = 256 << 20


@dataclass(frozen=True)
class LoadedNotebook:
    """A valid nbformat 4 notebook, and the repairs made to it (one line each)."""

    node: Any  # nbformat.NotebookNode
    repairs: tuple[str, ...] = ()


def load_notebook(path: str | os.PathLike[str]) -> LoadedNotebook:
    """Read, repair and validate the notebook at ``path``; ValueError (one line) if unreadable.

    Unreadable: not UTF-8, not JSON, not a notebook, a schema error nbformat cannot
    repair, a cell whose source is not text, or a kernel language other than Python.
    """
    import nbformat
    from nbformat import reader

    from det_nb.files import read_limited, shown

    raw = read_limited(path, "notebook", MAX_NOTEBOOK_BYTES)
    where = shown(path)
    try:
        notebook = nbformat.convert(reader.reads(raw.decode("utf-8-sig")), 4)
        repairs = _repair(notebook)
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
    return LoadedNotebook(notebook, tuple(repairs))


def _repair(notebook: Any) -> list[str]:
    """Repair, in place, the cell-id problems nbformat knows how to repair; say which."""
    from nbformat import v4, validator

    repairs = []
    minor = notebook.get("nbformat_minor")
    cells = notebook.get("cells")
    if not isinstance(cells, list) or not all(isinstance(cell, dict) for cell in cells):
        return repairs  # validation names the problem
    if isinstance(minor, int) and minor < 5 and any("id" in cell for cell in cells):
        v4.upgrade(notebook, from_version=4, from_minor=minor)
        repairs.append(f"cell ids in an nbformat 4.{minor} file (ids came with 4.5): "
                       "ran as nbformat 4.5 with new ids")
    minor = notebook.get("nbformat_minor")
    if isinstance(minor, int) and minor >= 5:
        ids = [cell.get("id") for cell in cells]
        missing = sum(cell_id is None for cell_id in ids)
        given = [cell_id for cell_id in ids if cell_id is not None]
        duplicates = len(given) - len(set(given))
        if missing or duplicates:
            with warnings.catch_warnings():  # said once, in the report, instead
                warnings.simplefilter("ignore")
                _, repaired = validator.normalize(notebook)
            notebook.cells = repaired.cells
        if missing:
            repairs.append(f"{missing} cell{'s' * (missing != 1)} without an id: given new ids")
        if duplicates:
            repairs.append(f"{duplicates} duplicate cell id{'s' * (duplicates != 1)}: "
                           "given new ids")
    return repairs


def _schema_problem(error: Exception) -> str:
    """The first line of a reading or validation error, with where in the notebook it is."""
    from det_nb.files import printable

    lines = str(error).strip().splitlines()
    first = printable(lines[0]) if lines else type(error).__name__
    location = getattr(error, "absolute_path", None) if hasattr(error, "original") else None
    if location:
        first = f"{'.'.join(str(part) for part in location)}: {first}"
    return first[:200]
