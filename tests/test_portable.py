"""Portable floats: det_nb pins CPU kernels to x86-64-v3, so x86-64 CPUs compute the same bits.

A CPU's own choice cannot be faked without the very variables det_nb sets, so the proof
has three parts, each in fresh processes with none of those variables inherited:
(a) det_nb's default makes every library report the baseline kernel, read back from its
runtime, whatever this CPU is; (b) a process that forces the baseline by hand, as an
AVX2-only machine chooses it, computes the same bits as (a); (c) under plain seeding,
other kernels give other bits, so the pins are what make (a) and (b) agree.
"""

from __future__ import annotations

import pytest
from conftest import result_of, run_python, start_python

from det_nb import cpu_kernels

PIN_VARIABLES = [pin.variable for pin in cpu_kernels.PINS]
BY_HAND = cpu_kernels.pin_environment()  # what an AVX2 machine picks without being told

# The same seeded work in every process: only det_nb and the environment differ.
COMPUTE = """
import hashlib, json
import numpy as np
import torch
import tensorflow as tf
import keras

def digest(*arrays):
    return hashlib.sha256(b"".join(np.ascontiguousarray(a).tobytes() for a in arrays)).hexdigest()

tf.config.threading.set_intra_op_parallelism_threads(1)
tf.config.threading.set_inter_op_parallelism_threads(1)
data = np.random.default_rng(0)
x = data.normal(size=(1024, 8)).astype(np.float32)
w = data.normal(size=(8, 1)).astype(np.float32)
y = (np.sin(x @ w) + 0.1 * data.normal(size=(1024, 1))).astype(np.float32)

torch.manual_seed(0)
logits = torch.randn(256, 512)

keras.utils.set_random_seed(42)
model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(32, activation="relu"),
                          keras.layers.Dropout(0.2), keras.layers.Dense(1)])
model.compile(optimizer=keras.optimizers.Adam(learning_rate=0.005), loss="mse")
model.fit(tf.data.Dataset.from_tensor_slices((x, y)).shuffle(1024).batch(32), epochs=2,
          verbose=0)
result = {
    "numpy": digest(x @ w),
    "torch": digest(torch.softmax(logits, 1).numpy()),
    "keras": digest(*model.get_weights()),
}
"""
WITH_DET_NB = """
import det_nb
det_nb.seed(42)
""" + COMPUTE + """
from det_nb import cpu_kernels
report = det_nb.status()
result["kernels"] = cpu_kernels.kernels_in_use()
result["rows"] = {c.name: c.state for c in report.checks if c.name.endswith("kernels")}
print(json.dumps(result))
"""
PLAIN = COMPUTE + "\nprint(json.dumps(result))\n"


def clean_env(**variables: str) -> dict[str, str | None]:
    """No kernel pin inherited from this process's environment, plus ``variables``."""
    return {**dict.fromkeys(PIN_VARIABLES), **variables}


def avx512() -> bool:
    return "avx512f" in cpu_kernels.cpu_flags()


@pytest.fixture(scope="module")
def runs() -> dict[str, dict]:
    """The proof's processes, started together (each imports TF and torch once)."""
    started = {
        "det_nb": start_python(WITH_DET_NB, clean_env()),
        "by hand": start_python(PLAIN, clean_env(**BY_HAND)),
        "older kernels": start_python(PLAIN, clean_env(
            OPENBLAS_CORETYPE="Prescott", ONEDNN_MAX_CPU_ISA="SSE41",
            ATEN_CPU_CAPABILITY="default")),
        "native": start_python(PLAIN, clean_env()),
    }
    return {name: result_of(process) for name, process in started.items()}


def test_det_nb_default_reads_back_the_baseline_kernels(runs):
    kernels = runs["det_nb"]["kernels"]
    assert kernels["numpy"] == {"openblas": "Haswell", "simd": "X86_V3"}
    assert kernels["tensorflow"] == {"onednn": "ISA cap AVX2", "xla": "ISA cap AVX2"}
    assert kernels["torch"]["aten"] == "AVX2"
    assert kernels["torch"]["onednn"] == "ISA cap AVX2"
    rows = runs["det_nb"]["rows"]
    assert rows["cpu kernels"] == rows["numpy kernels"] == rows["tensorflow kernels"] == "ok"


def test_forcing_the_baseline_by_hand_gives_the_same_bits_as_det_nb(runs):
    for library in ("numpy", "torch", "keras"):
        assert runs["det_nb"][library] == runs["by hand"][library], library


def test_other_kernels_give_other_bits_under_plain_seeding(runs):
    for library in ("numpy", "torch", "keras"):
        assert runs["older kernels"][library] != runs["by hand"][library], library


@pytest.mark.skipif(not avx512(), reason="this CPU has no AVX-512: native is the baseline")
def test_native_avx512_kernels_differ_from_the_baseline(runs):
    for library in ("numpy", "torch", "keras"):
        assert runs["native"][library] != runs["det_nb"][library], library


def test_a_variable_set_at_start_is_respected_and_reported():
    result = run_python("""
        import json, det_nb
        det_nb.seed(1)
        import numpy
        check = det_nb.status().check("numpy kernels")
        print(json.dumps([check.state, check.detail, check.fix]))
    """, clean_env(OPENBLAS_CORETYPE="Prescott"))
    state, detail, _fix = result
    assert state == "warn"
    assert "openblas not the baseline" in detail
    assert "OPENBLAS_CORETYPE='Prescott' is your setting, which det_nb leaves" in detail


def test_a_library_loaded_before_det_nb_is_reported_too_late_with_the_fix():
    result = run_python("""
        import json
        import numpy
        import det_nb
        det_nb.seed(1)
        check = det_nb.status().check("numpy kernels")
        print(json.dumps([check.state, check.detail, check.fix]))
    """, clean_env())
    state, detail, fix = result
    assert state == "warn"
    assert "too late: NumPy was loaded before det_nb pinned its kernels" in detail
    assert "restart the kernel" in fix and "python -m det_nb kernel install" in fix


def test_tf_kernels_chosen_before_det_nb_are_too_late_though_the_variable_reads_pinned():
    """oneDNN and XLA read their ISA cap at TF's first op, which no getter reports: an op
    before seeding keeps its kernels (too late); an import alone does not."""
    code = """
        import json
        import tensorflow as tf
        import det_nb
        {before}
        det_nb.seed(1)
        tf.matmul(tf.ones((2, 2)), tf.ones((2, 2)))
        check = det_nb.status().check("tensorflow kernels")
        print(json.dumps([check.state, check.detail]))
    """
    used = run_python(code.format(before="tf.matmul(tf.ones((2, 2)), tf.ones((2, 2)))"),
                      clean_env())
    assert used[0] == "warn"
    assert "onednn ISA cap AVX2 (set after its first use)" in used[1]
    assert "too late: TensorFlow had used its kernels before det_nb pinned them" in used[1]
    imported = run_python(code.format(before=""), clean_env())
    assert imported == ["ok", "onednn ISA cap AVX2, xla ISA cap AVX2: the baseline"]


def test_no_portable_takes_the_pins_back_before_libraries_load():
    result = run_python("""
        import json, os, det_nb
        det_nb.seed(1)
        pinned = os.environ.get("OPENBLAS_CORETYPE")
        det_nb.seed(1, portable=False)
        import numpy
        from det_nb import cpu_kernels
        print(json.dumps([pinned, os.environ.get("OPENBLAS_CORETYPE"),
                          det_nb.status().check("numpy kernels").state,
                          det_nb.status().check("cpu kernels").state]))
    """, clean_env())
    assert result == ["Haswell", None, "off", "off"]


def test_loading_the_extension_pins_before_the_first_import():
    result = run_python("""
        import json, os, sys
        from IPython.core.interactiveshell import InteractiveShell
        shell = InteractiveShell.instance()
        shell.run_line_magic("load_ext", "det_nb")
        print(json.dumps(["numpy" in sys.modules, os.environ.get("ONEDNN_MAX_CPU_ISA"),
                          os.environ.get("ATEN_CPU_CAPABILITY")]))
    """, clean_env())
    assert result == [False, "AVX2", "avx2"]


def test_bad_portable_value_is_refused_and_changes_nothing():
    import det_nb

    before = det_nb.lineage()
    with pytest.raises(ValueError, match="portable must be True or False, got 'no'"):
        det_nb.seed(3, portable="no")
    assert det_nb.lineage() == before


def test_numpy_takes_the_pins_without_a_warning():
    result = run_python("""
        import json, warnings
        import det_nb
        det_nb.seed(1)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # NumPy warns about names it cannot disable
            import numpy
        from det_nb import cpu_kernels
        print(json.dumps(cpu_kernels.kernels_in_use()["numpy"]))
    """, clean_env())
    assert result == {"openblas": "Haswell", "simd": "X86_V3"}


def test_pins_leave_what_the_user_set_and_take_back_only_their_own():
    result = run_python("""
        import json, os
        import det_nb
        os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8"
        os.environ["OPENBLAS_CORETYPE"] = "Sandybridge"
        det_nb.seed(1)
        pinned = {v: os.environ.get(v) for v in ("XLA_FLAGS", "OPENBLAS_CORETYPE",
                                                 "ATEN_CPU_CAPABILITY")}
        os.environ["XLA_FLAGS"] += " --xla_dump_to=somewhere"  # a common JAX idiom, later
        det_nb.seed(1, portable=False)
        unpinned = {v: os.environ.get(v) for v in ("XLA_FLAGS", "OPENBLAS_CORETYPE",
                                                   "ATEN_CPU_CAPABILITY")}
        det_nb.seed(1)
        import numpy
        check = det_nb.status().check("numpy kernels")
        print(json.dumps([pinned, unpinned, check.state, check.detail]))
    """, clean_env())
    pinned, unpinned, state, detail = result
    assert pinned == {
        "XLA_FLAGS": "--xla_force_host_platform_device_count=8 --xla_cpu_max_isa=AVX2",
        "OPENBLAS_CORETYPE": "Sandybridge", "ATEN_CPU_CAPABILITY": "avx2",
    }
    assert unpinned == {
        "XLA_FLAGS": "--xla_force_host_platform_device_count=8 --xla_dump_to=somewhere",
        "OPENBLAS_CORETYPE": "Sandybridge", "ATEN_CPU_CAPABILITY": None,
    }
    assert state == "warn"
    assert "OPENBLAS_CORETYPE='Sandybridge' is your setting, which det_nb leaves" in detail


def test_a_library_loaded_while_pins_were_off_is_too_late_once_they_are_on():
    result = run_python("""
        import json, det_nb
        det_nb.seed(1)
        det_nb.seed(1, portable=False)
        import numpy
        det_nb.seed(1)
        check = det_nb.status().check("numpy kernels")
        print(json.dumps([check.state, check.detail]))
    """, clean_env())
    assert result[0] == "warn"
    assert "too late: NumPy was loaded before det_nb pinned its kernels" in result[1]


def test_a_failed_save_puts_the_pins_back_and_loads_no_numpy():
    result = run_python("""
        import json, os, sys
        from IPython.core.error import UsageError
        from IPython.core.interactiveshell import InteractiveShell
        from det_nb import run_record
        shell = InteractiveShell.instance()
        shell.run_line_magic("load_ext", "det_nb")
        shell.run_line_magic("det_seed", "42 --no-portable --quiet")

        def full_disk(*args, **kwargs):
            raise OSError(28, "No space left on device")

        run_record.save = full_disk
        try:
            shell.run_line_magic("det_seed", "7 --portable --save run.json --quiet")
        except UsageError as error:
            refused = str(error)
        import det_nb
        report = det_nb.status()
        print(json.dumps([refused, "numpy" in sys.modules, det_nb.lineage().experiment_seed,
                          os.environ.get("OPENBLAS_CORETYPE"),
                          report.check("cpu kernels").state]))
    """, clean_env())
    refused, numpy_loaded, seed, coretype, cpu_state = result
    assert "No space left on device" in refused
    assert (numpy_loaded, seed, coretype, cpu_state) == (False, 42, None, "off")
