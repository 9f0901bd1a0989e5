"""Run a notebook headless in a fresh kernel and print it as a reader would follow it.

``make demo`` uses this where no display is available (or with HEADLESS=1): markdown
cells as short prose, each code cell with what it printed, and at the end det_nb's
verdict on the kernel, read from ``det_nb.status()``, with what each warning means.

The kernel's own start-up chatter (TensorFlow's C++ log, CUDA probes, transport
warnings) goes to a log file beside the notebook's name in the temporary directory,
never into the printed cells; the notebook file itself is not changed.
"""

from __future__ import annotations

import argparse
import ast
import asyncio
import json
import os
import re
import sys
import tempfile
import textwrap
from pathlib import Path
from typing import Any, TextIO

import nbformat
from nbclient import NotebookClient

WIDTH = 88
# What det_nb.status() says, as JSON, evaluated silently (no cell events, no history).
STATUS_EXPRESSION = (
    "__import__('json').dumps({'verdict': __import__('det_nb').status().verdict(), "
    "'checks': [c.__dict__ for c in __import__('det_nb').status().checks]})"
)
NEXT_STEPS = (
    "Next: on a desktop, `make demo` opens this notebook in JupyterLab, where the dashboard's "
    "controls are live; `make test` runs the test suite, which re-runs every notebook and "
    "compares its outputs bit for bit."
)
# The kernel runs with TensorFlow's C++ logging off; its stderr goes to the log, and
# ipykernel leaves file-descriptor output there instead of copying it into cells.
KERNEL_ENV = {"TF_CPP_MIN_LOG_LEVEL": "3"}
KERNEL_ARGUMENTS = ["--IPKernelApp.capture_fd_output=False"]


def prose(markdown: str) -> list[str]:
    """A markdown cell as short plain lines: headings underlined, paragraphs wrapped."""
    lines: list[str] = []
    for block in re.split(r"\n\s*\n", markdown.strip()):
        heading = re.match(r"(#+)\s+(.*)", block)
        if heading:
            title = heading.group(2).strip()
            lines += [title, ("=" if len(heading.group(1)) == 1 else "-") * len(title)]
        else:
            text = re.sub(r"\*\*(.+?)\*\*", r"\1", " ".join(block.split()))
            lines += textwrap.wrap(text, WIDTH)
        lines.append("")
    return lines


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


def code_lines(cell: nbformat.NotebookNode, number: int) -> list[str]:
    """The cell's source as IPython shows it (``In [n]:``), then its output."""
    prompt = f"In [{number}]: "
    source = cell.source.splitlines() or [""]
    lines = [prompt + source[0], *((" " * len(prompt) + line).rstrip() for line in source[1:])]
    shown = cell_text(cell)
    return [*lines, *([shown] if shown else []), ""]


def verdict_lines(status: dict[str, Any]) -> list[str]:
    """det_nb's verdict, then each warning with what it means and its fix."""
    lines = ["Verdict (det_nb.status() in the kernel after the last cell):",
             f"  {status['verdict']}"]
    for check in status["checks"]:
        if check["state"] == "warn":
            lines += textwrap.wrap(f"warn {check['name']}: {check['detail']}", WIDTH,
                                   initial_indent="  ", subsequent_indent="    ")
            if check["fix"]:
                lines += textwrap.wrap(f"fix: {check['fix']}", WIDTH,
                                       initial_indent="    ", subsequent_indent="    ")
    return lines


async def run(notebook: nbformat.NotebookNode, timeout: int, log: TextIO) -> dict[str, Any]:
    """Execute every cell in a fresh kernel; return what det_nb.status() says at the end."""
    # Cells marked NBVAL_RAISES_EXCEPTION fail on purpose; their errors are printed.
    client = NotebookClient(notebook, timeout=timeout, kernel_name="python3",
                            allow_errors=True, extra_arguments=KERNEL_ARGUMENTS)
    client.reset_execution_trackers()
    async with client.async_setup_kernel(env={**os.environ, **KERNEL_ENV}, stderr=log):
        for index, cell in enumerate(notebook.cells):
            await client.async_execute_cell(cell, index,
                                            execution_count=client.code_cells_executed + 1)
        msg_id = client.kc.execute("", silent=True,
                                   user_expressions={"status": STATUS_EXPRESSION})
        reply = await client.async_wait_for_reply(msg_id)
    result = reply["content"]["user_expressions"]["status"]
    if result["status"] != "ok":
        raise RuntimeError(f"det_nb.status() failed in the kernel: {result.get('evalue')}")
    return json.loads(ast.literal_eval(result["data"]["text/plain"]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebook", type=Path)
    parser.add_argument("--timeout", type=int, default=600, help="seconds per cell")
    args = parser.parse_args()
    notebook = nbformat.read(args.notebook, as_version=4)
    log_path = Path(tempfile.gettempdir()) / f"{args.notebook.stem}-kernel.log"
    with log_path.open("w") as log:
        status = asyncio.run(run(notebook, args.timeout, log))
    lines: list[str] = []
    number = 0
    for cell in notebook.cells:
        if cell.cell_type == "markdown":
            lines += prose(cell.source)
        elif cell.cell_type == "code":
            number += 1
            lines += code_lines(cell, number)
    lines += [*verdict_lines(status), "", *textwrap.wrap(NEXT_STEPS, WIDTH),
              f"(The kernel's own log is in {log_path}.)"]
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
