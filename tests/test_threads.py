"""Same floats on every core count: det_nb pins every thread pool that splits float reductions.

OpenBLAS, OpenMP, torch and XLA size their pools from the CPUs a process may use, so a
process whose first statement restricts its CPUs (``os.sched_setaffinity``) behaves like a
machine with that many cores. Every entry point is tested in a FRESH process whose first
statement it is (never IPython's testing shell, which imports NumPy itself), with no thread
or kernel variable inherited from this process.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from conftest import QUIET_TF, result_of, run_python, start_python

import det_nb
from det_nb import run_record, threads
from det_nb.notebook_runner import run_notebook
from det_nb.trials import trial_environment

ROOT = Path(__file__).resolve().parent.parent
# tools/ is not a package: load the shared workload by path, under its own name.
_spec = importlib.util.spec_from_file_location("det_nb_tools_thread_results",
                                               ROOT / "tools" / "thread_results.py")
thread_results = sys.modules[_spec.name] = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(thread_results)

CPUS = len(os.sched_getaffinity(0))
TRIAL_SEED = 1129302213  # (42, trial 3)
# The pools a reduction is split over, and the results that measured it on this machine.
SPLIT_BY_THREADS = {"numpy solve", "numpy eigvalsh", "numpy dot", "torch sum", "torch mean",
                    "jax sum"}
BLAS = """
def blas():
    from threadpoolctl import threadpool_info
    return [[p["internal_api"], p.get("architecture"), p["num_threads"]]
            for p in threadpool_info() if "numpy" in p["filepath"]]
"""


def clean_env(**variables: str) -> dict[str, str | None]:
    """No thread or kernel pin inherited from this process, plus ``variables``."""
    return {**dict.fromkeys(thread_results.INHERITED_PINS), **variables}


def native_openblas_kernel() -> str:
    """The OpenBLAS kernel NumPy picks on this CPU with no pin at all."""
    return run_python(BLAS + """
import json, numpy
print(json.dumps(blas()[0][1]))
""", clean_env())


# -- Done when: the same floats with one CPU and with all CPUs ---------------------------


@pytest.fixture(scope="module")
def cases() -> dict[tuple[str, str], dict]:
    """The workload under det_nb's defaults and under plain seeding, on one and on all CPUs."""
    started = {case: start_python(thread_results.workload(*flags), clean_env())
               for case, flags in thread_results.CASES.items()}
    return {case: result_of(process) for case, process in started.items()}


def test_one_cpu_and_all_cpus_give_identical_floats_under_det_nb_defaults(cases) -> None:
    one = cases["det_nb defaults", "one cpu"]
    every = cases["det_nb defaults", "all cpus"]
    assert set(one["results"]) >= {"numpy sgemm", "numpy solve", "numpy eigvalsh", "numpy dot",
                                    "numpy svd", "torch sum", "torch mean"}
    assert one["results"] == every["results"]
    for run in (one, every):
        assert run["pools"]["blas"] == [["openblas", "Haswell", 1]]
        assert run["pools"]["torch"] == [1, 1]
    assert (one["pools"]["cpus"], every["pools"]["cpus"]) == (1, CPUS)


@pytest.mark.skipif(CPUS < 2, reason="only one CPU is usable here: one CPU and all CPUs are "
                    "the same machine, so plain seeding cannot differ")
def test_plain_seeding_differs_between_one_cpu_and_all_cpus(cases) -> None:
    # The control: without det_nb each library sizes its pools from the CPUs it may use.
    one = cases["plain seeding", "one cpu"]["results"]
    every = cases["plain seeding", "all cpus"]["results"]
    assert set(thread_results.differing(one, every)) >= SPLIT_BY_THREADS


# -- the script path pins first ---------------------------------------------------------


def test_seed_as_a_scripts_first_call_pins_before_numpy_loads() -> None:
    result = run_python(BLAS + """
import det_nb
lineage = det_nb.seed(42, trial=3)
import json, numpy
report = det_nb.status()
print(json.dumps({"blas": blas(), "trial seed": lineage.trial_seed, "text": report.text(),
                  "states": {c.name: c.state for c in report.checks}}))
""", clean_env())
    assert result["blas"] == [["openblas", "Haswell", 1]]
    assert result["trial seed"] == TRIAL_SEED
    assert "too late" not in result["text"]
    states = result["states"]
    assert states["numpy kernels"] == states["numpy threads"] == states["threads"] == "ok"


def test_seed_without_portable_as_a_scripts_first_call_runs_the_native_kernel() -> None:
    result = run_python(BLAS + """
import det_nb
det_nb.seed(42, trial=3, portable=False)
import json, numpy
print(json.dumps(blas()))
""", clean_env())
    assert result == [["openblas", native_openblas_kernel(), 1]]


@pytest.mark.parametrize("line", ["42 --no-portable", "42 --trial 3 --no-portable"])
def test_no_portable_right_after_load_ext_runs_numpys_native_kernel(tmp_path, line) -> None:
    # Terminal IPython (IPython.start_ipython) runs the script, as a user's first lines.
    script = tmp_path / "first.ipy"
    script.write_text(BLAS + f"""
%load_ext det_nb
%det_seed {line} --quiet
import json, numpy
import det_nb
print(json.dumps({{"blas": blas(), "kernels": det_nb.status().check("numpy kernels").state}}))
""")
    env = {k: v for k, v in {**os.environ, **QUIET_TF}.items()
           if k not in thread_results.INHERITED_PINS}
    done = subprocess.run([sys.executable, "-m", "IPython", "--no-banner", "--quick",
                           str(script)], capture_output=True, text=True, timeout=300, env=env,
                          cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result == {"blas": [["openblas", native_openblas_kernel(), 1]], "kernels": "off"}


def test_a_notebook_seeding_first_runs_numpy_single_threaded_on_the_baseline(
    tmp_path, monkeypatch
) -> None:
    # A real kernel (nbclient), as the verify and trials runners start them.
    for variable in thread_results.INHERITED_PINS:
        monkeypatch.delenv(variable, raising=False)
    book = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source) for source in (
        "%load_ext det_nb",
        "%det_seed 42",
        BLAS + "import numpy\nimport det_nb\nfound = blas()\n"
        "state = det_nb.status().check('numpy threads').state",
    )])
    path = tmp_path / "first.ipynb"
    nbformat.write(book, path)
    run = run_notebook(path, collect=["found", "state"], timeout=240)
    assert run.error is None
    assert run.collected == {"found": [["openblas", "Haswell", 1]], "state": "ok"}


def test_trial_kernels_start_every_pool_with_one_thread() -> None:
    environment = trial_environment()
    assert {variable: environment[variable] for variable in threads.VARIABLES} == dict.fromkeys(
        ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS",
         "VECLIB_MAXIMUM_THREADS", "PJRT_NPROC", "TF_NUM_INTRAOP_THREADS",
         "TF_NUM_INTEROP_THREADS"), "1")
    result = run_python(BLAS + """
import json, numpy
print(json.dumps(blas()))
""", clean_env(**environment))
    assert result == [["openblas", "Haswell", 1]]


def test_loading_the_extension_sets_the_pool_variables_and_imports_no_library() -> None:
    result = run_python("""
import json, os, sys
import det_nb
before = det_nb.status().check("threads")
from IPython.core.interactiveshell import InteractiveShell
shell = InteractiveShell.instance()
shell.run_line_magic("load_ext", "det_nb")
print(json.dumps({
    "before": [before.state, before.detail],
    "variables": {v: os.environ.get(v) for v in ("OMP_NUM_THREADS", "PJRT_NPROC",
                                                 "TF_NUM_INTRAOP_THREADS")},
    "loaded": [m for m in ("numpy", "threadpoolctl", "torch") if m in sys.modules],
    "after": det_nb.status().check("threads").state,
}))
""", clean_env())
    assert result == {
        "before": ["off", "not pinned yet"],
        # TensorFlow's pools are pinned through its API when it is imported.
        "variables": {"OMP_NUM_THREADS": "1", "PJRT_NPROC": "1", "TF_NUM_INTRAOP_THREADS": None},
        "loaded": [], "after": "ok",
    }


# -- det_nb's count wins; --no-single-thread gives back what it set -----------------------


def test_det_nb_wins_over_inherited_variables_and_gives_them_back() -> None:
    result = run_python(BLAS + """
import json, os
import det_nb
det_nb.seed(0)
import numpy, torch
import jax.numpy as jnp
pending = det_nb.status().check("jax threads")
jnp.sum(jnp.ones(8)).block_until_ready()

def read():
    report = det_nb.status()
    return {
        "blas": blas(), "torch": [torch.get_num_threads(), torch.get_num_interop_threads()],
        "variables": {v: os.environ.get(v) for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                                                     "MKL_NUM_THREADS", "PJRT_NPROC")},
        "rows": {name: [report.check(name).state, report.check(name).detail]
                 for name in ("threads", "numpy threads", "torch threads", "jax threads")},
    }

pinned = read()
det_nb.seed(0, threads=None)
print(json.dumps({"pending": [pending.state, pending.detail], "pinned": pinned,
                  "left": read()}))
""", clean_env(OMP_NUM_THREADS="2", OPENBLAS_NUM_THREADS="2", PJRT_NPROC="2"))
    assert result["pending"] == ["ok", "pending: XLA's CPU pool starts at JAX's first op, "
                                 "with PJRT_NPROC=1"]
    pinned = result["pinned"]
    assert pinned["blas"] == [["openblas", "Haswell", 1]] and pinned["torch"] == [1, 1]
    assert set(pinned["variables"].values()) == {"1"}
    assert pinned["rows"] == {
        "threads": ["ok", "single-thread: the OpenBLAS/MKL/BLIS/OpenMP, torch, TensorFlow and "
                    "JAX pools run 1 thread each"],
        "numpy threads": ["ok", "single-thread: openblas Haswell 1 thread"],
        "torch threads": ["ok", "single-thread (intra-op 1, inter-op 1)"],
        "jax threads": ["ok", "single-thread (XLA's CPU pool: 1 thread)"],
    }
    left = result["left"]
    # The inherited variables come back, and so do the counts the libraries take from them;
    # torch's inter-op pool and XLA's started pool cannot change any more.
    assert left["variables"] == {"OMP_NUM_THREADS": "2", "OPENBLAS_NUM_THREADS": "2",
                                 "MKL_NUM_THREADS": None, "PJRT_NPROC": "2"}
    assert left["blas"] == [["openblas", "Haswell", 2]] and left["torch"] == [2, 1]
    assert left["rows"]["numpy threads"] == ["off", "left alone: openblas Haswell 2 threads"]
    assert left["rows"]["torch threads"] == ["off", "left alone (intra-op 2, inter-op 1)"]
    assert left["rows"]["jax threads"] == ["off", "left alone (XLA's CPU pool: 1 thread)"]
    assert left["rows"]["threads"][0] == "off"


def test_numpy_loaded_before_det_nb_is_pinned_reread_and_given_back() -> None:
    result = run_python(BLAS + """
import json
import numpy
from threadpoolctl import threadpool_limits
own = blas()[0][2]
import det_nb
det_nb.seed(1)
pinned = [blas()[0][2], det_nb.status().check("numpy threads").state]
threadpool_limits(2)  # a library, or the user, changes it afterwards
changed = det_nb.status().check("numpy threads")
det_nb.seed(1)
again = det_nb.status().check("numpy threads").state
det_nb.seed(1, threads=None)
print(json.dumps({"own": own, "pinned": pinned, "again": again, "back": blas()[0][2],
                  "changed": [changed.state, changed.detail, changed.fix, changed.caveat]}))
""", clean_env())
    assert result["own"] == CPUS
    assert result["pinned"] == [1, "ok"]
    state, detail, fix, caveat = result["changed"]
    assert state == "warn" and caveat is True
    assert "not at the 1 det_nb pinned" in detail and "2 threads" in detail
    assert fix == "run %det_seed again: it re-pins every loaded pool"
    assert result["again"] == "ok"
    assert result["back"] == CPUS


def test_more_threads_than_cpus_is_a_caveat_and_runs_that_many_threads() -> None:
    code = BLAS + """
import os
cpus = sorted(os.sched_getaffinity(0))
os.sched_setaffinity(0, cpus[:ONE])
import det_nb
det_nb.seed(1, threads=2)
import hashlib, json, numpy
v = numpy.random.default_rng(0).standard_normal(1_000_000)
check = det_nb.status().check("threads")
print(json.dumps({"blas": blas(), "dot": hashlib.sha256((v @ v).tobytes()).hexdigest(),
                  "check": [check.state, check.detail, check.fix, check.caveat],
                  "verdict": det_nb.status().verdict()}))
"""
    one = run_python(code.replace("ONE", "1"), clean_env())
    assert one["blas"] == [["openblas", "Haswell", 2]]  # set at run time: not capped
    state, detail, fix, caveat = one["check"]
    assert (state, caveat) == ("warn", True)
    assert detail.startswith("pinned to 2 threads, but this process may use only 1 CPU:")
    assert "match only machines with at least 2 cores" in detail
    assert fix == "--threads 1 or fewer (1 gives the same floats on every machine)"
    assert one["verdict"].startswith("reproducible on this machine")
    if CPUS >= 2:  # the same 2-way split as on a machine with 2 cores
        every = run_python(code.replace("cpus[:ONE]", "cpus"), clean_env())
        assert every["check"][0] == "ok" and every["dot"] == one["dot"]


def test_a_count_read_from_the_variables_is_capped_until_det_seed_pins_it() -> None:
    # %load_ext sets the variables; OpenBLAS caps them at the CPUs when NumPy loads.
    result = run_python(BLAS + """
import json, os
cpus = sorted(os.sched_getaffinity(0))
os.sched_setaffinity(0, cpus[:1])
from IPython.core.interactiveshell import InteractiveShell
from traitlets.config import Config
config = Config()
config.DetMagics.threads = 2
shell = InteractiveShell.instance(config=config)
shell.run_line_magic("load_ext", "det_nb")
import numpy
import det_nb
capped = det_nb.status().check("numpy threads")
shell.run_line_magic("det_seed", "1 --quiet")
print(json.dumps({"capped": [capped.state, capped.detail, capped.fix], "blas": blas(),
                  "pinned": det_nb.status().check("numpy threads").state}))
""", clean_env())
    state, detail, fix = result["capped"]
    assert state == "warn"
    assert detail == ("openblas Haswell 1 thread: openblas Haswell not at the 2 det_nb pinned "
                      "(loaded from the variables, capped at the CPUs this process may use (1))")
    assert fix == "run %det_seed again: it re-pins every loaded pool"
    assert result["blas"] == [["openblas", "Haswell", 2]] and result["pinned"] == "ok"


# -- too late, with the fix ----------------------------------------------------------------


def test_torch_inter_op_pool_sized_before_det_nb_is_reported_too_late() -> None:
    result = run_python("""
import json
import torch
torch.set_num_interop_threads(3)
import det_nb
det_nb.seed(1)
check = det_nb.status().check("torch threads")
print(json.dumps([torch.get_num_threads(), check.state, check.detail, check.fix,
                  check.caveat]))
""", clean_env())
    intra, state, detail, fix, caveat = result
    assert intra == 1 and (state, caveat) == ("warn", True)
    assert detail.startswith("intra-op 1, inter-op 3: too late for the inter-op pool")
    assert "restart the kernel and run %det_seed before torch's first parallel work" in fix


def test_jax_backend_started_before_det_nb_is_reported_too_late() -> None:
    result = run_python("""
import json
import jax.numpy as jnp
jnp.sum(jnp.ones(8)).block_until_ready()  # XLA's CPU pool starts with 2 threads
import det_nb
det_nb.seed(1)
check = det_nb.status().check("jax threads")
print(json.dumps([check.state, check.detail, check.fix, check.caveat]))
""", clean_env(PJRT_NPROC="2"))
    state, detail, fix, caveat = result
    assert (state, caveat) == ("warn", True)
    assert detail.startswith("too late: JAX's CPU backend started before det_nb pinned it, "
                             "with 2 threads in XLA's CPU pool")
    assert fix.endswith("or start the kernel with PJRT_NPROC=1")


# -- validate first; undo on failure ---------------------------------------------------------


def test_a_bad_thread_count_is_refused_in_one_line_and_changes_no_variable() -> None:
    before = {variable: os.environ.get(variable) for variable in threads.VARIABLES}
    with pytest.raises(ValueError, match=r"^threads must be an integer in \[1, 1024\] \(or None "
                       r"to leave the libraries' thread pools alone\), got 0$"):
        det_nb.seed(1, trial=2, threads=0)
    assert {variable: os.environ.get(variable) for variable in threads.VARIABLES} == before


def test_a_failed_save_puts_the_thread_pins_back() -> None:
    result = run_python("""
import json, os, sys
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell
from det_nb import run_record
shell = InteractiveShell.instance()
shell.run_line_magic("load_ext", "det_nb")
shell.run_line_magic("det_seed", "42 --no-single-thread --quiet")

def full_disk(*args, **kwargs):
    raise OSError(28, "No space left on device")

run_record.save = full_disk
try:
    shell.run_line_magic("det_seed", "7 --threads 2 --save run.json --quiet")
except UsageError as error:
    refused = str(error)
import det_nb
print(json.dumps([refused, "numpy" in sys.modules, os.environ.get("OMP_NUM_THREADS"),
                  det_nb.status().check("threads").state]))
""", clean_env())
    refused, numpy_loaded, variable, state = result
    assert "No space left on device" in refused
    assert (numpy_loaded, variable, state) == (False, None, "off")


# -- the run record -----------------------------------------------------------------------


def test_the_record_keeps_usable_cpus_and_each_pools_threads() -> None:
    result = run_python("""
import json
import det_nb
det_nb.seed(1)
import numpy, torch
print(json.dumps(det_nb.record()["environment"]))
""", clean_env())
    assert result["cpus_usable"] == CPUS
    assert result["thread_pools"]["openblas (numpy)"] == 1
    assert result["thread_pools"]["torch intra-op"] == result["thread_pools"]["torch inter-op"] == 1
    assert result["variables"]["OPENBLAS_NUM_THREADS"] == "1"


def test_compare_lists_usable_cpus_and_pools_of_other_sizes_loaded_on_both_sides() -> None:
    here = run_record.environment()
    recorded = json.loads(json.dumps(here))
    here = {**here, "cpus_usable": 2,
            "thread_pools": {"openblas (numpy)": 1, "torch intra-op": 1}}
    recorded.update(cpus_usable=16,
                    thread_pools={"openblas (numpy)": 16, "jax xla cpu": 16})
    assert run_record.compare(recorded, here) == [
        "CPUs this process may use 2 here, 16 in the record (pools left alone size from them)",
        "openblas (numpy) threads 1 here, 16 in the record: it can change results",
    ]
