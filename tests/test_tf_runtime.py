"""Seeding TensorFlow must not start its runtime: device set-up comes first in a notebook.

Virtual devices, ``set_visible_devices`` and ``set_memory_growth`` raise once TF's runtime
has started, so ``%det_seed`` before ``import tensorflow`` must leave it unstarted (TF's
``random_numbers`` guide opens that way). Each test runs in a fresh interpreter.
"""

from __future__ import annotations

import importlib.util

import pytest
from conftest import run_python

# Not imported here: every test runs TensorFlow in a fresh interpreter.
pytestmark = pytest.mark.skipif(importlib.util.find_spec("tensorflow") is None,
                                reason="TensorFlow is not installed")

TRIAL_SEED = 1129302213  # experiment 42, trial 3 (DESIGN.md)

NOTEBOOK = """
import json
from IPython.core.interactiveshell import InteractiveShell

import det_nb

shell = InteractiveShell.instance()
shell.run_line_magic("load_ext", "det_nb")
shell.run_line_magic("det_seed", "42 --trial 3 --quiet {flags}")

import tensorflow as tf
from tensorflow.python.eager import context

def runtime_started():
    return context.context()._context_handle is not None

started = {{"import": runtime_started()}}
tensorflow_row = det_nb.status().check("tensorflow").detail
det_nb.save_state({state!r})
started["status and save_state"] = runtime_started()

# The first cell of TensorFlow's random_numbers guide: two virtual CPUs.
cpus = tf.config.list_physical_devices("CPU")
tf.config.set_logical_device_configuration(cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2)
virtual = len(tf.config.list_logical_devices("CPU"))

generator = tf.random.get_global_generator()
made_row = det_nb.status().check("tensorflow").detail
drawn = {{"generator": generator.normal([3]).numpy().tolist(),
          "op": tf.random.normal([3]).numpy().tolist(),
          "other names": [tf.random.experimental.get_global_generator() is generator,
                          tf.compat.v1.random.experimental.get_global_generator() is generator]}}
tf.random.set_seed({seed})
plain = {{"generator": tf.random.Generator.from_seed({seed}).normal([3]).numpy().tolist(),
          "op": tf.random.normal([3]).numpy().tolist(), "other names": [True, True]}}
det_nb.load_state({state!r})
restored = tf.random.get_global_generator().normal([3]).numpy().tolist()
print(json.dumps({{
    "started": started, "virtual CPUs": virtual, "equal": drawn == plain,
    "restored": restored == plain["generator"],
    "threads": [tf.config.threading.get_intra_op_parallelism_threads(),
                tf.config.threading.get_inter_op_parallelism_threads()],
    "op determinism": det_nb.status().check("tensorflow op determinism").state,
    "rows": [tensorflow_row, made_row],
}}))
"""


@pytest.mark.parametrize("deterministic_ops", [False, True])
def test_det_seed_before_import_leaves_device_setup_to_the_notebook(
    deterministic_ops: bool, tmp_path
) -> None:
    """Seeded at import, TF's runtime stays down until the notebook's first op; the global
    generator, made when first asked for, draws like Generator.from_seed(trial seed) (also
    with op determinism, where TF's own would raise) and op seeds like tf.random.set_seed."""
    flags = "--deterministic-ops" if deterministic_ops else ""
    state = str(tmp_path / "state.npz")
    result = run_python(NOTEBOOK.format(flags=flags, seed=TRIAL_SEED, state=state))
    seeded = f"tf.random.set_seed({TRIAL_SEED}) and global Generator.from_seed({TRIAL_SEED})"
    assert result == {
        "started": {"import": False, "status and save_state": False},
        "virtual CPUs": 2,
        "equal": True,
        "restored": True,
        "threads": [1, 1],
        "op determinism": "ok" if deterministic_ops else "off",
        "rows": [f"{seeded}, made on first use; global generator: no draws since seeding",
                 f"{seeded}, made on first use; global generator: no draws since seeding"],
    }


def test_a_generator_the_user_sets_is_left_alone_until_the_next_seeding() -> None:
    result = run_python(f"""
import json
import det_nb
det_nb.seed(42, trial=3)
import tensorflow as tf
mine = tf.random.Generator.from_seed(7)
tf.random.set_global_generator(mine)
kept = tf.random.get_global_generator() is mine
det_nb.reseed()
fresh = tf.random.get_global_generator()
print(json.dumps({{
    "kept": kept, "replaced": fresh is not mine,
    "seeded": fresh.normal([2]).numpy().tolist()
              == tf.random.Generator.from_seed({TRIAL_SEED}).normal([2]).numpy().tolist(),
}}))
""")
    assert result == {"kept": True, "replaced": True, "seeded": True}


def test_unloading_before_the_first_draw_keeps_the_generator_seeded() -> None:
    """%unload_ext neither starts the runtime nor drops the seeding; once the generator is
    made, TF's own get_global_generator is back under every name."""
    result = run_python(f"""
import json
from IPython.core.interactiveshell import InteractiveShell
shell = InteractiveShell.instance()
shell.run_line_magic("load_ext", "det_nb")
shell.run_line_magic("det_seed", "42 --trial 3 --quiet")
import tensorflow as tf
shell.run_line_magic("unload_ext", "det_nb")
cpus = tf.config.list_physical_devices("CPU")
tf.config.set_logical_device_configuration(cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2)
drawn = tf.random.get_global_generator().normal([2]).numpy().tolist()
names = [tf.random.get_global_generator, tf.random.experimental.get_global_generator]
print(json.dumps({{
    "seeded": drawn == tf.random.Generator.from_seed({TRIAL_SEED}).normal([2]).numpy().tolist(),
    "wrapped": [hasattr(name, "__wrapped__") for name in names],
}}))
""")
    assert result == {"seeded": True, "wrapped": [False, False]}
