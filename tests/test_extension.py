"""Loading and unloading the extension: fast, framework-free, and always complete."""

from __future__ import annotations

from conftest import run_python

UNLOAD = """
    import json, sys
    {before}
    from IPython.core.interactiveshell import InteractiveShell
    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "det_nb")
    shell.run_line_magic("det_seed", "42 --quiet")
    shell.run_line_magic("unload_ext", "det_nb")
    unloaded = "det_seed" not in shell.magics_manager.magics["line"]
    shell.run_line_magic("load_ext", "det_nb")
    shell.run_line_magic("det_seed", "43 --quiet")
    import det_nb
    print(json.dumps([unloaded, det_nb.lineage().experiment_seed,
                      sorted(m for m in ("numpy", "tensorflow", "keras", "torch", "jax")
                             if sys.modules.get(m) is not None)]))
"""


def test_unload_imports_no_framework_and_reload_works():
    assert run_python(UNLOAD.format(before="")) == [True, 43, []]


def test_unload_and_reload_work_without_tensorflow():
    # Where TensorFlow is not installed its import fails: simulated by a None entry.
    no_tf = 'sys.modules["tensorflow"] = sys.modules["keras"] = None'
    assert run_python(UNLOAD.format(before=no_tf)) == [True, 43, []]
