"""Checks shared by the ``verify`` and ``trials`` command lines, before anything runs.

Each raises ValueError with one line that says what was wrong: an option given twice, a
collected name that is not a Python name, an output file that would replace a notebook.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from pathlib import Path


def refuse_repeated_options(parser: argparse.ArgumentParser, argv: Sequence[str]) -> None:
    """ValueError (one line) for an option given twice: an error, not "the last one wins".

    Options that collect (``append``) may repeat. Like ``%det_seed``'s parser, which
    refuses ``--trial 3 --trial 4``. Call it with a parser that allows no abbreviations.
    """
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
