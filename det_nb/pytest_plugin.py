"""pytest plugin: ``pytest --det-verify notebooks/`` verifies each notebook as one test.

Each ``.ipynb`` file pytest is given (or finds in a folder it is given) becomes one test
that runs the notebook in fresh kernels as ``python -m det_nb verify`` does and fails with
the same report when the runs part, a cell fails, or the verdict is not proven (a value
could not be compared, or unseeded randomness is on record;
``--det-verify-allow-unchecked`` accepts that). It sits beside ``--nbval``, which
compares outputs with stored ones: this compares fresh runs with each other, value by
value, and names the first cell and variable where they part.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from det_nb.notebook_runner import BUILT_IN, Sanitizer, load_sanitize_file
from det_nb.verify import MAX_RUNS, VARIATIONS, check_cpus_for, exit_status, verify_notebook


def pytest_addoption(parser: pytest.Parser) -> None:
    """``--det-verify`` and its settings."""
    group = parser.getgroup("det_nb", "det_nb notebook verification")
    group.addoption("--det-verify", action="store_true", default=False,
                    help="verify each .ipynb file given as reproducible across fresh kernels")
    group.addoption("--det-verify-runs", type=int, default=2, metavar="N",
                    help="fresh runs per notebook (default 2)")
    group.addoption("--det-verify-vary", action="append", default=[],
                    choices=sorted(VARIATIONS), metavar="CONDITION",
                    help="change between runs: threads, hashseed or cpu (repeatable)")
    group.addoption("--det-verify-timeout", type=float, default=600.0, metavar="S",
                    help="seconds one cell may run (default 600)")
    group.addoption("--det-verify-allow-unchecked", action="store_true", default=False,
                    help="pass a notebook whose compared values are all equal though some "
                    "could not be compared or a cell drew unseeded randomness (not proven)")
    group.addoption("--det-verify-allow-errors", action="store_true", default=False,
                    help="go on past a cell that raises and compare its error between runs")
    group.addoption("--det-verify-sanitize", metavar="FILE", default=None,
                    help="more output text to replace before comparing ('regex:' and "
                    "'replace:' lines, as nbval's sanitize files)")


_SANITIZER = pytest.StashKey[Sanitizer]()


def pytest_configure(config: pytest.Config) -> None:
    """Refuse bad settings in one line, before anything is collected."""
    if not config.getoption("det_verify"):
        return
    runs = config.getoption("det_verify_runs")
    if not 2 <= runs <= MAX_RUNS:
        raise pytest.UsageError(f"--det-verify-runs must be in [2, {MAX_RUNS}], got {runs}")
    timeout = config.getoption("det_verify_timeout")
    if not 0 < timeout < math.inf:  # NaN fails this too
        raise pytest.UsageError(
            f"--det-verify-timeout must be a finite number of seconds above 0, got {timeout}")
    vary = config.getoption("det_verify_vary")
    if len(set(vary)) != len(vary):
        raise pytest.UsageError("give each --det-verify-vary condition once")
    sanitize = config.getoption("det_verify_sanitize")
    try:
        check_cpus_for(vary)
        config.stash[_SANITIZER] = BUILT_IN if sanitize is None else load_sanitize_file(sanitize)
    except ValueError as error:
        raise pytest.UsageError(str(error)) from None


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    """One :class:`NotebookFile` per .ipynb file, when --det-verify is on."""
    if file_path.suffix == ".ipynb" and parent.config.getoption("det_verify"):
        return NotebookFile.from_parent(parent, path=file_path)
    return None


class NotebookFile(pytest.File):
    """A notebook, collected as a single verification test."""

    def collect(self) -> list[pytest.Item]:
        """The one test: verify this notebook."""
        return [VerifyItem.from_parent(self, name="det_verify")]


class VerifyFailed(Exception):
    """The notebook's runs parted, it failed to run, or it is not proven; the message is
    the report."""


class VerifyItem(pytest.Item):
    """Runs the notebook in fresh kernels and compares the runs."""

    def runtest(self) -> None:
        """Fail with verify's report unless verify would exit 0."""
        config = self.config
        try:
            verdict = verify_notebook(
                str(self.path), runs=config.getoption("det_verify_runs"),
                vary=config.getoption("det_verify_vary"),
                timeout=config.getoption("det_verify_timeout"),
                label=self.nodeid.split("::")[0],
                allow_errors=config.getoption("det_verify_allow_errors"),
                sanitizer=config.stash[_SANITIZER],
            )
        except ValueError as error:  # not a readable notebook
            raise VerifyFailed(str(error)) from None
        if exit_status([verdict], config.getoption("det_verify_allow_unchecked")) != 0:
            raise VerifyFailed(verdict.text())

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str:
        """The report itself, not a traceback of det_nb."""
        if isinstance(excinfo.value, VerifyFailed):
            return str(excinfo.value)
        return str(super().repr_failure(excinfo, style))

    def reportinfo(self) -> tuple[Path, int, str]:
        """Where the test comes from, for pytest's summary."""
        return self.path, 0, f"det_nb verify {self.path.name}"
