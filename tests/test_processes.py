"""Fresh interpreters prove what one process cannot: import order, threads, and training."""

from __future__ import annotations

from conftest import result_of, run_python, start_python

SHELL = """
import json, sys
from IPython.core.interactiveshell import InteractiveShell
shell = InteractiveShell.instance()
"""

FRAMEWORKS = ("tensorflow", "keras", "torch", "jax", "flax", "sklearn")


def test_loading_and_seeding_import_no_framework() -> None:
    result = run_python(SHELL + """
shell.run_line_magic("load_ext", "det_nb")
after_load = [m for m in FRAMEWORKS if m in sys.modules]
shell.run_line_magic("det_seed", "42 --trial 3")
shell.run_line_magic("det_status", "")
after_seed = [m for m in FRAMEWORKS if m in sys.modules]
print(json.dumps({"load": after_load, "seed": after_seed}))
""".replace("FRAMEWORKS", repr(FRAMEWORKS)))
    assert result == {"load": [], "seed": []}


def test_tf_imported_after_det_seed_is_seeded_and_single_threaded() -> None:
    result = run_python(SHELL + """
shell.run_line_magic("load_ext", "det_nb")
shell.run_line_magic("det_seed", "42 --trial 3 --quiet")
import det_nb
pending = list(det_nb.get_session().pending_hooks)
import tensorflow as tf
threads = [tf.config.threading.get_intra_op_parallelism_threads(),
           tf.config.threading.get_inter_op_parallelism_threads()]
op = tf.random.normal([4]).numpy().tolist()
generator = tf.random.get_global_generator().normal([4]).numpy().tolist()
tf.random.set_seed(1129302213)
tf.random.set_global_generator(tf.random.Generator.from_seed(1129302213))
print(json.dumps({
    "pending": pending, "threads": threads,
    "check": det_nb.status().check("tensorflow threads").state,
    "op equal": op == tf.random.normal([4]).numpy().tolist(),
    "generator equal": generator == tf.random.get_global_generator().normal([4]).numpy().tolist(),
}))
""")
    assert {"tensorflow", "keras"} <= set(result["pending"])
    assert result["threads"] == [1, 1]
    assert result["check"] == "ok"
    assert result["op equal"] and result["generator equal"]


def test_importing_a_framework_after_det_seed_does_not_move_the_users_streams() -> None:
    # Keras imports rich, which draws from Python's random at import time.
    result = run_python(SHELL + """
import random
import det_nb
det_nb.seed(42)
import keras
after_import = random.random()
det_nb.seed(42)
print(json.dumps({"import": after_import, "reseed": random.random()}))
""")
    assert result["import"] == result["reseed"]


def test_tf_started_before_det_seed_gives_the_too_late_status() -> None:
    result = run_python(SHELL + """
import tensorflow as tf
tf.constant(1.0) + 1.0  # the runtime starts with default thread pools
shell.run_line_magic("load_ext", "det_nb")
shell.run_line_magic("det_seed", "42 --trial 3 --quiet")
import det_nb
check = det_nb.status().check("tensorflow threads")
print(json.dumps({"state": check.state, "detail": check.detail, "fix": check.fix}))
""")
    assert result["state"] == "warn"
    assert "runtime started before %det_seed" in result["detail"]
    assert "restart the kernel" in result["fix"]
    assert "TF_NUM_INTRAOP_THREADS=1" in result["fix"]


def test_threads_set_in_the_environment_at_start_count_as_pinned() -> None:
    result = run_python(SHELL + """
import tensorflow as tf
tf.constant(1.0) + 1.0
import det_nb
det_nb.seed(42)
print(json.dumps({"state": det_nb.status().check("tensorflow threads").state}))
""", env={"TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "1"})
    assert result["state"] == "ok"


def test_unload_removes_the_pending_import_hooks() -> None:
    result = run_python(SHELL + """
shell.run_line_magic("load_ext", "det_nb")
shell.run_line_magic("det_seed", "42 --quiet")
shell.run_line_magic("unload_ext", "det_nb")
from wrapt import importer
import tensorflow as tf
print(json.dumps({
    "hooks left": [m for m, hooks in importer._post_import_hooks.items() if hooks],
    "threads": tf.config.threading.get_intra_op_parallelism_threads(),
}))
""")
    assert result == {"hooks left": [], "threads": 0}


TRAIN = SHELL + """
shell.run_line_magic("load_ext", "det_nb")
shell.run_line_magic("det_seed", "42 --trial %d --quiet")
import hashlib
import numpy as np
import keras
import tensorflow as tf

x = np.random.normal(size=(512, 8)).astype("float32")
y = (x @ np.random.normal(size=(8, 1)) + 0.1 * np.random.normal(size=(512, 1))).astype("float32")
data = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(512).batch(32)
model = keras.Sequential([
    keras.Input((8,)), keras.layers.Dense(32, activation="relu"),
    keras.layers.Dropout(0.3), keras.layers.Dense(1),
])
model.compile(optimizer="adam", loss="mse")
history = model.fit(data, epochs=3, verbose=0)
weights = hashlib.sha256(b"".join(w.tobytes() for w in model.get_weights())).hexdigest()
print(json.dumps({"weights": weights, "loss": history.history["loss"]}))
"""


def test_training_in_two_fresh_processes_gives_identical_weights() -> None:
    runs = [start_python(TRAIN % trial) for trial in (3, 3, 4)]
    first, second, other_trial = (result_of(run) for run in runs)
    assert first == second
    assert other_trial["weights"] != first["weights"]  # the hash does see a change


REDUCTION = """
import json
SEED_WITH_DET_NB
import tensorflow as tf
tf.random.set_seed(0)
print(json.dumps({"sum": float(tf.reduce_sum(tf.random.normal([4_000_000])))}))
"""


def reduction_sums(with_det_nb: bool) -> list[float]:
    seeding = "import det_nb; det_nb.seed(0)" if with_det_nb else ""
    code = REDUCTION.replace("SEED_WITH_DET_NB", seeding)
    runs = [start_python(code, env={"TF_NUM_INTRAOP_THREADS": str(n)}) for n in (8, 32)]
    return [result_of(run)["sum"] for run in runs]


def test_thread_count_changes_floats_and_single_thread_mode_removes_that() -> None:
    # Like two machines with 8 and 32 cores: TF's default is one thread per core.
    eight, thirty_two = reduction_sums(with_det_nb=False)
    assert eight != thirty_two  # the test can see the difference ...
    eight, thirty_two = reduction_sums(with_det_nb=True)
    assert eight == thirty_two  # ... and single-thread mode makes it go away


def test_hash_seed_set_after_start_is_not_reported_as_fixed() -> None:
    result = run_python("""
import json, os
os.environ["PYTHONHASHSEED"] = "0"  # what %env does in a running kernel: too late
import det_nb
print(json.dumps({"state": det_nb.status().check("hash randomisation").state}))
""", env={"PYTHONHASHSEED": "random"})
    assert result == {"state": "warn"}


def test_a_failed_framework_import_does_not_rewind_a_later_one(tmp_path) -> None:
    (tmp_path / "jax.py").write_text("raise ImportError('broken on purpose')\n")
    result = run_python(f"""
import json, random, sys
sys.path.insert(0, {str(tmp_path)!r})
import det_nb
det_nb.seed(42)
try:
    import jax
except ImportError:
    pass
first = random.random()
import tensorflow  # watched too: must not restore the state from before the failed import
print(json.dumps({{"first": first, "second": random.random()}}))
""")
    assert result["first"] != result["second"]
