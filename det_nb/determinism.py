"""Settings, op determinism and the environment checks that make floats reproducible.

Each function acts on a framework the user already imported (nothing here imports one
that is not loaded) and the checks are read from the runtime and the start-up environment.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from types import ModuleType
from typing import Literal

from det_nb import nondeterministic_ops
from det_nb.lineage import validate_integer  # the one integer check, shared with seeds
from det_nb.status import Check

KERNEL_MARKER = "DET_NB_KERNEL"  # set in the env of kernels `python -m det_nb kernel` installs
MAX_THREADS = 1024
CUBLAS_ENV = "CUBLAS_WORKSPACE_CONFIG"
CUBLAS_DETERMINISTIC = ":4096:8"
WARN = "warn"  # deterministic_ops's warn mode


@dataclass(frozen=True)
class Settings:
    """What the session applies besides seeds.

    ``threads``: threads of every pool that splits floats (1 = single-thread mode), or None
    to leave the pools alone. ``deterministic_ops``: TF op determinism, torch's
    deterministic algorithms and XLA's GPU determinism flag for JAX; ``"warn"`` is torch's
    warn mode, where an op without a deterministic kernel runs and is listed instead of
    raising (TF and XLA have no such mode: theirs stay strict). ``per_cell``: re-seed
    before every cell from (trial seed, cell text), so a cell's draws do not depend on
    execution order. ``portable``: pin the CPU kernels of NumPy, TensorFlow, torch and JAX
    to the x86-64-v3 baseline (:mod:`det_nb.cpu_kernels`), so floats agree across CPU
    generations.
    """

    threads: int | None = 1
    deterministic_ops: bool | Literal["warn"] = False
    per_cell: bool = False
    portable: bool = True

    def __post_init__(self) -> None:
        validate_threads(self.threads)
        validate_deterministic_ops(self.deterministic_ops)


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


def validate_deterministic_ops(value: object) -> bool | Literal["warn"]:
    """``value`` if it is True, False or ``"warn"``; ValueError otherwise (``1`` is refused)."""
    if isinstance(value, bool) or (isinstance(value, str) and value == WARN):
        return value
    raise ValueError(
        f"deterministic_ops must be True (ops without a deterministic kernel raise), "
        f"'warn' (they run and are listed) or False, got {value!r:.60}"
    )


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


def set_torch_determinism(torch: ModuleType, mode: bool | str) -> None:
    """Do what ``torch.use_deterministic_algorithms(mode, warn_only=mode == "warn")`` does,
    without importing triton.

    That function imports ``torch._inductor.config`` (and with it triton) to set inductor's
    ``deterministic``; triton and TensorFlow each bundle LLVM, and loading the second one
    aborts the process ("LLVM ERROR: inconsistency in registered CommandLine options").
    So nothing is set when the flags are already as wanted; the flags themselves are set
    through ``torch._C``; inductor's setting is set where inductor is loaded, and otherwise
    left to ``TORCHINDUCTOR_DETERMINISTIC``, which inductor reads when it loads. cuBLAS's
    workspace is set while CUDA is unused.
    """
    enabled, warn_only = bool(mode), mode == WARN
    if enabled and not torch.cuda.is_initialized():
        os.environ.setdefault(CUBLAS_ENV, CUBLAS_DETERMINISTIC)
    in_force = (torch.are_deterministic_algorithms_enabled(),
                torch.is_deterministic_algorithms_warn_only_enabled())
    if in_force == (enabled, warn_only):
        return
    torch._C._set_deterministic_algorithms(enabled, warn_only=warn_only)
    inductor = sys.modules.get("torch._inductor.config")
    if inductor is not None:
        inductor.deterministic = enabled
    elif enabled:
        os.environ[INDUCTOR_ENV] = "1"
    else:
        os.environ.pop(INDUCTOR_ENV, None)


def torch_determinism_check(torch: ModuleType, ran: dict[str, int], raised: list[str],
                            listing: bool) -> Check:
    """Whether torch uses deterministic algorithms, strict or in warn mode, and what ran.

    ``ran``: ops without a deterministic kernel that ran in warn mode, with their counts,
    since the kernel started or its latest hard ``%reset`` (values computed with them stay
    in the kernel whatever the mode is now); ``raised``: those that raised in strict mode
    since the latest seeding; ``listing``: whether det_nb is counting them (it is in its
    own warn mode).
    """
    name = "torch deterministic algorithms"
    enabled = torch.are_deterministic_algorithms_enabled()
    if enabled and torch.cuda.is_available() and os.environ.get(CUBLAS_ENV) not in (
            CUBLAS_DETERMINISTIC, ":16:8"):
        return Check(
            name, "warn",
            f"on, but {CUBLAS_ENV} was not set before CUDA started: cuBLAS calls will raise",
            f"restart the kernel with {CUBLAS_ENV}={CUBLAS_DETERMINISTIC} in its environment",
        )
    warn_only = enabled and torch.is_deterministic_algorithms_warn_only_enabled()
    if ran:
        mode = "on (warn mode)" if warn_only else "on (strict) now" if enabled else "off now"
        return Check(
            name, "warn",
            f"{mode}: ops without a deterministic kernel ran in warn mode in this kernel (since "
            "it started or its latest hard %reset), so values computed with them can differ "
            f"run to run: {nondeterministic_ops.describe(ran)}",
            f"{nondeterministic_ops.replacements(list(ran))}, then %reset -f (or restart the "
            "kernel) and run the cells again; or accept it (the run stays NOT reproducible)",
        )
    if not enabled:
        return Check(name, "off", "off: some CUDA kernels are non-deterministic",
                     "%det_seed SEED --deterministic-ops")
    if not warn_only:
        if raised:
            return Check(
                name, "warn",
                f"on (strict): no deterministic kernel for {', '.join(raised)}, which raised "
                "and stopped a cell: the run is incomplete",
                "%det_seed SEED --deterministic-ops=warn runs it and lists it (the run is then "
                f"NOT reproducible), or {nondeterministic_ops.replacements(raised)}",
            )
        return Check(name, "ok", "on (strict): an op without a deterministic kernel raises")
    if not listing:
        return Check(
            name, "warn",
            "on with warn_only set outside det_nb: ops without a deterministic kernel run "
            "and are not listed here",
            "%det_seed SEED --deterministic-ops=warn (lists them) or --deterministic-ops "
            "(they raise)",
        )
    return Check(name, "ok", "on (warn mode): ops without a deterministic kernel run and are "
                 "listed here; none ran since the kernel started or its latest hard %reset")


def cudnn_check(torch: ModuleType) -> Check:
    """cuDNN's ``benchmark`` and ``deterministic`` as they are, and what they mean now.

    With deterministic algorithms on, torch restricts cuDNN to deterministic convolution
    algorithms whatever ``cudnn.deterministic`` says; ``benchmark`` then still picks among
    them by timing, so the algorithm (and with it the floats) can change between runs.
    """
    cudnn = torch.backends.cudnn
    values = f"benchmark {cudnn.benchmark}, deterministic {cudnn.deterministic}"
    unpin = "torch.backends.cudnn.benchmark = False"
    if not torch.cuda.is_available():
        if cudnn.benchmark:
            return Check(
                "torch cudnn", "warn",
                f"{values}; no CUDA device here, but on a GPU benchmark picks convolution "
                "algorithms by timing, which can change the floats between runs",
                unpin, caveat=True,
            )
        return Check("torch cudnn", "ok", f"{values}; no CUDA device here: cuDNN runs nothing")
    if torch.are_deterministic_algorithms_enabled():
        if cudnn.benchmark:
            return Check(
                "torch cudnn", "warn",
                f"{values}: deterministic algorithms keep cuDNN to deterministic convolution "
                "algorithms, but benchmark picks among them by timing, so the algorithm and "
                "its floats can change between runs", unpin,
            )
        return Check(
            "torch cudnn", "ok",
            f"{values}: deterministic algorithms keep cuDNN to deterministic convolution "
            "algorithms (whatever cudnn.deterministic says), chosen without timing",
        )
    if cudnn.deterministic and not cudnn.benchmark:
        return Check("torch cudnn", "ok", f"{values}: cuDNN convolutions are deterministic "
                     "(other CUDA ops are not: deterministic ops are off)")
    return Check(
        "torch cudnn", "off",
        f"{values}: cuDNN may pick non-deterministic convolution algorithms"
        + (", by timing" if cudnn.benchmark else ""),
        "%det_seed SEED --deterministic-ops" + (f" and {unpin}" if cudnn.benchmark else ""),
    )


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


def gpu_check(gpus: list[str], deterministic_ops: bool | str,
              waiting: list[str] | None = None) -> Check:
    """GPUs that frameworks use, and whether their float results are made deterministic.

    ``waiting``: JAX GPU plugins installed while JAX's backend has not started, so JAX may
    still pick a GPU (None: look now).
    """
    if waiting is None:
        from det_nb import xla  # it builds on this module

        waiting = xla.waiting_gpu_plugins()
    mode = " (warn mode)" if deterministic_ops == WARN else ""
    if not gpus and not waiting:
        return Check("gpus", "ok", "none visible to the imported frameworks: CPU only")
    if not gpus:
        plugins = (f"none in use yet; {', '.join(waiting)} installed: JAX may run on a GPU "
                   "once its backend starts")
        if deterministic_ops:
            return Check("gpus", "ok", f"{plugins}, with deterministic ops on{mode}")
        return Check("gpus", "off", f"{plugins}, where its scatter-adds can give different "
                     "floats run to run", "%det_seed SEED --deterministic-ops before JAX's "
                     "first computation")
    listed = ", ".join(gpus)
    if deterministic_ops:
        return Check("gpus", "ok", f"{listed}; deterministic ops are on{mode}")
    return Check(
        "gpus", "warn",
        f"{listed}: GPU kernels (cuDNN, atomics in reductions) can give different floats "
        "run to run",
        "%det_seed SEED --deterministic-ops",
    )


def visible_gpus() -> list[str]:
    """GPUs of TensorFlow, torch and JAX, where imported (JAX's: once its backend started)."""
    gpus = []
    tf = sys.modules.get("tensorflow")
    if tf is not None:
        gpus += [f"tensorflow {d.name}" for d in tf.config.list_physical_devices("GPU")]
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        gpus += [f"torch cuda:{i}" for i in range(torch.cuda.device_count())]
    from det_nb import xla  # it builds on this module

    return gpus + xla.jax_gpus()


INDUCTOR_ENV = "TORCHINDUCTOR_DETERMINISTIC"  # torch._inductor.config reads it at import
