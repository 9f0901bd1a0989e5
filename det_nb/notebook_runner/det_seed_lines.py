"""A run under the runner's lineage: the notebook's ``%det_seed`` lines take its seed and trial.

Each ``%det_seed`` line is parsed with the magic's own parser
(``det_nb.magics.DetMagics.det_seed.parser``, words split as the magic splits them) and
rebuilt from what it parsed: the seed and trial (and the scheme, when the runner gives
one) are the runner's, ``--load`` is dropped (it would replay another lineage), and every
other option keeps its value. The rebuilding walks the parser's own actions, so an
option the magic gains later is carried over without a change here; a flag spelt in
several ways, each with a value of its own (``--deterministic-ops``,
``--deterministic-ops=warn``, ``--no-deterministic-ops``), keeps its spelling. The
rebuilt line is parsed again and refused unless every kept option has its value. A line
the magic would refuse (its parser, or a contradiction it refuses) is refused here,
before any kernel starts.

A notebook without a ``%det_seed`` line is seeded before its first cell: the caller
passes the :class:`Seeding` to the kernel run explicitly (nothing in the notebook file
can ask for seeding).
"""

from __future__ import annotations

import argparse
import re
import shlex
from dataclasses import dataclass
from typing import Any

#: A ``%det_seed`` line magic, with its indentation and arguments.
_DET_SEED_LINE = re.compile(r"^(?P<indent>[ \t]*)%det_seed(?P<args>(?:[ \t].*)?)$", re.MULTILINE)
#: Parsed options the runner replaces or drops; "scheme" only when it gives one.
_REPLACED = ("seed", "trial", "load")


@dataclass(frozen=True)
class Seeding:
    """The lineage a run imposes: experiment seed, trial (None: none), scheme (None: the
    notebook's own, else the default)."""

    seed: int
    trial: int | None = None
    scheme: str | None = None

    def __post_init__(self) -> None:
        if self.scheme is not None:
            from det_nb.lineage import validate_scheme

            validate_scheme(self.scheme)
        for number, name in ((self.seed, "seed"), (self.trial, "trial")):
            if number is not None and (
                isinstance(number, bool) or not isinstance(number, int)
                or not 0 <= number < 2**31
            ):
                raise ValueError(f"{name} must be an integer in [0, 2**31-1], got {number!r}")

    def magic_arguments(self) -> str:
        """The arguments of a ``%det_seed`` line that applies this seeding."""
        words = [str(self.seed)]
        if self.trial is not None:
            words += ["--trial", str(self.trial)]
        if self.scheme is not None:
            words += ["--scheme", self.scheme]
        return " ".join(words)


def seeding_from(seed: int | None, trial: int | None, scheme: str | None) -> Seeding | None:
    """The :class:`Seeding` for a run's arguments, or None (run as the notebook says).

    ValueError (one line) for a trial or scheme without a seed, or a value out of range.
    """
    if seed is None:
        if trial is not None or scheme is not None:
            raise ValueError("a trial or scheme needs an experiment seed: give seed too")
        return None
    return Seeding(seed, trial, scheme)


def reseed_notebook(notebook: Any, seeding: Seeding) -> bool:
    """Make every ``%det_seed`` line in ``notebook`` (in place) apply ``seeding``.

    Returns whether the notebook had such a line. Every line is parsed before any is
    changed: ValueError (one line, naming the code cell) for a line the magic refuses,
    and then the notebook is left as it was.
    """
    rewritten: dict[int, str] = {}
    code_cells = [cell for cell in notebook.cells if cell.cell_type == "code"]
    for number, cell in enumerate(code_cells, start=1):
        def rebuilt(match: re.Match[str], number: int = number) -> str:
            return match["indent"] + "%det_seed " + _rebuilt_arguments(
                match["args"], seeding, number)

        source, count = _DET_SEED_LINE.subn(rebuilt, cell.source)
        if count:
            rewritten[number] = source
    for number, source in rewritten.items():
        code_cells[number - 1].source = source
    return bool(rewritten)


def _rebuilt_arguments(arguments: str, seeding: Seeding, cell: int) -> str:
    """``%det_seed``'s ``arguments`` with the seeding's lineage, as one quoted line.

    Parsed as the magic parses (and refused where it refuses), rebuilt from the parser's
    actions, then parsed again: every option the runner does not replace must come back
    with the value it had, or the line is refused rather than run with another meaning.
    """
    from IPython.core.error import UsageError

    from det_nb.files import printable
    from det_nb.magics import DetMagics, _check_combination, _parse

    magic = DetMagics.det_seed
    try:
        parsed = _parse(magic, arguments)
        _check_combination(parsed)
    except (UsageError, argparse.ArgumentError) as error:
        raise ValueError(f"cell {cell}: its %det_seed line is refused by the magic: "
                         f"{printable(str(error))}") from None
    replaced = {*_REPLACED, *(("scheme",) if seeding.scheme is not None else ())}
    kept = [action for action in magic.parser._actions if action.dest not in replaced]
    words = seeding.magic_arguments().split()
    for action in kept:
        words += _option_words(magic.parser, action, getattr(parsed, action.dest, None))
    line = shlex.join(words)
    again = _parse(magic, line)
    for action in kept:
        if getattr(again, action.dest, None) != getattr(parsed, action.dest, None):
            raise ValueError(f"cell {cell}: its %det_seed line cannot take the runner's seed "
                             f"without changing {'/'.join(action.option_strings)}")
    return line


def _option_words(parser: argparse.ArgumentParser, action: argparse.Action,
                  value: object) -> list[str]:
    """The words that give ``action`` the parsed ``value``; none when it was not given.

    Generic over argparse's kinds of option, so that an option the magic gains (a flag,
    a value, an optional value, a repeatable one) is carried over as it was given. An
    option that takes no value is given by the option string that sets ``value`` when
    ``action`` is applied to it: a flag with several spellings, each setting a value of
    its own (``--deterministic-ops``, ``--deterministic-ops=warn``,
    ``--no-deterministic-ops``), keeps the one it was given.
    """
    if value is None or value == action.default:
        return []
    if not action.option_strings:  # another positional argument
        return [str(item) for item in value] if isinstance(value, list) else [str(value)]
    longest = max(action.option_strings, key=len)
    if isinstance(action, argparse._CountAction):
        return [longest] * int(value)
    if action.nargs == 0:  # store_true, store_const, --flag/--no-flag and the like
        option = _option_setting(parser, action, value)
        return [] if option is None else [option]
    if action.nargs == "?" and value == action.const:  # given without its optional value
        return [longest]
    if isinstance(action, argparse._AppendAction):
        return [f"{longest}={item}" for item in value]
    if isinstance(value, list):  # nargs "*", "+" or a number
        return [longest, *map(str, value)]
    return [f"{longest}={value}"]


def _option_setting(parser: argparse.ArgumentParser, action: argparse.Action,
                    value: object) -> str | None:
    """The option string of a flag-like ``action`` that, given alone, sets ``value``
    (spelt-out options first); None if none does (the rebuilt line is then refused)."""
    spellings = sorted(action.option_strings, key=lambda option: not option.startswith("--"))
    for option in spellings:
        namespace = argparse.Namespace(**{action.dest: action.default})
        action(parser, namespace, [], option)
        if getattr(namespace, action.dest) == value:
            return option
    return None
