"""IPython magics: parse arguments, call the session, display. Nothing else."""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, ClassVar

from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, line_magic, magics_class
from IPython.core.magic_arguments import (
    MagicHelpFormatter,
    argument,
    kwds,
    magic_arguments,
)
from IPython.display import display
from traitlets import Bool, CaselessStrEnum, Enum, Int, Union
from traitlets.config import Configurable

from det_nb.determinism import WARN, validate_threads
from det_nb.lineage import SCHEMES, Lineage
from det_nb.session import Session, get_session

if TYPE_CHECKING:
    from det_nb.run_record import Record


class _Once(argparse.Action):
    """Store an option's value; an option given twice is an error, not "the last one wins"."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: object, option_string: str | None = None) -> None:
        _refuse_repeat(self, namespace)
        setattr(namespace, self.dest, values)


class _OnceFlag(argparse.BooleanOptionalAction):
    """``--flag`` / ``--no-flag``; giving either twice, or both, is an error."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: object, option_string: str | None = None) -> None:
        _refuse_repeat(self, namespace)
        super().__call__(parser, namespace, values, option_string)


class _DeterministicOps(argparse.Action):
    """``--deterministic-ops`` (True), ``--deterministic-ops=warn`` ("warn") or
    ``--no-deterministic-ops`` (False); once per line.

    The warn mode is an option string of its own (argparse matches a whole word before
    splitting it at "="), so a word after ``--deterministic-ops`` is never taken as its
    value: ``--deterministic-ops 42`` still means the seed 42. :attr:`VALUES` maps each
    option to its value (and back, to rebuild a line).
    """

    VALUES: ClassVar[dict[str, bool | str]] = {
        "--deterministic-ops": True, f"--deterministic-ops={WARN}": WARN,
        "--no-deterministic-ops": False,
    }

    def __init__(self, option_strings: list[str], dest: str, **kwargs: object) -> None:
        super().__init__(list(self.VALUES), dest, nargs=0, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: object, option_string: str | None = None) -> None:
        _refuse_repeat(self, namespace)
        setattr(namespace, self.dest, self.VALUES[option_string])

    def format_usage(self) -> str:
        """All three on the usage line, as argparse shows ``--flag | --no-flag``."""
        return " | ".join(self.option_strings)


def _refuse_bad_mode(words: list[str]) -> None:
    """UsageError for ``--deterministic-ops=VALUE`` other than warn, or ``... warn``."""
    options = words[:words.index("--")] if "--" in words else words
    for index, word in enumerate(options):
        if word.startswith("--deterministic-ops=") and word not in _DeterministicOps.VALUES:
            raise UsageError(
                f"--deterministic-ops takes no value, or =warn (ops without a deterministic "
                f"kernel run and are listed), got {word!r}"
            )
        if word == "--deterministic-ops" and options[index + 1:index + 2] == [WARN]:
            raise UsageError("write --deterministic-ops=warn (with '='): a word after "
                             "--deterministic-ops is the seed")


def _refuse_repeat(action: argparse.Action, namespace: argparse.Namespace) -> None:
    """ArgumentError if ``action``'s value was set on this line already."""
    if getattr(namespace, action.dest) is not action.default:
        raise argparse.ArgumentError(action, "given more than once")


class _HelpFormatter(MagicHelpFormatter):
    """IPython's magic help, showing ``--scheme {a,b}`` as on the usage line (no ``<>``)."""

    def _format_action_invocation(self, action: argparse.Action) -> str:
        return argparse.RawDescriptionHelpFormatter._format_action_invocation(self, action)


def _split(line: str) -> list[str]:
    """A magic's line as words, quoted as in a POSIX shell, backslashes kept as they are.

    IPython's own splitter keeps the quotes, so ``--save "my run.json"`` could not name
    a file with a space; backslashes stay literal for Windows paths.
    """
    lexer = shlex.shlex(line, posix=True)
    lexer.whitespace_split = True
    lexer.commenters = ""
    lexer.escape = ""
    try:
        return list(lexer)
    except ValueError as error:  # "No closing quotation"
        raise UsageError(f"unterminated quote in {line.strip()!r}: close it") from error


def _parse(magic: Callable[..., object], line: str, prefix: str = "%") -> argparse.Namespace:
    """Parse ``line`` with ``magic``'s parser: whole option names only, each option once.

    ``prefix`` is how the magic is typed (``%%`` for a cell magic), for the help hint.
    """
    parser = magic.parser
    parser.allow_abbrev = False  # "--tri 3" must not quietly mean --trial
    words = _split(line)
    _refuse_help(prefix + parser.prog, words)
    _refuse_bad_mode(words)
    return parser.parse_args(words)


def _refuse_help(magic: str, words: list[str]) -> None:
    """UsageError pointing to ``magic?`` when ``-h``/``--help`` is among the options.

    A magic's help is IPython's ``?``; argparse would only call ``--help`` unrecognised.
    Words after ``--`` are values (a file may be named ``--help``).
    """
    options = words[:words.index("--")] if "--" in words else words
    asked = next((word for word in options if word in ("-h", "--help")), None)
    if asked is not None:
        raise UsageError(f"{magic} has no {asked} option: for its help, run {magic}?")


@magics_class
class DetMagics(Magics, Configurable):
    """det_nb's magics; the traits are the defaults of ``%det_seed``'s flags.

    Set them with ``%config DetMagics.single_thread = False`` or in ipython_config.py
    (``c.DetMagics.deterministic_ops = True``).
    """

    scheme = CaselessStrEnum(
        SCHEMES, default_value="seedsequence", config=True,
        help="How the trial seed is derived from (experiment seed, trial).",
    )
    single_thread = Bool(
        True, config=True,
        help="Pin every thread pool that splits float reductions (OpenBLAS/MKL/OpenMP, "
        "torch, TensorFlow, JAX) to one thread: the same floats on machines with any core "
        "count. False leaves each library's own thread count.",
    )
    threads = Int(
        None, allow_none=True, config=True,
        help="Pin every thread pool to this many threads instead (overrides single_thread).",
    )
    deterministic_ops = Union(
        [Bool(), Enum([WARN])], default_value=False, config=True,
        help="Deterministic kernels only: TensorFlow op determinism, torch deterministic "
        "algorithms, XLA's GPU determinism flag for JAX (True), or 'warn': torch runs ops "
        "without a deterministic kernel and det_nb lists them (the run is then NOT "
        "reproducible).",
    )
    per_cell = Bool(
        False, config=True,
        help="Re-seed before every cell from (trial seed, cell text): order-independent draws.",
    )
    portable = Bool(
        True, config=True,
        help="Pin the CPU kernels of libraries not loaded yet to the x86-64-v3 baseline "
        "(AVX2 + FMA), so floats agree across CPU generations. False keeps each library's "
        "choice for this CPU (can be faster).",
    )
    quiet = Bool(
        False, config=True,
        help="Apply without printing the summary (an assigned seed is still shown).",
    )

    def __init__(self, shell=None, session: Session | None = None, **kwargs) -> None:
        super().__init__(shell=shell, **kwargs)
        self.session = session or get_session()

    @magic_arguments()
    @kwds(formatter_class=_HelpFormatter)
    @argument(
        "seed", nargs="?",
        help="Experiment seed, an integer in [0, 2**31-1]. Omitted: det_nb assigns one from "
        "the clock and shows it.",
    )
    @argument("--trial", "-t", action=_Once,
              help="Trial number in [0, 2**31-1] (scheme determined: from 1).")
    @argument(
        "--scheme", choices=SCHEMES, type=str.lower, action=_Once,
        help="How the trial seed is derived: seedsequence (default; NumPy SeedSequence of "
        "experiment seed and trial) or determined (the seed Determined's master gives the "
        "trial-th trial it creates).",
    )
    @argument(
        "--threads", metavar="N", action=_Once,
        help="Pin every thread pool that splits float reductions to N threads (default: 1, "
        "single-thread); floats then match machines that pin N.",
    )
    @argument(
        "--single-thread", action=_OnceFlag, default=None,
        help="Pin every thread pool to one thread (default), or --no-single-thread to leave "
        "each library's own thread count.",
    )
    @argument(
        "--deterministic-ops", action=_DeterministicOps, default=None,
        help="Deterministic kernels only: TensorFlow op determinism, torch deterministic "
        "algorithms and XLA's GPU determinism flag for JAX; an op without a deterministic "
        "kernel raises. =warn: torch runs such ops and the status lists them with their "
        "counts (the run is then NOT reproducible). Default off.",
    )
    @argument(
        "--per-cell", action=_OnceFlag, default=None,
        help="Re-seed every source before each cell from (trial seed, the cell's source text), "
        "so re-running a cell in any order repeats its draws (default off).",
    )
    @argument(
        "--portable", action=_OnceFlag, default=None,
        help="Pin CPU kernels (OpenBLAS, NumPy SIMD, oneDNN, MKL, ATen, XLA) to the "
        "x86-64-v3 baseline so floats agree across CPUs (default), or --no-portable for "
        "each library's own choice. Acts on libraries not imported yet.",
    )
    @argument("--save", metavar="PATH", action=_Once,
              help="Write a JSON run record: lineage, settings, status and environment. "
              "Quote a path with spaces.")
    @argument("--load", metavar="PATH", action=_Once,
              help="Replay a run record's lineage and settings, and list what differs here.")
    @argument("--quiet", "-q", action=_OnceFlag, default=None,
              help="Print nothing but an assigned seed (without it the run cannot be "
              "repeated).")
    @line_magic
    def det_seed(self, line: str) -> None:
        """Seed every PRNG in the kernel from an experiment seed and trial, and report.

        Python random, NumPy, TensorFlow, Keras, PyTorch and JAX where installed, also
        those imported later. Every thread pool that splits float reductions runs one
        thread unless told otherwise.
        """
        args = _parse(self.det_seed, line)
        _check_combination(args)
        from det_nb import run_record

        differences: list[str] = []
        try:
            record = None if args.load is None else run_record.load(args.load)
            apply = partial(self._seed_or_replay, args, record, differences)
            if args.save is None:
                apply()
            else:  # the record is written and the seed in force, or neither
                run_record.seed_and_save(self.session, args.save, apply)
        except ValueError as error:
            raise UsageError(str(error)) from None
        if _given(args.quiet, self.quiet):
            lineage = self.session.lineage
            if lineage is not None and lineage.experiment_seed_origin == "assigned":
                print(f"experiment seed {lineage.experiment_seed} assigned from the clock; "
                      f"repeat with: {lineage.command()}")
            return
        if args.load is not None:
            print(_differences_text(differences))
        self._show_dashboard()

    def _seed_or_replay(self, args: argparse.Namespace, record: Record | None,
                        differences: list[str]) -> Lineage:
        """Apply ``%det_seed``'s line: replay ``record`` (its differences into
        ``differences``), or seed from the arguments and the configured defaults."""
        from det_nb import run_record

        if record is not None:
            differences.extend(run_record.replay(self.session, record))
            return self.session.lineage
        return self.session.seed(
            args.seed,
            args.trial,
            scheme=args.scheme or self.scheme,
            threads=self._threads(args),
            deterministic_ops=_given(args.deterministic_ops, self.deterministic_ops),
            per_cell=_given(args.per_cell, self.per_cell),
            portable=_given(args.portable, self.portable),
        )

    def _show_dashboard(self) -> None:
        from det_nb.dashboard import dashboard_for

        display(dashboard_for(self.session))

    @magic_arguments()
    @argument("--runs", "-n", default=2, metavar="N", action=_Once,
              help="How many times to run the cell (2 to 1000, default 2).")
    @cell_magic
    def det_check(self, line: str, cell: str) -> None:
        """Run the cell N times, re-seeding before each run, and compare what it produced.

        Names the cell assigned or changed are fingerprinted after every run; the report
        says "deterministic across N runs" or, per differing name, what differs. Values
        that cannot be fingerprinted are listed as unchecked. The namespace ends as after
        the last run.
        """
        from det_nb.check import run_check

        args = _parse(self.det_check, line, "%%")
        try:  # run_check refuses a bad --runs before running anything
            report = run_check(self.shell, cell, runs=args.runs, reseed=self.session.reseed)
        except ValueError as error:
            raise UsageError(str(error)) from None
        display(report)

    def before_cell(self, info: object) -> None:
        """``pre_run_cell`` event: per-cell re-seeding, keyed by the cell's source text."""
        self.session.before_cell(info.raw_cell)

    def after_cell(self, result: object) -> None:
        """``post_run_cell`` event: note an op that strict determinism refused, and a
        dashboard on screen shows the draws the cell made."""
        from det_nb import nondeterministic_ops

        nondeterministic_ops.note_error(result.error_in_exec)
        if "det_nb.dashboard" in sys.modules:  # never import ipywidgets just for this
            from det_nb.dashboard import refresh_dashboard

            refresh_dashboard(self.session)

    def _threads(self, args: argparse.Namespace) -> int | None:
        """Threads to pin: --threads, else --single-thread, else the configured default."""
        if args.threads is not None:
            return validate_threads(args.threads, "--no-single-thread")
        if args.single_thread is None and self.threads is not None:
            return self.threads
        return 1 if _given(args.single_thread, self.single_thread) else None

    @line_magic
    def det_status(self, line: str) -> None:
        """Show the seed lineage and the determinism status; changes nothing."""
        _refuse_help("%det_status", line.split())
        if line.strip():
            raise UsageError(f"%det_status takes no arguments, got {line.strip()!r}")
        self._show_dashboard()

    @magic_arguments()
    @argument("action", choices=("save", "restore"),
              help="save: write every seeded source's PRNG state; restore: put it back.")
    @argument("path", help="The state file (.npz; no pickle).")
    @line_magic
    def det_state(self, line: str) -> None:
        """Save or restore the PRNG state of every seeded source, to pause and resume.

        Python random, NumPy's global state, TensorFlow's global generator, Keras's global
        SeedGenerator, torch (CPU and CUDA) and det_nb.rng(). Restoring needs the lineage
        the state was saved under; a bad or mismatched file changes nothing.
        """
        from det_nb import state
        from det_nb.files import printable

        args = _parse(self.det_state, line)
        try:
            if args.action == "save":
                saved = state.save(self.session, args.path)
                print(f"saved PRNG state to {printable(saved.name)}")
            else:
                print("\n".join(state.restore(self.session, args.path)))
        except ValueError as error:
            raise UsageError(str(error)) from None


def _check_combination(args: argparse.Namespace) -> None:
    """UsageError for a ``%det_seed`` line whose options contradict or are empty."""
    for option in ("save", "load"):
        path = getattr(args, option)
        if path is not None and not path.strip():
            raise UsageError(f"--{option} needs a file path, got {path!r}")
    if args.threads is not None and args.single_thread is False:
        raise UsageError("--threads N pins every thread pool and --no-single-thread "
                         "leaves them alone: give one of them")
    settings_given = (args.seed, args.trial, args.scheme, args.threads, args.single_thread,
                      args.deterministic_ops, args.per_cell, args.portable)
    if args.load is not None and any(value is not None for value in settings_given):
        raise UsageError("--load replays the recorded seed and settings: give no seed, "
                         "trial or setting with it")


def _differences_text(differences: list[str]) -> str:
    """What the replayed record's environment has that this one does not."""
    if not differences:
        return "replayed the run record; its environment matches this one"
    lines = "\n".join(f"  - {difference}" for difference in differences)
    return f"replayed the run record; differences that can change results:\n{lines}"


def _given(flag: bool | str | None, default: bool | str) -> bool | str:
    """A flag's value when given on the line, else the configured default."""
    return default if flag is None else flag
