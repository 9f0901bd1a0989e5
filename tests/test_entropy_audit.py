"""The entropy audit outside a kernel: at ``%load_ext`` and ``det_nb.seed()`` in fresh
processes, in IPython's shell, in the run record, and its pure parts (calls a seed could
read a clock in, one-line rendering, argument checks). The real-kernel behaviour is in
test_entropy_kernel.py."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import QUIET_TF, run_python
from hypothesis import given
from hypothesis import strategies as st

import det_nb
from det_nb import entropy_audit
from det_nb import run_record as record
from det_nb.entropy_audit.cell_calls import RouteCalls, routed
from det_nb.entropy_audit.user_code import clock_calls
from det_nb.session import Session

HELPERS = "import numpy as np\n\n\ndef noise():\n    return np.random.default_rng().random(2)\n"


# -- pure parts ---------------------------------------------------------------------------

@pytest.mark.parametrize(("source", "calls"), [
    ("random.seed(int(time.time()))", {1: ["time.time()"]}),
    ("random.seed(\n    int(time.time()))\nx = 1", {1: ["time.time()"], 2: ["time.time()"]}),
    ("key = jax.random.key(int(datetime.now(timezone.utc).timestamp()))",
     {1: ["datetime.now(timezone.utc).timestamp()", "datetime.now(timezone.utc)"]}),
    ("random.seed(42); t0 = time.time()", {}),
    ("s = time.time_ns() % 2**32; np.random.seed(s)", {}),
    ("d = dict(rng=default_rng(0),\n         t=time.time())", {1: ["time.time()"],
                                                              2: ["time.time()"]}),
    ("rngs.append(np.random.default_rng(seed))\nx = len(str(1))", {}),  # calls with arguments
    ("random.seed(42)\nx = 'time.time()'  # time.time()", {}),
    ("def f(:\n  time.time()", {}),  # does not parse: nothing
])
def test_clock_calls_are_the_calls_a_seed_could_read_a_clock_from(source, calls) -> None:
    assert {line: [ast.unparse(call) for call in found]
            for line, found in clock_calls(source).items()} == calls


@given(st.text(alphabet=st.sampled_from(list("time.()_ns\n now= x#'\"+1")), max_size=80))
def test_clock_calls_takes_any_text_and_names_only_its_lines(source: str) -> None:
    found = clock_calls(source)
    assert all(1 <= line <= source.count("\n") + 1 for line in found)
    assert all(isinstance(call, ast.Call) for calls in found.values() for call in calls)


@pytest.mark.parametrize(("source", "rewritten"), [
    ("g = np.random.PCG64(int(time.time()))", ["np.random.PCG64"]),
    ("np.random.Generator(np.random.PCG64(time.time_ns()))", ["np.random.PCG64"]),
    ("ss = SeedSequence(entropy=int(datetime.now().timestamp()))", ["SeedSequence"]),
    ("x = g.seed()\ntorch.default_generator.manual_seed(5)",
     ["g.seed", "torch.default_generator.manual_seed"]),
    ("bits = np.random.PCG64(5); t0 = time.time()\nf(g())\nnp.random.seed(s)\n"
     "rngs.append(np.random.rand())", []),
])
def test_only_calls_that_may_reach_a_watched_c_callee_are_rewritten(source, rewritten) -> None:
    tree = RouteCalls().visit(ast.parse(source))
    routed_calls = [node.func.args[0] for node in ast.walk(tree) if isinstance(node, ast.Call)
                    and isinstance(node.func, ast.Call)
                    and isinstance(node.func.func, ast.Attribute)
                    and node.func.func.attr == "watch_call"]
    assert sorted(map(ast.unparse, routed_calls)) == sorted(rewritten)
    assert sum(map(routed, (n for n in ast.walk(ast.parse(source))
                            if isinstance(n, ast.Call)))) == len(rewritten)


def test_a_rewritten_call_keeps_its_place_and_calls_the_same_callee() -> None:
    """Columns and lines of the call as written stay (records and tracebacks name them);
    the callee a cell gets back for anything not watched is the callee itself."""
    source = "x = 1\nvalue = PCG64(\n    2, int(time.time()) * 0)"
    original = ast.parse(source).body[1].value
    call = RouteCalls().visit(ast.parse(source)).body[1].value
    assert [(n.lineno, n.col_offset, n.end_lineno, n.end_col_offset) for n in (call, call.func)] \
        == [(original.lineno, original.col_offset, original.end_lineno, original.end_col_offset),
            (2, 8, 2, 13)]
    namespace: dict = {"time": __import__("time"), "PCG64": max}  # not a watched callee
    exec(compile(RouteCalls().visit(ast.parse(source)), "<cell>", "exec"), namespace)
    assert namespace["value"] == 2
    assert entropy_audit.watch_call(max) is max


def _record(**fields) -> dict:
    return {"cell": 6, "file": None, "line": 1, "text": "g = f()",
            "call": "tf.random.Generator.from_non_deterministic_state()",
            "entry": "tf.random.Generator.from_non_deterministic_state()",
            "kind": entropy_audit.OS_ENTROPY, "fix": "use ...", "count": 1, "run_by": 6,
            **fields}


@pytest.mark.parametrize(("fields", "line"), [
    ({}, "cell 6, line 1: tf.random.Generator.from_non_deterministic_state()"),
    ({"count": 3, "call": "uuid.uuid4()"}, "cell 6, line 1: uuid.uuid4(), 3 times"),
    ({"run_by": 9, "call": "uuid.uuid4()"}, "cell 6, line 1: uuid.uuid4(), run by cell 9"),
    ({"cell": None, "file": "helpers.py", "line": 12, "run_by": None, "call": "os.urandom(8)"},
     "helpers.py, line 12: os.urandom(8)"),
    ({"kind": entropy_audit.CLOCK, "call": "random.seed(int(time.time()))"},
     "cell 6, line 1: random.seed(int(time.time())) seeds from the clock"),
])
def test_a_record_is_one_line(fields, line) -> None:
    assert entropy_audit.describe(_record(**fields)) == line


@pytest.mark.parametrize(("arguments", "message"), [
    ({"cell": -1}, "cell must be a non-negative integer (an execution count), got -1"),
    ({"cell": True}, "cell must be a non-negative integer (an execution count), got True"),
    ({"cell": "6"}, "cell must be a non-negative integer (an execution count), got '6'"),
    ({"since": 1.5}, "since must be a non-negative integer (an execution count mark from "
                     "mark()), got 1.5"),
])
def test_records_refuses_what_is_not_a_count(arguments, message) -> None:
    with pytest.raises(ValueError) as refused:
        entropy_audit.records(**arguments)
    assert str(refused.value) == message


# -- at %load_ext and det_nb.seed(), in fresh processes -----------------------------------

def test_load_ext_imports_no_framework_and_the_next_cell_watches_numpy() -> None:
    result = run_python("""
        import json, random, sys
        import det_nb
        off = det_nb.status().check("unseeded randomness").text()
        from IPython.core.interactiveshell import InteractiveShell
        shell = InteractiveShell.instance()
        shell.run_line_magic("load_ext", "det_nb")
        loaded = {"imported": [m for m in ("numpy", "tensorflow", "torch", "jax", "keras", "wrapt")
                               if m in sys.modules],
                  "random watched": hasattr(random.Random.__dict__["__init__"], "__wrapped__")}
        assert shell.run_cell("import numpy as np\\nrng = np.random.default_rng()",
                              store_history=True).success
        from det_nb import entropy_audit
        print(json.dumps({"off": off, **loaded, "records": entropy_audit.records()}))
    """)
    assert result["off"] == ("[off ] unseeded randomness: not watched: the audit starts with "
                             "%load_ext det_nb or det_nb.seed()\n       fix: %load_ext det_nb")
    assert result["imported"] == []  # not even wrapt: its post-import hooks wait for a cell
    assert result["random watched"] is True
    [found] = result["records"]
    assert (found["cell"], found["line"], found["call"], found["text"], found["run_by"]) == (
        1, 2, "np.random.default_rng()", "rng = np.random.default_rng()", 1)


def test_unload_puts_every_entry_point_back_and_reload_watches_again() -> None:
    result = run_python("""
        import json, os, random, secrets, uuid
        import numpy as np
        import numpy.random.bit_generator as bit_generator
        from IPython.core.interactiveshell import InteractiveShell

        def entry_points():
            return [random.Random.__dict__["__init__"], random.Random.__dict__["seed"],
                    random.seed, os.urandom, uuid.uuid4, secrets.token_hex, secrets.randbits,
                    bit_generator.randbits, np.random.default_rng, np.random.seed]

        before = entry_points()
        shell = InteractiveShell.instance()
        shell.run_line_magic("load_ext", "det_nb")
        assert shell.run_cell("import uuid\\nu = uuid.uuid4()", store_history=True).success
        watched = [now is not then for now, then in zip(entry_points(), before)]
        shell.run_line_magic("unload_ext", "det_nb")
        restored = [now is then for now, then in zip(entry_points(), before)]
        reset_restored = "reset" not in vars(shell) and not any(
            type(t).__name__ == "RouteCalls" for t in shell.ast_transformers)
        from wrapt import importer
        waiting = [name for name, hooks in importer._post_import_hooks.items() if hooks]
        assert shell.run_cell("v = uuid.uuid4()", store_history=True).success
        from det_nb import entropy_audit
        kept = [r["call"] for r in entropy_audit.records()]
        shell.run_line_magic("load_ext", "det_nb")
        assert shell.run_cell("w = uuid.uuid4()", store_history=True).success
        print(json.dumps({"watched": watched, "restored": restored, "kept": kept,
                          "reset restored": reset_restored, "hooks waiting": waiting,
                          "after reload": [r["cell"] for r in entropy_audit.records()]}))
    """)
    assert result["watched"] == [True] * 10
    assert result["restored"] == [True] * 10
    assert result["reset restored"] is True
    assert result["hooks waiting"] == []  # torch, TensorFlow... are not imported
    assert result["kept"] == ["uuid.uuid4()"]  # unloading stops watching, keeps the records
    assert result["after reload"] == [1, 3]


def _run_script(folder: Path, source: str, env: dict[str, str] | None = None) -> dict:
    """Run ``source`` as ``folder/script.py`` (cwd ``folder``, ``env`` added to the
    environment); the JSON it printed last."""
    (folder / "script.py").write_text(textwrap.dedent(source))
    done = subprocess.run([sys.executable, "script.py"], cwd=folder, capture_output=True,
                          text=True, timeout=300, env={**os.environ, **QUIET_TF, **(env or {})})
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_det_nb_seed_in_a_script_watches_the_script_and_its_folder_only(tmp_path) -> None:
    (tmp_path / "helpers.py").write_text(HELPERS)
    library = tmp_path.parent / f"{tmp_path.name}-library"
    library.mkdir()
    (library / "thirdparty.py").write_text(HELPERS)
    result = _run_script(tmp_path, f"""\
        import json, sys, tempfile
        import det_nb
        det_nb.seed(42, trial=3)
        import numpy as np
        import helpers
        sys.path.append({str(library)!r})
        import thirdparty
        rng = np.random.default_rng()
        helpers.noise()
        thirdparty.noise()
        tempfile.mkdtemp()
        from det_nb import entropy_audit
        print(json.dumps({{"verdict": det_nb.status().verdict(),
                           "records": entropy_audit.records()}}))
    """)
    assert [(r["file"], r["line"], r["call"], r["cell"], r["run_by"])
            for r in result["records"]] == [
        ("script.py", 8, "np.random.default_rng()", None, None),
        ("helpers.py", 5, "np.random.default_rng()", None, None),
    ]
    assert result["verdict"].startswith("NOT reproducible: ")
    assert "(unseeded randomness: script.py, line 8 and helpers.py, line 5: use det_nb.rng()" \
        in result["verdict"]


def test_a_script_that_seeds_its_own_generators_stays_reproducible(tmp_path) -> None:
    result = _run_script(tmp_path, """\
        import json, random, uuid
        import det_nb
        det_nb.seed(42, trial=3)
        import numpy as np
        rng = np.random.default_rng(det_nb.worker_seed(1))
        mine = det_nb.rng()
        run_id = uuid.UUID(int=random.getrandbits(128), version=4)
        print(json.dumps({"verdict": det_nb.status().verdict(),
                          "check": det_nb.status().check("unseeded randomness").state}))
    """)
    assert result["check"] == "ok"
    assert result["verdict"].startswith("reproducible on this machine: "), result["verdict"]


def test_without_columns_a_clock_in_a_calls_arguments_on_the_line_is_a_clock_seed(
        tmp_path) -> None:
    """Under ``-X no_debug_ranges`` the seeding call's own expression is unknown: a clock
    called inside any call's arguments on its line counts, one beside it does not."""
    result = _run_script(tmp_path, """\
        import json, random, time
        import det_nb
        det_nb.seed(42)
        random.seed(int(time.time()))
        random.seed(42); t0 = time.time()
        from det_nb import entropy_audit
        print(json.dumps([[r["line"], r["call"], r["kind"]] for r in entropy_audit.records()]))
    """, env={"PYTHONNODEBUGRANGES": "1"})
    assert result == [[4, "random seed", "clock seed"]]  # the entry point, not the call


# -- in IPython's shell -------------------------------------------------------------------

def test_terminal_cells_are_named_by_execution_count(shell) -> None:
    shell.run_line_magic("det_seed", "42 --trial 3 --quiet")
    first = shell.execution_count
    assert shell.run_cell("import uuid\nu = uuid.uuid4()", store_history=True).success
    shell.run_line_magic("det_seed", "42 --trial 3 --quiet")  # re-seeding keeps records
    [found] = entropy_audit.records()
    assert (found["cell"], found["line"], found["run_by"]) == (first, 2, first)
    assert entropy_audit.records(cell=first) == [found]
    assert entropy_audit.records(cell=first + 1) == []
    mark = entropy_audit.mark()
    assert entropy_audit.records(since=mark) == []
    shell.run_cell("v = uuid.uuid4()", store_history=True)
    assert [r["cell"] for r in entropy_audit.records(since=mark)] == [first + 1]


def test_a_generator_unpickled_or_copied_in_a_cell_is_not_a_draw(shell) -> None:
    """Unpickling makes an unseeded Random or NumPy generator, then restores its state."""
    assert shell.run_cell(
        "import copy, pickle, random\nimport numpy as np\n"
        "r = pickle.loads(pickle.dumps(random.Random(5)))\n"
        "g = pickle.loads(pickle.dumps(np.random.default_rng(5)))\n"
        "s = pickle.loads(pickle.dumps(np.random.RandomState(5)))\n"
        "c = copy.deepcopy([r, g, s])", store_history=True).success
    assert entropy_audit.records() == []


def test_the_status_lists_ten_records_and_groups_their_fixes(shell) -> None:
    calls = [f"a{n} = uuid.uuid4()" for n in range(11)] + ["b = os.urandom(1)"]
    cell = shell.execution_count
    assert shell.run_cell("import os, uuid\n" + "\n".join(calls), store_history=True).success
    check = entropy_audit.status_check()
    assert check.state == "warn" and not check.caveat
    assert check.detail.startswith(
        "12 call(s) in the notebook's code drew from OS entropy or seeded from a clock: "
        f"cell {cell}, line 2: uuid.uuid4(); cell {cell}, line 3: uuid.uuid4(); ")
    assert check.detail.endswith(
        f"cell {cell}, line 11: uuid.uuid4(); 2 more in det_nb.entropy_audit.records()")
    lines = " and ".join(f"cell {cell}, line {line}" for line in range(2, 12))
    assert check.fix == (
        f"{lines}: use uuid.UUID(int=random.getrandbits(128), version=4) (det_nb seeds "
        "random); 2 more in det_nb.entropy_audit.records(); then %reset -f (or restart the "
        "kernel) and run the cells again")


# Seeds read from a clock: the clock is called inside the seed argument of the seeding call,
# and is a clock by what its name refers to (cell source, the line of the seeding call).
CLOCK_SEEDS = {
    "random.seed(int(time.time()))": ("import random, time\nrandom.seed(int(time.time()))", 2),
    "default_rng(time.time_ns())": ("import numpy as np, time\n"
                                    "rng = np.random.default_rng(time.time_ns())", 2),
    "a keyword seed": ("import numpy as np, time\n"
                       "rng = np.random.default_rng(seed=time.monotonic_ns())", 2),
    "a seed argument over two lines": ("import numpy as np\nfrom datetime import datetime\n"
                                       "rng = np.random.default_rng(\n"
                                       "    int(datetime.now().timestamp()))", 3),
    "torch.manual_seed(int(datetime.now().timestamp()))": (
        "import torch\nfrom datetime import datetime\n"
        "torch.manual_seed(int(datetime.now().timestamp()))", 3),
    "a clock under a name of the user's": ("import random\n"
                                           "from time import perf_counter_ns as ticks\n"
                                           "random.seed(ticks())", 3),
    "datetime.datetime.now through its module": (
        "import datetime, random\nr = random.Random(datetime.datetime.now().microsecond)", 2),
    "datetime.now(timezone.utc)": ("import random\nfrom datetime import datetime, timezone\n"
                                   "random.seed(datetime.now(timezone.utc).microsecond)", 3),
    "date.today": ("import numpy as np\nfrom datetime import date\n"
                   "rng = np.random.default_rng(date.today().toordinal())", 3),
    "Generator(PCG64(clock)), a Cython class": (
        "import numpy as np, time\nr = np.random.Generator(np.random.PCG64(int(time.time())))",
        2),
    "SeedSequence(entropy=clock)": ("import numpy as np, time\n"
                                    "ss = np.random.SeedSequence(entropy=time.time_ns())", 2),
    "torch.Generator().manual_seed(clock), a C method": (
        "import torch, time\ng = torch.Generator()\ng.manual_seed(int(time.time()))", 3),
}
# A clock on the line, in the statement or in the call, but not in the seed; or a call named
# like a clock that is the user's own.
NOT_CLOCK_SEEDS = {
    "random.seed(42); t0 = time.time()": "import random, time\nrandom.seed(42); t0 = time.time()",
    "torch.manual_seed(0); t1 = time.perf_counter()": (
        "import torch, time\ntorch.manual_seed(0); t1 = time.perf_counter()"),
    "a generator and a start time in one call": (
        "import numpy as np, time\nresults = dict(rng=np.random.default_rng(0),\n"
        "               started=time.time())"),
    "a method of the user's own called now": (
        "import numpy as np\nclass Stamp:\n    def now(self):\n        return 7\n"
        "stamp = Stamp()\nrng = np.random.default_rng(stamp.now())"),
    "a function of the user's own called time": (
        "import random\ndef time():\n    return 3\nrandom.seed(time())"),
    "NumPy classes seeded, a clock beside them": (
        "import numpy as np, time\nss = np.random.SeedSequence(5, pool_size=int(time.time()) "
        "% 1 + 4)\nbits = np.random.MT19937(5); t0 = time.time()"),
    "torch generators seeded, a clock beside them": (
        "import torch, time\ng = torch.Generator().manual_seed(5); t0 = time.time()\n"
        "torch.default_generator.manual_seed(7)"),
}


def test_torch_global_seeds_given_by_anyone_are_known_and_others_are_not(shell) -> None:
    """det_nb's seeding and re-seeding, a user's torch.manual_seed, fork_rng and a restored
    state leave the check ok; a C method re-seeding the global generator outside any cell
    (as a library would) makes it warn, once per seed, without a line."""
    torch = pytest.importorskip("torch")
    shell.run_line_magic("det_seed", "42 --per-cell --quiet")
    assert shell.run_cell("import torch\ntorch.manual_seed(123)\na = torch.rand(2)\n"
                          "with torch.random.fork_rng():\n    torch.manual_seed(5)\n",
                          store_history=True).success
    state = torch.get_rng_state()
    det_nb.reseed()
    torch.set_rng_state(state)
    shell.run_line_magic("det_seed", "43 --quiet")
    assert entropy_audit.records() == []
    assert entropy_audit.status_check().state == "ok"
    torch.default_generator.seed()  # not a cell's call: seen by the seed it leaves
    entropy_audit.mark()  # seeds are looked at when records are read or marked, and
    torch.default_generator.seed()  # before each seeding
    shell.run_line_magic("det_seed", "43 --quiet")
    assert [(r["cell"], r["line"], r["text"], r["count"]) for r in entropy_audit.records()] == [
        (None, None, "torch's global generator", 2)]
    check = entropy_audit.status_check()
    assert check.state == "warn" and check.detail.endswith(
        "torch's global generator was re-seeded from OS entropy after %det_seed (torch.seed() "
        "or torch.default_generator.seed()), 2 times")
    assert check.fix.startswith("torch's global generator: remove the call")


@pytest.mark.parametrize("case", CLOCK_SEEDS)
def test_a_clock_called_in_the_seed_argument_is_a_clock_seed(shell, case) -> None:
    source, line = CLOCK_SEEDS[case]
    shell.run_line_magic("det_seed", "42 --quiet")
    cell = shell.execution_count
    assert shell.run_cell(source, store_history=True).success
    [found] = entropy_audit.records()
    assert (found["cell"], found["line"], found["kind"]) == (cell, line, entropy_audit.CLOCK)


@pytest.mark.parametrize("case", NOT_CLOCK_SEEDS)
def test_a_clock_outside_the_seed_argument_is_no_clock_seed(shell, case) -> None:
    shell.run_line_magic("det_seed", "42 --quiet")
    assert shell.run_cell(NOT_CLOCK_SEEDS[case], store_history=True).success
    assert entropy_audit.records() == []


# -- the run record -----------------------------------------------------------------------

@pytest.fixture
def seeded() -> Session:
    session = Session()
    session.seed(42, 3)
    yield session
    session.close()


def test_the_run_record_carries_the_records(shell, seeded: Session, tmp_path: Path) -> None:
    assert shell.run_cell("import secrets\nt = secrets.token_hex(2)", store_history=True).success
    data = record.build(seeded)
    assert data["unseeded_randomness"] == entropy_audit.records()
    [found] = data["unseeded_randomness"]
    assert found["call"] == "secrets.token_hex(2)"
    status = {check["name"]: check for check in data["status"]}
    assert status["unseeded randomness"]["state"] == "warn"
    path = record.save(seeded, tmp_path / "run.json")
    assert record.load(path).unseeded_randomness == (found,)


@pytest.mark.parametrize(("change", "message"), [
    (lambda d: d.update(version=2), "'unseeded_randomness']"),  # a version 3 field
    (lambda d: d["unseeded_randomness"].append(_record(kind="dice")),
     "unseeded_randomness: kind must be one of os entropy, clock seed, got 'dice'"),
    (lambda d: d["unseeded_randomness"].append(_record(count=0)),
     "unseeded_randomness: count must be at least 1, got 0"),
    (lambda d: d["unseeded_randomness"].append(_record(line="1")),
     "unseeded_randomness[0].line must be an integer, got '1'"),
    (lambda d: d["unseeded_randomness"].append({"cell": 1}), "unseeded_randomness[0] lacks"),
])
def test_a_bad_audit_record_is_refused_in_one_line(seeded: Session, tmp_path: Path, change,
                                                   message) -> None:
    data = record.build(seeded)
    change(data)
    path = tmp_path / "run.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError) as refused:
        record.load(path)
    assert message in str(refused.value) and "\n" not in str(refused.value)


def test_text_read_from_a_record_is_escaped(seeded: Session, tmp_path: Path) -> None:
    data = record.build(seeded)
    data["unseeded_randomness"].append(_record(text="x = 1\n[ok  ] forged"))
    path = tmp_path / "run.json"
    path.write_text(json.dumps(data))
    [loaded] = record.load(path).unseeded_randomness
    assert loaded["text"] == "x = 1\\n[ok  ] forged"
