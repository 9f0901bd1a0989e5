"""Settings, op determinism and the environment checks that make floats reproducible.

Each function acts on a framework the user already imported (nothing here imports one
that is not loaded) and the checks are read from the runtime and the start-up environment.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from types import ModuleType

from det_nb.lineage import validate_integer  # the one integer check, shared with seeds
from det_nb.status import Check

KERNEL_MARKER = "DET_NB_KERNEL"  # set in the env of kernels `python -m det_nb kernel` installs
MAX_THREADS = 1024
CUBLAS_ENV = "CUBLAS_WORKSPACE_CONFIG"
CUBLAS_DETERMINISTIC = ":4096:8"


@dataclass(frozen=True)
class Settings:
    """What the session applies besides seeds.

    ``threads``: threads of every pool that splits floats (1 = single-thread mode), or None
    to leave the pools alone. ``deterministic_ops``: TF op determinism and torch's
    deterministic algorithms. ``per_cell``: re-seed before every cell from (trial seed,
    cell text), so a cell's draws do not depend on execution order. ``portable``: pin
    the CPU kernels of NumPy, TensorFlow, torch and JAX to the x86-64-v3 baseline
    (:mod:`det_nb.cpu_kernels`), so floats agree across CPU generations.
    """

    threads: int | None = 1
    deterministic_ops: bool = False
    per_cell: bool = False
    portable: bool = True

    def __post_init__(self) -> None:
        validate_threads(self.threads)


def validate_threads(threads: object, leave_alone: str = "None") -> int | None:
    """``threads`` as an int in [1, MAX_THREADS], or None; ValueError otherwise.

    Libraries accept any count (TF then fails on every op), so the bound is checked here.
    ``leave_alone`` is how the caller's user asks for None (``--no-single-thread`` in the
    magic), named in the message.
    """
    if threads is None:
        return None
    alternative = f" (or {leave_alone} to leave the libraries' thread pools alone)"
    return validate_integer(threads, "threads", 1, MAX_THREADS, alternative)


def validate_flag(value: object, name: str) -> bool:
    """``value`` if it is a bool; ValueError otherwise (``"no"`` must not mean True)."""
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be True or False, got {value!r}")
    return value


def startup_environ() -> dict[str, str]:
    """The environment this process started with (Linux: /proc), else the current one.

    What only acts at start (PYTHONHASHSEED, thread variables) must be judged by it:
    ``%env PYTHONHASHSEED=0`` in a running kernel fixes nothing.
    """
    try:
        with open("/proc/self/environ", "rb") as file:
            entries = file.read().split(b"\0")
    except OSError:
        return dict(os.environ)
    pairs = (entry.decode(errors="replace").partition("=") for entry in entries if entry)
    return {key: value for key, _, value in pairs}


def set_tf_op_determinism(tf: ModuleType, enabled: bool) -> None:
    """Turn TF op determinism on or off (works after the runtime started)."""
    from tensorflow.python.framework import config

    if enabled:
        tf.config.experimental.enable_op_determinism()
    elif config.is_op_determinism_enabled():
        config.disable_op_determinism()


def tf_op_determinism_check() -> Check:
    """Whether TF op determinism is on."""
    from tensorflow.python.framework import config

    if config.is_op_determinism_enabled():
        return Check(
            "tensorflow op determinism", "ok",
            "on: ops without a deterministic kernel raise; tf.data map/interleave run serially",
        )
    return Check(
        "tensorflow op determinism", "off",
        "off: GPU kernels may use non-deterministic atomics (CPU ops are deterministic "
        "with pinned threads)",
        "%det_seed SEED --deterministic-ops",
    )


def set_torch_determinism(torch: ModuleType, enabled: bool) -> None:
    """Do what ``torch.use_deterministic_algorithms(enabled)`` does, without importing triton.

    That function imports ``torch._inductor.config`` (and with it triton) to set inductor's
    ``deterministic``; triton and TensorFlow each bundle LLVM, and loading the second one
    aborts the process ("LLVM ERROR: inconsistency in registered CommandLine options").
    So nothing is set when the flag is already as wanted; the flag itself is set through
    ``torch._C``; inductor's setting is set where inductor is loaded, and otherwise left
    to ``TORCHINDUCTOR_DETERMINISTIC``, which inductor reads when it loads. cuBLAS's
    workspace is set while CUDA is unused.
    """
    if enabled and not torch.cuda.is_initialized():
        os.environ.setdefault(CUBLAS_ENV, CUBLAS_DETERMINISTIC)
    in_force = (torch.are_deterministic_algorithms_enabled(),
                torch.is_deterministic_algorithms_warn_only_enabled())
    if in_force == (enabled, False):
        return
    torch._C._set_deterministic_algorithms(enabled, warn_only=False)
    inductor = sys.modules.get("torch._inductor.config")
    if inductor is not None:
        inductor.deterministic = enabled
    elif enabled:
        os.environ[INDUCTOR_ENV] = "1"
    else:
        os.environ.pop(INDUCTOR_ENV, None)


def torch_determinism_check(torch: ModuleType) -> Check:
    """Whether torch uses deterministic algorithms, and cuBLAS is configured for them."""
    if not torch.are_deterministic_algorithms_enabled():
        return Check(
            "torch deterministic algorithms", "off",
            "off: some CUDA kernels are non-deterministic", "%det_seed SEED --deterministic-ops",
        )
    if torch.cuda.is_available() and os.environ.get(CUBLAS_ENV) not in (CUBLAS_DETERMINISTIC,
                                                                         ":16:8"):
        return Check(
            "torch deterministic algorithms", "warn",
            f"on, but {CUBLAS_ENV} was not set before CUDA started: cuBLAS calls will raise",
            f"restart the kernel with {CUBLAS_ENV}={CUBLAS_DETERMINISTIC} in its environment",
        )
    return Check("torch deterministic algorithms", "ok", "on")


def hash_seed_check() -> Check:
    """Python's str/bytes hash randomisation, fixed only at interpreter start."""
    environ = startup_environ()
    fixed = environ.get("PYTHONHASHSEED", "")
    kernel = environ.get(KERNEL_MARKER)
    if not sys.flags.hash_randomization:
        where = f"by the det_nb kernel {kernel!r}" if kernel else "at start"
        return Check("hash randomisation", "ok", f"off (PYTHONHASHSEED=0 {where})")
    if fixed.isascii() and fixed.isdigit():
        return Check("hash randomisation", "ok", f"fixed by PYTHONHASHSEED={fixed} at start")
    return Check(
        "hash randomisation", "warn",
        "on: hash() of str/bytes and set iteration order differ per process; this cannot "
        "be changed after the interpreter started",
        "restart the kernel with PYTHONHASHSEED=0 in its environment", caveat=True,
    )


def gpu_check(gpus: list[str], deterministic_ops: bool) -> Check:
    """GPUs that frameworks see, and whether their float results are made deterministic."""
    if not gpus:
        return Check("gpus", "ok", "none visible to the imported frameworks: CPU only")
    listed = ", ".join(gpus)
    if deterministic_ops:
        return Check("gpus", "ok", f"{listed}; deterministic ops are on")
    return Check(
        "gpus", "warn",
        f"{listed}: GPU kernels (cuDNN, atomics in reductions) can give different floats "
        "run to run",
        "%det_seed SEED --deterministic-ops",
    )


def visible_gpus() -> list[str]:
    """GPUs visible to TensorFlow and torch, where those are already imported."""
    gpus = []
    tf = sys.modules.get("tensorflow")
    if tf is not None:
        gpus += [f"tensorflow {d.name}" for d in tf.config.list_physical_devices("GPU")]
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        gpus += [f"torch cuda:{i}" for i in range(torch.cuda.device_count())]
    return gpus


INDUCTOR_ENV = "TORCHINDUCTOR_DETERMINISTIC"  # torch._inductor.config reads it at import
