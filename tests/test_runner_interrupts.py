"""``verify`` stopped from outside: Ctrl-C and SIGTERM leave no kernel, no connection file (they
hold the kernels' HMAC keys) and no run folder behind; a closed pipe ends it quietly.

Each test starts ``python -m det_nb verify`` (and ``python -m det_nb.verify``) as a user
would, in a fresh process with its own temporary and Jupyter runtime folders, so what it
leaves there can be counted: the runner's kernels write their connection files to the
temporary folder (``tmp*.json``), a Jupyter server's to the runtime folder
(``kernel-*.json``); both must end as they began, empty.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

SLOW = ["x = 1", "import time\ntime.sleep(120)", "y = 2"]


def write_notebook(folder: Path, name: str, cells: list[str]) -> Path:
    notebook = new_notebook(cells=[new_code_cell(source) for source in cells])
    notebook.metadata["kernelspec"] = {"name": "python3", "language": "python",
                                       "display_name": "Python 3"}
    nbformat.write(notebook, folder / name)
    return folder / name


def folders(tmp_path: Path) -> tuple[Path, Path, dict[str, str]]:
    """A private temporary folder and Jupyter runtime folder, and the environment naming them."""
    temporary, runtime = tmp_path / "tmp", tmp_path / "runtime"
    temporary.mkdir()
    runtime.mkdir()
    env = {**os.environ, "TMPDIR": str(temporary), "JUPYTER_RUNTIME_DIR": str(runtime),
           "TF_CPP_MIN_LOG_LEVEL": "3"}
    return temporary, runtime, env


def kernel_pids(folder: Path) -> set[int]:
    """Processes whose command line names a connection file in ``folder``: the kernels."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if str(folder).encode() in command:
            found.add(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().split(") ")[-1][0]
    except OSError:
        return False
    return state != "Z"


def wait_for(condition: object, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.parametrize(("command", "sent", "status", "line"), [
    (["-m", "det_nb", "verify"], signal.SIGINT, 130, "python -m det_nb verify: interrupted"),
    (["-m", "det_nb", "verify"], signal.SIGTERM, 143,
     "python -m det_nb verify: terminated (SIGTERM)"),
    (["-m", "det_nb.verify"], signal.SIGTERM, 143,
     "python -m det_nb verify: terminated (SIGTERM)"),
])
def test_an_interrupted_verify_stops_its_kernels_and_leaves_nothing_behind(
    tmp_path: Path, command: list[str], sent: signal.Signals, status: int, line: str
) -> None:
    temporary, runtime, env = folders(tmp_path)
    notebook = write_notebook(tmp_path, "slow.ipynb", SLOW)
    with (tmp_path / "out").open("w") as out, (tmp_path / "err").open("w") as err:
        process = subprocess.Popen([sys.executable, *command, str(notebook), "--timeout", "600"],
                                   stdout=out, stderr=err, env=env)
        try:
            # both kernels started and inside the slow cell (the run folder exists by then)
            wait_for(lambda: len(list(temporary.glob("tmp*.json"))) == 2
                     and len(kernel_pids(temporary)) == 2, 120, "two kernels")
            kernels = kernel_pids(temporary)
            assert len(list(temporary.glob("det_nb-verify-*"))) == 1
            time.sleep(2)
            process.send_signal(sent)
            assert process.wait(timeout=60) == status
        finally:
            if process.poll() is None:
                process.kill()
    assert (tmp_path / "err").read_text() == (
        f"{line}; every kernel it started is stopped and its connection file removed\n")
    assert (tmp_path / "out").read_text() == ""
    assert list(runtime.iterdir()) == list(temporary.iterdir()) == []
    assert not [pid for pid in kernels if alive(pid)]


def test_verify_into_a_closed_pipe_ends_quietly(tmp_path: Path) -> None:
    """``verify a.ipynb b.ipynb | head -1``: b's line finds the pipe closed."""
    temporary, runtime, env = folders(tmp_path)
    first = write_notebook(tmp_path, "a.ipynb", ["a = 1"])
    second = write_notebook(tmp_path, "b.ipynb", ["b = 2"])
    process = subprocess.Popen([sys.executable, "-m", "det_nb", "verify", str(first),
                                str(second)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               env=env)
    try:
        assert process.stdout is not None and process.stderr is not None
        line = process.stdout.readline()
        process.stdout.close()  # what head does after its line
        status = process.wait(timeout=120)
        err = process.stderr.read()
    finally:
        if process.poll() is None:
            process.kill()
    assert line.decode() == f"{first}: identical across 2 runs (1 cells, 1 names compared)\n"
    assert (status, err) == (141, b"")
    assert list(runtime.iterdir()) == list(temporary.iterdir()) == []
