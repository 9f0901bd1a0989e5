"""IPython magics: parse arguments, call the session, display. Nothing else."""

from __future__ import annotations

import argparse
import sys

from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring
from IPython.display import display
from traitlets import Bool, CaselessStrEnum, Int
from traitlets.config import Configurable

from det_nb.lineage import SCHEMES
from det_nb.session import Session, get_session


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
        help="Pin TensorFlow to one intra- and one inter-op thread (reproducible floats "
        "across machines). False leaves TensorFlow's thread pools alone.",
    )
    threads = Int(
        None, allow_none=True, config=True,
        help="Pin TensorFlow to this many threads instead (overrides single_thread).",
    )
    deterministic_ops = Bool(
        False, config=True,
        help="Enable TensorFlow op determinism and torch deterministic algorithms.",
    )
    per_cell = Bool(
        False, config=True,
        help="Re-seed before every cell from (trial seed, cell text): order-independent draws.",
    )
    quiet = Bool(False, config=True, help="Apply without printing the summary.")

    def __init__(self, shell=None, session: Session | None = None, **kwargs) -> None:
        super().__init__(shell=shell, **kwargs)
        self.session = session or get_session()

    @magic_arguments()
    @argument(
        "seed", nargs="*",
        help="Experiment seed, an integer in [0, 2**31-1]. Omitted: det_nb assigns one from "
        "the clock and shows it.",
    )
    @argument("--trial", "-t", help="Trial number in [0, 2**31-1] (scheme determined: from 1).")
    @argument(
        "--scheme", choices=SCHEMES, type=str.lower,
        help="How the trial seed is derived: seedsequence (default; NumPy SeedSequence of "
        "experiment seed and trial) or determined (the seed Determined's master gives the "
        "trial-th trial it creates).",
    )
    @argument(
        "--threads", metavar="N",
        help="Pin TensorFlow to N intra- and inter-op threads (default: 1, single-thread).",
    )
    @argument(
        "--single-thread", action=argparse.BooleanOptionalAction, default=None,
        help="Pin TensorFlow to one thread (default), or --no-single-thread to leave it alone.",
    )
    @argument(
        "--deterministic-ops", action=argparse.BooleanOptionalAction, default=None,
        help="Enable TensorFlow op determinism and torch deterministic algorithms "
        "(default off).",
    )
    @argument(
        "--per-cell", action=argparse.BooleanOptionalAction, default=None,
        help="Re-seed every source before each cell from (trial seed, the cell's source text), "
        "so re-running a cell in any order repeats its draws (default off).",
    )
    @argument("--save", metavar="PATH",
              help="Write a JSON run record: lineage, settings, status and environment.")
    @argument("--load", metavar="PATH",
              help="Replay a run record's lineage and settings, and list what differs here.")
    @argument("--quiet", "-q", action="store_true", default=None, help="Print nothing.")
    @line_magic
    def det_seed(self, line: str) -> None:
        """Seed every PRNG in the kernel from an experiment seed and trial, and report.

        Python random, NumPy, TensorFlow, Keras, PyTorch and JAX where installed, also
        those imported later. TensorFlow runs single-threaded unless told otherwise.
        """
        args = parse_argstring(self.det_seed, line)
        if len(args.seed) > 1:
            raise UsageError(
                f"give one experiment seed, got {len(args.seed)}: {' '.join(args.seed)}"
            )
        if args.threads is not None and args.single_thread is False:
            raise UsageError("--threads N pins TensorFlow's threads and --no-single-thread "
                             "leaves them alone: give one of them")
        settings_given = (args.seed, args.trial, args.scheme, args.threads, args.single_thread,
                          args.deterministic_ops, args.per_cell)
        if args.load and any(value not in (None, []) for value in settings_given):
            raise UsageError("--load replays the recorded seed and settings: give no seed, "
                             "trial or setting with it")
        from det_nb import run_record

        differences: list[str] = []
        try:
            if args.save:
                run_record.writable_target(args.save)  # before anything changes
            if args.load:
                differences = run_record.replay(self.session, run_record.load(args.load))
            else:
                self.session.seed(
                    args.seed[0] if args.seed else None,
                    args.trial,
                    scheme=args.scheme or self.scheme,
                    threads=self._threads(args),
                    deterministic_ops=_given(args.deterministic_ops, self.deterministic_ops),
                    per_cell=_given(args.per_cell, self.per_cell),
                )
            if args.save:
                run_record.save(self.session, args.save)
        except ValueError as error:
            raise UsageError(str(error)) from None
        if _given(args.quiet, self.quiet):
            return
        if args.load:
            print(_differences_text(differences))
        self._show_dashboard()

    def _show_dashboard(self) -> None:
        from det_nb.dashboard import dashboard_for

        display(dashboard_for(self.session))

    @magic_arguments()
    @argument("--runs", "-n", type=int, default=2, metavar="N",
              help="How many times to run the cell (at least 2, default 2).")
    @cell_magic
    def det_check(self, line: str, cell: str) -> None:
        """Run the cell N times, re-seeding before each run, and compare what it produced.

        Names the cell assigned or changed are fingerprinted after every run; the report
        says "deterministic across N runs" or, per differing name, what differs. Values
        that cannot be fingerprinted are listed as unchecked. The namespace ends as after
        the last run.
        """
        from det_nb.check import run_check, validate_runs

        args = parse_argstring(self.det_check, line)
        try:
            runs = validate_runs(args.runs)
            report = run_check(self.shell, cell, runs=runs, reseed=self.session.reseed)
        except ValueError as error:
            raise UsageError(str(error)) from None
        display(report)

    def before_cell(self, info: object) -> None:
        """``pre_run_cell`` event: per-cell re-seeding, keyed by the cell's source text."""
        self.session.before_cell(info.raw_cell)

    def after_cell(self, result: object) -> None:
        """``post_run_cell`` event: a dashboard on screen shows the draws the cell made."""
        if "det_nb.dashboard" in sys.modules:  # never import ipywidgets just for this
            from det_nb.dashboard import refresh_dashboard

            refresh_dashboard(self.session)

    def _threads(self, args: argparse.Namespace) -> object:
        if args.threads is not None:
            return args.threads
        if args.single_thread is None and self.threads is not None:
            return self.threads
        return 1 if _given(args.single_thread, self.single_thread) else None

    @line_magic
    def det_status(self, line: str) -> None:
        """Show the seed lineage and the determinism status; changes nothing."""
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

        args = parse_argstring(self.det_state, line)
        try:
            if args.action == "save":
                print(f"saved PRNG state to {state.save(self.session, args.path).name}")
            else:
                print("\n".join(state.restore(self.session, args.path)))
        except ValueError as error:
            raise UsageError(str(error)) from None


def _differences_text(differences: list[str]) -> str:
    """What the replayed record's environment has that this one does not."""
    if not differences:
        return "replayed the run record; its environment matches this one"
    lines = "\n".join(f"  - {difference}" for difference in differences)
    return f"replayed the run record; differences that can change results:\n{lines}"


def _given(flag: bool | None, default: bool) -> bool:
    """A flag's value when given on the line, else the configured default."""
    return default if flag is None else flag
