"""``python -m det_nb``: its help, and the commands it hands to other modules."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import types
from pathlib import Path

import pytest
from conftest import run_python

from det_nb.__main__ import main


def test_help_lists_every_command_in_plain_text() -> None:
    result = subprocess.run([sys.executable, "-m", "det_nb", "--help"], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "``" not in result.stdout  # docstring markup is not for a terminal
    for command in ("kernel", "verify", "trials"):
        assert f"    {command}  " in result.stdout


@pytest.mark.parametrize("command", ["verify", "trials"])
def test_delegated_commands_get_every_argument_and_give_the_exit_status(
    command: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    received: list[list[str]] = []

    def fake_main(argv: list[str]) -> int:
        received.append(argv)
        return 3

    module = types.ModuleType(f"det_nb.{command}")
    module.main = fake_main
    monkeypatch.setitem(sys.modules, f"det_nb.{command}", module)
    arguments = ["my notebook.ipynb", "--runs", "3", "-h", "--", "--seed"]
    assert main([command, *arguments]) == 3
    assert received == [arguments]


def test_the_kernel_command_imports_no_delegated_module(tmp_path) -> None:
    loaded = run_python("""
        import json, sys
        from det_nb.__main__ import main
        main(["kernel", "list"])
        print(json.dumps(sorted(name for name in sys.modules
                                if name in ("det_nb.verify", "det_nb.trials", "nbclient",
                                            "distributed"))))
    """, env={"JUPYTER_DATA_DIR": str(tmp_path), "JUPYTER_PATH": str(tmp_path)})
    assert loaded == []


# -- the command-line guard: Ctrl-C, SIGTERM and a closed pipe (issue 19) ----------------

GUARDED = """\
import pathlib, sys, time
from det_nb.command_line import run

folder = pathlib.Path(sys.argv[1])

def command():
    try:
        (folder / "running").write_text("yes")
        time.sleep(60)
    except BaseException as stop:
        stop.add_note("what it started is stopped")
        raise
    finally:
        (folder / "cleaning").write_text("yes")
        time.sleep(1.5)  # a second SIGTERM arrives in here and must not cut it short
        (folder / "cleaned").write_text("yes")
    return 0

sys.exit(run("prog", command))
"""


def start_guarded(code: str, folder: Path, *args: str,
                  stdout: int = subprocess.DEVNULL) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", code, str(folder), *args], stdout=stdout,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def wait_for(path: Path, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + 60
    while not path.exists():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, f"{path.name} never appeared"
        time.sleep(0.05)


@pytest.mark.parametrize(("sig", "status", "line"), [
    (signal.SIGINT, 130, "prog: interrupted; what it started is stopped"),
    (signal.SIGTERM, 143, "prog: terminated (SIGTERM); what it started is stopped"),
])
def test_ctrl_c_and_sigterm_run_the_clean_up_and_end_in_one_line(
        tmp_path: Path, sig: signal.Signals, status: int, line: str) -> None:
    process = start_guarded(GUARDED, tmp_path)
    try:
        wait_for(tmp_path / "running", process)
        os.kill(process.pid, sig)
        wait_for(tmp_path / "cleaning", process)
        if sig == signal.SIGTERM:
            os.kill(process.pid, signal.SIGTERM)  # a supervisor's second request
        _, err = process.communicate(timeout=60)
    finally:
        process.kill()
    assert (process.returncode, err) == (status, line + "\n")
    assert (tmp_path / "cleaned").exists()  # every finally block ran to its end


def test_a_closed_stdout_ends_quietly_with_141(tmp_path: Path) -> None:
    talker = ("import sys\nfrom det_nb.command_line import run\n"
              "def command():\n    while True:\n        print('line', flush=True)\n"
              "sys.exit(run('prog', command))\n")
    process = start_guarded(talker, tmp_path, stdout=subprocess.PIPE)
    try:
        assert process.stdout.readline() == "line\n"
        process.stdout.close()  # what `| head -1` does after its line
        err = process.stderr.read()
        process.wait(timeout=60)
    finally:
        process.kill()
    assert (process.returncode, err) == (141, "")  # no traceback, no "Exception ignored"


def test_a_broken_pipe_that_is_not_stdout_is_not_hidden(
        capsys: pytest.CaptureFixture[str]) -> None:
    from det_nb import command_line

    def command() -> int:
        raise BrokenPipeError(32, "Broken pipe")

    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(BrokenPipeError):
        command_line.run("prog", command)
    assert signal.getsignal(signal.SIGTERM) is before  # the guard put it back
    assert command_line.run("prog", lambda: 3) == 3
    assert capsys.readouterr() == ("", "")


def test_the_delegated_commands_run_under_the_guard(tmp_path: Path) -> None:
    code = ("import pathlib, sys, time, types\n"
            "module = types.ModuleType('det_nb.trials')\n"
            "def main(argv):\n"
            "    pathlib.Path(sys.argv[1], 'running').write_text('yes')\n"
            "    time.sleep(60)\n"
            "module.main = main\n"
            "sys.modules['det_nb.trials'] = module\n"
            "from det_nb.__main__ import main as cli\n"
            "sys.exit(cli(['trials', 'x.ipynb']))\n")
    process = start_guarded(code, tmp_path)
    try:
        wait_for(tmp_path / "running", process)
        os.kill(process.pid, signal.SIGINT)
        _, err = process.communicate(timeout=60)
    finally:
        process.kill()
    assert (process.returncode, err) == (130, "python -m det_nb trials: interrupted\n")
