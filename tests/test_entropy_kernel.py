"""The entropy audit in a real kernel: every entry point called from a cell after
``%load_ext det_nb`` and ``%det_seed 42 --trial 3`` turns the verdict to NOT reproducible
and names the cell and line; the same calls with seeds do not; kernel traffic never does.

One kernel (jupyter_client, started in a folder holding a module of the "notebook") serves
the module: TensorFlow, torch and JAX are imported once. Each test starts with ``%reset -f``
(which clears the records) and seeds again.
"""

from __future__ import annotations

import json
import os
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import QUIET_TF

jupyter_client = pytest.importorskip("jupyter_client")

SEED = "%det_seed 42 --trial 3 --quiet"
PROBE = """\
import json as _json
import det_nb as _det_nb
from det_nb import entropy_audit as _audit
_report = _det_nb.status()
print(_json.dumps({"verdict": _report.verdict(), "records": _audit.records(),
                   "check": _report.check("unseeded randomness").text(),
                   "state": _report.check("unseeded randomness").state}))
"""
HELPERS = '''\
"""A module of the notebook's own, in its folder."""
import numpy as np


def noise():
    return np.random.default_rng().random(2)
'''


class Kernel:
    """A kernel started with jupyter_client in ``folder``; runs cells and reads their output."""

    def __init__(self, folder: Path) -> None:
        from jupyter_client.manager import KernelManager

        self.manager = KernelManager(kernel_name="python3")
        self.manager.start_kernel(cwd=str(folder), env={**os.environ, **QUIET_TF})
        self.client = self.manager.client()
        self.client.start_channels()
        self.client.wait_for_ready(timeout=120)

    def run(self, code: str) -> tuple[int, str]:
        """Run ``code`` as a cell; (its execution count, what it printed). Fails on errors."""
        count, printed, _ = self.run_displaying(code)
        return count, printed

    def run_displaying(self, code: str) -> tuple[int, str, list[dict]]:
        """:meth:`run`, and the data of what the cell displayed."""
        printed: list[str] = []
        errors: list[str] = []
        displayed: list[dict] = []

        def collect(message: dict) -> None:
            kind, content = message["msg_type"], message["content"]
            if kind == "stream" and content["name"] == "stdout":
                printed.append(content["text"])
            elif kind == "display_data":
                displayed.append(content["data"])
            elif kind == "error":
                errors.append("\n".join(content["traceback"]))

        reply = self.client.execute_interactive(code, output_hook=collect, timeout=300)
        assert reply["content"]["status"] == "ok", "".join(errors)
        return reply["content"]["execution_count"], "".join(printed), displayed

    def probe(self) -> dict:
        """The verdict, the audit's check and its records, read in the kernel."""
        return json.loads(self.run(PROBE)[1].strip().splitlines()[-1])

    def fresh(self) -> None:
        """A state as after a restart for the audit: namespace and records gone, seeded.

        Objects of the last test kept alive by reference cycles are collected, so the
        status does not warn about random layers built before this seeding."""
        self.run("%reset -f\nimport gc\ngc.collect()")
        self.run(SEED)

    def close(self) -> None:
        self.client.stop_channels()
        self.manager.shutdown_kernel(now=True)


@pytest.fixture(scope="module")
def kernel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kernel]:
    folder = tmp_path_factory.mktemp("notebook")
    (folder / "helpers.py").write_text(HELPERS)
    started = Kernel(folder)
    try:
        started.run("%load_ext det_nb")
        yield started
    finally:
        started.close()


# (cell source, the line that draws, the call as the record shows it)
UNSEEDED = {
    "numpy default_rng": ("import numpy as np\nrng = np.random.default_rng()", 2,
                          "np.random.default_rng()"),
    "numpy Generator(PCG64())": ("import numpy as np\ng = np.random.Generator(np.random.PCG64())",
                                 2, "np.random.PCG64()"),
    "numpy SeedSequence": ("import numpy as np\n\nss = np.random.SeedSequence()", 3,
                           "np.random.SeedSequence()"),
    "numpy RandomState": ("import numpy as np\nrs = np.random.RandomState()", 2,
                          "np.random.RandomState()"),
    "numpy RandomState(None)": ("import numpy as np\nseed = None\n"
                                "rs = np.random.RandomState(seed)", 3,
                                "np.random.RandomState(seed)"),
    "numpy global seed()": ("import numpy as np\nnp.random.seed()", 2, "np.random.seed()"),
    "random.Random()": ("import random\nr = random.Random()", 2, "random.Random()"),
    "random.SystemRandom": ("import random\nx = random.SystemRandom().random()", 2,
                            "random.SystemRandom()"),
    "random.seed()": ("import random\nrandom.seed()", 2, "random.seed()"),
    "secrets": ("import secrets\ntoken = secrets.token_hex(8)", 2, "secrets.token_hex(8)"),
    "secrets.choice": ("from secrets import choice\npick = choice([1, 2, 3])", 2,
                       "choice([1, 2, 3])"),
    "uuid4": ("import uuid\nrun_id = uuid.uuid4()", 2, "uuid.uuid4()"),
    "os.urandom": ("import os\nsalt = os.urandom(16)", 2, "os.urandom(16)"),
    "torch.seed()": ("import torch\nseed = torch.seed()", 2, "torch.seed()"),
    "torch.cuda.seed()": ("import torch\ntorch.cuda.seed()", 2, "torch.cuda.seed()"),
    # C methods: seen through the cell's rewritten calls (cell_calls)
    "torch.Generator().seed()": ("import torch\ng = torch.Generator()\nseed = g.seed()", 3,
                                 "g.seed()"),
    "torch.default_generator.seed()": ("import torch\nx = torch.default_generator.seed()", 2,
                                       "torch.default_generator.seed()"),
    "tf Generator": ("import tensorflow as tf\n"
                     "g = tf.random.Generator.from_non_deterministic_state()", 2,
                     "tf.random.Generator.from_non_deterministic_state()"),
    "a module in the notebook's folder": ("import helpers\nx = helpers.noise()", 6,
                                          "np.random.default_rng()"),
}
# Seeds computed from a clock inside the seed argument of the call that takes them.
CLOCK_SEEDED = {
    "random.seed": ("import random, time\nrandom.seed(int(time.time()))", 2,
                    "random.seed(int(time.time()))"),
    "random.Random": ("import random, time\nr = random.Random(time.time_ns())", 2,
                      "random.Random(time.time_ns())"),
    "np.random.seed": ("import numpy as np, time\nnp.random.seed(int(time.time()))", 2,
                       "np.random.seed(int(time.time()))"),
    "default_rng over two lines": ("import numpy as np\nfrom datetime import datetime\n"
                                   "rng = np.random.default_rng(\n"
                                   "    int(datetime.now().timestamp()))", 3,
                                   "np.random.default_rng( int(datetime.now().timestamp()))"),
    "RandomState": ("import numpy as np, time\nrs = np.random.RandomState(int(time.time()))",
                    2, "np.random.RandomState(int(time.time()))"),
    "default_rng(time.time_ns())": ("import numpy as np, time\n"
                                    "rng = np.random.default_rng(time.time_ns())", 2,
                                    "np.random.default_rng(time.time_ns())"),
    # Cython classes and C methods: seen through the cell's rewritten calls (cell_calls)
    "Generator(PCG64(clock))": ("import numpy as np, time\n"
                                "r = np.random.Generator(np.random.PCG64(int(time.time())))", 2,
                                "np.random.PCG64(int(time.time()))"),
    "SeedSequence(clock)": ("import numpy as np, time\n"
                            "ss = np.random.SeedSequence(int(time.time()))", 2,
                            "np.random.SeedSequence(int(time.time()))"),
    "PCG64(time.time_ns())": ("import numpy as np, time\nbits = np.random.PCG64(time.time_ns())",
                              2, "np.random.PCG64(time.time_ns())"),
    "Philox(seed=clock)": ("import numpy as np, time\n"
                           "bits = np.random.Philox(seed=time.perf_counter_ns())", 2,
                           "np.random.Philox(seed=time.perf_counter_ns())"),
    "torch.Generator().manual_seed(clock)": (
        "import torch, time\ng = torch.Generator().manual_seed(int(time.time()))", 2,
        "torch.Generator().manual_seed(int(time.time()))"),
    "torch.manual_seed": ("import torch, time\ntorch.manual_seed(int(time.time()))", 2,
                          "torch.manual_seed(int(time.time()))"),
    "torch.manual_seed from datetime.now()": (
        "import torch\nfrom datetime import datetime\n"
        "torch.manual_seed(int(datetime.now().timestamp()))", 3,
        "torch.manual_seed(int(datetime.now().timestamp()))"),
    "tf.random.set_seed": ("import tensorflow as tf, time\ntf.random.set_seed(int(time.time()))",
                           2, "tf.random.set_seed(int(time.time()))"),
    "tf Generator.from_seed": ("import tensorflow as tf, time\n"
                               "g = tf.random.Generator.from_seed(time.time_ns())", 2,
                               "tf.random.Generator.from_seed(time.time_ns())"),
    "keras.utils.set_random_seed": ("import keras, time\n"
                                    "keras.utils.set_random_seed(int(time.time()))", 2,
                                    "keras.utils.set_random_seed(int(time.time()))"),
    "jax.random.key": ("import jax, time\nkey = jax.random.key(time.time_ns() % 2**32)", 2,
                       "jax.random.key(time.time_ns() % 2**32)"),
    "jax.random.PRNGKey": ("import jax, time\nkey = jax.random.PRNGKey(int(time.time()))", 2,
                           "jax.random.PRNGKey(int(time.time()))"),
}
# The same entry points given seeds: nothing to record.
SEEDED = {
    "numpy": "import numpy as np, det_nb\nrng = np.random.default_rng(det_nb.worker_seed(0))\n"
             "g = np.random.Generator(np.random.PCG64(5))\nss = np.random.SeedSequence(5)\n"
             "rs = np.random.RandomState(5)\nnp.random.seed(5)\nj = np.random.PCG64(1).jumped()\n"
             "mine = det_nb.rng().random(3)",
    "python": "import random, uuid\nr = random.Random(5)\nrandom.seed(5)\n"
              "run_id = uuid.UUID(int=random.getrandbits(128), version=4)",
    "a temporary file (tempfile draws its names from random.Random())":
        "import tempfile\nwith tempfile.TemporaryDirectory() as folder:\n    pass",
    "torch": "import torch\ntorch.manual_seed(5)\ng = torch.Generator().manual_seed(5)",
    "torch's global generator seeded by the user, also through its C method":
        "import torch\ntorch.manual_seed(123)\nx = torch.rand(2)\n"
        "torch.default_generator.manual_seed(7)\ny = torch.rand(2)\n"
        "with torch.random.fork_rng():\n    torch.manual_seed(9)\n    z = torch.rand(1)",
    "numpy classes seeded, a clock beside them":
        "import numpy as np, time\nbits = np.random.PCG64(5); t0 = time.time()\n"
        "ss = np.random.SeedSequence(5, pool_size=max(4, int(time.time()) % 1))",
    "tensorflow": "import tensorflow as tf\ntf.random.set_seed(5)\n"
                  "g = tf.random.Generator.from_seed(5)\n"
                  "x = tf.random.get_global_generator().normal([2])",
    "keras": "import keras\nsg = keras.random.SeedGenerator(5)\nkeras.utils.set_random_seed(5)\n"
             "layer = keras.layers.Dropout(0.5)",
    "jax": "import jax, det_nb\nkey = jax.random.key(5)\nmine = det_nb.jax_key()",
    # A clock beside the seed, not in it; a method of the user's own named like a clock.
    "random.seed(42); t0 = time.time()": "import random, time\nrandom.seed(42); t0 = time.time()",
    "torch.manual_seed(0); t1 = time.perf_counter()":
        "import torch, time\ntorch.manual_seed(0); t1 = time.perf_counter()",
    "a generator and a start time in one call":
        "import numpy as np, time\nresults = dict(rng=np.random.default_rng(0),\n"
        "               started=time.time())",
    "a method of the user's own called now":
        "import numpy as np\nclass Stamp:\n    def now(self):\n        return 7\n"
        "stamp = Stamp()\nrng = np.random.default_rng(stamp.now())",
}


def _assert_names_the_line(result: dict, cell: int, line: int, call: str,
                           module: str | None = None) -> None:
    """One record, at ``cell``'s line (or ``module``'s, run by ``cell``), in the verdict."""
    [record] = result["records"]
    assert (record["cell"], record["file"]) == ((None, module) if module else (cell, None))
    assert (record["line"], record["call"], record["run_by"], record["count"]) == (
        line, call, cell, 1)
    place = f"{module or f'cell {cell}'}, line {line}"
    assert result["state"] == "warn"
    assert result["verdict"].startswith("NOT reproducible: ")
    assert f"(unseeded randomness: {place}: " in result["verdict"]
    assert f"{place}: {call}" in result["check"]


@pytest.mark.parametrize("case", UNSEEDED)
def test_an_unseeded_entry_point_makes_the_kernel_not_reproducible(kernel, case) -> None:
    source, line, call = UNSEEDED[case]
    kernel.fresh()
    cell, _ = kernel.run(source)
    module = "helpers.py" if case.startswith("a module") else None
    _assert_names_the_line(kernel.probe(), cell, line, call, module)


@pytest.mark.parametrize("case", CLOCK_SEEDED)
def test_a_seed_read_from_a_clock_makes_the_kernel_not_reproducible(kernel, case) -> None:
    source, line, call = CLOCK_SEEDED[case]
    kernel.fresh()
    cell, _ = kernel.run(source)
    result = kernel.probe()
    _assert_names_the_line(result, cell, line, call)
    assert result["records"][0]["kind"] == "clock seed"
    assert f"cell {cell}, line {line}: {call} seeds from the clock" in result["check"]


@pytest.mark.parametrize("case", SEEDED)
def test_the_same_entry_points_with_seeds_record_nothing(kernel, case) -> None:
    kernel.fresh()
    kernel.run(SEEDED[case])
    result = kernel.probe()
    assert result["records"] == []
    assert result["state"] == "ok"
    assert not result["verdict"].startswith("NOT reproducible"), result["verdict"]


def test_kernel_traffic_leaves_a_clean_notebook_reproducible(kernel) -> None:
    """Comms (a widget and the dashboard), completion, inspection, history and kernel info
    requests make message ids and temporary files in the kernel: none of it is the user's."""
    kernel.fresh()
    kernel.run("import ipywidgets, numpy as np\nslider = ipywidgets.IntSlider()\n"
               "display(slider)\nslider.value = 3")
    kernel.run("%det_status")
    client = kernel.client
    replies = [client.complete("np.random.def", 13, reply=True, timeout=60),
               client.inspect("np.random.default_rng", 21, reply=True, timeout=60),
               client.history(hist_access_type="tail", n=5, reply=True, timeout=60),
               client.kernel_info(reply=True, timeout=60),
               client.comm_info(reply=True, timeout=60)]
    assert all(reply["content"]["status"] == "ok" for reply in replies)
    result = kernel.probe()
    assert result["records"] == []
    assert result["check"] == (
        "[ok  ] unseeded randomness: no draw from OS entropy and no seed from a clock seen in "
        "the notebook's cells or the modules in its folder (docs/audit.md: what is watched)")
    assert result["verdict"].startswith("reproducible on this machine: "), result["verdict"]


def test_reseeding_keeps_the_records_and_a_hard_reset_clears_them(kernel) -> None:
    kernel.fresh()
    cell, _ = kernel.run("import uuid\nfirst = uuid.uuid4()\nsecond = uuid.uuid4()")
    kernel.run(SEED)
    kernel.run("import det_nb\ndet_nb.reseed()")
    records = kernel.probe()["records"]
    assert [(r["cell"], r["line"]) for r in records] == [(cell, 2), (cell, 3)]
    kernel.run("%reset -s -f")  # a soft reset deletes the user's names only: records stay
    assert len(kernel.probe()["records"]) == 2
    kernel.run("%reset -f")
    result = kernel.probe()
    assert result["records"] == [] and result["state"] == "ok"


def test_a_loop_counts_its_draws_and_a_function_names_where_it_runs(kernel) -> None:
    kernel.fresh()
    defined, _ = kernel.run("import numpy as np\n\ndef make():\n    return np.random.default_rng()")
    looped, _ = kernel.run("for _ in range(5):\n    make()")
    [record] = kernel.probe()["records"]
    assert (record["cell"], record["line"], record["run_by"], record["count"]) == (
        defined, 4, looped, 5)
    from det_nb.entropy_audit import describe

    assert describe(record) == (
        f"cell {defined}, line 4: np.random.default_rng(), run by cell {looped}, 5 times")


def test_records_by_cell_and_since_a_mark_come_back_as_json(kernel) -> None:
    """The API the verify probe uses: records of one cell, or made after a mark."""
    kernel.fresh()
    first, _ = kernel.run("import uuid\nu = uuid.uuid4()")
    _, printed = kernel.run("from det_nb import entropy_audit\nprint(entropy_audit.mark())")
    mark = int(printed)
    second, _ = kernel.run("import secrets\nt = secrets.token_bytes(4)")
    _, printed = kernel.run(textwrap.dedent(f"""\
        import json
        from det_nb import entropy_audit
        print(json.dumps([entropy_audit.records(cell={first}),
                          entropy_audit.records(since={mark}),
                          [entropy_audit.describe(r) for r in entropy_audit.records()]]))"""))
    by_cell, since, described = json.loads(printed)
    assert [r["call"] for r in by_cell] == ["uuid.uuid4()"]
    assert [r["call"] for r in since] == ["secrets.token_bytes(4)"]
    assert described == [f"cell {first}, line 2: uuid.uuid4()",
                         f"cell {second}, line 2: secrets.token_bytes(4)"]
    assert set(since[0]) == {"cell", "file", "line", "text", "call", "entry", "kind", "fix",
                             "count", "run_by"}
    assert since[0]["text"] == "t = secrets.token_bytes(4)"


def test_keras_seed_generators_take_their_seed_from_seeded_python_random(kernel) -> None:
    """Keras 3 draws a SeedGenerator's default seed from Python's random: after %det_seed it
    repeats (not recorded); after random.seed() re-seeded from the OS, it is recorded."""
    kernel.fresh()
    states = []
    for _ in range(2):
        kernel.run(SEED)
        _, printed = kernel.run("import keras\nsg = keras.random.SeedGenerator()\n"
                                "print(int(sg.state.numpy()[0]))")
        states.append(int(printed))
    assert states[0] == states[1]
    assert kernel.probe()["records"] == []
    cell, _ = kernel.run("import random, keras\nrandom.seed()\nsg = keras.random.SeedGenerator()")
    records = kernel.probe()["records"]
    assert [(r["line"], r["call"]) for r in records] == [
        (2, "random.seed()"), (3, "keras.random.SeedGenerator()")]
    assert records[1]["entry"] == "keras.random.SeedGenerator() before Python's random was seeded"
    assert all(r["cell"] == cell for r in records)


def test_classes_stay_classes_where_the_audit_watches_their_calls(kernel) -> None:
    """The cell's call is routed through the audit; NumPy's and torch's types are not
    replaced, so isinstance and the values are what they were."""
    kernel.fresh()
    _, printed = kernel.run(
        "import numpy as np, torch, time\nbits = np.random.PCG64(int(time.time()))\n"
        "g = torch.Generator().manual_seed(int(time.time()))\n"
        "print(isinstance(bits, np.random.PCG64), type(g) is torch.Generator, "
        "np.random.PCG64(int(time.time()) * 0 + 5).random_raw() == "
        "np.random.PCG64(5).random_raw())")
    assert printed.split() == ["True", "True", "True"]
    assert len(kernel.probe()["records"]) == 3


TORCH_RESEEDED = ("torch's global generator was re-seeded from OS entropy after %det_seed "
                  "(torch.seed() or torch.default_generator.seed())")


def test_a_global_torch_seed_nobody_gave_makes_the_kernel_not_reproducible(kernel) -> None:
    """A C method re-seeding torch's global generator where no cell's call shows it (code
    run by exec, a library): found by its seed, not by its call, once per seed. Re-seeding
    keeps the record, a hard reset clears it, as any record."""
    kernel.fresh()
    kernel.run("import torch\nexec('torch.default_generator.seed()')\nx = torch.rand(2)")
    result = kernel.probe()
    [record] = result["records"]
    assert (record["cell"], record["file"], record["line"], record["call"], record["kind"]) == (
        None, None, None, TORCH_RESEEDED, "os entropy")
    assert result["state"] == "warn"
    assert result["verdict"].startswith("NOT reproducible: ")
    assert ("(unseeded randomness: torch's global generator: remove the call (%det_seed seeds "
            "torch)") in result["verdict"]
    assert f"seeded from a clock: {TORCH_RESEEDED}" in result["check"]
    kernel.run(SEED)
    kernel.run("import det_nb, torch\ndet_nb.reseed()\nx = torch.rand(2)")
    assert [r["count"] for r in kernel.probe()["records"]] == [1]
    kernel.run("%reset -f")
    kernel.run("import torch\nx = torch.rand(2)")
    assert kernel.probe()["records"] == []


def test_status_and_dashboard_show_the_records(kernel) -> None:
    kernel.fresh()
    cell, _ = kernel.run("import numpy as np\nrng = np.random.default_rng()")
    _, _, [shown] = kernel.run_displaying("%det_status")
    verdict, *lines = shown["text/plain"].splitlines()
    assert verdict.startswith("NOT reproducible: ")
    assert f"(unseeded randomness: cell {cell}, line 2: use det_nb.rng(), or " in verdict
    assert (f"[warn] unseeded randomness: 1 call(s) in the notebook's code drew from OS "
            f"entropy or seeded from a clock: cell {cell}, line 2: np.random.default_rng()"
            in lines)
    assert ('<tr class="det-nb-check det-nb-warn"' in shown["text/html"]
            and "<b>unseeded randomness</b>" in shown["text/html"])
