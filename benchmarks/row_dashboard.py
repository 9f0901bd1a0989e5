"""Rows "dashboard": its first display, and its update after a re-seed, in a real kernel.

The widgets talk to the front-end through the kernel's comms, so this runs in an
ipykernel (started with jupyter_client, no front-end attached), where every widget change
is serialised and sent as a real kernel would send it.
"""

from __future__ import annotations

import json
import os
import subprocess
from typing import Any

from bench import BENCH_DIR, QUIET_ENV, SEED_LINE, Goal, Row, interleave, timed

MARK = "det_nb-bench-rows:"


def in_kernel(quick: bool) -> None:
    """Run inside the kernel: time the dashboard and print the rows after MARK."""
    from IPython import get_ipython
    from IPython.display import display

    from det_nb.dashboard import close_dashboard, dashboard_for
    from det_nb.session import get_session

    shell = get_ipython()
    shell.run_line_magic("load_ext", "det_nb")
    shell.run_line_magic("det_seed", SEED_LINE)
    shell.run_cell("import numpy, tensorflow, keras\n_ = tensorflow.constant(1.0) + 1",
                   store_history=False)
    session = get_session()

    def seed() -> None:
        shell.run_line_magic("det_seed", SEED_LINE)

    def first_display() -> float:
        close_dashboard(session)
        return timed(lambda: display(dashboard_for(session)))()

    def seed_with_dashboard() -> float:
        dashboard_for(session)
        elapsed = timed(seed)()
        close_dashboard(session)
        return elapsed

    pairs, warmups = (2, 1) if quick else (12, 2)
    base, det = interleave(timed(seed), first_display, pairs, warmups)
    rows = [Row(
        "dashboard (first)", "first display: display(dashboard_for(session)) in a kernel",
        f"%det_seed {SEED_LINE}", "s", "candidate / baseline", base, det, warmups,
        note="builds the widgets, opens their comms, renders text/plain and text/html, "
        "publishes; each repeat closes the previous dashboard first",
    )]
    close_dashboard(session)
    pairs, warmups = (2, 1) if quick else (30, 3)
    base, det = interleave(timed(seed), seed_with_dashboard, pairs, warmups)
    rows.append(Row(
        "dashboard (update)", f"%det_seed {SEED_LINE} with the dashboard shown",
        "the same without a dashboard", "s", "candidate / baseline", base, det, warmups,
        Goal("<=", 20, "extra_ms"),
        note="extra = the dashboard's own refresh after a re-seed (status read, widgets "
        "updated over comms); goal on the median extra",
    ))
    print(MARK + json.dumps([row.to_json() for row in rows]), flush=True)


def measure(quick: bool) -> list[dict[str, Any]]:
    """Start a kernel, run :func:`in_kernel` in it, return its rows as JSON."""
    from jupyter_client.manager import start_new_kernel

    # The kernel's own output (TensorFlow's C++ log) is dropped; errors come in the reply.
    manager, client = start_new_kernel(kernel_name="python3", env={**os.environ, **QUIET_ENV},
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    printed: list[str] = []

    def collect(message: dict[str, Any]) -> None:
        if message["msg_type"] == "stream" and message["content"]["name"] == "stdout":
            printed.append(message["content"]["text"])

    code = (f"import sys\nsys.path.insert(0, {str(BENCH_DIR)!r})\nimport row_dashboard\n"
            f"row_dashboard.in_kernel({quick!r})\n")
    try:
        reply = client.execute_interactive(code, timeout=600, output_hook=collect)
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)
    content = reply["content"]
    if content["status"] != "ok":
        raise RuntimeError("dashboard rows failed in the kernel:\n" + "\n".join(
            content.get("traceback", [content.get("evalue", "")])))
    line = next(line for line in "".join(printed).splitlines() if line.startswith(MARK))
    return json.loads(line[len(MARK):])
