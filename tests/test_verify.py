"""``python -m det_nb verify``, its pytest plugin and the notebook runner, on real kernels.

Every notebook here is made in the test and runs in fresh kernels (seconds each), so the
notebooks are small, only the threads test imports TensorFlow, and one module fixture's
verification serves several assertions.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import random
import re
from importlib import metadata
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from det_nb import verify
from det_nb.lineage import Lineage
from det_nb.notebook_runner import CellResult, NameFingerprint, run_notebook

pytest_plugins = ["pytester"]

SEEDED = "%load_ext det_nb\n%det_seed 42 --quiet"
GOOD = [
    SEEDED,
    "import numpy as np\nx = np.random.rand(3)",
    "history = [float(x.sum())]\n\n\nclass Box:\n    pass\n\n\n"
    "Box()  # shown as <__main__.Box at 0x...>, compared as Out[3]",
    "# NBVAL_RAISES_EXCEPTION\nraise ValueError('meant to fail')",
    "y = x * 2\nhistory.append(float(y.sum()))\nprint(y.round(3))",
]
# Cell 3 draws from a generator no seed reaches: the runs part there, in g and w.
DRIFT = [
    SEEDED,
    "import numpy as np\nx = np.random.rand(3)",
    "g = np.random.default_rng()\nw = g.normal(size=3)",
    "v = w + x",
]


def write_notebook(folder: Path, name: str, cells: list[str]) -> str:
    """A Python notebook of code cells at ``folder/name``; returns its path."""
    notebook = new_notebook(cells=[new_code_cell(source) for source in cells])
    notebook.metadata["kernelspec"] = {"name": "python3", "language": "python",
                                       "display_name": "Python 3"}
    path = folder / name
    nbformat.write(notebook, path)
    return str(path)


def verify_main(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """(exit status, stdout, stderr) of ``python -m det_nb verify`` with ``argv``."""
    status = verify.main(argv)
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def plugin_args() -> list[str]:
    """``-p det_nb.pytest_plugin``, unless its pytest11 entry point loads it already."""
    installed = any(entry.value == "det_nb.pytest_plugin"
                    for entry in metadata.entry_points(group="pytest11"))
    return [] if installed else ["-p", "det_nb.pytest_plugin"]


@pytest.fixture(scope="module")
def verified(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One verification of a reproducible and a drifting notebook, with a JSON report."""
    folder = tmp_path_factory.mktemp("verify")
    good = write_notebook(folder, "good.ipynb", GOOD)
    drift = write_notebook(folder, "drift.ipynb", DRIFT)
    report = folder / "report.json"
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        status = verify.main([good, drift, "--json", str(report)])
    return {"status": status, "out": out.getvalue(), "good": good, "drift": drift,
            "report": report}


def test_reproducible_notebook_verifies_in_one_line(verified: dict) -> None:
    lines = verified["out"].splitlines()
    # x in cell 2, history and Out[3] in 3, y and history (changed in place) in 5; cell 4's
    # error
    assert lines[0] == (f"{verified['good']}: identical across 2 runs (5 cells, 5 names and 1 "
                        "error compared)")


def test_unseeded_generator_is_reported_at_its_cell_with_its_names(verified: dict) -> None:
    out = verified["out"]
    assert verified["status"] == 1
    report = out[out.index(verified["drift"]):]
    lines = report.splitlines()
    assert lines[0] == (f"{verified['drift']}: runs parted at cell 3: "
                        "g = np.random.default_rng()")
    assert lines[1] == "  run 1 vs run 2:"
    assert lines[2] == "    g: Generator state differs, so its next draws differ"
    assert lines[3].startswith("    w: ndarray float64 (3,): 3 of 3 elements differ; "
                               "max abs difference")
    # det_nb's entropy audit, which the runner starts in every kernel, names the call
    assert lines[4:6] == [
        "  likely cause, unseeded randomness in this cell (det_nb's entropy audit):",
        "    cell 3, line 1: np.random.default_rng()"]
    assert lines[6] == "  later cells that differ as a consequence: 1 (cell 4)"
    causes = "\n".join(lines[:4])
    assert "x:" not in causes and "v:" not in causes  # x came before, v follows from w


def test_json_report_holds_every_cell_and_name(verified: dict) -> None:
    data = json.loads(verified["report"].read_text())
    assert (data["format"], data["version"]) == ("det_nb-verify", 3)
    good, drift = data["notebooks"]
    assert (good["verdict"], drift["verdict"], drift["first_parting_cell"]) == (
        "identical", "parted", 3)
    assert (drift["parted_after_last_cell"], good["unseeded"], good["notes"]) == (False, [], [])
    assert good["runs"][0]["cells"][2]["names"]["Out[3]"]["description"] == "Box (0 attributes)"
    # the look at every name after the last cell: nothing changed unseen, no record in force
    assert good["runs"][0]["after_last"]["names"] == {}
    assert drift["runs"][0]["unseeded"] == ["cell 3, line 1: np.random.default_rng()"]
    run = drift["runs"][0]
    assert run["record"]["lineage"]["experiment_seed"] == 42
    assert [cell["index"] for cell in run["cells"]] == [1, 2, 3, 4]
    assert run["cells"][2]["names"]["w"]["description"] == "ndarray float64 (3,)"
    assert [cell["unseeded"] for cell in run["cells"]] == [
        [], [], ["cell 3, line 1: np.random.default_rng()"], []]
    assert run["cells"][2]["names"]["w"]["digest"] != drift["runs"][1]["cells"][2]["names"][
        "w"]["digest"]


def test_the_audit_names_an_unseeded_call_in_an_unseeded_notebook(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without det_nb in the notebook, the likely cause is still named: in an earlier cell,
    by the cell's own number, with the cell that ran it."""
    path = write_notebook(tmp_path, "plain.ipynb", [
        "import uuid\ndef run_id():\n    return uuid.uuid4().hex",
        "x = 1",
        "name = run_id()"])
    status, out, _ = verify_main([path], capsys)
    assert status == 1
    lines = out.splitlines()
    assert lines[0].endswith("runs parted at cell 3: name = run_id()")
    assert lines[lines.index("  likely cause, unseeded randomness in this cell (det_nb's "
                             "entropy audit):") + 1] == (
        "    cell 1, line 3: uuid.uuid4(), run by cell 3")


def test_against_a_stored_report(verified: dict, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = verify_main([verified["good"], "--against", str(verified["report"])], capsys)
    assert (status, out.strip()) == (0, f"{verified['good']}: identical across the stored run "
                                        "and 1 fresh run (5 cells, 5 names and 1 error compared)")
    status, out, _ = verify_main([verified["drift"], "--against", str(verified["report"])],
                                 capsys)
    assert status == 1
    assert out.splitlines()[1:4] == [
        "  stored run 1 vs fresh run 1:",
        "    g: Generator (by its state): different values",
        "    w: ndarray float64 (3,): different values",
    ]


def test_vary_hashseed_catches_set_order(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTHONHASHSEED", "0")  # the same in both runs unless varied
    path = write_notebook(tmp_path, "sets.ipynb", [
        "labels = ['cat', 'dog', 'emu', 'fox', 'gnu', 'yak']",
        "order = list(set(labels))",
        "first = order[0]",
    ])
    assert verify_main([path], capsys)[0] == 0
    status, out, _ = verify_main([path, "--vary", "hashseed"], capsys)
    assert status == 1
    assert out.startswith(f"{path}: runs parted at cell 2: order = list(set(labels))\n"
                          "  run 1 vs run 2:\n    order[0]: str differs at position 0")
    assert "PYTHONHASHSEED: '1' in run 1, '2' in run 2 (set by --vary)" in out


# sgemm, solve and eigvalsh on seeded data: OpenBLAS splits them over as many threads as
# the process has CPUs, and 1 and 2 threads give different bits (measured on 2 cores).
LAPACK = [
    "import numpy as np\nrng = np.random.default_rng(0)\n"
    "a = rng.standard_normal((600, 600), dtype=np.float32)\n"
    "b = rng.standard_normal((600, 600), dtype=np.float32)\n"
    "m = rng.standard_normal((400, 400))\nv = rng.standard_normal(400)",
    "product = a @ b\nsolution = np.linalg.solve(m, v)\n"
    "eigenvalues = np.linalg.eigvalsh(m @ m.T)",
]


# Thread counts in verify's own environment are machine defaults the kernels inherit (and
# det_nb's in-process %det_seed sets them in this test process): cleared for these tests.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                    "BLIS_NUM_THREADS", "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")


@pytest.fixture
def machine_default_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    """Kernels left to size their thread pools from their CPUs, as on a fresh machine."""
    for variable in THREAD_VARIABLES:
        monkeypatch.delenv(variable, raising=False)


@pytest.mark.usefixtures("machine_default_threads")
def test_vary_threads_catches_blas_results_that_depend_on_the_core_count(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Run 1's kernel may use one CPU, run 2's both: a one-core and a two-core machine."""
    free = write_notebook(tmp_path, "free.ipynb",
                          ["%load_ext det_nb\n%det_seed 1 --no-single-thread --quiet", *LAPACK])
    status, out, _ = verify_main([free, "--vary", "threads"], capsys)
    assert status == 1
    lines = out.splitlines()
    assert lines[:2] == [f"{free}: runs parted at cell 3: product = a @ b", "  run 1 vs run 2:"]
    assert {line.split(":")[0].strip() for line in lines[2:5]} == {
        "eigenvalues", "product", "solution"}
    assert "    CPU affinity: '1 CPU' in run 1, '2 CPUs' in run 2 (set by --vary)" in lines
    assert not any("NUM_THREADS" in line for line in lines)  # no thread variables are set


@pytest.mark.usefixtures("machine_default_threads")
def test_vary_threads_passes_lapack_under_det_nbs_single_thread_mode(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """det_nb's default single-thread mode pins OpenBLAS too (branch "threads"), so a
    one-core and a two-core machine agree."""
    pinned = write_notebook(tmp_path, "pinned.ipynb",
                            ["%load_ext det_nb\n%det_seed 1 --quiet", *LAPACK])
    status, out, _ = verify_main([pinned, "--vary", "threads"], capsys)
    assert (status, out) == (
        0, f"{pinned}: identical across 2 runs (3 cells, 8 names compared)\n")


def test_vary_threads_needs_two_cpus(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_notebook(tmp_path, "nb.ipynb", ["a = 1"])
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {3})
    assert verify_main([path, "--vary", "threads"], capsys) == (
        2, "", "python -m det_nb verify: error: --vary threads runs one kernel on 1 CPU and "
        "one on all CPUs this process may use, and it may use only 1: run it where 2 or more "
        "CPUs are available\n")


def test_vary_cpu_catches_unpinned_blas_kernels_and_passes_portable_ones(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blas = ["import numpy as np\nrng = np.random.default_rng(0)\n"
            "x = rng.standard_normal((1024, 8), dtype=np.float32)\n"
            "w = rng.standard_normal((8, 1), dtype=np.float32)",
            "y = x @ w"]
    native = write_notebook(tmp_path, "native.ipynb",
                            ["%load_ext det_nb\n%det_seed 1 --no-portable --quiet", *blas])
    portable = write_notebook(tmp_path, "portable.ipynb",
                              ["%load_ext det_nb\n%det_seed 1 --quiet", *blas])
    status, out, _ = verify_main([native, portable, "--vary", "cpu"], capsys)
    assert status == 1
    assert out.startswith(f"{native}: runs parted at cell 3: y = x @ w\n  run 1 vs run 2:\n"
                          "    y: ndarray float32 (1024, 1): ")
    assert "OPENBLAS_CORETYPE: unset in run 1, 'Prescott' in run 2 (set by --vary)" in out
    assert f"{portable}: identical across 2 runs (3 cells, 4 names compared)" in out


def test_failing_cell_is_exit_2_with_its_number(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_notebook(tmp_path, "fails.ipynb", ["a = 1", "b = a / 0", "c = 3"])
    status, out, err = verify_main([path], capsys)
    assert (status, out, err) == (
        2, f"{path}: could not run: run 1: cell 2: ZeroDivisionError: division by zero\n", "")


@pytest.mark.parametrize(("argv", "message"), [
    ([], "the following arguments are required: NOTEBOOK"),
    (["missing.ipynb"], "notebook 'missing.ipynb' does not exist"),
    (["{nb}", "--runs", "1"], "--runs must be at least 2 to compare runs, got 1"),
    (["{nb}", "--runs", "two"], "--runs must be an integer in [1, 16], got 'two'"),
    (["{nb}", "--runs", "4_2"], "--runs must be an integer in [1, 16], got '4_2'"),
    (["{nb}", "--vary", "moon"], "argument --vary: invalid choice: 'moon'"),
    (["{nb}", "--vary", "cpu", "--vary", "cpu"], "give each --vary condition once"),
    (["{nb}", "--timeout", "0"], "argument --timeout: must be a finite number more than 0, got 0"),
    (["{nb}", "--timeout", "nan"], "must be a finite number more than 0, got nan"),
    (["{nb}", "--runs", "2", "-n3"], "argument --runs/-n: given more than once"),
    (["{nb}", "--jso", "{tmp}/r.json"], "unrecognized arguments: --jso"),
    (["{nb}", "--json", ""], "no --json report path given"),
    (["{nb}", "--json", "{nb}"], "--json {nb!r} is the notebook {nb!r}: give --json another file"),
    (["{nb}", "--against", "{fifo}"], "report {fifo!r} is a FIFO, not a regular file"),
    (["{nb}", "--against", "/dev/zero"], "report '/dev/zero' is a character device"),
    (["{malformed}"], "is not a Jupyter notebook: metadata.kernelspec: 'python3' is not of"),
    (["{text}"], "is not a Jupyter notebook"),
    (["{nb}", "--against", "{text}"], "is not valid JSON"),
    (["{nb}", "--against", "{other}"], "is not a det_nb verify report"),
    (["{nb}", "--json", "{tmp}/no/such/folder/r.json"], "does not exist"),
    (["{nb}", "--sanitize", "{text}"], "sanitize file {text!r}, line 1: expected 'regex: "
     "PATTERN' followed by 'replace: TEXT', got 'not json'"),
    (["{nb}", "--sanitize", "{badregex}"], "sanitize file {badregex!r}, line 1: bad regular "
     "expression: missing ), unterminated subpattern at position 0"),
    (["{nb}", "--sanitize", "{tmp}/none.cfg"], "error: sanitize file '{tmp}/none.cfg' does not "
     "exist"),
    (["{nb}", "--sanitize", "{fifo}"], "sanitize file {fifo!r} is a FIFO, not a regular file"),
    (["{nb}", "--allow-errors", "--allow-errors"], "argument --allow-errors: given more than "
     "once"),
])
def test_bad_input_is_one_line_and_exit_2(
    argv: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    nb = write_notebook(tmp_path, "nb.ipynb", ["a = 1"])
    (tmp_path / "text.txt").write_text("not json\n")
    (tmp_path / "other.json").write_text('{"version": 1}\n')
    os.mkfifo(tmp_path / "fifo.json")
    (tmp_path / "bad.cfg").write_text("regex: (x\nreplace: y\n")
    malformed = json.loads(Path(nb).read_text())
    malformed["metadata"]["kernelspec"] = "python3"
    (tmp_path / "malformed.ipynb").write_text(json.dumps(malformed))
    before = Path(nb).read_bytes()
    names = {"nb": nb, "text": str(tmp_path / "text.txt"),
             "other": str(tmp_path / "other.json"), "tmp": str(tmp_path),
             "fifo": str(tmp_path / "fifo.json"), "malformed": str(tmp_path / "malformed.ipynb"),
             "badregex": str(tmp_path / "bad.cfg")}
    status, out, err = verify_main([arg.format(**names) for arg in argv], capsys)
    assert (status, out) == (2, "")
    assert err.startswith("python -m det_nb verify: error: ") and err.count("\n") == 1
    assert message.format(**names) in err
    assert Path(nb).read_bytes() == before and not (tmp_path / "r.json").exists()


def test_pytest_plugin_passes_and_fails_the_same_notebooks(
    verified: dict, pytester: pytest.Pytester
) -> None:
    result = pytester.runpytest(*plugin_args(), "--det-verify", verified["good"],
                                verified["drift"])
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines([
        "*drift.ipynb: runs parted at cell 3: g = np.random.default_rng()",
        "    g: Generator state differs, so its next draws differ",
        "FAILED *drift.ipynb::det_verify*",
    ])
    assert "Traceback" not in result.stdout.str()


@pytest.mark.parametrize(("setting", "says"), [
    (["--det-verify-runs", "1"], "ERROR: --det-verify-runs must be in [[]2, 16], got 1"),
    (["--det-verify-timeout", "nan"],
     "ERROR: --det-verify-timeout must be a finite number of seconds above 0, got nan"),
])
def test_pytest_plugin_refuses_bad_settings_in_one_line(
    pytester: pytest.Pytester, setting: list[str], says: str
) -> None:
    result = pytester.runpytest(*plugin_args(), "--det-verify", *setting)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([says])
    assert "Traceback" not in result.stderr.str()


def test_pytest_plugin_fails_a_malformed_notebook_cleanly(
    tmp_path: Path, pytester: pytest.Pytester
) -> None:
    path = write_notebook(tmp_path, "number.ipynb", ["a = 1"])
    document = json.loads(Path(path).read_text())
    document["cells"][0]["source"] = 5
    Path(path).write_text(json.dumps(document))
    result = pytester.runpytest(*plugin_args(), "--det-verify", path)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([f"*{path!r} is not a Jupyter notebook: cells.0.source: 5 *"])
    assert "Traceback" not in result.stdout.str()


def test_runner_seeds_and_collects(tmp_path: Path) -> None:
    path = write_notebook(tmp_path, "trial.ipynb", [
        "import random\ndraw = random.random()",
        "import numpy as np\nweights = np.arange(6.0).reshape(2, 3)",
    ])
    run = run_notebook(path, seed=7, trial=2, collect=["draw", "weights", "undefined"])
    trial_seed = Lineage(7, 2).trial_seed
    assert run.error is None
    assert run.record["lineage"]["trial_seed"] == trial_seed
    assert run.collected["draw"] == random.Random(trial_seed).random()
    weights = run.collected["weights"]
    assert isinstance(weights, NameFingerprint)
    assert weights.description == "ndarray float64 (2, 3)"
    assert "undefined" not in run.collected
    assert [cell.first_line for cell in run.cells] == ["import random", "import numpy as np"]


def test_runner_leaves_numpy_import_to_the_notebook(tmp_path: Path) -> None:
    """det_nb's CPU-kernel pins act only on a NumPy loaded after them: the probe waits."""
    path = write_notebook(tmp_path, "plain.ipynb", [
        "import sys\nnumpy_before = 'numpy' in sys.modules\nsizes = [1, 2]",
        "sizes.append(3)",
        "import numpy\ncount = len(sizes)",  # reads sizes: hashed again, now with NumPy
    ])
    run = run_notebook(path, collect=["numpy_before"])
    assert (run.error, run.record, run.collected) == (None, None, {"numpy_before": False})
    assert run.cells[1].names["sizes"].description == "list (len 3)"  # changed in place
    assert list(run.cells[2].names) == ["count"]  # NumPy's import alone changes no hash


def test_runner_replaces_the_notebooks_own_seed(tmp_path: Path) -> None:
    path = write_notebook(tmp_path, "seeded.ipynb", [
        "%load_ext det_nb\n%det_seed 42 --trial 1 --per-cell --quiet", "n = 1"])
    run = run_notebook(path, seed=3, trial=5)
    assert (run.record["lineage"]["experiment_seed"], run.record["lineage"]["trial"],
            run.record["settings"]["per_cell"]) == (3, 5, True)


def _run(label: str, seed: int, origin: str, digest: str) -> verify.RunData:
    """A run as verify compares it, without a kernel: one cell assigning ``x``."""
    cell = CellResult(1, "%det_seed", {"x": NameFingerprint("x", digest, "float", "value")}, "o")
    record = {"lineage": {"experiment_seed": seed, "experiment_seed_origin": origin},
              "settings": {"threads": 1}}
    return verify.RunData(label, {}, [cell], {"python": "3.11"}, record, [], None)


def test_seed_assigned_from_the_clock_is_noted_or_named_as_the_cause() -> None:
    same = verify.compare_runs("nb.ipynb", [_run("run 1", 1700000000, "assigned", "aa"),
                                            _run("run 2", 1700000000, "assigned", "aa")])
    assert same.status == "identical"
    assert same.text().splitlines()[1].startswith(
        "  note: det_nb assigned experiment seed 1700000000 from the clock")
    parted = verify.compare_runs("nb.ipynb", [_run("run 1", 1700000000, "assigned", "aa"),
                                              _run("run 2", 1700000001, "assigned", "bb")])
    assert "    lineage.experiment_seed: 1700000000 in run 1, 1700000001 in run 2" in (
        parted.text().splitlines())


def test_notebook_metadata_cannot_seed_a_notebook(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The runner's old internal channel: verify reads a notebook, never a seed, from it."""
    planted = tmp_path / "planted.json"
    path = write_notebook(tmp_path, "meta.ipynb", ["import random\ndraw = random.random()"])
    document = json.loads(Path(path).read_text())
    document["metadata"]["det_nb_seed"] = {"seed": f"1 --save {planted}", "trial": None,
                                           "scheme": None}
    Path(path).write_text(json.dumps(document))
    status, out, _ = verify_main([path], capsys)
    assert status == 1  # not seeded: two fresh kernels draw differently
    assert out.startswith(f"{path}: runs parted at cell 1: import random\n  run 1 vs run 2:\n"
                          "    draw: float differs by ")
    assert not planted.exists()
    document["metadata"]["det_nb_seed"] = {"seed": 1, "trial": None, "scheme": None}
    Path(path).write_text(json.dumps(document))
    run = run_notebook(path)
    assert (run.error, run.record) == (None, None)  # det_nb was never loaded


@pytest.fixture(scope="module")
def unproven(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A notebook holding a value no fingerprint reaches, next to code that is not a result."""
    folder = tmp_path_factory.mktemp("unproven")
    path = write_notebook(folder, "handle.ipynb", [
        "import math\nfrom math import sqrt\nimport functools\n\n\ndef f(x):\n    return x\n\n\n"
        "class Model:\n    pass\n\n\nroot = functools.partial(sqrt)\nsize = 3",
        "import os\nhandle = open(os.devnull)",
    ])
    report = folder / "report.json"
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        status = verify.main([path, "--json", str(report)])
    return {"path": path, "status": status, "out": out.getvalue(), "report": report}


def test_a_value_that_cannot_be_compared_is_never_called_identical(unproven: dict) -> None:
    lines = unproven["out"].splitlines()
    assert unproven["status"] == 3
    # functions, classes, modules and the like are code: neither compared nor listed (a
    # partial holds arguments: it is compared, with size)
    assert lines[:3] == [
        f"{unproven['path']}: not proven across 2 runs: 1 value could not be compared "
        "(2 cells, 2 names compared and equal)", "  not compared:", lines[2]]
    assert lines[2].startswith("    cell 2: handle: TextIOWrapper: ") and len(lines) == 3
    data = json.loads(unproven["report"].read_text())["notebooks"][0]
    assert data["verdict"] == "not proven"
    assert data["not_compared"] == [{"cell": 2, "name": "handle",
                                     "description": lines[2].split("handle: ", 1)[1]}]


def test_allow_unchecked_accepts_but_still_says_not_proven(
    unproven: dict, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, _ = verify_main([unproven["path"], "--allow-unchecked"], capsys)
    assert (status, out) == (0, unproven["out"])


def test_allow_errors_compares_errors_and_runs_the_rest(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = write_notebook(tmp_path, "broken.ipynb", ["a = 1", "b = a / 0", "c = a + 1"])
    status, out, _ = verify_main([broken, "--allow-errors"], capsys)
    assert (status, out) == (
        0, f"{broken}: identical across 2 runs (3 cells, 2 names and 1 error compared)\n")
    random_error = write_notebook(tmp_path, "random_error.ipynb", [
        "import os", "raise ValueError(os.urandom(8).hex())", "c = 1"])
    status, out, _ = verify_main([random_error, "--allow-errors"], capsys)
    lines = out.splitlines()
    assert status == 1
    assert lines[:2] == [f"{random_error}: runs parted at cell 2: raise ValueError("
                         "os.urandom(8).hex())", "  run 1 vs run 2:"]
    assert re.fullmatch(r"    error: 'ValueError: [0-9a-f]{16}' in run 1, 'ValueError: "
                        r"[0-9a-f]{16}' in run 2", lines[2])
    assert lines[3] == "    the cell's outputs differ"


def test_printed_progress_verifies_identical_however_the_kernel_flushes_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A seeded loop that prints with a short sleep: the kernel's timed flushes cut its
    text into a different number of outputs in every run."""
    path = write_notebook(tmp_path, "progress.ipynb", [
        "%load_ext det_nb\n%det_seed 3 --quiet",
        "import random\nimport time\nfor step in range(15):\n"
        "    print('step', step, round(random.random(), 6))\n"
        "    time.sleep(0.01 + time.perf_counter_ns() % 100 / 1000)  # cut differently each run",
    ])
    status, out, _ = verify_main([path, "--runs", "3"], capsys)
    assert (status, out) == (0, f"{path}: identical across 3 runs (2 cells, 1 names compared)\n")


def test_only_printed_output_differs_and_the_report_shows_the_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_notebook(tmp_path, "clock.ipynb", [
        "total = sum(range(10))", "import time\nprint('total', total)\nprint('at', time.time_ns())",
        "done = True"])
    status, out, _ = verify_main([path], capsys)
    lines = out.splitlines()
    assert status == 1
    assert lines[:4] == [f"{path}: runs parted at cell 2: import time", "  run 1 vs run 2:",
                         "    only the printed output differs; every value is equal",
                         "    first differing output line (line 2):"]
    assert re.fullmatch(r"      run 1: 'at \d+'", lines[4])
    assert re.fullmatch(r"      run 2: 'at \d+'", lines[5])
    assert lines[4] != lines[5].replace("run 2", "run 1") and len(lines) == 6


def test_sanitize_file_masks_what_the_user_names(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_notebook(tmp_path, "pid.ipynb", ["import os\nprint('kernel pid', os.getpid())"])
    assert verify_main([path], capsys)[0] == 1
    sanitize = tmp_path / "sanitize.cfg"
    sanitize.write_text("[pid]\nregex: pid \\d+\nreplace: pid N\n")
    assert verify_main([path, "--sanitize", str(sanitize)], capsys)[:2] == (
        0, f"{path}: identical across 2 runs (1 cells, 0 names compared)\n")


def test_keras_fit_with_its_progress_bar_and_timeit_verify_identical(tmp_path: Path) -> None:
    """Keras's default progress bar prints durations and redraws itself as time allows;
    %timeit prints timings and chooses its loop count by time."""
    path = write_notebook(tmp_path, "keras_fit.ipynb", [
        "%load_ext det_nb\n%det_seed 42 --quiet",
        "import numpy as np\nimport keras\nx = np.random.rand(64, 4).astype('float32')\n"
        "y = (x.sum(axis=1) > 2).astype('float32')",
        "model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, activation='relu'),"
        "\n    keras.layers.Dropout(0.2), keras.layers.Dense(1, activation='sigmoid')])\n"
        "model.compile(optimizer='adam', loss='binary_crossentropy')\n"
        "model.fit(x, y, epochs=3, batch_size=8)",
        "%timeit float(np.abs(x).sum())",
    ])
    verdict = verify.verify_notebook(path, runs=2, vary=(), timeout=600)
    # x and y; model and the History fit returns (displayed: Out[3]); stderr compared too
    assert verdict.text() == f"{path}: identical across 2 runs (4 cells, 4 names compared)"
    fit, timed = verdict.runs[0].cells[2], verdict.runs[0].cells[3]
    assert "Epoch 3/3\n8/8 ━━━━━━━━━━━━━━━━━━━━ <time> <time>/step - loss: " in fit.outputs_text
    assert fit.outputs_text.endswith(
        "[execute_result text/plain]\n<keras.src.callbacks.history.History at 0x<address>>")
    assert timed.outputs_text == "<timeit: time per loop>\n"


def test_report_text_escapes_paths(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A newline in a notebook's path cannot split a report line; a name that is not UTF-8
    is shown escaped."""
    newline = write_notebook(tmp_path, "two\nlines.ipynb", ["a = 1"])
    latin = write_notebook(tmp_path, os.fsdecode(b"caf\xe9.ipynb"), ["a = 1"])
    status, out, _ = verify_main([newline, latin], capsys)
    assert (status, out.splitlines()) == (0, [
        f"{tmp_path}/two\\nlines.ipynb: identical across 2 runs (1 cells, 1 names compared)",
        f"{tmp_path}/caf\\udce9.ipynb: identical across 2 runs (1 cells, 1 names compared)"])


def test_a_notebook_jupyter_runs_is_repaired_and_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Cell ids in an nbformat 4.0 file: refused before ("Additional properties are not
    allowed ('id' was unexpected)"), run by Jupyter, nbclient and nbconvert."""
    path = tmp_path / "old.ipynb"
    path.write_text(json.dumps({"nbformat": 4, "nbformat_minor": 0, "metadata": {}, "cells": [
        {"cell_type": "code", "id": "first", "metadata": {}, "source": "a = 1", "outputs": [],
         "execution_count": None}]}))
    status, out, _ = verify_main([str(path)], capsys)
    assert (status, out.splitlines()) == (0, [
        f"{path}: identical across 2 runs (1 cells, 1 names compared)",
        "  note: repaired in the copy that ran: cell ids in an nbformat 4.0 file (ids came with "
        "4.5): ran as nbformat 4.5 with new ids"])


def test_pytest_plugin_fails_not_proven_unless_allowed(
    unproven: dict, pytester: pytest.Pytester
) -> None:
    result = pytester.runpytest(*plugin_args(), "--det-verify", unproven["path"])
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*handle.ipynb: not proven across 2 runs: 1 value could not "
                                 "be compared*", "    cell 2: handle: TextIOWrapper: *"])
    result = pytester.runpytest(*plugin_args(), "--det-verify", "--det-verify-allow-unchecked",
                                unproven["path"])
    result.assert_outcomes(passed=1)


def test_pytest_plugin_refuses_a_bad_sanitize_file(
    tmp_path: Path, pytester: pytest.Pytester
) -> None:
    bad = tmp_path / "bad.cfg"
    bad.write_text("regex: [\nreplace: x\n")
    result = pytester.runpytest(*plugin_args(), "--det-verify", "--det-verify-sanitize", str(bad))
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: sanitize file {str(bad)!r}, line 1: bad regular "
                                 "expression: unterminated character set at position 0"])


@pytest.mark.parametrize("swap", ["link to the notebook", "hard link to the notebook"])
def test_json_is_never_written_through_what_appeared_during_the_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
    swap: str,
) -> None:
    """The --json path is checked again when the report is written: replaced during the run
    by a link to the notebook, it is refused and the notebook stays intact."""
    path = write_notebook(tmp_path, "nb.ipynb", ["a = 1"])
    before = Path(path).read_bytes()
    report = tmp_path / "report.json"
    verify_notebook = verify.verify_notebook

    def verify_then_swap(*args: object, **kwargs: object) -> verify.NotebookVerdict:
        verdict = verify_notebook(*args, **kwargs)
        if swap == "link to the notebook":
            report.symlink_to(path)
        else:
            os.link(path, report)
        return verdict

    monkeypatch.setattr(verify, "verify_notebook", verify_then_swap)
    status, out, err = verify_main([path, "--json", str(report)], capsys)
    assert (status, out) == (2, f"{path}: identical across 2 runs (1 cells, 1 names compared)\n")
    assert err.startswith(f"python -m det_nb verify: error: cannot write {str(report)!r}: ")
    assert err.endswith("; nothing was written\n") and err.count("\n") == 1
    assert Path(path).read_bytes() == before


# One value per family, built inside a function from OS entropy: no seed reaches it, so
# two fresh kernels hold different values. (name, cell)
DRIFTING_FAMILIES = {
    "torch tensor": ("weights", "import os\nimport torch\n\n\ndef make():\n"
                     "    generator = torch.Generator().manual_seed(int.from_bytes(os.urandom(4), "
                     "'little'))\n    return torch.randn(4, generator=generator)\n\n\n"
                     "weights = make()"),
    "torch module": ("net", "import os\nimport torch\n\n\ndef make():\n"
                     "    torch.manual_seed(int.from_bytes(os.urandom(4), 'little'))\n"
                     "    return torch.nn.Sequential(torch.nn.Linear(3, 4), "
                     "torch.nn.BatchNorm1d(4))\n\n\nnet = make()"),
    "JAX array": ("noise", "import os\nimport jax\n\n\ndef make():\n"
                  "    key = jax.random.key(int.from_bytes(os.urandom(4), 'little'))\n"
                  "    return jax.random.normal(key, (3,))\n\n\nnoise = make()"),
    "pandas frame": ("frame", "import os\nimport pandas as pd\n\n\ndef make():\n"
                     "    return pd.DataFrame({'a': list(os.urandom(2)), 'b': [1.5, 2.5]})"
                     "\n\n\nframe = make()"),
}


@pytest.fixture(scope="module")
def families(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """verify of one drifting-value notebook per family, in one command."""
    folder = tmp_path_factory.mktemp("families")
    paths = {family: write_notebook(folder, f"{name}.ipynb", [SEEDED, cell])
             for family, (name, cell) in DRIFTING_FAMILIES.items()}
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        status = verify.main(list(paths.values()))
    return {"status": status, "out": out.getvalue(), "paths": paths}


@pytest.mark.parametrize("family", sorted(DRIFTING_FAMILIES))
def test_a_drifting_value_of_any_family_is_never_called_identical(
    families: dict, family: str
) -> None:
    """Issue 16's notebook was 'identical across 2 runs (3 cells, 0 names compared)', exit 0.

    A family det_nb fingerprints is caught (parted, the value named where it differs);
    one it cannot fingerprint yet makes the verdict not proven, naming the value.
    """
    name = DRIFTING_FAMILIES[family][0]
    path = families["paths"][family]
    out = families["out"]
    report = out[out.index(f"{path}: "):].split("\n/")[0].splitlines()
    assert families["status"] in (1, 3)
    assert "identical" not in report[0]
    if "runs parted" in report[0]:
        assert report[0] == f"{path}: runs parted at cell 2: import os"
        assert report[2].startswith(f"    {name}: ")
    else:
        assert report[0].startswith(f"{path}: not proven across 2 runs: 1 value could not be "
                                    "compared")
        assert report[2].startswith(f"    cell 2: {name}: ")


def test_a_drifting_torch_tensor_is_parted_and_located(families: dict) -> None:
    out = families["out"]
    report = out[out.index(families["paths"]["torch tensor"]):].splitlines()
    assert report[2].startswith("    weights: torch.Tensor float32 (4,): 4 of 4 elements "
                                "differ; max abs difference ")
    assert families["status"] == 1


# -- values changed without being named, displayed results, stderr, the notebook's kernel,
# -- unseeded randomness on record

# The weights depend on the kernel's pid: cell 4 changes model through the optimizer, which
# holds its parameters, and never names it (the optimizer's own state does not change: its
# step adds a number made from the pid, which the seeds do not fix).
OPTIMIZER_STEP = [
    SEEDED,
    "import hashlib\nimport os\nimport torch\nmodel = torch.nn.Linear(2, 1)\n\n\n"
    "class Jitter(torch.optim.SGD):\n    @torch.no_grad()\n    def step(self, closure=None):\n"
    "        pid = hashlib.sha256(str(os.getpid()).encode()).digest()\n"
    "        for group in self.param_groups:\n            for p in group['params']:\n"
    "                p.add_(int.from_bytes(pid[:2], 'little'))\n\n\n"
    "opt = Jitter(model.parameters(), lr=0.1)",
    "model(torch.ones(1, 2)).sum().backward()",
    "opt.step()",
    "print('done')",
]
# A closure writes into an array the notebook keeps.
CLOSURE = [
    SEEDED,
    "import numpy as np\nimport os\n\n\ndef make():\n    w = np.zeros(3)\n\n"
    "    def update():\n        w[:] = os.getpid()\n    return w, update\n\n\nw, update = make()",
    "update()",
]


@pytest.fixture(scope="module")
def unnamed(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """verify of notebooks whose values a cell changes without naming them."""
    folder = tmp_path_factory.mktemp("unnamed")
    paths = {
        "step": write_notebook(folder, "step.ipynb", OPTIMIZER_STEP),
        "closure": write_notebook(folder, "closure.ipynb", CLOSURE),
        # a later cell names model: it must not be blamed for what cell 4 did
        "step_then_named": write_notebook(folder, "named.ipynb", [
            *OPTIMIZER_STEP[:-1], "print(model.weight.sum().item())"]),
    }
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        status = verify.main(list(paths.values()))
    return {"status": status, "out": out.getvalue(), "paths": paths}


def _report(found: dict, key: str) -> list[str]:
    out, path = found["out"], found["paths"][key]
    return out[out.index(f"{path}: "):].split("\n/")[0].splitlines()


@pytest.mark.parametrize(("key", "cell", "name"), [
    ("step", "4: opt.step()", "model: torch.nn.Module: state_dict['weight']: 2 of 2 elements "
     "differ; max abs difference "),
    ("step_then_named", "4: opt.step()", "model: torch.nn.Module: state_dict['weight']: "),
])
def test_a_value_a_cell_changed_without_naming_it_is_caught_at_that_cell(
    unnamed: dict, key: str, cell: str, name: str
) -> None:
    """a_opt.ipynb was "identical", exit 0: a value is fingerprinted after the cells that
    name it, and no cell named it. The look at every name after the last cell catches it;
    runs made again with it fingerprinted after every cell find the cell."""
    report = _report(unnamed, key)
    assert unnamed["status"] == 1
    assert report[0] == f"{unnamed['paths'][key]}: runs parted at cell {cell}"
    assert report[2].startswith(f"    {name}")
    changed = report[2].split(":")[0].strip()
    assert report[3] == (f"    {changed}: changed by this cell through another reference (found "
                         "by runs made again that fingerprinted it after every cell)")


def test_a_change_through_a_closure_is_caught_at_its_cell_by_both_names(unnamed: dict) -> None:
    """update() writes into w through its closure: the probe watches what the notebook's
    functions hold, so the cell that changed w is found in the runs themselves, and the
    function is named too (the data it holds changed)."""
    report = _report(unnamed, "closure")
    assert report[0] == f"{unnamed['paths']['closure']}: runs parted at cell 3: update()"
    assert report[2].startswith("    update: function: __closure__['w']: 3 of 3 elements "
                                "differ; max abs difference ")
    assert report[3].startswith("    w: ndarray float64 (3,): 3 of 3 elements differ; max abs "
                                "difference ")
    assert "another reference" not in "\n".join(report)


def _after_last_run(label: str, digest: str) -> verify.RunData:
    """A run of a 3-cell notebook whose ``model``, last named in cell 1, differs only in the
    look after the last cell (as a stored run, it cannot be run again)."""
    model = NameFingerprint("model", "aa", "torch.nn.Module", "value")
    cells = [CellResult(1, "model = make()", {"model": model}, "o"),
             CellResult(2, "opt.step()", {}, "o"), CellResult(3, "print('done')", {}, "o")]
    after = CellResult(4, "", {"model": NameFingerprint("model", digest, "torch.nn.Module",
                                                        "value")}, "o")
    return verify.RunData(label, {}, cells, {}, None, [], None, after_last=after)


def test_a_difference_seen_only_after_the_last_cell_is_reported_so() -> None:
    verdict = verify.compare_runs("nb.ipynb", [_after_last_run("stored run 1", "bb"),
                                               _after_last_run("fresh run 1", "cc")])
    assert verdict.status == "parted" and verdict.parted_after_last_cell
    assert verdict.text().splitlines() == [
        "nb.ipynb: runs parted after the last cell (cell 3)",
        "  stored run 1 vs fresh run 1:",
        "    model: torch.nn.Module: different values",
        "  a cell changed these values without naming them (through another reference: an "
        "optimizer's step() changes its model, a closure writes into an array), so no cell is "
        "blamed:",
        "    model: equal after cell 1, the last cell it was compared in; changed by cell "
        "2 or a later one",
    ]
    report = verify.to_json([verdict])["notebooks"][0]
    assert (report["verdict"], report["first_parting_cell"],
            report["parted_after_last_cell"]) == ("parted", 4, True)
    same = verify.compare_runs("nb.ipynb", [_after_last_run("run 1", "bb"),
                                            _after_last_run("run 2", "bb")])
    assert same.text() == "nb.ipynb: identical across 2 runs (3 cells, 2 names compared)"


def test_a_displayed_result_is_compared_by_its_value_not_its_rounded_repr(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """disp.ipynb, disp2.ipynb: NumPy shows 8 digits, so the text was equal and the value
    was compared by no name ("identical ... 0 names compared", "every value is equal")."""
    pid = "(os.getpid() % 7 + 1) * 1e-12"
    array = write_notebook(tmp_path, "array.ipynb", [
        "import os\nimport numpy as np", f"np.array([1.0 + {pid}])"])
    listed = write_notebook(tmp_path, "listed.ipynb", [
        "import os\nimport numpy as np", f"np.array([1.0 + {pid}]).tolist()", "x = 1"])
    status, out, _ = verify_main([array, listed], capsys)
    assert status == 1
    report = out[out.index(array):out.index(listed)].splitlines()
    assert report[:3] == [f"{array}: runs parted at cell 2: np.array([1.0 + {pid}])",
                          "  run 1 vs run 2:",
                          report[2]]
    assert report[2].startswith("    Out[2]: ndarray float64 (1,): 1 of 1 elements differ; max "
                                "abs difference ")
    assert "printed output" not in out
    report = out[out.index(listed):].splitlines()
    assert report[2].startswith("    Out[2][0]: float differs by ")
    assert report[3] == "    the cell's outputs differ"


def test_stderr_and_printed_checksums_are_compared(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """outs2.ipynb was "identical": stderr was left out, and every 0x number was masked."""
    logged = write_notebook(tmp_path, "logged.ipynb", [
        "import logging\nimport os\n\n\ndef evaluate():\n"
        "    logging.warning('accuracy %d', os.getpid() % 1000)\n\n\nevaluate()"])
    checksum = write_notebook(tmp_path, "checksum.ipynb", [
        "import os\nimport zlib\n\n\ndef checksum():\n"
        "    return zlib.crc32(str(os.getpid()).encode()) | 0x10000000\n\n\n"
        "print(f'results checksum {checksum():#x}')"])
    printed = write_notebook(tmp_path, "stderr.ipynb", [
        "import os\nimport sys\n\n\ndef run():\n    print('loss', os.getpid(), file=sys.stderr)"
        "\n\n\nrun()"])
    status, out, _ = verify_main([logged, checksum, printed], capsys)
    assert status == 1
    lines = out.splitlines()
    for path, line, shown in ((logged, 2, "WARNING:root:accuracy "),
                              (checksum, 1, "results checksum 0x"), (printed, 2, "loss ")):
        start = lines.index(f"{path}: runs parted at cell 1: import {path_first(path)}")
        assert lines[start + 1:start + 4] == [
            "  run 1 vs run 2:", "    only the printed output differs; every value is equal",
            f"    first differing output line (line {line}):"]
        assert lines[start + 4].startswith(f"      run 1: '{shown}")
        assert lines[start + 5].startswith(f"      run 2: '{shown}")


def path_first(path: str) -> str:
    """What follows ``import`` on the first line of the notebooks above."""
    return {"logged.ipynb": "logging", "checksum.ipynb": "os", "stderr.ipynb": "os"}[
        Path(path).name]


@pytest.fixture(scope="module")
def det_kernel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A det_nb kernelspec seeding 42 at start (PYTHONHASHSEED=0 in its env), installed
    under a prefix Jupyter finds only through JUPYTER_PATH."""
    import subprocess
    import sys

    prefix = tmp_path_factory.mktemp("kernels")
    subprocess.run([sys.executable, "-m", "det_nb", "kernel", "install", "--name", "detk",
                    "--seed", "42", "--prefix", str(prefix)], check=True, capture_output=True)
    return prefix / "share" / "jupyter"


def write_det_kernel_notebook(folder: Path, name: str, cells: list[str]) -> str:
    path = write_notebook(folder, name, cells)
    document = json.loads(Path(path).read_text())
    document["metadata"]["kernelspec"] = {"name": "detk", "language": "python",
                                          "display_name": "det"}
    Path(path).write_text(json.dumps(document))
    return path


def test_the_notebooks_own_kernel_runs_and_another_is_named(
    tmp_path: Path, det_kernel: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """kspec.ipynb: seeded by its det_nb kernel (nbconvert gives the same value twice),
    verify started python3 and parted."""
    path = write_det_kernel_notebook(tmp_path, "kspec.ipynb",
                                     ["import random\nx = random.random()"])
    monkeypatch.delenv("JUPYTER_PATH", raising=False)
    monkeypatch.delenv("PYTHONHASHSEED", raising=False)
    status, out, _ = verify_main([path], capsys)
    assert status == 1
    assert out.splitlines()[-1] == ("  note: the notebook's kernel 'detk' is not installed "
                                    "here: ran 'python3' instead")
    monkeypatch.setenv("JUPYTER_PATH", str(det_kernel))
    assert verify_main([path], capsys)[:2] == (
        0, f"{path}: identical across 2 runs (1 cells, 1 names compared)\n")
    run = run_notebook(path, collect=["x"])  # what trials run, too
    assert (run.notes, run.record["lineage"]["experiment_seed"]) == ((), 42)
    assert run.collected["x"] == random.Random(42).random()
    assert run.environment["hash_randomization"] is False  # the kernelspec's PYTHONHASHSEED=0


def test_vary_sets_its_condition_over_the_kernelspecs_own(
    tmp_path: Path, det_kernel: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The det_nb kernelspec fixes PYTHONHASHSEED=0 in its env, which Jupyter applies last:
    --vary hashseed still gives run 1 and run 2 the hash seeds the report names."""
    monkeypatch.setenv("JUPYTER_PATH", str(det_kernel))
    path = write_det_kernel_notebook(tmp_path, "sets.ipynb", [
        "labels = ['cat', 'dog', 'emu', 'fox', 'gnu', 'yak']", "order = list(set(labels))"])
    assert verify_main([path], capsys)[0] == 0
    status, out, _ = verify_main([path, "--vary", "hashseed"], capsys)
    assert status == 1
    assert out.startswith(f"{path}: runs parted at cell 2: order = list(set(labels))\n")


DRAWS_AND_DISCARDS = ["%load_ext det_nb\n%det_seed 1 --quiet",
                      "import uuid\nrun_id = uuid.uuid4()\ndel run_id  # not kept", "x = 1"]


def test_unseeded_randomness_on_record_is_not_proven(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A cell drew OS entropy: every value compared equal, but the verdict is not proven (the
    live status says NOT reproducible for the same record); a hard %reset clears the
    record, as it does for the status."""
    path = write_notebook(tmp_path, "drawn.ipynb", DRAWS_AND_DISCARDS)
    report = tmp_path / "report.json"
    status, out, _ = verify_main([path, "--json", str(report)], capsys)
    assert (status, out.splitlines()) == (3, [
        f"{path}: not proven across 2 runs: 1 call drew unseeded randomness (3 cells, 1 names "
        "compared and equal)",
        "  unseeded randomness (det_nb's entropy audit; what it drew is not reproducible):",
        "    cell 2, line 2: uuid.uuid4()"])
    data = json.loads(report.read_text())["notebooks"][0]
    assert (data["verdict"], data["unseeded"], data["not_compared"]) == (
        "not proven", ["cell 2, line 2: uuid.uuid4()"], [])
    assert verify_main([path, "--allow-unchecked"], capsys)[:2] == (0, out)
    assert verify_main([path, "--against", str(report)], capsys)[0] == 3
    reset = write_notebook(tmp_path, "reset.ipynb", [*DRAWS_AND_DISCARDS, "%reset -f",
                                                     "y = 2"])
    # x, its deletion by %reset (not the uuid module's: code), y
    assert verify_main([reset], capsys)[:2] == (
        0, f"{reset}: identical across 2 runs (5 cells, 3 names compared)\n")


def test_an_empty_cell_repeats_nothing_of_the_cell_before(tmp_path: Path) -> None:
    """nbclient runs no empty cell: it has no names, and the audit's records keep their
    cell numbers (the empty cell took the previous cell's answer and its number)."""
    path = write_notebook(tmp_path, "gaps.ipynb", ["import uuid\nx = 1\nuuid.uuid4();", "",
                                                   "y = 2"])
    run = run_notebook(path)
    assert [list(cell.names) for cell in run.cells] == [["x"], [], ["y"]]
    assert run.unseeded == ["cell 1, line 3: uuid.uuid4()"]


# -- data held by notebook code

# The pid of the kernel, a different number in every fresh kernel.
_PID_DRIFT = ("import os\nimport numpy as np\n\n\ndef drift():\n"
              "    return os.getpid() % 997 / 7\n\n\n")
CODE_DATA = {
    "class_attribute": ("Cfg: class: w: 1 of 2 elements differ; ",
                        _PID_DRIFT + "class Cfg:\n    w = np.array([drift(), 1.0])"),
    "default": ("predict: function: __defaults__[0]: 1 of 1 elements differ; ",
                _PID_DRIFT + "def predict(x, w=np.array([drift()])):\n    return x * w"),
    "callable_cache": (
        "memo: Memo: cache[0]: float differs by ",
        _PID_DRIFT + "import functools\n\n\nclass Memo:\n    def __init__(self, f):\n"
        "        functools.update_wrapper(self, f)\n        self.cache = {0: drift()}\n\n"
        "    def __call__(self, x):\n        return x\n\n\nmemo = Memo(drift)"),
}
# A typical training notebook: its code holds only code and plain values.
TRAINING = [
    SEEDED,
    "import torch\nfrom torch import nn\n\n\nclass Net(nn.Module):\n    def __init__(self):\n"
    "        super().__init__()\n        self.fc = nn.Linear(4, 2)\n\n"
    "    def forward(self, x):\n        return self.fc(x)\n\n\n"
    "def train(model, opt, steps=10):\n    for _ in range(steps):\n        opt.zero_grad()\n"
    "        model(torch.randn(3, 4)).pow(2).sum().backward()\n        opt.step()\n\n\n"
    "@torch.no_grad()\ndef evaluate(model):\n    return model(torch.ones(1, 4)).sum().item()",
    "net = Net()\nopt = torch.optim.SGD(net.parameters(), lr=0.1)\ntrain(net, opt, steps=3)\n"
    "score = evaluate(net)",
]


@pytest.fixture(scope="module")
def code_data(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """verify of notebooks whose code holds a drifting value, and of a training notebook."""
    folder = tmp_path_factory.mktemp("code_data")
    paths = {key: write_notebook(folder, f"{key}.ipynb", [SEEDED, cell])
             for key, (_, cell) in CODE_DATA.items()}
    paths["training"] = write_notebook(folder, "training.ipynb", TRAINING)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        status = verify.main(list(paths.values()))
    return {"status": status, "out": out.getvalue(), "paths": paths}


@pytest.mark.parametrize("key", sorted(CODE_DATA))
def test_data_held_by_notebook_code_that_drifts_parts_the_runs(code_data: dict, key: str) -> None:
    """v_classattr.ipynb and v_default.ipynb were "identical ... 0 names compared", exit 0."""
    report = _report(code_data, key)
    assert code_data["status"] == 1
    assert report[0] == f"{code_data['paths'][key]}: runs parted at cell 2: import os"
    assert report[2].startswith(f"    {CODE_DATA[key][0]}")


def test_a_training_notebooks_code_verifies_identical_with_nothing_unchecked(
    code_data: dict,
) -> None:
    """Net, train (steps=10) and evaluate (torch.no_grad) are compared by the data they
    hold: train's default; nothing else, and nothing unchecked."""
    report = _report(code_data, "training")
    assert report == [f"{code_data['paths']['training']}: identical across 2 runs (3 cells, "
                      "4 names compared)"]
