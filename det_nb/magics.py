"""IPython magics: parse arguments, call the session, display. Nothing else."""

from __future__ import annotations

import argparse

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_magic, magics_class
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
    quiet = Bool(False, config=True, help="Apply without printing the summary.")

    def __init__(self, shell=None, session: Session | None = None, **kwargs) -> None:  # noqa: ANN001
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
        "--scheme", choices=SCHEMES,
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
        try:
            self.session.seed(
                args.seed[0] if args.seed else None,
                args.trial,
                scheme=args.scheme or self.scheme,
                threads=self._threads(args),
                deterministic_ops=_given(args.deterministic_ops, self.deterministic_ops),
            )
        except ValueError as error:
            raise UsageError(str(error)) from None
        if not _given(args.quiet, self.quiet):
            display(self.session.status())

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
        display(self.session.status())


def _given(flag: bool | None, default: bool) -> bool:
    """A flag's value when given on the line, else the configured default."""
    return default if flag is None else flag
