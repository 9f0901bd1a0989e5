"""run_check (the core of %%det_check) driven through a real IPython shell.

The TensorFlow and Keras tests are at the end of this module, which is the only test module
of det_nb.check and det_nb.fingerprint that imports TensorFlow (importing it is slow).
"""

from __future__ import annotations

import random
import textwrap
from collections.abc import Callable, Iterator

import numpy as np
import pytest
from IPython.core.interactiveshell import InteractiveShell

from det_nb import check as check_module
from det_nb.check import MAX_RUNS, CheckReport, run_check, validate_runs


def reseed() -> None:
    random.seed(1)
    np.random.seed(1)


def check(
    shell: InteractiveShell, cell: str, runs: object = 2, seed: Callable[[], object] = reseed
) -> CheckReport:
    """run_check on a dedented cell, re-seeding Python's and NumPy's global generators."""
    return run_check(shell, textwrap.dedent(cell), runs=runs, reseed=seed)


@pytest.fixture
def ipy() -> Iterator[InteractiveShell]:
    """The shared InteractiveShell, its user namespace restored after each test."""
    shell = InteractiveShell.instance()
    saved = dict(shell.user_ns)
    shell.run_cell("import numpy as np")
    yield shell
    for name in set(shell.user_ns) - set(saved):
        del shell.user_ns[name]
    shell.user_ns.update(saved)


def differing(report: CheckReport) -> dict[str, str]:
    return {d.name: d.detail for d in report.differing}


# -- verdicts --------------------------------------------------------------------------


def test_seeded_numpy_draws_are_deterministic(ipy: InteractiveShell) -> None:
    report = check(ipy, """
        import random
        x = np.random.rand(3)
        draws = {"py": random.random(), "np": np.random.randint(0, 10, size=(2, 2))}
        label = "run"
    """)
    assert report.deterministic
    assert report.text() == textwrap.dedent("""\
        deterministic across 2 runs
        compared:
          draws: dict (2 keys)
          label: str (len 3)
          x: ndarray float64 (3,)""")


def test_unseeded_generator_is_reported_by_name(ipy: InteractiveShell) -> None:
    report = check(ipy, "rng = np.random.default_rng()\nsample = rng.normal(size=100)")
    assert not report.deterministic
    found = differing(report)
    assert found["sample"].startswith("sample: ndarray float64 (100,): 100 of 100 elements differ")
    assert "first at sample[0] (runs 1 and 2)" in found["sample"]
    assert found["rng"] == "rng: Generator state differs, so its next draws differ (runs 1 and 2)"
    assert report.text().startswith("NOT deterministic across 2 runs\n  rng: ")


def test_os_urandom_is_reported(ipy: InteractiveShell) -> None:
    report = check(ipy, "import os\ntoken = os.urandom(8)")
    assert differing(report)["token"].startswith("token: bytes differs at position ")


def test_clock_value_nested_in_a_dict_is_reported_with_its_key_path(
    ipy: InteractiveShell,
) -> None:
    report = check(ipy, """
        import time
        d = {"a": 1, "meta": {"t": time.perf_counter_ns()}}
    """)
    assert differing(report)["d"].startswith("d['meta']['t']: int differs by ")


def test_more_runs_and_the_namespace_ends_as_after_the_last_run(ipy: InteractiveShell) -> None:
    ipy.user_ns["seen"] = []
    report = check(ipy, "v = np.random.default_rng().random()\nseen.append(v)", runs=3)
    assert len(ipy.user_ns["seen"]) == 3
    assert ipy.user_ns["v"] == ipy.user_ns["seen"][-1]
    assert report.runs == 3 and "v" in differing(report)


def test_runs_must_be_an_integer_from_two_to_a_thousand(ipy: InteractiveShell) -> None:
    """Two runs to compare at least; at most a count that ends (10**11 would run for ever)."""
    for bad in (1, 0, -3, 1001, 10**11, 2.0, "2.0", "x", True, None):
        with pytest.raises(ValueError,
                           match=r"^--runs must be an integer in \[2, 1000\], got \S+$"):
            check(ipy, "ran_despite_bad_runs = 1", runs=bad)
    assert "ran_despite_bad_runs" not in ipy.user_ns  # nothing ran
    assert validate_runs(np.int64(4)) == 4
    assert validate_runs("3") == 3  # as a magic's line gives it
    assert validate_runs(MAX_RUNS) == 1000


def test_a_value_that_cannot_be_compared_makes_the_verdict_not_proven(
    ipy: InteractiveShell,
) -> None:
    """Equal where compared is not a pass: the uncompared value is named with its type and
    why. The function the cell defines is code, not a result: neither compared nor listed."""
    report = check(ipy, """
        f = lambda v: v + 1
        handle = open(__import__("os").devnull)
        n = f(1)
    """)
    ipy.user_ns["handle"].close()
    assert report.text() == textwrap.dedent("""\
        not proven across 2 runs: 1 value could not be compared
        compared:
          n: int
        could not be compared:
          handle: TextIOWrapper: files and streams have no comparable value""")
    assert not report.differing and not report.deterministic
    html = report.html()
    assert '<strong style="color: #b35900">not proven across 2 runs: 1 value could not be ' \
           'compared</strong>' in html  # amber: neither a pass nor a difference
    assert "<div>could not be compared:</div><ul><li><code>handle: TextIOWrapper: " in html


def test_code_alone_is_nothing_to_compare_and_an_uncomparable_value_alone_is_not_proven(
    ipy: InteractiveShell,
) -> None:
    code = check(ipy, """
        import json
        def g():
            return 0
        class Model:
            pass
        dumps = json.dumps
    """)
    assert code.text() == "nothing to compare across 2 runs: the cell assigned or changed no names"
    assert not code.deterministic
    report = check(ipy, "import zlib\nstream = zlib.compressobj()")
    assert report.text() == textwrap.dedent("""\
        not proven across 2 runs: 1 value could not be compared
        could not be compared:
          stream: Compress: Compress is not a supported type""")
    assert not report.deterministic


def test_a_cell_that_changes_nothing(ipy: InteractiveShell) -> None:
    report = check(ipy, "1 + 1\nimport json")  # sets IPython's _ and a module: ignored
    assert report.text() == (
        "nothing to compare across 2 runs: the cell assigned or changed no names"
    )


def test_a_failing_run_stops_the_check(ipy: InteractiveShell) -> None:
    ipy.user_ns["calls"] = []
    report = check(ipy, """
        calls.append(1)
        assert len(calls) < 2, "second run"
    """, runs=3)
    assert report.error == "run 2 of 3 raised AssertionError: second run"
    assert report.text() == "det_check stopped: run 2 of 3 raised AssertionError: second run"
    assert len(ipy.user_ns["calls"]) == 2
    assert check(ipy, "x = (").error == "run 1 of 2 raised SyntaxError: incomplete input"


def test_in_place_changes_to_an_earlier_array_are_described(ipy: InteractiveShell) -> None:
    ipy.user_ns["weights"] = np.zeros(4)
    report = check(ipy, "weights += 1")
    (found,) = report.differing
    assert found.detail == (
        "weights: ndarray float64 (4,): 4 of 4 elements differ; max abs difference 1; "
        "first at weights[0] (runs 1 and 2)"
    )
    assert found.note.startswith("weights existed before the cell, which uses or changes it")


def test_a_difference_first_seen_in_a_later_run_names_those_runs(ipy: InteractiveShell) -> None:
    ipy.user_ns["calls"] = []
    report = check(ipy, "calls.append(1)\nout = 0 if len(calls) < 3 else 0.5", runs=3)
    assert differing(report)["out"] == "out: type int vs float (runs 2 and 3)"


def test_a_value_changed_in_place_by_the_next_run_is_still_reported(
    ipy: InteractiveShell,
) -> None:
    report = check(ipy, "acc = globals().setdefault('acc', [])\nacc.append(len(acc))")
    assert differing(report)["acc"] == (
        "acc: list (len 1): differs (runs 1 and 2); the earlier value was changed in place"
        " since, so no detail"
    )


def test_cells_with_magics_are_watched_whole(ipy: InteractiveShell) -> None:
    ipy.user_ns["buffer"] = np.zeros(2)
    report = check(ipy, "%time buffer[:] = np.random.default_rng().random(2)")
    assert set(differing(report)) == {"buffer"}


def test_changes_made_by_notebook_functions_are_seen(ipy: InteractiveShell) -> None:
    ipy.run_cell(textwrap.dedent("""
        state = np.zeros(3)
        def _helper():
            state[:] = np.random.default_rng().random(3)
        def step():
            _helper()
    """))
    assert set(differing(check(ipy, "step()"))) == {"state"}


def test_untouched_names_are_not_fingerprinted(
    ipy: InteractiveShell, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only names the cell refers to are hashed to look for in-place changes (cost)."""
    ipy.user_ns["untouched"] = np.zeros(10)
    ipy.user_ns["source"] = np.ones(10)
    hashed: list[int] = []
    real = check_module.fingerprint

    def counting(value: object) -> object:
        hashed.append(id(value))
        return real(value)

    monkeypatch.setattr(check_module, "fingerprint", counting)
    report = check(ipy, "total = source.sum()")
    assert report.deterministic
    assert id(ipy.user_ns["untouched"]) not in hashed
    assert id(ipy.user_ns["source"]) in hashed


def test_objects_changed_in_place_are_compared_by_their_attributes(
    ipy: InteractiveShell,
) -> None:
    ipy.run_cell("class Counter:\n    n = 0\n    def step(self):\n        self.n += 1\n"
                 "counter = Counter()")
    report = check(ipy, "counter.step()")
    assert differing(report) == {"counter": "counter: Counter: n: int differs by 1 (runs 1 and 2)"}


def test_objects_used_but_not_fingerprintable_make_it_not_proven(ipy: InteractiveShell) -> None:
    ipy.run_cell("import zlib\nclass Guarded:\n    def __init__(self):\n"
                 "        self.lock = zlib.compressobj()\n        self.n = 0\nguarded = Guarded()")
    report = check(ipy, "guarded.n += 1\ntotal = 1")
    assert [u.name for u in report.unchecked] == ["guarded"]
    assert report.unchecked[0].reason == (
        "Guarded: used by the cell, which may change it unseen: at lock: Compress is not a "
        "supported type")
    assert report.headline() == "not proven across 2 runs: 1 value could not be compared"


def test_unseeded_draws_make_equal_runs_not_proven(ipy: InteractiveShell) -> None:
    from det_nb import entropy_audit

    entropy_audit.install(ipy)  # as %load_ext and %det_seed do (an earlier test may unload)
    entropy_audit.activate()
    report = check(ipy, "import uuid\nversion = uuid.uuid4().version\nflag = True")
    assert (report.differing, report.unchecked) == ((), ())
    assert not report.deterministic
    assert report.headline() == (
        "not proven across 2 runs: the cell drew unseeded randomness (OS entropy or a seed "
        "from a clock)")
    [drawn] = report.unseeded
    assert drawn.endswith(": uuid.uuid4(), 2 times")
    assert report.text().splitlines()[-2:] == [
        "unseeded randomness (det_nb's entropy audit):", f"  {drawn}"]
    assert 'color: #b35900">not proven' in report.html()
    both = check(ipy, "import os, zlib\nn = len(os.urandom(2))\nguard = zlib.compressobj()")
    assert both.headline() == (
        "not proven across 2 runs: 1 value could not be compared; the cell drew unseeded "
        "randomness (OS entropy or a seed from a clock)")


def test_report_renders_text_html_and_mimebundle(ipy: InteractiveShell) -> None:
    from det_nb import entropy_audit

    entropy_audit.install(ipy)  # as %load_ext and %det_seed do (an earlier test may unload)
    entropy_audit.activate()
    report = check(ipy, "a = [1, 2]\nb = {'k': np.random.default_rng().random(2)}\nc = '<x>'")
    lines = report.text().splitlines()
    assert lines[0] == "NOT deterministic across 2 runs"
    assert lines[1].startswith("  b['k']: ndarray float64 (2,): 2 of 2 elements differ; ")
    assert lines[2:5] == ["equal:", "  a: list (len 2)", "  c: str (len 3)"]
    assert lines[5] == "likely cause, unseeded randomness (det_nb's entropy audit):"
    assert lines[6].endswith(": np.random.default_rng(), 2 times")
    bundle = report._repr_mimebundle_()
    assert set(bundle) == {"text/plain", "text/html"}
    assert bundle["text/plain"] == report.text()
    assert "<strong" in bundle["text/html"] and "NOT deterministic" in bundle["text/html"]
    assert "<x>" not in bundle["text/html"] and "&lt;x&gt;" not in bundle["text/html"]
    assert "c: str (len 3)" in bundle["text/html"]
    again = check(ipy, "a = [1, 2]\nc = '<x>'")
    assert again.text() == check(ipy, "a = [1, 2]\nc = '<x>'").text()
    assert "0x" not in again.html() and "0x" not in report.text()


def test_runs_nested_inside_a_cell_magic(ipy: InteractiveShell) -> None:
    """The real magic calls run_check while IPython is running the magic's own cell."""
    reports: list[CheckReport] = []

    def det_check_probe(line: str, cell: str) -> None:
        reports.append(run_check(ipy, cell, runs=2, reseed=reseed))

    ipy.register_magic_function(det_check_probe, "cell")
    try:
        ipy.run_cell("%%det_check_probe\nx = np.random.rand(2)\ny = np.random.default_rng()")
    finally:
        del ipy.magics_manager.magics["cell"]["det_check_probe"]
    (report,) = reports
    assert set(differing(report)) == {"y"}
    assert [c.name for c in report.compared] == ["x", "y"]


# -- hostile values --------------------------------------------------------------------

HOSTILE_CLASSES = '''
class Attrs:  # the usual bug: a missing key raises KeyError, not AttributeError
    def __init__(self, **items):
        self.__dict__["_items"] = items
    def __getattr__(self, name):
        return self._items[name]

class Unbuilt:  # looks like a Keras model whose weights cannot be read yet
    def get_weights(self):
        return []
    @property
    def weights(self):
        raise RuntimeError("model is not built")

class NoLength(list):
    def __len__(self):
        raise TypeError("length unknown")

class NoItems(dict):
    def items(self):
        raise ValueError("items are private")

class NoClass:
    @property
    def __class__(self):
        raise RuntimeError("no class for you")

class Opaque(type):
    @property
    def __module__(cls):
        raise RuntimeError("no module")

class Layer(metaclass=Opaque):
    pass

cfg = Attrs(lr=0.1)
'''


def test_det_check_lists_objects_whose_own_code_raises_as_unchecked(shell, capsys) -> None:
    """Values whose __getattr__, properties, __len__ or items() raise: unchecked, no crash."""
    saved = dict(shell.user_ns)
    try:
        shell.run_line_magic("det_seed", "42 --quiet")
        assert shell.run_cell(HOSTILE_CLASSES).success
        capsys.readouterr()
        result = shell.run_cell(textwrap.dedent("""\
            %%det_check
            lr = cfg.lr
            settings = Attrs(depth=3)
            model = Unbuilt()
            rows = NoLength([1, 2])
            table = NoItems(a=1)
            odd = NoClass()
            nested = [1, {"m": model}]
            kind = Layer.__name__
        """))
        out = capsys.readouterr().out
    finally:
        for name in set(shell.user_ns) - set(saved):
            del shell.user_ns[name]
    assert result.success and result.error_in_exec is None, result.error_in_exec
    # Attrs and Unbuilt are compared by their instance attributes, read without running
    # their __getattr__ or properties.
    assert out == textwrap.dedent("""\
        not proven across 2 runs: 3 values could not be compared
        compared:
          kind: str (len 5)
          lr: float
          model: Unbuilt (0 attributes)
          nested: list (len 2)
          settings: Attrs (1 attribute)
        could not be compared:
          odd: NoClass: reading it raised RuntimeError: no class for you
          rows: NoLength: reading it raised TypeError: length unknown
          table: NoItems: reading it raised ValueError: items are private
    """)


def test_a_value_whose_own_code_fails_only_when_copied_is_unchecked(ipy: InteractiveShell) -> None:
    """Changed in place, a value is copied for the next comparison; if that raises, the name
    is unchecked and the check goes on."""
    ipy.run_cell(textwrap.dedent("""\
        import sys

        class CopyShy(list):
            def __iter__(self):
                frame = sys._getframe()
                while frame is not None:
                    if frame.f_code.co_name == "_snapshot":
                        raise RuntimeError("cannot be copied")
                    frame = frame.f_back
                return super().__iter__()

        shy = CopyShy()
    """))
    report = check(ipy, "shy.append(1)\nsteps = len(shy)")
    assert report.error is None
    assert [(u.name, u.reason) for u in report.unchecked] == [
        ("shy", "cannot snapshot CopyShy: reading it raised RuntimeError: cannot be copied")
    ]


# -- TensorFlow and Keras --------------------------------------------------------------


@pytest.fixture(scope="module")
def tf():
    return pytest.importorskip("tensorflow")


@pytest.fixture(scope="module")
def keras(tf):
    return pytest.importorskip("keras")


def test_tf_tensors_and_variables_seeded_are_deterministic(ipy, tf) -> None:
    def seed_all() -> None:
        reseed()
        tf.random.set_seed(1)

    ipy.run_cell("import tensorflow as tf")
    report = check(ipy, """
        t = tf.random.normal([3])
        v = tf.Variable(tf.random.uniform([2, 2]))
        s = tf.constant(["a", "b"])
    """, seed=seed_all)
    assert report.text() == textwrap.dedent("""\
        deterministic across 2 runs
        compared:
          s: tf.Tensor string (2,)
          t: tf.Tensor float32 (3,)
          v: tf.Variable float32 (2, 2)""")


def test_tf_reduction_whose_order_varies_is_reported(ipy, tf) -> None:
    """A float32 reduction whose summation order changes between runs is caught.

    TF's result depends on its thread count because a thread pool changes the order and
    grouping in which float32 partial sums are added (DESIGN.md: 1, 8 and 32 threads gave
    three different sums). Inside one process the pool cannot be resized after TF starts,
    so the cell changes that order itself, with an unseeded permutation, as a pool of
    another size would. Data: 64 rows of values that cancel, so each row's float32 sum
    depends on the order in many low bits; 64 rows all landing on the same sums again is
    practically impossible, so the test is not flaky.
    """
    values = np.random.default_rng(0).standard_normal((64, 8192)).astype(np.float32) * 1000
    ipy.user_ns["x"] = tf.constant(np.concatenate([values, -values], axis=1))
    ipy.run_cell("import tensorflow as tf")
    report = check(ipy, """
        order = np.random.default_rng().permutation(x.shape[1])  # like another pool's schedule
        row_sums = tf.reduce_sum(tf.gather(x, order, axis=1), axis=1)
        del order
    """)
    assert set(differing(report)) == {"row_sums"}
    assert differing(report)["row_sums"].startswith(
        "row_sums: tf.Tensor float32 (64,): "
    )
    assert "max abs difference" in differing(report)["row_sums"]


def test_keras_model_seeded_compares_by_weights(ipy, keras) -> None:
    def seed_keras() -> None:
        keras.utils.set_random_seed(1)

    ipy.run_cell("import keras")
    cell = "model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])"
    report = check(ipy, cell, seed=seed_keras)
    assert report.text().splitlines() == [
        "deterministic across 2 runs", "compared:", "  model: Sequential (2 weights)"
    ]
    # Without seeding, the default initialiser draws new weights each run.
    report = check(ipy, cell, seed=lambda: None)
    assert differing(report)["model"].startswith(
        "model: Sequential: weights[0]: 12 of 12 elements differ; max abs difference "
    )
    assert differing(report)["model"].endswith("; first at weights[0][0, 0] (runs 1 and 2)")


def test_keras_model_trained_in_place_is_described(ipy, keras) -> None:
    ipy.run_cell("import keras")
    keras.utils.set_random_seed(1)
    ipy.run_cell("net = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])\n"
                 "net.compile(optimizer='sgd', loss='mse')")
    report = check(ipy, "net.fit(np.ones((8, 2)), np.ones(8), epochs=1, verbose=0)")
    (found,) = report.differing
    assert found.detail.startswith("net: Sequential: weights[0]: 2 of 2 elements differ")
    assert "net existed before the cell" in found.note


# -- data held by notebook code --------------------------------------------------------


def test_data_held_by_notebook_code_is_compared_under_its_name(ipy: InteractiveShell) -> None:
    """A class attribute, a default, a closure cell and a callable's cache were dropped with
    the code that holds them: "nothing to compare ... assigned or changed no names"."""
    report = check(ipy, """
        import functools
        class Cfg:
            w = np.random.default_rng().random(2)
            def method(self):
                return self.w
        def predict(x, w=np.random.default_rng().random(1)):
            return x * w
        def make(scale):
            def scaled(x):
                return x * scale
            return scaled
        scaled = make(np.random.default_rng().random(1))
        class Memo:
            def __init__(self, function):
                functools.update_wrapper(self, function)
                self.cache = {"hit": np.random.default_rng().random(1)}
            def __call__(self, x):
                return x
        memo = Memo(predict)
    """)
    found = differing(report)
    assert set(found) == {"Cfg", "predict", "scaled", "memo"}
    assert found["Cfg"].startswith("Cfg: class: w: 2 of 2 elements differ")
    assert found["predict"].startswith("predict: function: __defaults__[0]: 1 of 1 elements")
    assert found["scaled"].startswith("scaled: function: __closure__['scale']: 1 of 1 elements")
    # the cache, and the defaults of the function it wraps
    assert found["memo"].startswith("memo: Memo: cache['hit']: 1 of 1 elements differ")


def test_a_training_notebooks_code_stays_identical_with_nothing_unchecked(
    ipy: InteractiveShell,
) -> None:
    """Code that holds only code or plain values compares equal: a model class deriving
    from a library class, a training function with defaults, functions decorated by a
    library, a cached function, a closure over a helper. (torch's nn.Module: test_verify,
    in a kernel: torch cannot be loaded in a process that loaded TensorFlow first.)"""
    report = check(ipy, """
        import contextlib
        import functools
        import json
        class Net(json.JSONEncoder):
            layers = 2
            def __init__(self):
                super().__init__()
                self.weights = np.random.rand(4)
            def forward(self, x):
                return self.weights @ x
        def train(model, steps=10, *, loss_fn=np.square, log=print):
            for _ in range(steps):
                model.weights -= 0.1 * loss_fn(model.forward(np.ones(4)))
        @contextlib.contextmanager
        def evaluating(model):
            yield model
        @functools.lru_cache
        def table(n):
            return n
        def outer():
            def helper():
                return 1
            def inner():
                return helper() + inner.__name__.count("i")
            return inner
        inner = outer()
        net = Net()
        train(net, steps=2)
    """)
    assert report.deterministic, report.text()
    assert not report.unchecked
    compared = {c.name: c.summary for c in report.compared}
    assert compared == {"Net": "class Net (the data it holds)", "net": "Net (7 attributes)",
                        "train": "function train (the data it holds)"}


def test_data_notebook_code_holds_that_cannot_be_compared_is_unchecked(
    ipy: InteractiveShell,
) -> None:
    report = check(ipy, "import zlib\ndef squeeze(stream=zlib.compressobj()):\n    return stream")
    assert report.text() == textwrap.dedent("""\
        not proven across 2 runs: 1 value could not be compared
        could not be compared:
          squeeze: function: at __defaults__[0]: Compress is not a supported type""")


def test_a_change_made_through_a_closure_is_seen_under_its_global_name(
    ipy: InteractiveShell,
) -> None:
    """bump = make(w): the checked cell bump() changes w, which no code names."""
    ipy.run_cell(textwrap.dedent("""
        w = np.zeros(3)
        def make(array):
            def bump():
                array[:] += np.random.default_rng().random(3)
            return bump
        bump = make(w)
    """))
    found = differing(check(ipy, "bump()"))
    assert found["w"].startswith("w: ndarray float64 (3,): 3 of 3 elements differ")
    assert ipy.user_ns["w"] is ipy.user_ns["bump"].__closure__[0].cell_contents
