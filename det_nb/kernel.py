"""A Jupyter kernel that starts deterministic: what only acts at process start, set.

``PYTHONHASHSEED`` and TensorFlow's thread and op-determinism variables are read once,
when the interpreter or TensorFlow starts, and cuBLAS reads its workspace setting when
CUDA starts; no magic can set them later. A kernelspec's ``env`` sets them before the
kernel's process exists, loads det_nb, and (given a seed) runs ``%det_seed`` before the
first user cell. ``DET_NB_KERNEL`` in that environment names the kernel, so the status
can say what fixed hash randomisation.
"""

from __future__ import annotations

import json
import os
import re
import sys
import tempfile
from dataclasses import dataclass
from typing import Any

from det_nb.determinism import (
    CUBLAS_DETERMINISTIC,
    CUBLAS_ENV,
    KERNEL_MARKER,
    MAX_THREADS,
    THREAD_ENV,
    validate_threads,
)
from det_nb.lineage import Lineage, validate_seed

DEFAULT_NAME = "det_nb"
_NAME = re.compile(r"[a-z0-9._-]+")


@dataclass(frozen=True)
class KernelOptions:
    """What a det_nb kernel fixes at start; validated on construction (ValueError)."""

    name: str = DEFAULT_NAME
    display_name: str | None = None
    seed: int | None = None
    trial: int | None = None
    scheme: str = "seedsequence"
    threads: int = 1
    deterministic_ops: bool = False

    def __post_init__(self) -> None:
        if not _NAME.fullmatch(self.name):
            raise ValueError(
                f"kernel name must be lower-case letters, digits, '.', '_' or '-', "
                f"got {self.name!r}"
            )
        if self.seed is None and self.trial is not None:
            raise ValueError("--trial needs --seed: a trial is counted within an experiment")
        if self.seed is not None:
            Lineage(validate_seed(self.seed, "seed"), self.trial, self.scheme)
        if validate_threads(self.threads) is None:  # "leave TF alone" has no variable
            raise ValueError(f"threads must be an integer in [1, {MAX_THREADS}]")

    def seed_line(self) -> str | None:
        """The ``%det_seed`` line the kernel runs before the first cell, if seeded."""
        if self.seed is None:
            return None
        line = Lineage(self.seed, self.trial, self.scheme).command()
        line += f" --threads {self.threads}"
        line += " --deterministic-ops" if self.deterministic_ops else ""
        return line + " --quiet"

    def spec(self) -> dict[str, Any]:
        """The kernel.json content."""
        # IPython's banner tip is drawn with the global random.choice at every
        # kernel_info request, which front ends send when they (re)connect: it would
        # move Python's random stream between %det_seed and the first cell.
        argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}",
                "--ext", "det_nb", "--InteractiveShell.enable_tip=False",
                # The kernel's settings are also the defaults of every later %det_seed.
                f"--DetMagics.threads={self.threads}",
                f"--DetMagics.deterministic_ops={self.deterministic_ops}",
                f"--DetMagics.scheme={self.scheme}"]
        line = self.seed_line()
        if line is not None:
            argv.append(f"--IPKernelApp.exec_lines={line}")
        env = {
            KERNEL_MARKER: self.name,
            "PYTHONHASHSEED": "0",
            **dict.fromkeys(THREAD_ENV, str(self.threads)),
            CUBLAS_ENV: CUBLAS_DETERMINISTIC,
        }
        if self.deterministic_ops:
            env["TF_DETERMINISTIC_OPS"] = "1"
        return {
            "argv": argv,
            "display_name": self.display_name or self.default_display_name(),
            "language": "python",
            "interrupt_mode": "signal",
            "env": env,
            "metadata": {"debugger": True, "det_nb": {
                "seed": self.seed, "trial": self.trial, "scheme": self.scheme,
                "threads": self.threads, "deterministic_ops": self.deterministic_ops,
            }},
        }

    def default_display_name(self) -> str:
        """``Python 3 (det_nb, seed 42, trial 3)``: what was fixed, in the launcher."""
        parts = ["det_nb"]
        if self.seed is not None:
            parts.append(f"seed {self.seed}")
        if self.trial is not None:
            parts.append(f"trial {self.trial}")
        return f"Python {sys.version_info.major} ({', '.join(parts)})"


def install(options: KernelOptions, *, user: bool = False, prefix: str | None = None) -> str:
    """Install the kernelspec (user, or under ``prefix``, else system-wide); return its path.

    An existing kernelspec of the same name is replaced.
    """
    from jupyter_client.kernelspec import KernelSpecManager

    with tempfile.TemporaryDirectory() as folder:
        with open(os.path.join(folder, "kernel.json"), "w", encoding="utf-8") as file:
            json.dump(options.spec(), file, indent=2)
        return KernelSpecManager().install_kernel_spec(
            folder, options.name, user=user, prefix=prefix
        )


def installed() -> dict[str, tuple[str, dict[str, Any]]]:
    """The det_nb kernelspecs Jupyter finds: name -> (folder, kernel.json)."""
    from jupyter_client.kernelspec import KernelSpecManager

    return {
        name: (found["resource_dir"], found["spec"])
        for name, found in sorted(KernelSpecManager().get_all_specs().items())
        if "det_nb" in (found["spec"].get("metadata") or {})
    }


def uninstall(name: str) -> str:
    """Remove the det_nb kernelspec ``name``; return its folder (ValueError if none)."""
    from jupyter_client.kernelspec import KernelSpecManager

    if name not in installed():
        raise ValueError(f"no det_nb kernel named {name!r} (see: python -m det_nb kernel list)")
    return KernelSpecManager().remove_kernel_spec(name)


def describe(spec: dict[str, Any]) -> str:
    """What a det_nb kernelspec fixes, in one line."""
    fixed = spec["metadata"]["det_nb"]
    parts = [] if fixed.get("seed") is None else [f"seed {fixed['seed']}"]
    if fixed.get("trial") is not None:
        parts.append(f"trial {fixed['trial']}")
    parts.append(f"threads {fixed.get('threads')}")
    if fixed.get("deterministic_ops"):
        parts.append("deterministic ops")
    return f"{spec.get('display_name', '')}: {', '.join(parts)}"

