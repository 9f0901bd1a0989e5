"""Portable CPU kernels: pin every library that picks kernels by CPU to one x86-64 baseline.

Single-thread mode fixes the order of reductions, not which kernel runs them. NumPy's
OpenBLAS, TensorFlow's and torch's oneDNN, MKL, torch's ATen and XLA choose kernels for the
CPU they find, so an AVX-512 machine and an AVX2 one disagree bit for bit. Each library
reads its choice from an environment variable when it loads (oneDNN and XLA: at first
use); det_nb sets them before that (at ``%load_ext``, ``%det_seed``, ``det_nb.seed()`` and in
det_nb kernelspecs) to the x86-64-v3 baseline (AVX2 + FMA), which every x86-64 CPU since
about 2015 has. :func:`checks` reads back what each library actually runs.
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass
from functools import cache
from importlib.util import find_spec
from pathlib import Path
from types import ModuleType

from det_nb import threads
from det_nb.determinism import startup_environ
from det_nb.status import Check

BASELINE = "x86-64-v3 (AVX2 + FMA)"
#: CPU flags (/proc/cpuinfo names) that decide which kernels libraries pick.
KERNEL_FLAGS = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512vl",
                "avx512_vnni", "avx512_bf16", "amx_tile")
_BASELINE_FLAGS = ("avx2", "fma")
RESTART_FIX = ("restart the kernel and run %load_ext det_nb (or %det_seed) before importing "
               "{library}, or use a det_nb kernel (python -m det_nb kernel install)")


@dataclass(frozen=True)
class Pin:
    """One environment variable that a library reads when it loads."""

    variable: str
    value: str  # "" where it depends on the installed library (see pin_environment)


# NumPy warns about names outside its dispatch list, which changed in 2.4 (X86_V3 target,
# X86_V4 / AVX512_ICL / AVX512_SPR above it); names the CPU lacks are accepted.
_NUMPY_AVX512 = {"2.4": "X86_V4 AVX512_ICL AVX512_SPR",
                 "older": "AVX512F AVX512CD AVX512_KNL AVX512_KNM AVX512_SKX AVX512_CLX "
                          "AVX512_CNL AVX512_ICL AVX512_SPR"}


@cache
def _numpy_avx512_groups() -> str:
    """The AVX-512 dispatch groups of the installed NumPy, found without importing it.

    The version is read from the dist-info folder beside the package (importlib.metadata
    scans every distribution: too slow for ``%load_ext``).
    """
    spec = find_spec("numpy")
    if spec is not None and spec.origin is not None:
        for info in Path(spec.origin).parent.parent.glob("numpy-*.dist-info"):
            version = re.match(r"numpy-(\d+)\.(\d+)", info.name)
            if version:
                newer = (int(version[1]), int(version[2])) >= (2, 4)
                return _NUMPY_AVX512["2.4" if newer else "older"]
    return _NUMPY_AVX512["2.4"]


PINS: tuple[Pin, ...] = (
    Pin("OPENBLAS_CORETYPE", "Haswell"),
    Pin("NPY_DISABLE_CPU_FEATURES", ""),  # _numpy_avx512_groups()
    Pin("ONEDNN_MAX_CPU_ISA", "AVX2"),
    Pin("MKL_CBWR", "AVX2"),
    Pin("ATEN_CPU_CAPABILITY", "avx2"),
    Pin("XLA_FLAGS", "--xla_cpu_max_isa=AVX2"),
)
_MODULES = ("numpy", "tensorflow", "torch", "jax")

#: Pin variables named here (space-separated) were set at start to emulate another CPU's own
#: kernel choice (``verify --vary cpu``), not by the user: the portable pins override them.
EMULATED = "DET_NB_EMULATED_CPU"

_XLA_CAP = "--xla_cpu_max_isa="

# Whether the pins are in force (None: det_nb has not applied its setting yet).
_pinned: bool | None = None
# Per loaded library: whether the pins were in force when det_nb first saw it loaded.
_loaded_with: dict[str, bool] = {}
# Libraries that had already used their kernels (oneDNN, XLA: they read their pin at first
# use, not at load) while the pins were not in force: they keep what they chose.
_used_unpinned: set[str] = set()
# Variables det_nb set, with the value each had before (None: unset), to take them back.
_ours: dict[str, str | None] = {}
# Variables det_nb found set by the user and left alone at the latest apply.
_left: dict[str, str] = {}


def pin_environment() -> dict[str, str]:
    """The variables and values a kernel's environment needs for portable kernels."""
    return {pin.variable: pin.value or _numpy_avx512_groups() for pin in PINS}


def apply(portable: bool) -> None:
    """Set (or, with ``portable`` False, take back) the pins in ``os.environ``.

    Acts on what libraries read when they load; a library loaded already keeps its
    kernels, which :func:`checks` reports. A variable the user set (at start or since)
    is theirs: it is left as it is and the status names it; ``XLA_FLAGS`` keeps the
    user's flags and gains only the ISA cap. Taking the pins back restores only what
    det_nb changed.
    """
    global _pinned
    _note_loaded()
    if not _pinned:
        _used_unpinned.update(m for m in _MODULES if m in sys.modules and _kernels_chosen(m))
    _pinned = portable
    _left.clear()
    emulated = set(startup_environ().get(EMULATED, "").split())
    for variable, value in pin_environment().items():
        if portable:
            _pin(variable, value, variable in emulated)
        else:
            _unpin(variable)


def _pin(variable: str, value: str, emulated: bool) -> None:
    current = os.environ.get(variable)
    still_ours = current is not None and (
        value in current.split() if variable == "XLA_FLAGS" else current == value)
    if variable in _ours and not still_ours:
        del _ours[variable]  # the user changed it after det_nb set it: theirs now
    if variable == "XLA_FLAGS":
        flags = (current or "").split()
        if value in flags:
            return
        if any(flag.startswith(_XLA_CAP) for flag in flags):
            _left[variable] = current
            return
        _ours.setdefault(variable, current)
        os.environ[variable] = " ".join([*flags, value])
        return
    if current is not None and current != value and variable not in _ours and not emulated:
        _left[variable] = current
        return
    _ours.setdefault(variable, current)
    os.environ[variable] = value


def _unpin(variable: str) -> None:
    if variable not in _ours:
        return
    previous = _ours.pop(variable)
    if variable == "XLA_FLAGS":
        ours = pin_environment()[variable]
        kept = [flag for flag in os.environ.get(variable, "").split() if flag != ours]
        previous = " ".join(kept) if kept or previous is not None else None
    if previous is None:
        os.environ.pop(variable, None)
    else:
        os.environ[variable] = previous


def _note_loaded() -> None:
    """Note, for each library loaded since the last look, whether the pins were in force."""
    for module in _MODULES:
        if module in sys.modules and module not in _loaded_with:
            _loaded_with[module] = bool(_pinned)


def _kernels_chosen(module: str) -> bool:
    """Whether ``module`` has already chosen the kernels it reads a pin for at first use.

    TensorFlow: its runtime started (its first op); JAX: a backend started; torch: once
    loaded, oneDNN's first use cannot be read, so loaded counts as used. NumPy's choices
    are read back from the library itself.
    """
    if module == "tensorflow":
        context = sys.modules.get("tensorflow.python.eager.context")
        try:  # private API, guarded: an unreadable state counts as started
            return context.context()._context_handle is not None
        except Exception:
            return True
    if module == "jax":
        from det_nb.xla import backends_started

        return backends_started() is not False
    return module == "torch"


def snapshot() -> object:
    """The pins det_nb sets in ``os.environ`` and their bookkeeping, for :func:`restore`.

    This module's CPU-kernel pins and :mod:`det_nb.threads`' thread pins, taken together
    so an undo (:mod:`det_nb.state`) puts back both.
    """
    variables = {pin.variable: os.environ.get(pin.variable) for pin in PINS}
    return (_pinned, dict(_loaded_with), dict(_ours), dict(_left), variables,
            threads.snapshot())


def restore(saved: object) -> None:
    """Put back what :func:`snapshot` took: the pins in ``os.environ`` and their records."""
    global _pinned
    _note_loaded()
    _pinned, loaded_with, ours, left, variables, thread_pins = saved
    for record, kept in ((_ours, ours), (_left, left)):
        record.clear()
        record.update(kept)
    _loaded_with.update({m: w for m, w in loaded_with.items() if m in _loaded_with})
    for variable, value in variables.items():
        if value is None:
            os.environ.pop(variable, None)
        else:
            os.environ[variable] = value
    threads.restore(thread_pins)


# -- the CPU --------------------------------------------------------------------------


def cpu_flags() -> list[str]:
    """The kernel-deciding flags this CPU has (Linux /proc/cpuinfo; else empty)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("flags"):
                    present = set(line.split(":", 1)[1].split())
                    return [flag for flag in KERNEL_FLAGS if flag in present]
    except OSError:
        pass
    return []


def cpu_check(portable: bool | None) -> Check:
    """The CPU against the baseline, and whether kernels are pinned to it."""
    import platform

    machine = platform.machine().lower()
    if machine not in ("x86_64", "amd64"):
        return Check(
            "cpu kernels", "warn",
            f"{machine}: x86-64 and {machine} never agree bit for bit, so results are "
            f"reproducible only on other {machine} machines with the same library versions",
            "compare runs on machines of one architecture", caveat=True,
        )
    flags = cpu_flags()
    if flags and not all(flag in flags for flag in _BASELINE_FLAGS):
        missing = ", ".join(f for f in _BASELINE_FLAGS if f not in flags)
        return Check(
            "cpu kernels", "warn",
            f"this CPU is below the {BASELINE} baseline (lacks {missing}): libraries fall "
            "back to older kernels, whose floats differ from those of AVX2 machines",
            "run on an x86-64 CPU with AVX2 and FMA (about 2015 on)", caveat=True,
        )
    # The same words on every x86-64 CPU at or above the baseline: stored notebook outputs
    # show this row and must match on AVX2 and AVX-512 machines alike.
    if portable is None:
        return Check("cpu kernels", "off", "x86-64; not pinned yet", "%det_seed SEED")
    if not portable:
        return Check(
            "cpu kernels", "off",
            "x86-64; libraries pick native kernels, so floats can differ on other CPU "
            "generations", "%det_seed SEED --portable",
        )
    return Check("cpu kernels", "ok", f"x86-64; kernels pinned to the {BASELINE} baseline")


# -- reading back what each library runs ------------------------------------------------


def kernels_in_use() -> dict[str, dict[str, str]]:
    """Per loaded library, the kernel or ISA each of its parts runs, read back now."""
    found: dict[str, dict[str, str]] = {}
    if "numpy" in sys.modules:
        found["numpy"] = {"simd": _numpy_simd()}
        core = _openblas_core()
        if core is not None:  # None: NumPy on another BLAS (MKL, Accelerate), not pinned here
            found["numpy"] = {"openblas": core, **found["numpy"]}
    if "tensorflow" in sys.modules:
        found["tensorflow"] = {"onednn": _tf_onednn(), "xla": _xla_isa()}
    if "torch" in sys.modules:
        torch = sys.modules["torch"]
        found["torch"] = {"aten": torch.backends.cpu.get_cpu_capability(),
                          "mkl": _mkl_branch(torch), "onednn": _onednn_cap()}
    if "jax" in sys.modules:
        found["jax"] = {"xla": _xla_isa()}
    return found


def _openblas_core() -> str | None:
    """The core type of the OpenBLAS NumPy loaded, or None where NumPy uses no OpenBLAS."""
    from threadpoolctl import threadpool_info

    pools = [pool for pool in threadpool_info() if pool.get("internal_api") == "openblas"]
    # NumPy's wheels bundle their own OpenBLAS; prefer it over one another library loaded.
    pools.sort(key=lambda pool: "numpy" not in pool.get("filepath", ""))
    return (pools[0].get("architecture") or "unknown") if pools else None


def _numpy_simd() -> str:
    """NumPy's highest dispatch target that this process enabled."""
    try:
        from numpy._core import _multiarray_umath as umath
    except ImportError:  # NumPy 1.x
        from numpy.core import _multiarray_umath as umath
    enabled = [t for t in umath.__cpu_dispatch__ if umath.__cpu_features__.get(t)]
    return enabled[-1] if enabled else "baseline"


def _tf_onednn() -> str:
    from tensorflow.python.util import _pywrap_util_port

    if not _pywrap_util_port.IsMklEnabled():
        return "off (Eigen kernels)"
    return _onednn_cap()


def _onednn_cap() -> str:
    """oneDNN's ISA cap as C code in this process sees it (oneDNN reads it at first use)."""
    cap = _c_getenv("ONEDNN_MAX_CPU_ISA")
    return f"ISA cap {cap}" if cap else "native ISA"


def _xla_isa() -> str:
    flags = (_c_getenv("XLA_FLAGS") or "").split()
    caps = [flag.split("=", 1)[1] for flag in flags if flag.startswith("--xla_cpu_max_isa=")]
    return f"ISA cap {caps[-1]}" if caps else "native ISA"


# MKL's conditional-numerical-reproducibility branches (mkl_service.h).
_MKL_BRANCHES = {1: "native", 2: "AUTO", 3: "COMPATIBLE", 4: "SSE2", 6: "SSSE3",
                 7: "SSE4_1", 8: "SSE4_2", 9: "AVX", 10: "AVX2", 12: "AVX512",
                 14: "AVX512_E1"}


def _mkl_branch(torch: ModuleType) -> str:
    """The MKL branch torch's MKL runs (``mkl_cbwr_get``), or why it cannot be read."""
    import ctypes

    library = os.path.join(os.path.dirname(torch.__file__), "lib", "libtorch_cpu.so")
    try:
        get = ctypes.CDLL(library).mkl_serv_cbwr_get
    except (OSError, AttributeError):
        return "not readable"
    get.restype, get.argtypes = ctypes.c_int, [ctypes.c_int]
    branch = get(1)
    return _MKL_BRANCHES.get(branch, f"branch {branch}")


def _c_getenv(name: str) -> str | None:
    """A variable as C code in this process sees it (what the libraries read)."""
    import ctypes

    getenv = ctypes.CDLL(None).getenv
    getenv.restype, getenv.argtypes = ctypes.c_char_p, [ctypes.c_char_p]
    found = getenv(name.encode())
    return None if found is None else found.decode(errors="replace")


# What each part runs on the baseline, and the variable that pins it.
_BASELINE_KERNELS = {
    ("numpy", "openblas"): ({"Haswell", "Zen"}, "OPENBLAS_CORETYPE"),
    ("numpy", "simd"): ({"X86_V3", "AVX2", "FMA3", "baseline"}, "NPY_DISABLE_CPU_FEATURES"),
    ("tensorflow", "onednn"): ({"ISA cap AVX2", "off (Eigen kernels)"}, "ONEDNN_MAX_CPU_ISA"),
    ("tensorflow", "xla"): ({"ISA cap AVX2"}, "XLA_FLAGS"),
    ("torch", "aten"): ({"AVX2"}, "ATEN_CPU_CAPABILITY"),
    ("torch", "mkl"): ({"AVX2", "COMPATIBLE"}, "MKL_CBWR"),
    ("torch", "onednn"): ({"ISA cap AVX2"}, "ONEDNN_MAX_CPU_ISA"),
    ("jax", "xla"): ({"ISA cap AVX2"}, "XLA_FLAGS"),
}
# Parts read back from the variable the library reads at its first use (no getter exists).
_READ_AT_USE = {("tensorflow", "onednn"), ("tensorflow", "xla"), ("torch", "onednn"),
                ("jax", "xla")}
_LIBRARY_OF = {"numpy": "NumPy", "tensorflow": "TensorFlow", "torch": "PyTorch", "jax": "JAX"}


def record_fields() -> dict[str, object]:
    """What a run record keeps about the CPU: its kernel-deciding flags and kernels in use."""
    kernels = {f"{module} {part}": value for module, parts in kernels_in_use().items()
               for part, value in parts.items()}
    return {"cpu_flags": cpu_flags(), "cpu_kernels": kernels}


def checks() -> list[Check]:
    """The CPU row, then one row per loaded kernel-picking library, read back now."""
    _note_loaded()
    rows = [cpu_check(_pinned)]
    for module, parts in kernels_in_use().items():
        rows.append(_library_check(module, parts, bool(_pinned)))
    return rows


def _library_check(module: str, parts: dict[str, str], portable: bool) -> Check:
    name = f"{module} kernels"
    if module in _used_unpinned:  # the variable reads as pinned, but it was read before
        parts = {part: f"{value} (set after its first use)" if (module, part) in _READ_AT_USE
                 else value for part, value in parts.items()}
    shown = ", ".join(f"{part} {value}" for part, value in parts.items())
    off = [part for part, value in parts.items()
           if value not in _BASELINE_KERNELS[module, part][0]]
    if not portable:
        return Check(name, "off", f"{shown} (portable off)")
    if not off:
        return Check(name, "ok", f"{shown}: the baseline")
    return Check(name, "warn", f"{shown}: {', '.join(off)} not the baseline, "
                 f"{_why(module, off)}", _fix(module, off), caveat=True)


def _why(module: str, off: list[str]) -> str:
    variables = sorted({_BASELINE_KERNELS[module, part][1] for part in off})
    yours = [v for v in variables if v in _left]
    if yours:
        return "since " + ", ".join(f"{v}={_left[v]!r} is your setting, which det_nb leaves"
                                    for v in yours)
    if module in _used_unpinned and any((module, part) in _READ_AT_USE for part in off):
        return (f"too late: {_LIBRARY_OF[module]} had used its kernels before det_nb pinned "
                "them, and keeps what it chose")
    if not _loaded_with.get(module, True):
        return f"too late: {_LIBRARY_OF[module]} was loaded before det_nb pinned its kernels"
    if off == ["mkl"]:
        return "since MKL does not take the AVX2 branch on this CPU (it does on Intel CPUs)"
    return "though det_nb pinned it"


def _fix(module: str, off: list[str]) -> str:
    if off == ["mkl"]:
        return ("start the kernel with MKL_CBWR=COMPATIBLE (portable across CPU vendors, "
                "slower matmuls)")
    return RESTART_FIX.format(library=_LIBRARY_OF[module])
