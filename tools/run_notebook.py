"""Run a notebook headless in a fresh kernel and print what it shows as text.

``make demo`` uses this where no display is available (or with HEADLESS=1).
"""

from __future__ import annotations

import argparse
import sys

import nbformat
from nbclient import NotebookClient


def cell_text(cell: nbformat.NotebookNode) -> str:
    """The text a terminal user would see for one executed code cell."""
    parts = []
    for output in cell.get("outputs", []):
        if output.output_type == "stream":
            parts.append(output.text.rstrip("\n"))
        elif output.output_type == "error":
            parts.append(f"{output.ename}: {output.evalue}")
        elif "data" in output and "text/plain" in output.data:
            parts.append(output.data["text/plain"])
    return "\n".join(parts)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("notebook")
    parser.add_argument("--timeout", type=int, default=600, help="seconds per cell")
    args = parser.parse_args()
    notebook = nbformat.read(args.notebook, as_version=4)
    # Cells marked NBVAL_RAISES_EXCEPTION fail on purpose; their errors are printed.
    NotebookClient(
        notebook, timeout=args.timeout, kernel_name="python3", allow_errors=True
    ).execute()
    for cell in notebook.cells:
        if cell.cell_type == "code":
            print(f"In: {cell.source}")
            shown = cell_text(cell)
            if shown:
                print(shown)
            print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
