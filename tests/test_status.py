"""The status's one-line verdict: on the Report, and as %det_status shows it in a shell."""

from __future__ import annotations

import re

from IPython.utils.capture import capture_output

import det_nb
from det_nb.lineage import Lineage
from det_nb.status import NOT_REPRODUCIBLE_COLOUR, STATE_COLOURS, Check, Report

SEEDED = Lineage(42, 3)
NUMPY = Check("numpy", "ok", "np.random.seed(1129302213)")
PER_CELL = Check("per-cell seeding", "off", "off", "%det_seed SEED --per-cell")
HASH = Check("hash randomisation", "warn", "on", "restart the kernel with PYTHONHASHSEED=0",
             caveat=True)
THREADS = Check("tensorflow threads", "warn", "could not pin to 1", "restart the kernel")


def test_all_ok_is_reproducible_in_green() -> None:
    report = Report(SEEDED, (NUMPY, PER_CELL))
    assert report.verdict() == "reproducible on this machine: 1 ok, 0 warn, 1 off"
    assert report.verdict_colour() == STATE_COLOURS["ok"]


def test_a_caveat_keeps_reproducible_and_names_its_fix() -> None:
    report = Report(SEEDED, (NUMPY, HASH, PER_CELL))
    assert report.verdict() == (
        "reproducible on this machine: 1 ok, 1 warn, 1 off "
        "(hash randomisation: restart the kernel with PYTHONHASHSEED=0)"
    )
    assert report.verdict_colour() == STATE_COLOURS["warn"]


def test_a_breaking_warning_comes_first_and_the_rest_are_counted() -> None:
    report = Report(SEEDED, (HASH, NUMPY, THREADS))
    assert report.verdict() == (
        "NOT reproducible: 1 ok, 2 warn, 0 off "
        "(tensorflow threads: restart the kernel; 1 more warn below)"
    )
    assert report.verdict_colour() == NOT_REPRODUCIBLE_COLOUR
    assert not report.deterministic


def test_cpu_kernel_warnings_are_portability_caveats() -> None:
    kernels = Check("numpy kernels", "warn", "OpenBLAS SkylakeX: not the baseline",
                    "restart the kernel", caveat=True)
    report = Report(SEEDED, (HASH, kernels, NUMPY))
    assert report.verdict() == (
        "reproducible on this machine: 1 ok, 2 warn, 0 off "
        "(hash randomisation: restart the kernel with PYTHONHASHSEED=0; 1 more warn below)"
    )
    assert report.verdict_colour() == STATE_COLOURS["warn"]


def test_unseeded_says_what_to_run_once() -> None:
    report = Report(None, (Check("numpy", "off", "not seeded yet", "%det_seed SEED"), HASH))
    assert report.text().splitlines()[:2] == [
        "not seeded yet: run %det_seed SEED to make this kernel reproducible; 0 ok, 1 warn, 1 off",
        "[off ] numpy: not seeded yet",
    ]


def test_text_and_html_open_with_the_verdict() -> None:
    report = Report(SEEDED, (NUMPY, THREADS))
    assert report.text().splitlines()[:2] == [
        report.verdict(),
        "det_nb: experiment seed 42 -> trial 3 -> trial seed 1129302213 [seedsequence]",
    ]
    assert report.html().startswith(
        f'<div class="det-nb-report"><p class="det-nb-verdict" '
        f'style="color:{NOT_REPRODUCIBLE_COLOUR};font-weight:bold">NOT reproducible: '
    )


def status_text(shell) -> str:
    with capture_output() as captured:
        shell.run_line_magic("det_status", "")
    [output] = captured.outputs
    return output.data["text/plain"]


def test_det_status_opens_with_the_verdict(shell) -> None:
    shell.run_line_magic("det_seed", "42 --trial 3 --quiet")
    first = status_text(shell).splitlines()[0]
    assert first == det_nb.status().verdict()
    assert re.fullmatch(r"reproducible on this machine: \d+ ok, \d+ warn, \d+ off( \(.*\))?",
                        first)
    assert status_text(shell) == status_text(shell)  # nbval compares it


def test_a_layer_built_before_seeding_makes_det_status_say_not_reproducible(shell) -> None:
    shell.run_cell("import keras\n%det_seed 42 --quiet\nearly = keras.layers.Dropout(0.5)")
    try:
        shell.run_line_magic("det_seed", "42 --quiet")
        first = status_text(shell).splitlines()[0]
        assert first.startswith("NOT reproducible: ")
        assert "(keras layers: re-run the cells that build the model after %det_seed" in first
    finally:
        shell.run_cell("del early\nimport gc\ngc.collect()")  # a built layer sits in cycles
