"""The deterministic kernel: installed with ``python -m det_nb kernel``, started for real."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("ipykernel")
jupyter_client = pytest.importorskip("jupyter_client")

NAME = "det-nb-test"
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
}))
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
    first = run_in_kernel(jupyter_dirs, NAME, PROBE)
    second = run_in_kernel(jupyter_dirs, NAME, PROBE)
    assert first["hash"] == second["hash"] == hash_with_seed_zero("x")
    assert first["random"] == second["random"] == random.Random(1129302213).random()
    assert first["trial seed"] == 1129302213
    assert first["hash_randomization"] == 0
    assert first["hash check"] == "ok"
    assert f"det_nb kernel '{NAME}'" in first["hash detail"]
    assert first["threads"] == ["1", "1"]
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
    result = run_in_kernel(jupyter_dirs, NAME, PROBE)
    assert result["magic"] is True
    assert result["trial seed"] is None
    assert result["threads"] == ["2", "2"]
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
        "TF_NUM_INTEROP_THREADS": "4", "CUBLAS_WORKSPACE_CONFIG": ":4096:8",
        "TF_DETERMINISTIC_OPS": "1",
    }
    assert spec["argv"][:7] == [sys.executable, "-m", "ipykernel_launcher", "-f",
                                "{connection_file}", "--ext", "det_nb"]
    assert "--InteractiveShell.enable_tip=False" in spec["argv"]
    for default in ("--DetMagics.threads=4", "--DetMagics.deterministic_ops=True",
                    "--DetMagics.scheme=determined"):
        assert default in spec["argv"]
    assert spec["argv"][-1] == ("--IPKernelApp.exec_lines=%det_seed 7 --trial 2 --scheme "
                                "determined --threads 4 --deterministic-ops --quiet")


def test_list_and_uninstall(jupyter_dirs: Path) -> None:
    assert NAME not in cli("kernel", "list").stdout
    assert cli("kernel", "install", "--prefix", str(jupyter_dirs), "--name", NAME,
               "--seed", "42").returncode == 0
    listed = cli("kernel", "list")
    assert listed.returncode == 0
    assert listed.stdout.startswith(f"{NAME}  ")
    assert "seed 42, threads 1" in listed.stdout
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
    (["kernel", "install", "--seed", "x"], "invalid int value: 'x'"),
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
    assert not (jupyter_dirs / "share").exists()
