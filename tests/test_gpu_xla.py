"""XLA's GPU determinism flag for JAX, tested on the CPU: set before JAX's backend starts,
with the name the installed XLA accepts, the user's other flags kept; "too late" reported.

XLA parses the same flags on the CPU, and aborts on a flag it does not know, so a
computation that runs proves the flag was accepted; the flag's effect needs a GPU
(benchmarks/gpu_determinism.py).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import run_python

from det_nb import xla
from det_nb.lineage import Lineage
from det_nb.status import Report

pytest.importorskip("jax")

CAP = "--xla_cpu_max_isa=AVX2"  # det_nb's portable CPU pin, in the same variable
FLAG = "--xla_gpu_deterministic_ops=true"  # the name jaxlib 0.10.2 and TF 2.21 accept first


def test_the_flag_is_in_xla_flags_before_jax_loads_and_jax_still_runs() -> None:
    result = run_python("""
        import json, os, sys
        import det_nb
        det_nb.seed(1, deterministic_ops=True)
        before_import = os.environ["XLA_FLAGS"], "jax" in sys.modules
        import jax
        pending = det_nb.status().check("jax determinism")
        total = float(jax.numpy.arange(10.0).sum())
        started = det_nb.status().check("jax determinism")
        print(json.dumps({"before import": before_import, "total": total,
                          "pending": [pending.state, pending.detail],
                          "started": [started.state, started.detail],
                          "verdict": det_nb.status().verdict()}))
    """)
    assert result["before import"] == [f"{CAP} {FLAG}", False]
    assert result["total"] == 45.0  # XLA took the flag: an unknown one aborts the process
    assert result["pending"] == ["ok", f"{FLAG} in XLA_FLAGS: XLA reads it when JAX's backend "
                                       "starts (its first computation)"]
    assert result["started"] == ["ok", f"on: {FLAG} was in XLA_FLAGS when JAX's backend "
                                       "started (cpu)"]
    assert not result["verdict"].startswith("NOT")


def test_jax_started_before_det_nb_is_too_late_a_caveat_on_the_cpu() -> None:
    result = run_python("""
        import json
        import jax
        jax.numpy.ones(3).sum()
        import det_nb
        det_nb.seed(1, deterministic_ops=True)
        check = det_nb.status().check("jax determinism")
        print(json.dumps([check.state, check.detail, check.fix, check.caveat]))
    """)
    assert result == [
        "warn",
        f"too late: JAX's backend started (cpu) before {FLAG} was in XLA_FLAGS, and XLA reads "
        "them only then; it runs on the CPU here, whose kernels are deterministic, so this "
        "matters on a GPU",
        "restart the kernel and run %det_seed SEED --deterministic-ops before JAX's first "
        "computation, or use a det_nb kernel (python -m det_nb kernel install "
        "--deterministic-ops)",
        True,
    ]


def test_the_users_xla_flags_are_kept_and_no_deterministic_ops_takes_back_only_ours() -> None:
    result = run_python("""
        import json, os
        import det_nb
        det_nb.seed(1, deterministic_ops=True)
        import jax
        on = os.environ["XLA_FLAGS"]
        devices = jax.device_count()  # the user's flag acted: two host devices
        det_nb.seed(1, deterministic_ops=False)
        off = os.environ["XLA_FLAGS"]
        check = det_nb.status().check("jax determinism")
        print(json.dumps({"on": on, "devices": devices, "off": off,
                          "check": [check.state, check.detail]}))
    """, env={"XLA_FLAGS": "--xla_force_host_platform_device_count=2"})
    assert result["on"] == f"--xla_force_host_platform_device_count=2 {CAP} {FLAG}"
    assert result["devices"] == 2
    assert result["off"] == f"--xla_force_host_platform_device_count=2 {CAP}"
    # XLA read the flag when the backend started and keeps it: the status says so.
    assert result["check"] == ["ok", f"on: {FLAG} was in XLA_FLAGS when JAX's backend started "
                                      "(cpu); XLA keeps it until the kernel restarts"]


def test_a_determinism_flag_the_user_set_is_theirs() -> None:
    result = run_python("""
        import json, os
        import det_nb
        det_nb.seed(1, deterministic_ops=True)
        kept_on = os.environ["XLA_FLAGS"]
        det_nb.seed(1)
        after_off = os.environ["XLA_FLAGS"]
        os.environ["XLA_FLAGS"] = "--xla_gpu_deterministic_ops=false"
        det_nb.seed(1, deterministic_ops=True)
        import jax
        jax.numpy.ones(2).sum()
        check = det_nb.status().check("jax determinism")
        print(json.dumps({"kept on": kept_on, "after off": after_off,
                          "false": os.environ["XLA_FLAGS"], "check": [check.state, check.detail]}))
    """, env={"XLA_FLAGS": "--xla_gpu_exclude_nondeterministic_ops=true"})
    assert result["kept on"] == f"--xla_gpu_exclude_nondeterministic_ops=true {CAP}"
    assert result["after off"] == f"--xla_gpu_exclude_nondeterministic_ops=true {CAP}"
    assert result["false"] == f"--xla_gpu_deterministic_ops=false {CAP}"
    assert result["check"] == [
        "warn", "your XLA_FLAGS sets --xla_gpu_deterministic_ops=false, which det_nb leaves: "
        "XLA's GPU kernels (scatter-adds, segment_sum) can give different floats run to run"]


@pytest.mark.parametrize("flag", [*xla.FLAGS, "xla_gpu_no_such_flag"])
def test_the_name_found_in_the_library_is_the_name_xla_accepts(flag: str) -> None:
    """Measured, not assumed: a fresh JAX with the flag runs (exit 0) or aborts (exit 1)
    exactly as the bytes of the installed libraries say."""
    libraries = xla.xla_libraries()
    found = all(xla.registers(path, flag) for paths in libraries.values() for path in paths)
    done = subprocess.run(
        [sys.executable, "-c", "import jax; print(float(jax.numpy.ones(3).sum()))"],
        env={**os.environ, "XLA_FLAGS": f"--{flag}=true"}, capture_output=True, text=True,
        timeout=300, check=False)
    assert (done.returncode == 0) is found, done.stderr[-500:]
    if not found:
        assert f"Unknown flag in XLA_FLAGS: --{flag}=true" in done.stderr


def test_the_installed_jaxlib_takes_the_preferred_name() -> None:
    assert "jaxlib" in xla.xla_libraries()
    assert xla.accepted_flag() == "xla_gpu_deterministic_ops"


def _library(folder: Path, *names: bytes) -> Path:
    path = folder / "libjax_common.so"
    path.write_bytes(b"\x7fELF" + b"".join(names) + b"\0")
    return path


def test_a_name_only_one_library_registers_is_not_taken(tmp_path: Path) -> None:
    (tmp_path / "jaxlib").mkdir()
    (tmp_path / "tf").mkdir()
    jaxlib = _library(tmp_path / "jaxlib", b"\0xla_gpu_deterministic_ops\0",
                      b"\0xla_gpu_exclude_nondeterministic_ops\0")
    tf = _library(tmp_path / "tf", b"\0xla_gpu_exclude_nondeterministic_ops\0",
                  # a dropped flag's reserved name in the options' descriptor: not a flag
                  b"R\x19xla_gpu_deterministic_ops")
    assert xla.accepted_flag({"jaxlib": [jaxlib], "tensorflow": [tf]}) == (
        "xla_gpu_exclude_nondeterministic_ops")
    assert xla.accepted_flag({"jaxlib": [jaxlib]}) == "xla_gpu_deterministic_ops"
    assert xla.accepted_flag({"tensorflow": [tf]}) is None  # jaxlib's library unknown: none
    none = _library(tmp_path, b"\0xla_cpu_max_isa\0")
    assert xla.accepted_flag({"jaxlib": [none]}) is None


@pytest.mark.parametrize(("flags", "expected"), [
    ("", None),
    ("--xla_gpu_deterministic_ops", ("xla_gpu_deterministic_ops", True)),
    ("--xla_gpu_deterministic_ops=TRUE", ("xla_gpu_deterministic_ops", True)),
    ("--xla_gpu_deterministic_ops=1", ("xla_gpu_deterministic_ops", True)),
    ("--xla_gpu_deterministic_ops=true --xla_gpu_exclude_nondeterministic_ops=false",
     ("xla_gpu_exclude_nondeterministic_ops", False)),
    ("--xla_gpu_deterministic_ops_level=2", None),
    ("--xla_cpu_max_isa=AVX2", None),
])
def test_the_setting_is_the_last_determinism_flag(flags: str, expected: object) -> None:
    assert xla.setting(flags) == expected


def _seen(**fields: object) -> xla.Observed:
    base = {"flag": ("xla_gpu_deterministic_ops", True), "started": True,
            "platforms": ("cuda", "cpu"), "on_at_start": ""}
    return xla.Observed(**{**base, **fields})


def test_too_late_on_a_jax_gpu_breaks_the_verdict() -> None:
    check = xla.check(True, _seen())
    assert (check.state, check.caveat) == ("warn", False)
    assert check.detail == (f"too late: JAX's backend started (cuda, cpu) before {FLAG} was in "
                            "XLA_FLAGS, and XLA reads them only then")
    assert Report(Lineage(42), (check,)).verdict().startswith("NOT reproducible: ")


def test_a_jax_gpu_that_started_with_the_flag_is_ok_and_warn_mode_says_xla_has_none() -> None:
    check = xla.check("warn", _seen(on_at_start="xla_gpu_deterministic_ops"))
    assert (check.state, check.detail) == (
        "ok", f"on: {FLAG} was in XLA_FLAGS when JAX's backend started (cuda, cpu); XLA has no "
        "warn mode")


def test_a_gpu_plugin_makes_an_unset_flag_a_defect_before_jax_starts() -> None:
    seen = _seen(flag=None, started=False, platforms=(), gpu_plugins=("jax_cuda12_plugin",))
    check = xla.check(True, seen)
    assert (check.state, check.caveat) == ("warn", False)
    assert check.detail.startswith("on requested, but no XLA determinism flag that every "
                                   "installed XLA accepts was found")
    assert xla.check(False, seen).state == "off"


def test_an_installed_jax_gpu_plugin_is_named_before_jax_starts(tmp_path: Path) -> None:
    plugin = tmp_path / "jax_cuda12_plugin"
    plugin.mkdir()
    (plugin / "__init__.py").write_text("")
    code = """
        import json, sys
        import det_nb
        det_nb.seed(1{ops})
        check = det_nb.status().check("gpus")
        print(json.dumps([check.state, check.detail, check.fix, "jax" in sys.modules]))
    """
    env = {"PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    assert run_python(code.format(ops=""), env) == [
        "off", "none in use yet; jax_cuda12_plugin installed: JAX may run on a GPU once its "
        "backend starts, where its scatter-adds can give different floats run to run",
        "%det_seed SEED --deterministic-ops before JAX's first computation", False]
    assert run_python(code.format(ops=", deterministic_ops=True"), env)[:2] == [
        "ok", "none in use yet; jax_cuda12_plugin installed: JAX may run on a GPU once its "
        "backend starts, with deterministic ops on"]
    assert run_python(code.format(ops=""), {**env, "JAX_PLATFORMS": "cpu"})[:2] == [
        "ok", "none visible to the imported frameworks: CPU only"]  # JAX told to use the CPU
