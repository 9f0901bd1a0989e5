"""Shared fixtures: one IPython shell per test process, and fresh-interpreter runs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest
from IPython.core.interactiveshell import InteractiveShell

# The tests that press Ctrl-C on a command need SIGINT to reach it as in a terminal; a
# shell that started this run in the background (``make test &``) passes it down ignored.
signal.signal(signal.SIGINT, signal.default_int_handler)

# Keep TensorFlow's start-up chatter out of subprocess output.
QUIET_TF = {"TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}


@pytest.fixture(autouse=True)
def _no_entropy_records_of_other_tests() -> None:
    """The entropy audit is one per process: each test starts without earlier tests' records
    (the shared shell's cells and the test files, in the folder pytest runs in, are "the
    notebook's code" to it)."""
    audit = sys.modules.get("det_nb.entropy_audit")
    if audit is not None:
        audit.clear()


@pytest.fixture(scope="session")
def shell() -> InteractiveShell:
    """A real InteractiveShell with det_nb loaded, shared so TF is imported once."""
    ipython = InteractiveShell.instance()
    ipython.run_line_magic("load_ext", "det_nb")
    return ipython


def hard_reset(shell: InteractiveShell) -> None:
    """``%reset -f`` as a user types it, then the module attributes it deletes from
    ``__main__`` put back as a fresh shell has them: later tests share this shell, and
    multiprocessing's spawn reads ``__main__.__spec__``."""
    main = sys.modules["__main__"]
    kept = {name: getattr(main, name) for name in ("__spec__", "__loader__", "__package__",
                                                  "__doc__") if hasattr(main, name)}
    shell.run_line_magic("reset", "-f")
    for name, value in kept.items():
        setattr(main, name, value)


def prng_states() -> tuple:
    """Everything a rejected input must leave as it was: streams, lineage, settings."""
    import random

    import numpy as np
    import tensorflow as tf

    import det_nb

    return (
        random.getstate(),
        np.random.get_state()[1].tobytes(),
        tf.random.get_global_generator().state.numpy().tobytes(),
        det_nb.lineage(),
        det_nb.get_session().settings,
    )


def start_python(code: str, env: dict[str, str | None] | None = None) -> subprocess.Popen:
    """Start ``code`` in a fresh interpreter (no state shared with the test process).

    ``env`` is added to this process's environment; a variable mapped to None is unset.
    """
    merged = {**os.environ, **QUIET_TF, **(env or {})}
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={name: value for name, value in merged.items() if value is not None},
    )


def result_of(process: subprocess.Popen, timeout: float = 300) -> dict:
    """The JSON object a fresh interpreter printed on its last line of output."""
    out, err = process.communicate(timeout=timeout)
    assert process.returncode == 0, err[-3000:]
    return json.loads(out.strip().splitlines()[-1])


def run_python(code: str, env: dict[str, str | None] | None = None) -> dict:
    """Run ``code`` in a fresh interpreter and return the JSON it printed last."""
    return result_of(start_python(code, env))
