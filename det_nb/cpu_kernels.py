"""Portable CPU kernels: pin every library that picks kernels by CPU to one x86-64 baseline.

Single-thread mode fixes the order of reductions, not which kernel runs them. NumPy's
OpenBLAS, NumPy's own SIMD loops, TensorFlow's and torch's oneDNN, MKL, torch's ATen and
XLA choose kernels for the CPU they find, so an AVX-512 machine and an AVX2 one disagree
bit for bit. Each library reads its choice from an environment variable when it loads;
det_nb sets them before the load (at ``%load_ext``, ``%det_seed`` and in det_nb
kernelspecs) to the x86-64-v3 baseline (AVX2 + FMA), which every x86-64 CPU since about
2015 has. The status reads back what each library actually runs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

BASELINE = "x86-64-v3 (AVX2 + FMA)"


@dataclass(frozen=True)
class Pin:
    """One environment variable that a library reads when it loads."""

    variable: str
    value: str
    library: str  # shown in the status
    module: str  # the top-level module whose import loads it


# NumPy >= 2.4 dispatches to X86_V4 / AVX512_ICL / AVX512_SPR above its X86_V3 target and
# accepts names the CPU lacks; older names are listed for NumPy 2.0-2.3.
_NUMPY_AVX512 = ("X86_V4 AVX512F AVX512CD AVX512_KNL AVX512_KNM AVX512_SKX AVX512_CLX "
                 "AVX512_CNL AVX512_ICL AVX512_SPR")

PINS: tuple[Pin, ...] = (
    Pin("OPENBLAS_CORETYPE", "Haswell", "OpenBLAS", "numpy"),
    Pin("NPY_DISABLE_CPU_FEATURES", _NUMPY_AVX512, "NumPy SIMD", "numpy"),
    Pin("ONEDNN_MAX_CPU_ISA", "AVX2", "oneDNN", "tensorflow"),
    Pin("MKL_CBWR", "AVX2", "MKL", "torch"),
    Pin("ATEN_CPU_CAPABILITY", "avx2", "torch ATen", "torch"),
    Pin("XLA_FLAGS", "--xla_cpu_max_isa=AVX2", "XLA", "jax"),
)


def pin_environment() -> dict[str, str]:
    """The variables and values a kernel's environment needs for portable kernels."""
    return {pin.variable: pin.value for pin in PINS}


def apply(portable: bool) -> None:
    """Set (or, with ``portable`` False, take back) the pins in ``os.environ``.

    Acts on what libraries read when they load; a library loaded already keeps its
    kernels, which the status reports. A variable the process started with is the
    user's choice and is left as it is.
    """
    raise NotImplementedError  # filled in by the lead (issue 9)
