"""Row "load": a fresh interpreter starting IPython, with and without ``%load_ext det_nb``."""

from __future__ import annotations

import json
import subprocess
import sys
import time

from bench import FRAMEWORKS, Goal, Row, bytecode_env, interleave

START = (
    "from IPython.core.interactiveshell import InteractiveShell\n"
    "shell = InteractiveShell.instance()\n"
)
LOAD = 'shell.run_line_magic("load_ext", "det_nb")\n'
REPORT = f"import json, sys\nprint(json.dumps([m for m in {FRAMEWORKS!r} if m in sys.modules]))\n"


def _start(code: str, imported: list[list[str]], env: dict[str, str]) -> float:
    """Wall time of ``python -c code``; records the frameworks it found imported."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, check=True)
    elapsed = time.perf_counter() - start
    imported.append(json.loads(done.stdout.strip().splitlines()[-1]))
    return elapsed


def measure(quick: bool) -> list[Row]:
    """Interleaved interpreter starts; checks that loading det_nb imports no framework."""
    pairs, warmups = (2, 1) if quick else (15, 2)
    base_imported: list[list[str]] = []
    det_imported: list[list[str]] = []
    with bytecode_env() as env:
        base, det = interleave(lambda: _start(START + REPORT, base_imported, env),
                               lambda: _start(START + LOAD + REPORT, det_imported, env),
                               pairs, warmups)
    frameworks = sorted({m for found in det_imported for m in found})
    return [Row(
        "load", "fresh interpreter: start IPython + %load_ext det_nb",
        "the same start without det_nb", "s", "candidate / baseline", base, det, warmups,
        Goal("<=", 1.25), facts={"no ML framework in sys.modules": not frameworks},
        note=(f"wall time of `python -c` (interpreter, IPython import, "
              f"InteractiveShell.instance()), modules loaded from a bytecode cache; "
              f"frameworks imported after load_ext: "
              f"{', '.join(frameworks) or 'none'} (checked: {', '.join(FRAMEWORKS)})"),
    )]
