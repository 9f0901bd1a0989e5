"""A Jupyter kernel that starts deterministic: what only acts at process start, set.

``PYTHONHASHSEED``, the thread variables of every pool (OpenBLAS, OpenMP, MKL, TensorFlow,
JAX) and TensorFlow's op-determinism variable are read once, when the interpreter or the
library starts, and cuBLAS reads its workspace setting when CUDA starts; no magic can set
them later. A kernelspec's ``env`` sets them before the
kernel's process exists, loads det_nb, and (given a seed) runs ``%det_seed`` before the
first user cell. ``DET_NB_KERNEL`` in that environment names the kernel, so the status
can say what fixed hash randomisation.
"""

from __future__ import annotations

import json
import os
import re
import sys
from dataclasses import dataclass
from typing import Any

from det_nb import cpu_kernels, threads, xla
from det_nb.determinism import (
    CUBLAS_DETERMINISTIC,
    CUBLAS_ENV,
    KERNEL_MARKER,
    MAX_THREADS,
    WARN,
    validate_deterministic_ops,
    validate_flag,
)
from det_nb.files import read_limited, write_atomically
from det_nb.lineage import Lineage, validate_integer, validate_seed

DEFAULT_NAME = "det_nb"
_NAME = re.compile(r"[a-z0-9._-]*[a-z0-9][a-z0-9._-]*")
SPEC_FILE = "kernel.json"


def validate_name(name: str) -> str:
    """``name`` if it can name a det_nb kernelspec folder; ValueError otherwise.

    Jupyter allows letters, digits, ``.``, ``_`` and ``-``; at least one letter or digit
    is required here, so ``.`` and ``..`` (this folder, its parent) never name one.
    """
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ValueError(
            "kernel name must be lower-case letters, digits, '.', '_' or '-', with at least "
            f"one letter or digit, got {name!r}"
        )
    return name


def validate_kernel_threads(threads: object) -> int:
    """``threads`` as an int in [1, MAX_THREADS]: a kernel always pins every thread pool."""
    return validate_integer(threads, "threads", 1, MAX_THREADS)


@dataclass(frozen=True)
class KernelOptions:
    """What a det_nb kernel fixes at start; validated on construction (ValueError)."""

    name: str = DEFAULT_NAME
    display_name: str | None = None
    seed: int | None = None
    trial: int | None = None
    scheme: str = "seedsequence"
    threads: int = 1
    deterministic_ops: bool | str = False  # or "warn"
    portable: bool = True

    def __post_init__(self) -> None:
        validate_name(self.name)
        if self.seed is None and self.trial is not None:
            raise ValueError("--trial needs --seed: a trial is counted within an experiment")
        if self.seed is not None:  # as plain ints: kernel.json holds them
            lineage = Lineage(validate_seed(self.seed, "seed"), self.trial, self.scheme)
            object.__setattr__(self, "seed", lineage.experiment_seed)
            object.__setattr__(self, "trial", lineage.trial)
        object.__setattr__(self, "threads", validate_kernel_threads(self.threads))
        validate_deterministic_ops(self.deterministic_ops)
        validate_flag(self.portable, "portable")

    def seed_line(self) -> str | None:
        """The ``%det_seed`` line the kernel runs before the first cell, if seeded."""
        if self.seed is None:
            return None
        line = Lineage(self.seed, self.trial, self.scheme).command()
        line += f" --threads {self.threads}"
        line += {True: " --deterministic-ops", WARN: " --deterministic-ops=warn"}.get(
            self.deterministic_ops, "")
        line += "" if self.portable else " --no-portable"
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
                f"--DetMagics.scheme={self.scheme}",
                f"--DetMagics.portable={self.portable}"]
        line = self.seed_line()
        if line is not None:
            argv.append(f"--IPKernelApp.exec_lines={line}")
        env = {
            KERNEL_MARKER: self.name,
            "PYTHONHASHSEED": "0",
            **threads.pool_environment(self.threads),
            CUBLAS_ENV: CUBLAS_DETERMINISTIC,
        }
        if self.deterministic_ops:
            env["TF_DETERMINISTIC_OPS"] = "1"
        if self.portable:  # read when each library loads: only a kernel's env is early enough
            env.update(cpu_kernels.pin_environment())
        flag = xla.accepted_flag() if self.deterministic_ops else None
        if flag is not None:  # XLA's GPU determinism for JAX, read when its backend starts
            env[xla.VARIABLE] = xla.with_flag(env.get(xla.VARIABLE), flag)
        return {
            "argv": argv,
            "display_name": self.display_name or self.default_display_name(),
            "language": "python",
            "interrupt_mode": "signal",
            "env": env,
            "metadata": {"debugger": True, "det_nb": {
                "seed": self.seed, "trial": self.trial, "scheme": self.scheme,
                "threads": self.threads, "deterministic_ops": self.deterministic_ops,
                "portable": self.portable,
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


def kernels_folder(*, user: bool = False, prefix: str | None = None) -> str:
    """Where Jupyter keeps kernelspecs: the user's, ``prefix``'s, else the system's."""
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_core.paths import SYSTEM_JUPYTER_PATH

    if user and prefix is not None:
        raise ValueError("install for the user or under a prefix, not both")
    if user:
        return KernelSpecManager().user_kernel_dir
    if prefix is not None:
        if not prefix.strip():
            raise ValueError("prefix must name a folder, got ''")
        return os.path.join(os.path.abspath(prefix), "share", "jupyter", "kernels")
    return os.path.join(SYSTEM_JUPYTER_PATH[0], "kernels")


def install(options: KernelOptions, *, user: bool = False, prefix: str | None = None) -> str:
    """Install the kernelspec (user, or under ``prefix``, else system-wide); return its folder.

    Only a det_nb kernelspec of the same name is replaced, and only its kernel.json is
    written: any other folder of that name is refused (ValueError) and left as it is.
    kernel.json is readable by all (0644, or the mode of the one it replaces), so a
    ``--sys-prefix`` install serves every user.
    """
    folder = os.path.join(kernels_folder(user=user, prefix=prefix), options.name)
    if os.path.lexists(folder) and not (
        os.path.isdir(folder) and not os.path.islink(folder) and _is_det_nb_folder(folder)
    ):
        raise ValueError(
            f"{folder} exists and is not a det_nb kernelspec; det_nb replaces only its own: "
            "choose another --name"
        )
    created = not os.path.isdir(folder)
    os.makedirs(folder, exist_ok=True)
    try:
        write_atomically(os.path.join(folder, SPEC_FILE),
                         json.dumps(options.spec(), indent=2).encode(), SPEC_FILE)
    except ValueError:
        if created:
            os.rmdir(folder)
        raise
    return folder


def settings_of(spec: object) -> dict[str, Any] | None:
    """The det_nb settings a kernel.json records, or None if det_nb did not write it."""
    metadata = spec.get("metadata") if isinstance(spec, dict) else None
    fixed = metadata.get("det_nb") if isinstance(metadata, dict) else None
    return fixed if isinstance(fixed, dict) else None


def _is_det_nb_folder(folder: str) -> bool:
    """Whether ``folder`` holds a kernel.json that det_nb wrote."""
    try:  # through files.py: a kernel.json that is a FIFO must not hang the install
        data = read_limited(os.path.join(folder, SPEC_FILE), "kernelspec", 1_000_000)
        return settings_of(json.loads(data)) is not None
    except ValueError:  # unreadable, not a regular file, too big, or not JSON
        return False


def installed() -> dict[str, tuple[str, dict[str, Any]]]:
    """The det_nb kernelspecs Jupyter finds: name -> (folder, kernel.json)."""
    from jupyter_client.kernelspec import KernelSpecManager

    return {
        name: (found["resource_dir"], found["spec"])
        for name, found in sorted(KernelSpecManager().get_all_specs().items())
        if settings_of(found["spec"]) is not None
    }


def uninstall(name: str) -> str:
    """Remove the det_nb kernelspec ``name``; return its folder (ValueError if none).

    Removes the kernel.json det_nb wrote, then the folder if nothing else is in it.
    """
    found = installed().get(name)
    if found is None:
        raise ValueError(f"no det_nb kernel named {name!r} (see: python -m det_nb kernel list)")
    folder = found[0]
    if os.path.islink(folder):  # the link is what was installed, not what it points to
        os.remove(folder)
        return folder
    os.remove(os.path.join(folder, SPEC_FILE))
    if not os.listdir(folder):
        os.rmdir(folder)
    return folder


def describe(spec: dict[str, Any]) -> str:
    """What a det_nb kernelspec fixes, in one line."""
    fixed = settings_of(spec) or {}
    parts = [] if fixed.get("seed") is None else [f"seed {fixed['seed']}"]
    if fixed.get("trial") is not None:
        parts.append(f"trial {fixed['trial']}")
    parts.append(f"threads {fixed.get('threads')}")
    if fixed.get("deterministic_ops"):
        warn = " (warn mode)" if fixed["deterministic_ops"] == WARN else ""
        parts.append(f"deterministic ops{warn}")
    parts.append("portable CPU kernels" if fixed.get("portable") else "native CPU kernels")
    return ", ".join(parts)
