"""Notebooks run top to bottom in fresh kernels, every cell fingerprinted.

Shared by ``python -m det_nb verify``, its pytest plugin and the trials runner. One
module per job:

- :mod:`~det_nb.notebook_runner.loading`: read a notebook, repair what nbformat can
  repair in the copy that runs, refuse an unreadable one in one line.
- :mod:`~det_nb.notebook_runner.det_seed_lines`: make a notebook's ``%det_seed`` lines
  take the runner's seed and trial, parsed with the magic's own parser.
- :mod:`~det_nb.notebook_runner.kernel_run`: drive one kernel cell by cell
  (:class:`KernelRun`, :func:`run_notebook`, :func:`run_sync`).
- :mod:`~det_nb.notebook_runner.cpu_affinity`: kernels restricted to some CPUs from
  their start (another core count, emulated).
- :mod:`~det_nb.notebook_runner.probe`: inside the kernel, fingerprint what each cell
  changed.
- :mod:`~det_nb.notebook_runner.snapshots`: move values out of kernels where runs part.
- :mod:`~det_nb.notebook_runner.outputs`: compare outputs as a reader sees them.
- :mod:`~det_nb.notebook_runner.cli_checks`: checks shared by the command lines.
"""

from det_nb.notebook_runner.cli_checks import (
    refuse_notebook_target,
    refuse_repeated_options,
    validate_names,
)
from det_nb.notebook_runner.det_seed_lines import Seeding, reseed_notebook, seeding_from
from det_nb.notebook_runner.kernel_run import (
    CellResult,
    KernelRun,
    NameFingerprint,
    NotebookRun,
    live_kernels,
    notebook_kernel,
    result_name,
    run_notebook,
    run_sync,
)
from det_nb.notebook_runner.loading import MAX_NOTEBOOK_BYTES, LoadedNotebook, load_notebook
from det_nb.notebook_runner.outputs import (
    BUILT_IN,
    Sanitizer,
    load_sanitize_file,
    outputs_digest,
    reader_text,
)

__all__ = [
    "BUILT_IN", "MAX_NOTEBOOK_BYTES", "CellResult", "KernelRun", "LoadedNotebook",
    "NameFingerprint", "NotebookRun", "Sanitizer", "Seeding", "live_kernels", "load_notebook",
    "load_sanitize_file", "notebook_kernel", "outputs_digest", "reader_text",
    "refuse_notebook_target", "refuse_repeated_options", "reseed_notebook", "result_name",
    "run_notebook", "run_sync", "seeding_from", "validate_names",
]
