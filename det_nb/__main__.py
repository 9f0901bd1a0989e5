"""Command-line tools of det_nb: deterministic Jupyter kernels, notebook checks, trials."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable

from det_nb import command_line, kernel
from det_nb.lineage import SCHEMES, validate_seed

# Commands whose module parses its own arguments: name -> (module, one-line help). The
# module is imported only when its command runs, so ``kernel`` stays fast.
DELEGATED = {
    "verify": ("det_nb.verify", "prove notebooks reproducible: run them in fresh kernels and "
               "compare cell by cell"),
    "trials": ("det_nb.trials", "run one notebook as many seeded trials on Dask, collect and "
               "verify them"),
}


def _checked(validate: Callable[[str], object]) -> Callable[[str], object]:
    """An argparse ``type`` from a det_nb validator: its message becomes the usage error."""
    def parse(text: str) -> object:
        try:
            return validate(text)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    return parse


def _folder(text: str) -> str:
    """A non-empty folder name (an empty ``--prefix`` would mean a system-wide install)."""
    if not text.strip():
        raise ValueError(f"give a folder, got {text!r}")
    return text


def _text(text: str) -> str:
    """A non-empty text (an empty one would be silently replaced by the default)."""
    if not text.strip():
        raise ValueError(f"give a text, got {text!r}")
    return text


def _parsers() -> tuple[argparse.ArgumentParser, argparse.ArgumentParser]:
    """The command's parser, and the install sub-command's (for its usage errors)."""
    parser = argparse.ArgumentParser(prog="python -m det_nb", description=__doc__,
                                     allow_abbrev=False)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    kernel_command = commands.add_parser(
        "kernel", help="install, list or remove deterministic Jupyter kernels",
        description="Jupyter kernels that set what only acts at process start "
        "(PYTHONHASHSEED, thread pools, op determinism, cuBLAS workspace, portable "
        "CPU kernels), load det_nb and, given a seed, run %det_seed before the first cell.",
        allow_abbrev=False,
    )
    for name, (_, summary) in DELEGATED.items():  # parsed by their module (see main)
        commands.add_parser(name, help=summary, add_help=False)
    actions = kernel_command.add_subparsers(dest="action", required=True, metavar="ACTION")

    install = actions.add_parser("install", help="install a det_nb kernelspec",
                                 allow_abbrev=False)
    install.add_argument("--name", default=kernel.DEFAULT_NAME,
                         type=_checked(kernel.validate_name),
                         help="kernelspec name: lower-case letters, digits, . _ -, with at "
                         f"least one letter or digit (default: {kernel.DEFAULT_NAME})")
    install.add_argument("--display-name", metavar="TEXT", type=_checked(_text),
                         help="name shown in Jupyter (default: says what is fixed)")
    install.add_argument("--seed", type=_checked(lambda text: validate_seed(text, "seed")),
                         metavar="S",
                         help="experiment seed: run %%det_seed S before the first cell")
    install.add_argument("--trial", type=_checked(lambda text: validate_seed(text, "trial")),
                         metavar="T", help="trial number (needs --seed)")
    install.add_argument("--scheme", choices=SCHEMES, default="seedsequence",
                         help="trial seed derivation (default: seedsequence)")
    install.add_argument("--threads", type=_checked(kernel.validate_kernel_threads), default=1,
                         metavar="N", help="threads of every pool that splits float "
                         "reductions: BLAS/OpenMP, torch, TensorFlow, JAX (default: 1)")
    install.add_argument("--deterministic-ops", action="store_true",
                         help="TF_DETERMINISTIC_OPS=1 and %%det_seed --deterministic-ops")
    install.add_argument("--no-portable", dest="portable", action="store_false",
                         help="leave CPU kernels to each library's choice for this CPU "
                         "(default: pinned to the x86-64-v3 baseline, the same floats on "
                         "every x86-64 CPU since about 2015)")
    where = install.add_mutually_exclusive_group()
    where.add_argument("--user", action="store_true",
                       help="install for this user (the default)")
    where.add_argument("--sys-prefix", action="store_true",
                       help=f"install into this Python's prefix ({sys.prefix})")
    where.add_argument("--prefix", metavar="DIR", type=_checked(_folder),
                       help="install into DIR/share/jupyter/kernels")

    actions.add_parser("list", help="list the det_nb kernelspecs Jupyter finds")
    uninstall = actions.add_parser("uninstall", help="remove a det_nb kernelspec")
    uninstall.add_argument("name", metavar="NAME")
    return parser, install


def main(argv: list[str] | None = None) -> int:
    """Run the command; 0 on success, 1 when it fails, 2 on bad arguments.

    Every command runs under :func:`det_nb.command_line.run`: Ctrl-C, SIGTERM and a
    closed stdout end in one line (or none) and exit 130, 143 or 141.
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] in DELEGATED:
        name = argv[0]

        def delegated() -> int:
            module = importlib.import_module(DELEGATED[name][0])
            return module.main(argv[1:])

        return command_line.run(f"python -m det_nb {name}", delegated)
    return command_line.run("python -m det_nb kernel", lambda: _kernel_command(argv))


def _kernel_command(argv: list[str]) -> int:
    """``kernel install|list|uninstall``; argparse exits 2 on bad arguments."""
    parser, install_parser = _parsers()
    args = parser.parse_args(argv)
    if args.action == "install":
        return _install(args, install_parser)
    if args.action == "list":
        found = kernel.installed()
        if not found:
            print("no det_nb kernels installed")
        for name, (folder, spec) in found.items():
            print(f"{name}  {folder}  {kernel.describe(spec)}")
        return 0
    try:
        folder = kernel.uninstall(args.name)
    except (ValueError, OSError) as error:
        print(f"det_nb: {error}", file=sys.stderr)
        return 1
    print(f"removed kernel {args.name!r} from {folder}")
    return 0


def _install(args: argparse.Namespace, install_parser: argparse.ArgumentParser) -> int:
    """``kernel install``: write the kernelspec, and say how Jupyter finds it."""
    from jupyter_core.paths import jupyter_path

    try:
        options = kernel.KernelOptions(
            args.name, args.display_name, args.seed, args.trial, args.scheme,
            args.threads, args.deterministic_ops, args.portable,
        )
    except ValueError as error:
        install_parser.error(str(error))
    prefix = sys.prefix if args.sys_prefix else args.prefix
    try:
        folder = kernel.install(options, user=prefix is None, prefix=prefix)
    except (ValueError, OSError) as error:
        print(f"det_nb: cannot install kernel {args.name!r}: {error}", file=sys.stderr)
        return 1
    print(f"installed kernel {args.name!r} in {folder}")
    data_folder = os.path.dirname(os.path.dirname(folder))  # .../share/jupyter
    if data_folder not in map(os.path.abspath, jupyter_path()):
        print(f"Jupyter finds it when JUPYTER_PATH includes {data_folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
