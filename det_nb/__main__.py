"""``python -m det_nb``: command-line tools (the deterministic Jupyter kernel)."""

from __future__ import annotations

import argparse
import sys

from det_nb import kernel
from det_nb.lineage import SCHEMES


def _parsers() -> tuple[argparse.ArgumentParser, argparse.ArgumentParser]:
    """The command's parser, and the install sub-command's (for its usage errors)."""
    parser = argparse.ArgumentParser(prog="python -m det_nb", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    kernel_command = commands.add_parser(
        "kernel", help="install, list or remove deterministic Jupyter kernels",
        description="Jupyter kernels that set what only acts at process start "
        "(PYTHONHASHSEED, TensorFlow threads and op determinism, cuBLAS workspace), load "
        "det_nb and, given a seed, run %det_seed before the first cell.",
    )
    actions = kernel_command.add_subparsers(dest="action", required=True, metavar="ACTION")

    install = actions.add_parser("install", help="install a det_nb kernelspec")
    install.add_argument("--name", default=kernel.DEFAULT_NAME,
                         help="kernelspec name: lower-case letters, digits, . _ - "
                         f"(default: {kernel.DEFAULT_NAME})")
    install.add_argument("--display-name", metavar="TEXT",
                         help="name shown in Jupyter (default: says what is fixed)")
    install.add_argument("--seed", type=int, metavar="S",
                         help="experiment seed: run %%det_seed S before the first cell")
    install.add_argument("--trial", type=int, metavar="T", help="trial number (needs --seed)")
    install.add_argument("--scheme", choices=SCHEMES, default="seedsequence",
                         help="trial seed derivation (default: seedsequence)")
    install.add_argument("--threads", type=int, default=1, metavar="N",
                         help="TensorFlow intra- and inter-op threads (default: 1)")
    install.add_argument("--deterministic-ops", action="store_true",
                         help="TF_DETERMINISTIC_OPS=1 and %%det_seed --deterministic-ops")
    where = install.add_mutually_exclusive_group()
    where.add_argument("--user", action="store_true",
                       help="install for this user (the default)")
    where.add_argument("--sys-prefix", action="store_true",
                       help=f"install into this Python's prefix ({sys.prefix})")
    where.add_argument("--prefix", metavar="DIR", help="install into DIR/share/jupyter/kernels")

    actions.add_parser("list", help="list the det_nb kernelspecs Jupyter finds")
    uninstall = actions.add_parser("uninstall", help="remove a det_nb kernelspec")
    uninstall.add_argument("name", metavar="NAME")
    return parser, install


def main(argv: list[str] | None = None) -> int:
    """Run the command; 0 on success, 1 when it fails, 2 on bad arguments."""
    parser, install_parser = _parsers()
    args = parser.parse_args(argv)
    if args.action == "install":
        try:
            options = kernel.KernelOptions(
                args.name, args.display_name, args.seed, args.trial, args.scheme,
                args.threads, args.deterministic_ops,
            )
        except ValueError as error:
            install_parser.error(str(error))
        prefix = sys.prefix if args.sys_prefix else args.prefix
        try:
            folder = kernel.install(options, user=prefix is None, prefix=prefix)
        except OSError as error:
            print(f"det_nb: cannot install kernel {args.name!r}: {error}", file=sys.stderr)
            return 1
        print(f"installed kernel {args.name!r} in {folder}")
        if args.prefix is not None:
            print(f"Jupyter finds it where {args.prefix}/share/jupyter is in JUPYTER_PATH")
        return 0
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


if __name__ == "__main__":
    sys.exit(main())
