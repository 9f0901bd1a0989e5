"""The deterministic kernel: installed with ``python -m det_nb kernel``, started for real."""

from __future__ import annotations

import json
import os
import random
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from det_nb import xla
from det_nb.cpu_kernels import pin_environment

pytest.importorskip("ipykernel")
jupyter_client = pytest.importorskip("jupyter_client")

NAME = "det-nb-test"
SEED_RULE = "seed must be an integer in [0, 2147483647], got "
PROBE = """
import json, os, random, sys
import det_nb
lineage = det_nb.lineage()
print(json.dumps({
    "hash": hash("x"), "random": random.random(),
    "hash_randomization": sys.flags.hash_randomization,
    "hash check": det_nb.status().check("hash randomisation").state,
    "hash detail": det_nb.status().check("hash randomisation").detail,
    "trial seed": None if lineage is None else lineage.trial_seed,
    "threads": [os.environ.get("TF_NUM_INTRAOP_THREADS"), os.environ.get("TF_NUM_INTEROP_THREADS")],
    "magic": "det_seed" in get_ipython().magics_manager.magics["line"],
    "defaults": [(c.threads, c.deterministic_ops) for c in get_ipython().configurables
                 if type(c).__name__ == "DetMagics"],
    "pool variables": sorted({os.environ.get(v, "unset") for v in det_nb.threads.VARIABLES}),
    "blas": blas(),
    "numpy threads": det_nb.status().check("numpy threads").state,
}))
"""
# NumPy is imported by the cell, after the kernel started: it loads under the pins.
BLAS = """
def blas():
    import numpy
    from threadpoolctl import threadpool_info
    return [[p["internal_api"], p["num_threads"], p.get("architecture")]
            for p in threadpool_info() if "numpy" in p["filepath"]]
"""


@pytest.fixture
def jupyter_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Jupyter's data, runtime and search paths inside ``tmp_path``; the prefix to install in."""
    prefix = tmp_path / "prefix"
    monkeypatch.setenv("JUPYTER_PATH", str(prefix / "share" / "jupyter"))
    monkeypatch.setenv("JUPYTER_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "runtime"))
    monkeypatch.setenv("JUPYTER_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    yield prefix


def cli(*args: str) -> subprocess.CompletedProcess:
    """``python -m det_nb ARGS`` in a fresh interpreter, with this test's environment."""
    return subprocess.run([sys.executable, "-m", "det_nb", *args], capture_output=True,
                          text=True, timeout=120, env=dict(os.environ))


def run_in_kernel(prefix: Path, name: str, code: str) -> dict:
    """Start kernelspec ``name`` with jupyter_client, run ``code``, return its JSON line."""
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import KernelManager

    specs = KernelSpecManager(kernel_dirs=[str(prefix / "share" / "jupyter" / "kernels")])
    manager = KernelManager(kernel_name=name, kernel_spec_manager=specs)
    manager.start_kernel()
    client = manager.client()
    try:
        client.start_channels()
        client.wait_for_ready(timeout=120)
        client.kernel_info()  # front ends ask again when they reconnect
        outputs: list[str] = []

        def collect(message: dict) -> None:
            if message["msg_type"] == "stream":
                outputs.append(message["content"]["text"])
            elif message["msg_type"] == "error":
                outputs.append("\n".join(message["content"]["traceback"]))

        reply = client.execute_interactive(code, output_hook=collect, timeout=120)
        assert reply["content"]["status"] == "ok", "".join(outputs)
        return json.loads("".join(outputs).strip().splitlines()[-1])
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)


def test_a_seeded_kernel_starts_the_same_twice(jupyter_dirs: Path) -> None:
    installed = cli("kernel", "install", "--prefix", str(jupyter_dirs), "--name", NAME,
                    "--seed", "42", "--trial", "3")
    assert installed.returncode == 0, installed.stderr
    first = run_in_kernel(jupyter_dirs, NAME, BLAS + PROBE)
    second = run_in_kernel(jupyter_dirs, NAME, BLAS + PROBE)
    assert first["hash"] == second["hash"] == hash_with_seed_zero("x")
    assert first["random"] == second["random"] == random.Random(1129302213).random()
    assert first["trial seed"] == 1129302213
    assert first["hash_randomization"] == 0
    assert first["hash check"] == "ok"
    assert f"det_nb kernel '{NAME}'" in first["hash detail"]
    assert first["threads"] == ["1", "1"]
    assert first["pool variables"] == ["1"]  # OpenBLAS, OpenMP, MKL, BLIS, JAX, TF alike
    assert first["blas"] == [["openblas", 1, "Haswell"]]
    assert first["numpy threads"] == "ok"
    assert first["defaults"] == [[1, False]]  # a later %det_seed keeps the kernel's settings


def hash_with_seed_zero(text: str) -> int:
    """``hash(text)`` in an interpreter started with PYTHONHASHSEED=0."""
    out = subprocess.run([sys.executable, "-c", f"print(hash({text!r}))"], capture_output=True,
                         text=True, env={**os.environ, "PYTHONHASHSEED": "0"}, check=True)
    return int(out.stdout)


def test_an_unseeded_kernel_loads_det_nb_and_fixes_only_the_start(jupyter_dirs: Path) -> None:
    installed = cli("kernel", "install", "--prefix", str(jupyter_dirs), "--name", NAME,
                    "--threads", "2")
    assert installed.returncode == 0, installed.stderr
    spec = json.loads((jupyter_dirs / "share/jupyter/kernels" / NAME / "kernel.json").read_text())
    assert not any(arg.startswith("--IPKernelApp.exec_lines") for arg in spec["argv"])
    result = run_in_kernel(jupyter_dirs, NAME, BLAS + PROBE)
    assert result["magic"] is True
    assert result["trial seed"] is None
    assert result["threads"] == ["2", "2"]
    assert result["pool variables"] == ["2"]
    # OpenBLAS caps a count read from its variable at the CPUs it may use.
    assert result["blas"] == [["openblas", min(2, len(os.sched_getaffinity(0))), "Haswell"]]
    assert result["hash_randomization"] == 0


def test_the_kernelspec_sets_what_acts_only_at_start(jupyter_dirs: Path) -> None:
    installed = cli("kernel", "install", "--prefix", str(jupyter_dirs), "--name", NAME,
                    "--seed", "7", "--trial", "2", "--scheme", "determined", "--threads", "4",
                    "--deterministic-ops", "--display-name", "Reproducible")
    assert installed.returncode == 0, installed.stderr
    spec = json.loads((jupyter_dirs / "share/jupyter/kernels" / NAME / "kernel.json").read_text())
    assert spec["display_name"] == "Reproducible"
    assert spec["env"] == {
        "DET_NB_KERNEL": NAME, "PYTHONHASHSEED": "0", "TF_NUM_INTRAOP_THREADS": "4",
        "TF_NUM_INTEROP_THREADS": "4", "OMP_NUM_THREADS": "4", "OPENBLAS_NUM_THREADS": "4",
        "MKL_NUM_THREADS": "4", "BLIS_NUM_THREADS": "4", "VECLIB_MAXIMUM_THREADS": "4",
        "PJRT_NPROC": "4", "CUBLAS_WORKSPACE_CONFIG": ":4096:8",
        "TF_DETERMINISTIC_OPS": "1", **pin_environment(),
        # the GPU determinism flag for JAX's XLA, after the CPU ISA cap
        "XLA_FLAGS": pin_environment()["XLA_FLAGS"] + f" --{xla.accepted_flag()}=true",
    }
    assert spec["argv"][:7] == [sys.executable, "-m", "ipykernel_launcher", "-f",
                                "{connection_file}", "--ext", "det_nb"]
    assert "--InteractiveShell.enable_tip=False" in spec["argv"]
    for default in ("--DetMagics.threads=4", "--DetMagics.deterministic_ops=True",
                    "--DetMagics.scheme=determined", "--DetMagics.portable=True"):
        assert default in spec["argv"]
    assert spec["argv"][-1] == ("--IPKernelApp.exec_lines=%det_seed 7 --trial 2 --scheme "
                                "determined --threads 4 --deterministic-ops --quiet")
    assert spec["metadata"]["det_nb"]["portable"] is True


def test_no_portable_leaves_cpu_kernels_alone(jupyter_dirs: Path) -> None:
    installed = cli("kernel", "install", "--prefix", str(jupyter_dirs), "--name", NAME,
                    "--seed", "7", "--no-portable")
    assert installed.returncode == 0, installed.stderr
    spec = json.loads((jupyter_dirs / "share/jupyter/kernels" / NAME / "kernel.json").read_text())
    assert not set(pin_environment()) & set(spec["env"])
    assert "--DetMagics.portable=False" in spec["argv"]
    assert spec["argv"][-1].endswith("--no-portable --quiet")
    assert spec["metadata"]["det_nb"]["portable"] is False
    assert "native CPU kernels" in cli("kernel", "list").stdout


def test_list_and_uninstall(jupyter_dirs: Path) -> None:
    assert NAME not in cli("kernel", "list").stdout
    assert cli("kernel", "install", "--prefix", str(jupyter_dirs), "--name", NAME,
               "--seed", "42").returncode == 0
    listed = cli("kernel", "list")
    assert listed.returncode == 0
    folder = jupyter_dirs / "share/jupyter/kernels" / NAME
    # What is fixed, said once (the display name repeats it).
    assert listed.stdout == f"{NAME}  {folder}  seed 42, threads 1, portable CPU kernels\n"
    removed = cli("kernel", "uninstall", NAME)
    assert removed.returncode == 0, removed.stderr
    assert not (jupyter_dirs / "share/jupyter/kernels" / NAME).exists()
    again = cli("kernel", "uninstall", NAME)
    assert again.returncode == 1
    assert f"no det_nb kernel named {NAME!r}" in again.stderr


def test_user_install_goes_to_the_user_data_dir(jupyter_dirs: Path, tmp_path: Path) -> None:
    installed = cli("kernel", "install", "--name", NAME)
    assert installed.returncode == 0, installed.stderr
    assert (tmp_path / "data" / "kernels" / NAME / "kernel.json").is_file()
    assert NAME in cli("kernel", "list").stdout


@pytest.mark.parametrize("args, message", [
    (["kernel", "install", "--trial", "3"], "--trial needs --seed"),
    (["kernel", "install", "--name", "Bad Name"], "kernel name must be lower-case"),
    (["kernel", "install", "--seed", "-1"], "seed must be an integer in [0, 2147483647]"),
    (["kernel", "install", "--seed", "x"], f"{SEED_RULE}'x'"),
    # The magic's validator: no other digits, no underscores, no Python int() messages.
    (["kernel", "install", "--seed", "٤٢"], f"{SEED_RULE}'٤٢'"),
    (["kernel", "install", "--seed", "4_2"], f"{SEED_RULE}'4_2'"),
    (["kernel", "install", "--seed", "+-5"], f"{SEED_RULE}'+-5'"),
    (["kernel", "install", "--seed", "9" * 5000], SEED_RULE),
    (["kernel", "install", "--seed", "1", "--trial", "٣"], "trial must be an integer in"),
    (["kernel", "install", "--threads", "٤"], "threads must be an integer in [1, 1024], got '٤'"),
    (["kernel", "install", "--thread", "4"], "unrecognized arguments: --thread"),
    (["kernel", "install", "--prefix", ""], "argument --prefix: give a folder, got ''"),
    (["kernel", "install", "--display-name", ""], "argument --display-name: give a text"),
    (["kernel", "install", "--name", ".."], "with at least one letter or digit, got '..'"),
    (["kernel", "install", "--name", "."], "with at least one letter or digit, got '.'"),
    (["kernel", "install", "--name=-_"], "with at least one letter or digit, got '-_'"),
    (["kernel", "install", "--threads", "0"], "threads must be an integer in [1, 1024]"),
    (["kernel", "install", "--seed", "1", "--scheme", "determined", "--trial", "0"],
     "trial counts created trials from 1"),
    (["kernel", "install", "--user", "--prefix", "/tmp"], "not allowed with argument"),
    (["kernel", "remove"], "invalid choice: 'remove'"),
    (["kernel"], "the following arguments are required: ACTION"),
    ([], "the following arguments are required: COMMAND"),
])
def test_bad_arguments_give_usage_and_exit_2(
    args: list[str], message: str, jupyter_dirs: Path
) -> None:
    result = cli(*args)
    assert result.returncode == 2
    assert "usage: python -m det_nb" in result.stderr
    assert message in result.stderr
    assert len(result.stderr.splitlines()[-1]) < 200  # a 5000-digit seed is not echoed whole
    assert not (jupyter_dirs / "share").exists()


def files_under(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (relative path -> content): what must survive."""
    return {str(path.relative_to(folder)): path.read_bytes()
            for path in sorted(folder.rglob("*")) if path.is_file()}


@pytest.fixture
def others(jupyter_dirs: Path, tmp_path: Path) -> Path:
    """A user data folder and a prefix holding other kernels and a JupyterLab workspace."""
    for data in (tmp_path / "data", jupyter_dirs / "share" / "jupyter"):
        for kernel in ("python3", "ir"):
            folder = data / "kernels" / kernel
            folder.mkdir(parents=True)
            (folder / "kernel.json").write_text(json.dumps(
                {"argv": ["python", "-f", "{connection_file}"], "display_name": kernel,
                 "language": "python"}))
            (folder / "logo-64x64.png").write_bytes(b"png")
        workspace = data / "lab" / "workspaces" / "default-37a8.jupyterlab-workspace"
        workspace.parent.mkdir(parents=True)
        workspace.write_text('{"data": {}, "metadata": {"id": "default"}}')
    return tmp_path


@pytest.mark.parametrize("name", ["..", ".", "...", "-", "_"])
@pytest.mark.parametrize("where", [["--user"], ["--prefix", "PREFIX"]])
def test_dot_names_never_touch_other_kernels(others: Path, jupyter_dirs: Path, name: str,
                                             where: list[str]) -> None:
    before = files_under(others)
    where = [str(jupyter_dirs) if arg == "PREFIX" else arg for arg in where]
    result = cli("kernel", "install", *where, "--name", name)
    assert result.returncode == 2
    assert f"got {name!r}" in result.stderr
    assert files_under(others) == before


@pytest.mark.parametrize("where", [["--user"], ["--prefix", "PREFIX"]])
def test_a_folder_det_nb_did_not_write_is_never_replaced(others: Path, jupyter_dirs: Path,
                                                        where: list[str]) -> None:
    before = files_under(others)
    where = [str(jupyter_dirs) if arg == "PREFIX" else arg for arg in where]
    result = cli("kernel", "install", *where, "--name", "python3", "--seed", "1")
    assert result.returncode == 1
    assert "is not a det_nb kernelspec" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert files_under(others) == before


def test_a_det_nb_kernelspec_is_replaced_in_place(others: Path) -> None:
    assert cli("kernel", "install", "--name", NAME, "--seed", "1").returncode == 0
    folder = others / "data" / "kernels" / NAME
    (folder / "notes.txt").write_text("the user's")
    assert cli("kernel", "install", "--name", NAME, "--seed", "2").returncode == 0
    assert json.loads((folder / "kernel.json").read_text())["metadata"]["det_nb"]["seed"] == 2
    assert (folder / "notes.txt").read_text() == "the user's"
    assert sorted(path.name for path in folder.iterdir()) == ["kernel.json", "notes.txt"]
    removed = cli("kernel", "uninstall", NAME)
    assert removed.returncode == 0, removed.stderr
    assert sorted(path.name for path in folder.iterdir()) == ["notes.txt"]  # not ours: kept


def test_null_or_odd_det_nb_metadata_is_not_a_det_nb_kernel(others: Path) -> None:
    for name, metadata in (("null-meta", {"det_nb": None}), ("text-meta", "det_nb"),
                           ("list-meta", ["det_nb"])):
        folder = others / "data" / "kernels" / name
        folder.mkdir()
        (folder / "kernel.json").write_text(json.dumps(
            {"argv": ["python"], "display_name": name, "language": "python",
             "metadata": metadata}))
    before = files_under(others)
    listed = cli("kernel", "list")
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout == "no det_nb kernels installed\n"
    assert cli("kernel", "uninstall", "null-meta").returncode == 1
    assert cli("kernel", "install", "--name", "null-meta").returncode == 1
    assert files_under(others) == before


def test_prefix_hint_names_the_folder_jupyter_must_search(
    jupyter_dirs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    searched = cli("kernel", "install", "--prefix", str(jupyter_dirs), "--name", NAME)
    assert searched.returncode == 0, searched.stderr
    assert "JUPYTER_PATH" not in searched.stdout  # the fixture's JUPYTER_PATH has it
    monkeypatch.chdir(tmp_path)
    elsewhere = cli("kernel", "install", "--prefix", "other", "--name", NAME)
    assert elsewhere.returncode == 0, elsewhere.stderr
    data = tmp_path / "other" / "share" / "jupyter"
    assert (data / "kernels" / NAME / "kernel.json").is_file()
    hint = elsewhere.stdout.splitlines()[-1]
    assert hint == f"Jupyter finds it when JUPYTER_PATH includes {data}"


def test_install_api_refuses_an_empty_prefix_or_two_places(jupyter_dirs: Path) -> None:
    from det_nb import kernel

    for where in ({"prefix": ""}, {"prefix": "  "}, {"user": True, "prefix": str(jupyter_dirs)}):
        with pytest.raises(ValueError):
            kernel.install(kernel.KernelOptions(NAME), **where)
    assert not (jupyter_dirs / "share").exists()


def test_kernel_json_is_readable_by_every_user(jupyter_dirs: Path) -> None:
    """A --prefix (or --sys-prefix) kernelspec serves every user of that Python: 0644; a
    reinstall keeps the mode its owner chose, and leaves no temporary file."""
    folder = jupyter_dirs / "share" / "jupyter" / "kernels" / NAME
    installed = cli("kernel", "install", "--prefix", str(jupyter_dirs), "--name", NAME)
    assert installed.returncode == 0, installed.stderr
    assert stat.S_IMODE((folder / "kernel.json").stat().st_mode) == 0o644
    (folder / "kernel.json").chmod(0o640)
    again = cli("kernel", "install", "--prefix", str(jupyter_dirs), "--name", NAME, "--seed", "2")
    assert again.returncode == 0, again.stderr
    assert stat.S_IMODE((folder / "kernel.json").stat().st_mode) == 0o640
    assert json.loads((folder / "kernel.json").read_text())["metadata"]["det_nb"]["seed"] == 2
    assert sorted(path.name for path in folder.iterdir()) == ["kernel.json"]


def test_install_over_a_folder_whose_kernel_json_is_a_fifo_returns_at_once(tmp_path) -> None:
    import threading

    from det_nb import kernel

    folder = tmp_path / "share" / "jupyter" / "kernels" / "odd"
    folder.mkdir(parents=True)
    os.mkfifo(folder / "kernel.json")
    outcome: list[BaseException | None] = []

    def install() -> None:
        try:
            kernel.install(kernel.KernelOptions("odd"), prefix=str(tmp_path))
            outcome.append(None)
        except BaseException as error:
            outcome.append(error)

    thread = threading.Thread(target=install, daemon=True)
    thread.start()
    thread.join(10)
    assert outcome, "installing over a FIFO kernel.json hung"
    assert isinstance(outcome[0], ValueError)
    assert "is not a det_nb kernelspec" in str(outcome[0])
    assert (folder / "kernel.json").is_fifo()
