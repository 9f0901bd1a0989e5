"""Trials on Dask: real ``dask scheduler`` / ``dask worker`` processes on 127.0.0.1.

Every test that starts processes stops them (process-group kill in ``finally``), picks free
ports and bounds every wait. The notebook is tiny and NumPy-only, so kernels start fast.
Kernels started for these tests carry a marker in their environment; after the processes
stop, none may be left.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import math
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import nbformat
import pytest
from conftest import QUIET_TF

from det_nb.lineage import Lineage
from det_nb.notebook_runner import run_notebook
from det_nb.trials import (
    TrialResult,
    compare,
    load,
    parse_trials,
    run_trials,
    trial_environment,
)

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


def start(*args: str, tag: str, cwd: Path | None = None, env: dict[str, str] | None = None,
          stdout: int | None = None) -> subprocess.Popen:
    """A process in its own group (so stopping it takes its children too), marked ``tag``.

    Its children (workers, kernels) inherit the marker in their environment, and ``env``.
    Its output goes to files, not pipes: a pipe nobody reads while the test waits (a Dask
    scheduler's log, a worker's warnings) fills up and blocks the process (``stdout``
    PIPE for a test that reads it).
    """
    env = {**os.environ, **QUIET_TF, MARKER: tag, **(env or {})}
    out, err = tempfile.TemporaryFile("w+"), tempfile.TemporaryFile("w+")  # noqa: SIM115 - stop closes them
    process = subprocess.Popen([sys.executable, *args], env=env, cwd=cwd,
                               stdout=out if stdout is None else stdout, stderr=err, text=True,
                               start_new_session=True)
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
    if process.stdout is not None:
        process.stdout.close()


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
def dask_cluster(workers: int, env: dict[str, str] | None = None
                 ) -> Iterator[tuple[str, list[subprocess.Popen]]]:
    """A real ``dask scheduler`` and ``workers`` single-threaded ``dask worker`` processes.

    Workers run without a nanny, so each process is the worker itself (the test kills one).
    """
    from distributed import Client

    port, tag = free_port(), uuid.uuid4().hex
    address = f"tcp://127.0.0.1:{port}"
    processes = [start("-m", "dask", "scheduler", "--host", "127.0.0.1", "--port", str(port),
                       "--no-dashboard", tag=tag, env=env)]
    try:
        processes += [start("-m", "dask", "worker", address, "--host", "127.0.0.1",
                            "--nthreads", "1", "--no-nanny", "--no-dashboard", tag=tag,
                            env=env)
                      for _ in range(workers)]
        with Client(address, timeout=60, set_as_default=False) as client:
            client.wait_for_workers(workers, timeout=90)
        yield address, processes[1:]
    finally:
        for process in reversed(processes):
            stop(process)
    assert_none_left(tag)


def trials_command(*args: str, cwd: Path, timeout: float = 240,
                   env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """``python -m det_nb.trials ARGS`` in a fresh interpreter, stopped after ``timeout``.

    What it started (a LocalCluster's workers, kernels) must be gone when it returns.
    """
    tag = uuid.uuid4().hex
    process = start("-m", "det_nb.trials", *args, tag=tag, cwd=cwd, env=env)
    try:
        out, err = finish(process, timeout)
        assert_none_left(tag)
    finally:
        stop(process)
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


@pytest.fixture(scope="module")
def cluster_temp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The temporary folder (TMPDIR) of the shared cluster's processes and their kernels."""
    return tmp_path_factory.mktemp("cluster-tmp")


@pytest.fixture(scope="module")
def cluster(cluster_temp: Path) -> Iterator[str]:
    """A scheduler with two workers, shared by the tests that do not kill one."""
    with dask_cluster(2, env={"TMPDIR": str(cluster_temp)}) as (address, _):
        yield address


def private_temp(folder: Path) -> dict[str, str]:
    """Environment giving a run (and what it starts) its own temporary and Jupyter runtime
    folders, so a test can see everything it left behind."""
    (folder / "tmp").mkdir()
    return {"TMPDIR": str(folder / "tmp"), "JUPYTER_RUNTIME_DIR": str(folder / "runtime")}


def left_behind(env: dict[str, str]) -> list[str]:
    """What is in a run's temporary and Jupyter runtime folders (see private_temp)."""
    return sorted(str(path) for name in ("TMPDIR", "JUPYTER_RUNTIME_DIR")
                  for path in Path(env[name]).glob("*"))


def wait_for_file(path: Path, process: subprocess.Popen, within: float = 180) -> None:
    """Wait until ``path`` exists; fail if ``process`` ended first or time runs out."""
    deadline = time.monotonic() + within
    while not path.exists():
        assert process.poll() is None, f"ended early: {finish(process, 1)[1][-3000:]}"
        assert time.monotonic() < deadline, f"{path.name} never appeared"
        time.sleep(0.2)


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
def peer(kind: str) -> Iterator[str]:
    """The address of a loopback service that is not a Dask scheduler.

    "silent": accepts and never answers; "ssh": greets like an SSH server; "http": an HTTP
    server (given with and without tcp://).
    """
    if kind.startswith("http"):
        import http.server

        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                                 http.server.SimpleHTTPRequestHandler)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            port = server.server_address[1]
            yield f"tcp://127.0.0.1:{port}" if kind == "http" else f"127.0.0.1:{port}"
        finally:
            server.shutdown()
            server.server_close()
        return
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listener.settimeout(0.2)
        done, held = threading.Event(), []

        def serve() -> None:
            while not done.is_set():
                try:
                    connection, _ = listener.accept()
                except OSError:
                    continue
                held.append(connection)  # open until the test ends: silence, not a close
                if kind == "ssh":
                    connection.sendall(b"SSH-2.0-OpenSSH_9.6\r\n" * 8)

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        try:
            yield f"tcp://127.0.0.1:{listener.getsockname()[1]}"
        finally:
            done.set()
            thread.join(5)
            for connection in held:
                connection.close()


@pytest.mark.parametrize(("kind", "why"), [
    ("silent", "something accepted the connection but did not answer as a Dask scheduler"),
    ("http", "something accepted the connection but did not answer as a Dask scheduler"),
    ("http, no scheme",
     "something accepted the connection but did not answer as a Dask scheduler"),
    ("ssh", None),  # whatever it makes of the greeting, in one line
])
def test_a_peer_that_is_not_a_scheduler_is_one_line_within_the_connect_timeout(
        notebook: Path, kind: str, why: str | None) -> None:
    with peer(kind) as address:
        refused = trials_command(notebook.name, "--seed", "42", "--trials", "0",
                                 "--scheduler", address, "--connect-timeout", "3",
                                 cwd=notebook.parent, timeout=60)  # hung: TimeoutExpired
    assert refused.returncode == 2 and refused.stdout == "", refused
    # one line: no traceback, and no "Exception ignored in Client.__del__" at exit
    [line] = refused.stderr.splitlines()
    assert line.startswith(f"python -m det_nb trials: error: cannot reach the Dask scheduler "
                           f"at '{address}' within 3 s: "), line
    assert why is None or line.endswith(why), line


def test_a_workers_address_is_not_taken_for_the_schedulers(cluster: str, notebook: Path) -> None:
    from distributed import Client

    with Client(cluster, timeout=30, set_as_default=False) as client:
        worker = next(iter(client.scheduler_info()["workers"]))
    refused = trials_command(notebook.name, "--seed", "42", "--trials", "0", "--scheduler",
                             worker, "--connect-timeout", "3", cwd=notebook.parent, timeout=60)
    assert refused.returncode == 2, refused
    assert refused.stderr.splitlines() == [
        f"python -m det_nb trials: error: cannot reach the Dask scheduler at '{worker}' within "
        "3 s: what answers there is a Dask worker or nanny: give the scheduler's address"]


@pytest.mark.parametrize(("address", "says"), [
    ("garbage", "missing port number in address 'garbage'"),
    ("http://127.0.0.1:8786", "unknown address scheme 'http'"),
])
def test_an_address_that_is_no_address_is_one_line(
        notebook: Path, address: str, says: str, capsys: pytest.CaptureFixture[str]) -> None:
    from det_nb.trials import main

    assert main([str(notebook), "--seed", "42", "--trials", "0", "--scheduler", address]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1, err
    assert err.startswith(f"python -m det_nb trials: error: --scheduler '{address}' is not a "
                          f"Dask scheduler address: {says}"), err
    assert err.endswith("; give tcp://HOST:PORT\n"), err


def test_results_are_printed_when_the_out_folder_is_gone(
        notebook: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    from det_nb import trials
    from det_nb.trials import TrialsResult

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


@pytest.mark.parametrize("swap", ["link to the notebook", "link elsewhere", "hard link",
                                  "a folder on the path"])
def test_out_swapped_while_trials_run_is_refused_and_nothing_written(
        notebook: Path, swap: str, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    from det_nb import trials
    from det_nb.trials import TrialsResult

    folder, elsewhere = notebook.parent / "results", notebook.parent / "precious.txt"
    folder.mkdir()
    elsewhere.write_text("precious")
    out = folder / "out.json"

    def trials_that_swap(*args: object, progress: Callable[[str], object],
                         **kwargs: object) -> TrialsResult:
        progress("[1/1] trial 0 done (1.0 s)")  # meanwhile, --out is swapped
        if swap == "link to the notebook":
            out.symlink_to(notebook)
        elif swap == "link elsewhere":
            out.symlink_to(elsewhere)
        elif swap == "hard link":
            os.link(notebook, out)
        else:
            folder.rename(notebook.parent / "moved")
            folder.symlink_to(notebook.parent / "moved")
        done = TrialResult(0, TRIAL_SEEDS[0], "w1", 1.0, {"loss": 0.25}, [], None, None)
        return TrialsResult(notebook.name, SEED, "seedsequence", ("loss",), [done])

    monkeypatch.setattr(trials, "run_trials", trials_that_swap)
    before = notebook.read_bytes()
    status = trials.main([str(notebook), "--seed", str(SEED), "--trials", "0", "--collect",
                          "loss", "--out", str(out)])
    printed, err = capsys.readouterr()
    says = {"hard link": f"it is the notebook '{notebook}'",
            "a folder on the path": "a folder on its path became a symbolic link after det_nb "
                                    "checked it"}.get(swap, "it became a symbolic link after "
                                                            "det_nb checked it")
    assert (status, err) == (2, f"python -m det_nb trials: error: cannot write '{out}': {says}; "
                                "nothing was written\n")
    assert notebook.read_bytes() == before and elsewhere.read_text() == "precious"
    assert f"0      {TRIAL_SEEDS[0]}   w1      1.00     0.25" in printed  # shown, not lost
    assert not (notebook.parent / "moved" / "out.json").exists()


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
    assert on_scheduler["format"] == "det_nb.trials" and on_scheduler["version"] == 2
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


# Trial 0 changes the notebook on disk, so trial 1 runs from a private copy (det_nb-trial-*
# in the temporary folder), says where it runs, and waits for the test's signal.
SELF_CHANGING_CELL = """\
import os, pathlib, time
import det_nb

here = pathlib.Path(os.environ["DET_NB_TEST_FOLDER"])
if det_nb.lineage().trial == 0:
    book = here / "waits.ipynb"
    book.write_text(book.read_text() + " ")
else:
    (here / f"running-{det_nb.lineage().trial}").write_text(os.getcwd())
    time.sleep(120)"""


@pytest.mark.parametrize(("sig", "to_group", "status", "said"), [
    (signal.SIGINT, True, 130, "interrupted"),
    (signal.SIGTERM, False, 143, "terminated (SIGTERM)"),
    (signal.SIGTERM, True, 143, "terminated (SIGTERM)"),
], ids=["ctrl-c", "sigterm", "sigterm-to-the-group"])
def test_an_interrupt_stops_the_cluster_and_its_kernels_and_leaves_nothing_behind(
        tmp_path: Path, sig: signal.Signals, to_group: bool, status: int, said: str) -> None:
    env = {**private_temp(tmp_path), "DET_NB_TEST_FOLDER": str(tmp_path)}
    notebook = write_notebook(tmp_path / "waits.ipynb", SEED_CELL, SELF_CHANGING_CELL)
    tag = uuid.uuid4().hex
    run = start("-m", "det_nb.trials", notebook.name, "--seed", str(SEED), "--trials", "0-1",
                "--workers", "1", tag=tag, cwd=tmp_path, env=env)
    try:
        wait_for_file(tmp_path / "running-1", run)
        assert (tmp_path / "running-1").read_text().startswith(
            os.path.join(env["TMPDIR"], "det_nb-trial-"))  # it runs from a private copy
        if to_group:
            os.killpg(run.pid, sig)  # a terminal's Ctrl-C; `timeout` and systemd's SIGTERM
        else:
            os.kill(run.pid, sig)
        _, err = finish(run, 120)
        assert run.returncode == status, err[-3000:]
        # A loaded machine may add a warning of Dask's; never a traceback.
        assert err.splitlines()[-1] == (f"python -m det_nb trials: {said}; the cluster it "
                                        "started is stopped") and "Traceback" not in err, err
        assert_none_left(tag, within=60)
        # kernels' connection files (with their keys), run folders, Dask's scratch space
        assert left_behind(env) == []
    finally:
        stop(run)


def test_ctrl_c_with_a_scheduler_stops_the_trials_kernels_on_its_workers(
        cluster: str, cluster_temp: Path, tmp_path: Path) -> None:
    notebook = write_notebook(tmp_path / "waits.ipynb", SEED_CELL, WAIT_CELL)

    def kernels() -> list[int]:  # the workers' kernels name their connection files
        found = []
        for entry in Path("/proc").iterdir():
            with contextlib.suppress(OSError):
                if entry.name.isdigit() and str(cluster_temp).encode() in (
                        entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
        return found

    run = start("-m", "det_nb.trials", notebook.name, "--seed", str(SEED), "--trials", "0-1",
                "--scheduler", cluster, tag=uuid.uuid4().hex, cwd=tmp_path)
    try:
        for k in (0, 1):
            wait_for_file(tmp_path / f"running-{k}", run)
        assert len(kernels()) == 2 and len(list(cluster_temp.glob("tmp*.json"))) == 2
        os.killpg(run.pid, signal.SIGINT)
        _, err = finish(run, 120)
    finally:
        stop(run)
    assert run.returncode == 130, err[-3000:]
    assert err.splitlines()[-1] == ("python -m det_nb trials: interrupted; its trials are "
                                    "cancelled; the scheduler keeps its workers"), err
    deadline = time.monotonic() + 60
    while kernels() or list(cluster_temp.glob("tmp*.json")):
        assert time.monotonic() < deadline, f"left on the workers: {kernels()}"
        time.sleep(0.5)


def test_a_closed_stdout_ends_trials_quietly_and_stops_everything(tmp_path: Path) -> None:
    env = private_temp(tmp_path)
    notebook = write_notebook(tmp_path / "tiny.ipynb", SEED_CELL, WORK_CELL)
    tag = uuid.uuid4().hex
    run = start("-m", "det_nb.trials", notebook.name, "--seed", str(SEED), "--trials", "0-3",
                "--workers", "1", tag=tag, cwd=tmp_path, env=env, stdout=subprocess.PIPE)
    try:
        assert run.stdout.readline().startswith("[1/4] trial 0 done")
        run.stdout.close()  # what `| head -1` does after its line
        _, err = finish(run, 180)
        assert (run.returncode, err) == (141, "")  # no BrokenPipeError, no traceback
        assert_none_left(tag, within=60)
        assert left_behind(env) == []
    finally:
        stop(run)


SLEEPY_CELL = """\
import time
import det_nb

if det_nb.lineage().trial == 1:
    time.sleep(300)
loss = 0.5"""


def test_a_trial_past_its_timeout_fails_alone_and_its_kernel_is_stopped(tmp_path: Path) -> None:
    env = private_temp(tmp_path)
    notebook = write_notebook(tmp_path / "sleepy.ipynb", SEED_CELL, SLEEPY_CELL)
    done = trials_command(notebook.name, "--seed", str(SEED), "--trials", "0-1", "--workers",
                          "1", "--collect", "loss", "--timeout", "25", cwd=tmp_path, env=env,
                          timeout=200)
    assert done.returncode == 1, done.stderr[-3000:]
    assert "[1/2] trial 0 done" in done.stdout
    assert "[2/2] trial 1 failed: timed out after 25 s in cell 2 (--timeout)" in done.stdout
    assert "2 trials, 1 failed" in done.stdout
    assert left_behind(env) == []


def test_a_scheduler_without_workers_is_one_line_exit_2(notebook: Path) -> None:
    port, tag = free_port(), uuid.uuid4().hex
    address = f"tcp://127.0.0.1:{port}"
    scheduler = start("-m", "dask", "scheduler", "--host", "127.0.0.1", "--port", str(port),
                      "--no-dashboard", tag=tag)
    try:
        deadline = time.monotonic() + 60
        while True:  # until it listens
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            assert time.monotonic() < deadline and scheduler.poll() is None
            time.sleep(0.2)
        refused = trials_command(notebook.name, "--seed", "42", "--trials", "0-1",
                                 "--scheduler", address, "--workers-timeout", "3",
                                 cwd=notebook.parent, timeout=90)
    finally:
        stop(scheduler)
    assert refused.returncode == 2 and refused.stdout == "", refused
    assert refused.stderr.splitlines() == [
        f"python -m det_nb trials: error: the scheduler at '{address}' has no workers: none "
        f"came within 3 s (--workers-timeout); start one with: dask worker {address}"]


def test_workers_that_vanish_mid_run_end_the_wait_with_the_table(tmp_path: Path) -> None:
    notebook = write_notebook(tmp_path / "waits.ipynb", SEED_CELL, WAIT_CELL)
    with dask_cluster(1) as (address, workers):
        run = start("-m", "det_nb.trials", notebook.name, "--seed", str(SEED), "--trials",
                    "0-1", "--scheduler", address, "--workers-timeout", "5",
                    tag=uuid.uuid4().hex, cwd=tmp_path)
        try:
            wait_for_file(tmp_path / "running-0", run)
            os.kill(workers[0].pid, signal.SIGKILL)  # the only worker
            out, err = finish(run, 120)
        finally:
            stop(run)
    assert run.returncode == 1, err[-3000:]
    why = "the scheduler has no workers: none for 5 s (--workers-timeout)"
    assert f"stopped waiting: {why}\n" in out
    assert out.count(f"not run: {why}") == 2 and "2 trials, 2 failed" in out


GATED_CELL = """\
import os, pathlib, time

here = pathlib.Path(os.environ["DET_NB_TEST_FOLDER"])
(here / "running-0").write_text("yes")
while not (here / "go").exists():
    time.sleep(0.1)
loss = 0.25"""


@pytest.mark.parametrize("swap", ["link", "hard link"])
def test_out_swapped_for_the_notebook_during_the_run_is_refused(tmp_path: Path,
                                                                swap: str) -> None:
    notebook = write_notebook(tmp_path / "book.ipynb", SEED_CELL, GATED_CELL)
    before, out = notebook.read_bytes(), tmp_path / "out.json"
    run = start("-m", "det_nb.trials", notebook.name, "--seed", str(SEED), "--trials", "0",
                "--workers", "1", "--collect", "loss", "--out", out.name,
                tag=uuid.uuid4().hex, cwd=tmp_path, env={"DET_NB_TEST_FOLDER": str(tmp_path)})
    try:
        wait_for_file(tmp_path / "running-0", run)
        if swap == "link":  # --out was checked at the start; now it leads to the notebook
            out.symlink_to(notebook)
        else:
            os.link(notebook, out)
        (tmp_path / "go").write_text("go")
        printed, err = finish(run, 180)
    finally:
        stop(run)
    assert run.returncode == 2, err[-3000:]
    says = ("it became a symbolic link after det_nb checked it" if swap == "link"
            else "it is the notebook 'book.ipynb'")
    assert err.splitlines() == [
        f"python -m det_nb trials: error: cannot write '{out}': {says}; nothing was written"]
    assert notebook.read_bytes() == before
    assert f"0      {TRIAL_SEEDS[0]}" in printed  # the results were printed, not lost


VALUES_CELL = """\
import det_nb

trial = det_nb.lineage().trial
loss = float("nan") if trial == 1 else 0.5 + trial
curve = [1.0, float("inf"), float("-inf"), float("nan")]
big = 10 ** 5000
kept = 'still here\\n[ok  ] forged'"""


def test_nan_infinities_and_a_huge_int_from_real_kernels(tmp_path: Path) -> None:
    name = "odd\nname\udcff.ipynb"  # a newline and a byte that is not UTF-8
    write_notebook(tmp_path / name, SEED_CELL, VALUES_CELL)
    [verified] = random.Random(SEED).sample([0, 1], 1)
    done = trials_command(name, "--seed", str(SEED), "--trials", "0-1", "--workers", "1",
                          "--collect", "curve,big,kept", "--minimize", "loss", "--verify", "1",
                          "--out", "out.json", cwd=tmp_path, timeout=300)
    # big cannot be moved out of the kernel as JSON: unchecked (that name only), so the
    # verification proves nothing (exit 3); were the kernel to hash it, it is compared.
    assert (tmp_path / "out.json").exists(), done.stderr[-3000:]
    document = json.loads((tmp_path / "out.json").read_text())
    hashed = document["trials"][0]["collected"]["big"]["kind"] == "value"
    assert done.returncode == (0 if hashed else 3), done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert all(line.isprintable() for line in lines), lines
    summary = lines[lines.index("") + 1:]
    assert summary[0] == ("odd\\nname\\udcff.ipynb: experiment seed 42, scheme seedsequence, "
                          "2 trials, 0 failed")
    assert [row.split()[0] for row in summary[3:5]] == ["0", "1"]  # NaN listed last
    assert "best loss (minimize): trial 0 = 0.5; NaN in trial 1 (never best, listed last)" \
        in summary
    unchecked = [line for line in summary if line.startswith("unchecked: trial ")]
    assert [line.split(":")[1] for line in unchecked] == (
        [] if hashed else [" trial 0 big", " trial 1 big"])
    assert all(line.startswith(f"unchecked: trial {k} big: ") and ("4300" in line or "int" in line)
               for k, line in enumerate(unchecked)), unchecked
    [check] = [line for line in summary if line.startswith(f"verify trial {verified} ")]
    notes = "; note: curve holds NaN in both runs" + (
        "; note: loss is NaN in both runs" if verified == 1 else "")
    assert (": identical;" if hashed else ": NOT proven: nothing that was compared differed, "
            "but not compared: big: ") in check, check
    assert check.endswith(notes), check

    def refuse(constant: str) -> None:
        raise AssertionError(f"{constant} in a strict JSON file")

    document = json.loads((tmp_path / "out.json").read_text(), parse_constant=refuse)
    assert document["non_finite"]["/trials/1/collected/loss"] == "NaN"
    loaded = load(tmp_path / "out.json")
    first, second = loaded.trials
    assert math.isnan(second.collected["loss"]) and first.collected["loss"] == 0.5
    assert first.collected["curve"][:3] == [1.0, math.inf, -math.inf]
    assert math.isnan(first.collected["curve"][3])
    assert first.collected["kept"] == "still here\n[ok  ] forged"  # kept beside big
    assert loaded.notebook == name and loaded.summary().splitlines()[0] == summary[0]


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
    cells = [{"cell": 1, "first_line": "x = 1", "names": {"x": "aa"}, "outputs": "o"}]
    first = TrialResult(3, 1129302213, "w1", 1.0, {"loss": 0.5, "curve": [1.0, 2.0]}, cells,
                        None, None)
    moved = [{**cells[0], "names": {"x": "bb"}}]
    again = TrialResult(3, 1129302213, "w2", 1.0, {"loss": 0.5, "curve": [1.0, 2.25]}, moved,
                        None, None)
    assert compare(first, first) == []
    assert compare(first, again) == ["curve: max abs diff 0.25", "cell 1: x differ"]


# -- results without kernels: NaN, unchecked values, strict files, escaped text (issue 19) --


class ScriptedExecutor(concurrent.futures.Executor):
    """Gives each trial the result scripted for it, first run and re-run, with no kernel."""

    def __init__(self, runs: dict[int, list[TrialResult]]) -> None:
        self.runs = {trial: list(results) for trial, results in runs.items()}

    def submit(self, fn: object, /, *args: object, **kwargs: object
               ) -> concurrent.futures.Future:
        (job,) = args
        future: concurrent.futures.Future = concurrent.futures.Future()
        future.set_result(self.runs[job.trial].pop(0))
        return future


def scripted(trial: int, worker: str, error: str | None = None,
             unchecked_cell: dict[str, str] | None = None, **collected: object) -> TrialResult:
    cells = [{"cell": 1, "first_line": "x = 1", "names": {"x": "aa"},
              "unchecked": unchecked_cell or {}, "outputs": "o"}]
    return TrialResult(trial, Lineage(SEED, trial, "seedsequence").trial_seed, worker, 1.5,
                       dict(collected), cells, None, error)


NAN, INF = float("nan"), float("inf")
BIG = {"digest": "", "description": "int: not moved out of the kernel: ValueError: Exceeds "
       "the limit (4300 digits) for integer string conversion", "kind": "unchecked"}


def test_equal_nans_are_identical_with_a_note_and_nan_is_never_best(notebook: Path) -> None:
    runs = {0: [scripted(0, "w1", loss=NAN, curve=[1.0, NAN])],
            1: [scripted(1, "w2", loss=0.25, curve=[1.0, 2.0])],
            2: [scripted(2, "w1", loss=-INF, curve=[0.0])]}
    for trial, (first,) in runs.items():  # each re-run gives the same values, NaN included
        runs[trial].append(TrialResult(**{**first.to_json(), "worker": "w3"}))
    result = run_trials(notebook, SEED, "0-2", executor=ScriptedExecutor(runs),
                        collect=["loss", "curve"], verify=3)
    assert [check.verdict() for check in result.verifications] == [
        "identical; note: curve holds NaN in both runs; note: loss is NaN in both runs",
        "identical", "identical"]
    assert result.ok and result.exit_status() == 0
    assert result.best("loss").trial == 2  # -inf is a number; NaN never wins
    assert result.best("loss", maximize=True).trial == 1
    assert [r.trial for r in result.ranked("loss")] == [2, 1, 0]
    assert [r.trial for r in result.ranked("loss", maximize=True)] == [1, 2, 0]
    summary = result.summary(minimize="loss").splitlines()
    assert [line.split()[0] for line in summary[3:6]] == ["2", "1", "0"]  # NaN listed last
    assert "best loss (minimize): trial 2 = -inf; NaN in trial 0 (never best, listed last)" \
        in summary


def test_when_every_number_is_nan_no_trial_is_best(notebook: Path) -> None:
    runs = {0: [scripted(0, "w1", loss=NAN)], 1: [scripted(1, "w1", loss=NAN)]}
    result = run_trials(notebook, SEED, "0-1", executor=ScriptedExecutor(runs),
                        collect=["loss"])
    assert result.best("loss") is None
    assert ("best loss (maximize): no trial collected a number; NaN in trials 0, 1 (never "
            "best, listed last)") in result.summary(maximize="loss").splitlines()


@pytest.mark.parametrize(("first", "again", "says"), [
    (0.0, -0.0, "loss: 0.0 then -0.0"),
    (1, 1.0, "loss: 1 then 1.0"),
    (NAN, 0.5, "loss: NaN in one run only"),
    ([1.0, NAN, 3.0], [1.5, 2.0, 3.0], "loss: max abs diff 0.5, NaN in one run only (1 of 3 "
     "values)"),
    (INF, -INF, "loss: max abs diff inf"),
    (10**400, 10**400 + 1, f"loss: {str(10**400)[:37]}... then {str(10**400)[:37]}..."),
    ("a\nb", "a\nc", "loss: 'a\\nb' then 'a\\nc'"),
])
def test_values_compare_bit_for_bit(first: object, again: object, says: str) -> None:
    assert compare(scripted(0, "w1", loss=first), scripted(0, "w2", loss=again)) == [says]


def test_unchecked_values_stay_that_names_problem_and_prove_nothing(notebook: Path) -> None:
    firsts = [scripted(0, "w1", big=BIG, kept="still here", unchecked_cell={"m": "Model"}),
              scripted(1, "w2", big=BIG, kept="here too")]
    runs = {first.trial: [first, TrialResult(**{**first.to_json(), "worker": "w9"})]
            for first in firsts}  # whichever trial the seed picks, its re-run is the same
    result = run_trials(notebook, SEED, [0, 1], executor=ScriptedExecutor(runs),
                        collect=["big", "kept"], verify=1)
    assert [r.collected["kept"] for r in result.trials] == ["still here", "here too"]
    assert result.trials[0].unchecked() == {"big": BIG["description"]}
    summary = result.summary()
    assert f"unchecked: trial 0 big: {BIG['description']}" in summary.splitlines()
    [check] = result.verifications
    assert check.identical and not check.proven
    assert check.verdict().startswith("NOT proven: nothing that was compared differed, but "
                                      f"not compared: big: {BIG['description']}")
    assert "identical" not in summary.split("verify trial", 1)[1]
    assert (result.ok, result.exit_status(), result.exit_status(allow_unchecked=True)) == (
        False, 3, 0)
    row = next(line for line in summary.splitlines() if line.startswith("0 "))
    assert "unchecked" in row and "'still here'" in row


def test_results_files_are_strict_json_and_load_back_the_same_floats(
        notebook: Path, tmp_path: Path) -> None:
    runs = {0: [scripted(0, "w1", loss=NAN, curve=[INF, -INF, 0.5], odd={"a/b~c": NAN})],
            1: [scripted(1, "w2", loss=0.5, curve=[], odd={})]}
    result = run_trials(notebook, SEED, "0-1", executor=ScriptedExecutor(runs),
                        collect=["loss", "curve", "odd"])
    path = tmp_path / "results.json"
    result.write(path)

    def refuse(name: str) -> None:
        raise AssertionError(f"{name} in a strict JSON file")

    document = json.loads(path.read_text(), parse_constant=refuse)
    assert document["trials"][0]["collected"] == {"loss": None, "curve": [None, None, 0.5],
                                                  "odd": {"a/b~c": None}}
    assert document["non_finite"] == {
        "/trials/0/collected/loss": "NaN", "/trials/0/collected/curve/0": "Infinity",
        "/trials/0/collected/curve/1": "-Infinity", "/trials/0/collected/odd/a~1b~0c": "NaN"}
    loaded = load(path)
    values = loaded.trials[0].collected
    assert math.isnan(values["loss"]) and values["curve"][:2] == [INF, -INF]
    assert math.isnan(values["odd"]["a/b~c"])
    assert loaded.to_json() == document
    assert loaded.summary() == result.summary()


def test_report_text_escapes_names_errors_and_workers(notebook: Path) -> None:
    forged = "boom\n[ok  ] forged: all fine\x1b[31m"
    runs = {0: [scripted(0, "w\n1", error=f"cell 2: ValueError: {forged}", token="a\nb")],
            1: [scripted(1, "w\udcff", token="\udcff")]}
    result = run_trials(notebook, SEED, "0-1", executor=ScriptedExecutor(runs),
                        collect=["token"])
    result.notebook = "my\nbook\udcff.ipynb"  # as a file name read from disk can be
    lines = result.summary().splitlines()
    assert lines[0] == "my\\nbook\\udcff.ipynb: experiment seed 42, scheme seedsequence, " \
                       "2 trials, 1 failed"
    assert len(lines) == 7 and all(line.isprintable() for line in lines), lines
    "\n".join(lines).encode("utf-8")  # a strict UTF-8 terminal prints it
    assert "cell 2: ValueError: boom\\n[ok  ] forged: all fine\\x1b[31m" in lines[3]
    assert "w\\n1" in lines[3] and "'a\\nb'" in lines[3] and "w\\udcff" in lines[4]


def test_a_trial_interrupted_off_dask_kills_its_kernel_and_removes_its_files(
        tmp_path: Path) -> None:
    """Ctrl-C in a process pool's worker (outside Dask) leaves the event loop at once: the
    trial still kills its kernel and removes its connection file and private folder."""
    env = {**private_temp(tmp_path), "DET_NB_TEST_FOLDER": str(tmp_path)}
    notebook = write_notebook(tmp_path / "waits.ipynb", SEED_CELL, SELF_CHANGING_CELL)
    code = (
        "import pathlib, sys\n"
        "from det_nb.trials import TrialJob, run_trial, trial_environment\n"
        "source = pathlib.Path(sys.argv[1]).read_bytes()\n"
        "run_trial(TrialJob('waits.ipynb', source, '/elsewhere/waits.ipynb', 42, 1,\n"
        "                   'seedsequence', (), 120.0, trial_environment()))\n")
    tag = uuid.uuid4().hex
    run = start("-c", code, str(notebook), tag=tag, cwd=tmp_path, env=env)
    try:
        wait_for_file(tmp_path / "running-1", run)
        assert (tmp_path / "running-1").read_text().startswith(
            os.path.join(env["TMPDIR"], "det_nb-trial-"))
        assert list(Path(env["TMPDIR"]).glob("tmp*.json"))  # the kernel's connection file
        os.kill(run.pid, signal.SIGINT)
        _, err = finish(run, 60)
        assert "KeyboardInterrupt" in err  # nothing here turns it into one line
        assert_none_left(tag, within=30)
        assert left_behind(env) == []
    finally:
        stop(run)


# A notebook that seeds det_nb itself keeps its own lineage whatever trial runs it.
SELF_SEEDED = {
    "det_nb.seed": "import det_nb\ndet_nb.seed(42)",
    "run_line_magic": "%load_ext det_nb\nget_ipython().run_line_magic('det_seed', '42')",
}
SELF_SEEDED_FIX = (
    "seed it with a %det_seed line, which trials rewrites with each trial's seed and trial, "
    "instead of det_nb.seed(...) or run_line_magic('det_seed', ...)")


@pytest.mark.parametrize("seeding", SELF_SEEDED)
def test_a_notebook_that_seeds_its_own_lineage_is_told_to_use_a_det_seed_line(
        tmp_path: Path, seeding: str) -> None:
    notebook = write_notebook(tmp_path / "own.ipynb", SELF_SEEDED[seeding],
                              "import random\nx = random.random()")
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        result = run_trials(notebook, SEED, [3], executor=pool, collect=["x"])
    [trial] = result.trials
    assert trial.error == (
        "the notebook seeds det_nb itself: it ran with experiment seed 42 -> trial none -> "
        "trial seed 42 [seedsequence], not this trial's experiment seed 42 -> trial 3 -> "
        f"trial seed {TRIAL_SEEDS[3]} [seedsequence]: {SELF_SEEDED_FIX}")
    assert not result.ok


def _ran(seed: int, trial: int | None, scheme: str, origin: str = "given") -> dict:
    """A run record holding only the lineage the kernel ran with."""
    lineage = Lineage(seed, trial, scheme, origin)
    return {"lineage": {"experiment_seed": seed, "experiment_seed_origin": origin,
                        "trial": trial, "scheme": scheme, "trial_seed": lineage.trial_seed}}


@pytest.mark.parametrize(("record", "says"), [
    (_ran(42, 3, "seedsequence"), None),
    (None, "det_nb was not seeded in the kernel: the trial's lineage was not in force"),
    (_ran(42, 3, "determined"), "the notebook ran with scheme determined (trial seed "
                                "1572714583), not seedsequence: run the trials with --scheme "
                                "determined"),
    (_ran(7, 1, "determined"), "the notebook seeds det_nb itself: it ran with experiment seed "
                               "7 -> trial 1 -> trial seed 1882953283 [determined], not this "
                               "trial's experiment seed 42 -> trial 3 -> trial seed "
                               f"{TRIAL_SEEDS[3]} [seedsequence]: {SELF_SEEDED_FIX}"),
    (_ran(1796383807, None, "seedsequence", "assigned"),
     "the notebook seeds det_nb itself: it ran with experiment seed 1796383807 (assigned) -> "
     "trial none -> trial seed 1796383807 [seedsequence], not this trial's experiment seed 42 "
     f"-> trial 3 -> trial seed {TRIAL_SEEDS[3]} [seedsequence]: {SELF_SEEDED_FIX}"),
])
def test_a_lineage_mismatch_names_its_cause_and_fix(record: dict | None, says: str | None
                                                    ) -> None:
    from det_nb.trials import _lineage_mismatch

    assert _lineage_mismatch(Lineage(SEED, 3), record) == says


def test_verify_finds_a_value_changed_without_its_name_and_an_unseeded_draw_proves_nothing(
    tmp_path: Path,
) -> None:
    """A cell that changes ``acc`` through another reference parts the runs after the last
    cell; a draw from OS entropy whose values all came out equal proves nothing (exit 3)."""
    write_notebook(tmp_path / "through.ipynb", SEED_CELL,
                   "import os\nw = [0]\nacc = w\ndef bump():\n"
                   "    w[0] += int.from_bytes(os.urandom(2), 'little')",
                   "bump()\ntotal = 1")
    parted = trials_command("through.ipynb", "--seed", "1", "--trials", "0", "--workers", "1",
                            "--verify", "1", cwd=tmp_path)
    assert parted.returncode == 1, parted.stderr[-2000:]
    assert "after the last cell: acc differ" in parted.stdout
    write_notebook(tmp_path / "drawn.ipynb", SEED_CELL,
                   "import uuid\nuuid.uuid4()\nsize = 3")
    unproven = trials_command("drawn.ipynb", "--seed", "1", "--trials", "0", "--workers", "1",
                              "--verify", "1", cwd=tmp_path)
    assert unproven.returncode == 3, unproven.stderr[-2000:]
    assert "unseeded randomness: cell 2, line 2: uuid.uuid4()" in unproven.stdout
