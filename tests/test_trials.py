"""Trials on Dask: real ``dask scheduler`` / ``dask worker`` processes on 127.0.0.1.

Every test that starts processes stops them (process-group kill in ``finally``), picks free
ports and bounds every wait. The notebook is tiny and NumPy-only, so kernels start fast.
Kernels started for these tests carry a marker in their environment; after the processes
stop, none may be left.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import nbformat
import pytest
from conftest import QUIET_TF

from det_nb.notebook_runner import run_notebook
from det_nb.trials import compare, load, parse_trials, run_trials, trial_environment

MARKER = "DET_NB_TRIALS_TEST"
SEED = 42
COLLECT = ["loss", "losses", "token", "x"]
# (42, trial) -> trial seed under the default scheme (DESIGN.md's vectors).
TRIAL_SEEDS = {0: 536987300, 1: 1944468666, 3: 1129302213}
SEED_CELL = "%load_ext det_nb\n%det_seed 1 --quiet"
WORK_CELL = """\
import random

import numpy as np

import det_nb

x = np.random.normal(size=(50, 3))
w = det_nb.rng().normal(size=3)
loss = float(np.mean((x @ w) ** 2))
losses = [float(v) for v in np.cumsum(np.random.random(4))]
token = random.random()
print(round(loss, 6))"""
# Only trial 0, only on its first run: tell the test which worker runs it, then wait to be
# killed. It draws nothing, so the values are those of the plain notebook.
KILL_CELL = """\
import os, pathlib, time
import det_nb

marker = pathlib.Path("running-0")
if det_nb.lineage().trial == 0 and not marker.exists():
    marker.write_text(str(os.getppid()))
    time.sleep(90)"""
# Every trial: say it runs, then wait for the test's Ctrl-C.
WAIT_CELL = """\
import pathlib, time
import det_nb

pathlib.Path(f"running-{det_nb.lineage().trial}").write_text("yes")
time.sleep(90)"""
FAIL_CELL = """\
if det_nb.lineage().trial == 1:
    raise ValueError("trial 1 diverged")"""


def write_notebook(path: Path, *cells: str) -> Path:
    """A notebook of code cells at ``path``."""
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_code_cell(source) for source in cells]
    notebook.metadata["kernelspec"] = {"name": "python3", "language": "python",
                                       "display_name": "Python 3"}
    nbformat.write(notebook, path)
    return path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start(*args: str, tag: str, cwd: Path | None = None) -> subprocess.Popen:
    """A process in its own group (so stopping it takes its children too), marked ``tag``.

    Its children (workers, kernels) inherit the marker in their environment.
    Its output goes to files, not pipes: a pipe nobody reads while the test waits (a Dask
    scheduler's log, a worker's warnings) fills up and blocks the process.
    """
    env = {**os.environ, **QUIET_TF, MARKER: tag}
    out, err = tempfile.TemporaryFile("w+"), tempfile.TemporaryFile("w+")  # noqa: SIM115 - stop closes them
    process = subprocess.Popen([sys.executable, *args], env=env, cwd=cwd, stdout=out,
                               stderr=err, text=True, start_new_session=True)
    process.output_files = (out, err)
    return process


def finish(process: subprocess.Popen, timeout: float) -> tuple[str, str]:
    """Wait for ``process`` (TimeoutExpired after ``timeout``); its stdout and stderr."""
    process.wait(timeout=timeout)
    texts = []
    for file in process.output_files:
        file.seek(0)
        texts.append(file.read())
    return texts[0], texts[1]


def stop(process: subprocess.Popen) -> None:
    """SIGTERM the process group, SIGKILL what is left after 10 s; close its output files."""
    for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        try:
            process.wait(timeout=wait)
            break
        except subprocess.TimeoutExpired:
            continue
    for file in process.output_files:
        file.close()


def marked_processes(tag: str) -> list[int]:
    """Pids of live processes that carry the marker ``tag``."""
    found = []
    needle = f"{MARKER}={tag}".encode()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            with contextlib.suppress(OSError):
                if needle in (entry / "environ").read_bytes().split(b"\0"):
                    found.append(int(entry.name))
    return found


def describe(pid: int) -> str:
    """A process's command line, for a failure message."""
    with contextlib.suppress(OSError):
        return f"{pid}: " + Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    return f"{pid}: gone"


def assert_none_left(tag: str, within: float = 60) -> None:
    """Wait until no process marked ``tag`` is alive (kernels exit when their worker dies)."""
    deadline = time.monotonic() + within
    while marked_processes(tag):
        if time.monotonic() > deadline:
            left = [describe(pid) for pid in marked_processes(tag)]
            raise AssertionError(f"processes left behind: {left}")
        time.sleep(0.5)


@contextlib.contextmanager
def dask_cluster(workers: int) -> Iterator[tuple[str, list[subprocess.Popen]]]:
    """A real ``dask scheduler`` and ``workers`` single-threaded ``dask worker`` processes.

    Workers run without a nanny, so each process is the worker itself (the test kills one).
    """
    from distributed import Client

    port, tag = free_port(), uuid.uuid4().hex
    address = f"tcp://127.0.0.1:{port}"
    processes = [start("-m", "dask", "scheduler", "--host", "127.0.0.1", "--port", str(port),
                       "--no-dashboard", tag=tag)]
    try:
        processes += [start("-m", "dask", "worker", address, "--host", "127.0.0.1",
                            "--nthreads", "1", "--no-nanny", "--no-dashboard", tag=tag)
                      for _ in range(workers)]
        with Client(address, timeout=60, set_as_default=False) as client:
            client.wait_for_workers(workers, timeout=90)
        yield address, processes[1:]
    finally:
        for process in reversed(processes):
            stop(process)
    assert_none_left(tag)


def trials_command(*args: str, cwd: Path, timeout: float = 240) -> subprocess.CompletedProcess:
    """``python -m det_nb.trials ARGS`` in a fresh interpreter, stopped after ``timeout``.

    What it started (a LocalCluster's workers, kernels) must be gone when it returns.
    """
    tag = uuid.uuid4().hex
    process = start("-m", "det_nb.trials", *args, tag=tag, cwd=cwd)
    try:
        out, err = finish(process, timeout)
        assert_none_left(tag)
    finally:
        stop(process)
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


@pytest.fixture(scope="module")
def cluster() -> Iterator[str]:
    """A scheduler with two workers, shared by the tests that do not kill one."""
    with dask_cluster(2) as (address, _):
        yield address


@pytest.fixture
def notebook(tmp_path: Path) -> Path:
    return write_notebook(tmp_path / "tiny.ipynb", SEED_CELL, WORK_CELL)


def test_trial_specs() -> None:
    assert parse_trials("0-3") == [0, 1, 2, 3]
    assert parse_trials("0,3,5") == [0, 3, 5]
    assert parse_trials("7, 0-1") == [7, 0, 1]
    assert parse_trials("2-2") == [2]
    for bad, says in (("3-1", "runs backwards"), ("1,1", "repeats 1"), ("", "got ''"),
                      ("a", "got 'a'"), ("-1", "got '-1'"), ("0-2147483648", "0-7"),
                      ("0-999999", "at most")):
        with pytest.raises(ValueError, match=says):
            parse_trials(bad)


@pytest.mark.parametrize("args, says", [
    (["--trials", "3-1"], "the range 3-1 runs backwards"),
    (["--trials", "0-1", "--verify", "3"], "verify must be a number of trials in [0, 2]"),
    (["--trials", "0-1", "--scheme", "determined"], "must be in [1, 1000000]"),
    (["--trials", "0-1", "--workers", "٢"], "the value must be an integer >= 0, got '٢'"),
    (["--trials", "0-1", "--verify", "1_0"], "the value must be an integer >= 0, got '1_0'"),
    # --scheduler garbage: were the check missing, no cluster would start
    (["--trials", "0", "--scheduler", "garbage", "--connect-timeout", "nan"],
     "--connect-timeout must be a finite number of seconds above 0, got nan"),
    (["--trials", "0", "--scheduler", "garbage", "--timeout", "inf"],
     "--timeout must be a finite number of seconds above 0, got inf"),
    (["--trials", "0", "--seed", "7"], "argument --seed: given more than once"),
    (["--trials", "0", "--trials", "1"], "argument --trials: given more than once"),
    (["--trials", "0", "--seed=7"], "argument --seed: given more than once"),
    (["--trials", "0", "--see", "7"], "unrecognized arguments: --see 7"),
    (["--trials", "0", "--out", ""], "no trials output path given"),
    (["--trials", "0", "--out", "{notebook}"],
     "--out {notebook!r} is the notebook {notebook!r}: give --out another file"),
])
def test_bad_input_is_one_line_exit_2(notebook: Path, args: list[str], says: str,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    from det_nb.trials import main

    before = notebook.read_bytes()
    names = {"notebook": str(notebook)}
    assert main([str(notebook), "--seed", "42", *(arg.format(**names) for arg in args)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and says.format(**names) in err, err
    assert notebook.read_bytes() == before


@contextlib.contextmanager
def not_dask() -> Iterator[str]:
    """The address of a loopback listener that greets every connection like an SSH server."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listener.settimeout(0.2)
        done = threading.Event()

        def greet() -> None:
            while not done.is_set():
                try:
                    connection, _ = listener.accept()
                except OSError:
                    continue
                with connection:
                    connection.sendall(b"SSH-2.0-OpenSSH_9.6\r\n" * 8)

        thread = threading.Thread(target=greet, daemon=True)
        thread.start()
        try:
            yield f"tcp://127.0.0.1:{listener.getsockname()[1]}"
        finally:
            done.set()
            thread.join(5)


@pytest.mark.parametrize("scheduler", ["garbage", "not dask"])
def test_a_scheduler_that_is_not_dask_is_one_line_exit_2(notebook: Path, scheduler: str) -> None:
    with contextlib.ExitStack() as stack:
        address = stack.enter_context(not_dask()) if scheduler == "not dask" else scheduler
        refused = trials_command(notebook.name, "--seed", "42", "--trials", "0",
                                 "--scheduler", address, "--connect-timeout", "3",
                                 cwd=notebook.parent, timeout=60)
    assert refused.returncode == 2 and refused.stdout == "", refused
    # one line: no traceback, and no "Exception ignored in Client.__del__" at exit
    [line] = refused.stderr.splitlines()
    assert line.startswith(f"python -m det_nb trials: error: cannot reach the Dask scheduler "
                           f"at '{address}' within 3 s: "), line


def test_results_are_printed_when_the_out_folder_is_gone(
        notebook: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    from det_nb import trials
    from det_nb.trials import TrialResult, TrialsResult

    folder = notebook.parent / "results"
    folder.mkdir()

    def trials_that_outlive_the_folder(*args: object, **kwargs: object) -> TrialsResult:
        folder.rmdir()  # removed while the trials run
        done = TrialResult(0, TRIAL_SEEDS[0], "w1", 1.0, {"loss": 0.25}, [], None, None)
        return TrialsResult(notebook.name, SEED, "seedsequence", ("loss",), [done])

    monkeypatch.setattr(trials, "run_trials", trials_that_outlive_the_folder)
    status = trials.main([str(notebook), "--seed", str(SEED), "--trials", "0",
                          "--collect", "loss", "--out", str(folder / "x.json")])
    out, err = capsys.readouterr()
    assert status == 2
    assert f"0      {TRIAL_SEEDS[0]}   w1      1.00     0.25" in out  # the table, not lost
    assert err.count("\n") == 1 and err.startswith("python -m det_nb trials: error: cannot "
                                                   f"write '{folder / 'x.json'}'"), err


def test_unknown_notebook_and_unreachable_scheduler_exit_2(notebook: Path) -> None:
    missing = trials_command("missing.ipynb", "--seed", "42", "--trials", "0-1",
                             cwd=notebook.parent, timeout=60)
    assert missing.returncode == 2 and missing.stdout == "", missing
    assert missing.stderr.splitlines() == [
        "python -m det_nb trials: error: notebook 'missing.ipynb' does not exist"]

    started = time.monotonic()
    nowhere = f"tcp://127.0.0.1:{free_port()}"
    unreachable = trials_command(notebook.name, "--seed", "42", "--trials", "0-1",
                                 "--scheduler", nowhere, "--connect-timeout", "2",
                                 cwd=notebook.parent, timeout=60)
    assert unreachable.returncode == 2 and unreachable.stdout == "", unreachable
    [line] = unreachable.stderr.splitlines()
    assert line.startswith(f"python -m det_nb trials: error: cannot reach the Dask scheduler "
                           f"at '{nowhere}' within 2 s"), line
    assert time.monotonic() - started < 45


def test_trials_agree_on_any_cluster_and_with_a_local_recreation(
        cluster: str, notebook: Path) -> None:
    folder = notebook.parent
    remote = trials_command(notebook.name, "--seed", str(SEED), "--trials", "0-3",
                            "--scheduler", cluster, "--collect", ",".join(COLLECT),
                            "--verify", "2", "--minimize", "loss", "--out", "remote.json",
                            cwd=folder)
    assert remote.returncode == 0, remote.stderr[-3000:]
    assert remote.stdout.count("): identical") == 2, remote.stdout
    assert "re-create trial k in a notebook: %det_seed 42 --trial k\n" in remote.stdout
    local = trials_command(notebook.name, "--seed", str(SEED), "--trials", "0-3",
                           "--workers", "2", "--collect", ",".join(COLLECT), "--out",
                           "local.json", cwd=folder)
    assert local.returncode == 0, local.stderr[-3000:]

    on_scheduler = json.loads((folder / "remote.json").read_text())
    on_local_cluster = json.loads((folder / "local.json").read_text())
    assert on_scheduler["format"] == "det_nb.trials" and on_scheduler["version"] == 1
    assert (on_scheduler["experiment_seed"], on_scheduler["scheme"]) == (SEED, "seedsequence")
    trials = on_scheduler["trials"]
    assert [t["trial"] for t in trials] == [0, 1, 2, 3]
    assert all(t["error"] is None and t["worker"].startswith("tcp://127.0.0.1:")
               for t in trials)
    assert {t["trial"]: t["trial_seed"] for t in trials if t["trial"] in TRIAL_SEEDS} == \
        TRIAL_SEEDS
    assert [t["record"]["lineage"]["trial_seed"] for t in trials] == \
        [t["trial_seed"] for t in trials]
    assert len({json.dumps(t["collected"]) for t in trials}) == 4  # trials differ
    # The same values bit for bit on both clusters (JSON keeps every float's exact digits).
    for here, there in zip(trials, on_local_cluster["trials"], strict=True):
        assert here["collected"] == there["collected"]
        assert here["fingerprints"] == there["fingerprints"]
    verified = on_scheduler["verified"]
    assert len(verified) == 2 and all(v["identical"] and v["differences"] == [] for v in
                                      verified)
    assert all(v["first_worker"] != v["again_worker"] for v in verified)
    best = min(trials, key=lambda t: t["collected"]["loss"])
    assert f"best loss (minimize): trial {best['trial']} = " in remote.stdout
    assert load(folder / "remote.json").best("loss").trial == best["trial"]

    # The line the table shows re-creates each trial in the user's own notebook.
    for trial in trials:
        k = trial["trial"]
        own = write_notebook(folder / f"own-{k}.ipynb",
                             f"%load_ext det_nb\n%det_seed {SEED} --trial {k} --quiet",
                             WORK_CELL)
        mine = run_notebook(own, env=trial_environment(), collect=COLLECT, timeout=120)
        assert mine.error is None
        assert {n: v for n, v in trial["collected"].items() if n != "x"} == \
            {n: v for n, v in mine.collected.items() if n != "x"}
        assert trial["collected"]["x"]["digest"] == mine.collected["x"].digest


def test_a_failing_trial_is_reported_and_the_others_complete(
        cluster: str, tmp_path: Path) -> None:
    failing = write_notebook(tmp_path / "failing.ipynb", SEED_CELL, WORK_CELL, FAIL_CELL)
    result = run_trials(failing, SEED, "0-2", scheduler=cluster, collect=["loss"])
    assert [r.error for r in result.trials] == [
        None, "cell 3: ValueError: trial 1 diverged", None]
    assert all(isinstance(r.collected["loss"], float) for r in (result.trials[0],
                                                               result.trials[2]))
    assert not result.ok
    assert "cell 3: ValueError: trial 1 diverged" in result.summary()


def test_a_killed_worker_loses_no_trial(tmp_path: Path) -> None:
    from distributed import Client

    notebook = write_notebook(tmp_path / "slow.ipynb", SEED_CELL, KILL_CELL, WORK_CELL)
    with dask_cluster(2) as (address, workers):
        run = start("-m", "det_nb.trials", notebook.name, "--seed", str(SEED), "--trials",
                    "0,1", "--scheduler", address, "--collect", ",".join(COLLECT), "--out",
                    "out.json", tag=uuid.uuid4().hex, cwd=tmp_path)
        try:
            marker = tmp_path / "running-0"
            deadline = time.monotonic() + 120
            while not (marker.exists() and marker.read_text()):
                assert run.poll() is None, f"trials ended early: {finish(run, 1)[1][-3000:]}"
                assert time.monotonic() < deadline, "trial 0 never ran"
                time.sleep(0.2)
            killed = int(marker.read_text())
            victim = next(w for w in workers if w.pid == killed)  # a worker runs the kernel
            with Client(address, timeout=30, set_as_default=False) as client:
                dead_address = next(a for a, pid in client.run(os.getpid).items()
                                    if pid == killed)
            os.kill(victim.pid, signal.SIGKILL)
            _, err = finish(run, 180)
        finally:
            stop(run)
        assert run.returncode == 0, err[-3000:]
    results = {t["trial"]: t for t in json.loads((tmp_path / "out.json").read_text())["trials"]}
    assert results[0]["error"] is None and results[0]["worker"] != dead_address
    # The re-run of trial 0 gave exactly what an undisturbed run gives.
    plain = write_notebook(tmp_path / "plain.ipynb", SEED_CELL, WORK_CELL)
    expected = run_notebook(plain, env=trial_environment(), seed=SEED, trial=0,
                            collect=COLLECT, timeout=120)
    assert {n: v for n, v in results[0]["collected"].items() if n != "x"} == \
        {n: v for n, v in expected.collected.items() if n != "x"}
    assert results[0]["collected"]["x"]["digest"] == expected.collected["x"].digest


def test_ctrl_c_stops_the_cluster_and_its_kernels(tmp_path: Path) -> None:
    notebook = write_notebook(tmp_path / "waits.ipynb", SEED_CELL, WAIT_CELL)
    tag = uuid.uuid4().hex
    run = start("-m", "det_nb.trials", notebook.name, "--seed", str(SEED), "--trials", "0-1",
                "--workers", "2", tag=tag, cwd=tmp_path)
    try:
        deadline = time.monotonic() + 120
        while not all((tmp_path / f"running-{k}").exists() for k in (0, 1)):
            assert run.poll() is None, f"trials ended early: {finish(run, 1)[1][-3000:]}"
            assert time.monotonic() < deadline, "trials never ran"
            time.sleep(0.2)
        os.killpg(run.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
        _, err = finish(run, 120)
        assert run.returncode == 130, err[-3000:]
        # A loaded machine may add a warning of Dask's; never a traceback.
        assert err.splitlines()[-1] == ("python -m det_nb trials: interrupted; the cluster it "
                                        "started is stopped") and "Traceback" not in err, err
        assert_none_left(tag, within=60)
    finally:
        stop(run)


def test_any_executor_runs_trials(notebook: Path) -> None:
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    with ProcessPoolExecutor(2, mp_context=get_context("spawn")) as pool:
        result = run_trials(notebook, SEED, [3, 0], executor=pool, collect=["loss"], verify=1)
    assert [(r.trial, r.trial_seed, r.error) for r in result.trials] == [
        (3, TRIAL_SEEDS[3], None), (0, TRIAL_SEEDS[0], None)]
    assert [check.identical for check in result.verifications] == [True]
    assert result.ok


def test_compare_names_what_differs() -> None:
    from det_nb.trials import TrialResult

    cells = [{"cell": 1, "first_line": "x = 1", "names": {"x": "aa"}, "outputs": "o"}]
    first = TrialResult(3, 1129302213, "w1", 1.0, {"loss": 0.5, "curve": [1.0, 2.0]}, cells,
                        None, None)
    moved = [{**cells[0], "names": {"x": "bb"}}]
    again = TrialResult(3, 1129302213, "w2", 1.0, {"loss": 0.5, "curve": [1.0, 2.25]}, moved,
                        None, None)
    assert compare(first, first) == []
    assert compare(first, again) == ["curve: max abs diff 0.25", "cell 1: x differ"]
