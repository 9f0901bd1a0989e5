"""Thread pools: pin every pool that splits float reductions, and read each one back.

A reduction split over two threads adds its parts in another order than one split over
one, so the same seeded work gives other floats on machines with other core counts
(measured: NumPy's OpenBLAS ``solve``, ``eigvalsh``, ``dot``, ``svd`` and float32 matmul,
torch's ``sum`` and ``mean`` and JAX's ``jnp.sum`` over 4M floats change between one and
two threads). Every library sizes its pools from the CPUs the process may use, unless told.
det_nb tells each of them the same count (1 in single-thread mode, the default):

- native pools (OpenBLAS, MKL, BLIS, OpenMP, Accelerate): their variables, read when the
  library loads, and threadpoolctl's limits for a library already loaded;
- torch: ``torch.set_num_threads`` (intra-op) and ``set_num_interop_threads`` (inter-op, which
  torch refuses once it sized that pool: then the status says "too late");
- TensorFlow: its intra- and inter-op pools, until its runtime starts (the first op);
- JAX: XLA's CPU pool, sized from ``PJRT_NPROC`` when JAX's CPU backend starts (its first op).

det_nb's count wins over thread variables the process inherited (the machine's defaults);
``--no-single-thread`` takes back what det_nb set. A count set at run time is kept even above
the CPUs the process may use (results then match machines that pin the same count), while
OpenBLAS and torch cap a count read from their variables there. :func:`checks` reads back
what each pool runs now.
"""

from __future__ import annotations

import contextlib
import os
import sys
from types import ModuleType
from typing import Any

from det_nb.determinism import startup_environ
from det_nb.status import Check

#: Variables the native pools and JAX's CPU backend read when they load or start.
POOL_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                  "BLIS_NUM_THREADS", "VECLIB_MAXIMUM_THREADS", "PJRT_NPROC")
#: TensorFlow's pools, read when its runtime starts.
TF_VARIABLES = ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS")
VARIABLES = (*POOL_VARIABLES, *TF_VARIABLES)
JAX_VARIABLE = "PJRT_NPROC"
#: The variables each kind of native pool (threadpoolctl's ``internal_api``) follows, first
#: the one it reads first; torch's intra-op pool follows OpenMP's and MKL's.
_FOLLOWS = {"openblas": ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"),
            "mkl": ("MKL_NUM_THREADS", "OMP_NUM_THREADS"),
            "blis": ("BLIS_NUM_THREADS", "OMP_NUM_THREADS"),
            "openmp": ("OMP_NUM_THREADS",),
            "torch": ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
_TORCH = "torch intra-op"  # key of torch's intra-op pool in _seen
_CAPPED = ("openblas", "torch")  # cap a count read from a variable at the CPUs usable
#: XLA names the threads of its CPU pool so (TSL's "tf_" prefix and the pool's name).
_XLA_THREAD = "tf_XLAEigen"
LEAVE_FIX = "%det_seed SEED (single-thread, the default) or --threads N"
RESTART_FIX = (
    "restart the kernel and run %det_seed before the first TensorFlow op, or start the "
    "kernel with TF_NUM_INTRAOP_THREADS={n} TF_NUM_INTEROP_THREADS={n}"
)
REPIN_FIX = "run %det_seed again: it re-pins every loaded pool"

# What det_nb applied last: None before it applied anything, else (threads,) with threads
# None for "left alone".
_applied: tuple[int | None] | None = None
# Variables det_nb set: variable -> (value before, value det_nb set).
_ours: dict[str, tuple[str | None, str]] = {}
# Pools det_nb has seen: pool -> (threads when first seen, whether det_nb's variables were
# in force then, so it loaded under them).
_seen: dict[str, tuple[int, bool]] = {}
# PJRT_NPROC as JAX's CPU backend saw it, noted when det_nb first found it started.
_jax_started_with: tuple[str | None] | None = None


def usable_cpus() -> int:
    """How many CPUs this process may run on (its affinity), which pools size from."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def pool_environment(threads: int) -> dict[str, str]:
    """The variables a kernel's environment needs to start every pool with ``threads``."""
    return dict.fromkeys(VARIABLES, str(threads))


# -- applying ---------------------------------------------------------------------------


def apply(threads: int | None) -> None:
    """Pin every pool to ``threads`` (None: take back what det_nb set).

    Sets the variables that native libraries and JAX read when they load (over inherited
    ones) and limits the native pools already loaded. torch and TensorFlow are pinned by their
    sources (:func:`pin_torch`, :func:`pin_tf_threads`), JAX by ``PJRT_NPROC`` before its
    CPU backend starts.
    """
    global _applied
    controllers = _controllers()
    _note_loaded(controllers)
    if threads is None:
        _take_back_native(controllers)
        _take_back_variables()
    else:
        _set_variables(threads)
        _pin_native(controllers, threads)
    _applied = (threads,)


def pin_loaded(threads: int | None) -> None:
    """Limit the native pools loaded now (after an import) to ``threads``, if pinned."""
    controllers = _controllers()
    _note_loaded(controllers)
    if threads is not None:
        _pin_native(controllers, threads)


def _set_variables(threads: int) -> None:
    """Set the pools' variables; TensorFlow's pools are pinned through its API instead."""
    value = str(threads)
    for variable in POOL_VARIABLES:
        current = os.environ.get(variable)
        still_ours = variable in _ours and current == _ours[variable][1]
        # What was there before det_nb (the user's, inherited or set since): to give back.
        _ours[variable] = (_ours[variable][0] if still_ours else current, value)
        os.environ[variable] = value


def _take_back_variables() -> None:
    """Restore each variable det_nb set, unless the user changed it since."""
    for variable, (before, ours) in _ours.items():
        if os.environ.get(variable) != ours:
            continue
        if before is None:
            os.environ.pop(variable, None)
        else:
            os.environ[variable] = before
    _ours.clear()


def _in_force() -> bool:
    """Whether det_nb's variables are set now (a library loading now reads them)."""
    return bool(_ours) and all(os.environ.get(v) == ours for v, (_, ours) in _ours.items())


def _controllers() -> list[Any]:
    """threadpoolctl's controller of every native pool loaded (none before NumPy or torch)."""
    if "numpy" not in sys.modules and "torch" not in sys.modules:
        return []  # every native pool comes with one of them; keeps %load_ext fast
    from threadpoolctl import ThreadpoolController

    return list(ThreadpoolController().lib_controllers)


def _torch() -> ModuleType | None:
    """torch, once its import has finished (a hook may run while it is half-imported)."""
    torch = sys.modules.get("torch")
    return torch if hasattr(torch, "get_num_interop_threads") else None


def _note_loaded(controllers: list[Any] | None = None) -> None:
    """Note each pool not seen before: its threads, and whether det_nb's variables were set."""
    global _jax_started_with
    in_force = _in_force()
    for controller in _controllers() if controllers is None else controllers:
        _seen.setdefault(controller.filepath, (controller.num_threads, in_force))
    torch = _torch()
    if torch is not None:
        _seen.setdefault(_TORCH, (torch.get_num_threads(), in_force))
    if _jax_started_with is None and _jax_started():
        _jax_started_with = (_c_getenv(JAX_VARIABLE),)


def _pin_native(controllers: list[Any], threads: int) -> None:
    for controller in controllers:
        if controller.num_threads != threads:
            controller.set_num_threads(threads)


def _take_back_native(controllers: list[Any]) -> None:
    """Give each native pool det_nb changed the count it had, or would have had, without."""
    for controller in controllers:
        own = _own_count(controller.filepath, controller.internal_api)
        if own is not None and controller.num_threads != own:
            controller.set_num_threads(own)


def _own_count(pool: str, kind: str) -> int | None:
    """The threads ``pool`` runs without det_nb (None: unknown, never seen).

    For a pool loaded before det_nb's variables, the count det_nb first saw; for one loaded
    under them, what the library picks from the variables the process inherited (OpenBLAS
    and torch cap that at the CPUs the process may use), else those CPUs (measured for
    OpenBLAS, OpenMP and torch's intra-op pool).
    """
    if pool not in _seen:
        return None
    count, under_ours = _seen[pool]
    if not under_ours:
        return count
    inherited = startup_environ()
    for variable in _FOLLOWS.get(kind, ("OMP_NUM_THREADS",)):
        value = inherited.get(variable, "")
        if value.isascii() and value.isdigit() and int(value) > 0:
            return min(int(value), usable_cpus()) if kind in _CAPPED else int(value)
    return usable_cpus()


def pin_torch(torch: ModuleType, threads: int | None) -> None:
    """Pin torch's intra- and inter-op pools to ``threads`` (None: give back intra-op).

    torch refuses a new inter-op size once it sized that pool (its first parallel work,
    or an earlier call): :func:`torch_check` reports that with the fix.
    """
    _note_loaded()
    if threads is None:
        own = _own_count(_TORCH, "torch")
        if own is not None and torch.get_num_threads() != own:
            torch.set_num_threads(own)
        return
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    if torch.get_num_interop_threads() != threads:
        with contextlib.suppress(RuntimeError):  # too late: torch_check reads what is in force
            torch.set_num_interop_threads(threads)


# -- TensorFlow ---------------------------------------------------------------------------


def tf_thread_counts(tf: ModuleType) -> tuple[int, int]:
    """(intra, inter) op threads in force; 0 means TF's default, one per core.

    Counts set through the environment at start are in force though the getters say 0.
    """
    threading = tf.config.threading
    counts = [threading.get_intra_op_parallelism_threads(),
              threading.get_inter_op_parallelism_threads()]
    environ = startup_environ()
    for i, variable in enumerate(TF_VARIABLES):
        value = environ.get(variable, "")
        if counts[i] == 0 and value.isascii() and value.isdigit():
            counts[i] = int(value)
    return counts[0], counts[1]


def pin_tf_threads(tf: ModuleType, threads: int) -> None:
    """Pin intra- and inter-op threads to ``threads``.

    After TF's runtime has started a different count cannot be set: TF raises, and
    :func:`tf_threads_check` reports it with the fix instead.
    """
    if tf_thread_counts(tf) == (threads, threads):
        return
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError:
        pass  # too late: the check reads the counts actually in force


def tf_threads_check(tf: ModuleType, threads: int | None) -> Check:
    """Whether TF runs with ``threads`` intra- and inter-op threads (None: left alone)."""
    intra, inter = tf_thread_counts(tf)
    if threads is None:
        return Check(
            "tensorflow threads", "off",
            f"left alone (intra {_describe(intra)}, inter {_describe(inter)}); float "
            "results can differ between machines with different core counts", LEAVE_FIX,
        )
    if (intra, inter) == (threads, threads):
        return Check("tensorflow threads", "ok", f"{_mode(threads)} (intra {intra}, inter {inter})")
    return Check(
        "tensorflow threads", "warn",
        f"could not pin to {threads}: TF's runtime started before %det_seed with intra "
        f"{_describe(intra)}, inter {_describe(inter)}, and cannot change them now",
        RESTART_FIX.format(n=threads),
    )


def _describe(count: int) -> str:
    return f"{count}" if count else "default (one per core)"


# -- reading back -------------------------------------------------------------------------


def _mode(threads: int) -> str:
    return "single-thread" if threads == 1 else f"pinned to {threads} threads"


def _plural(count: int) -> str:
    return f"{count} thread" if count == 1 else f"{count} threads"


def checks() -> list[Check]:
    """The "threads" row, then the native pools' and JAX's rows where those are loaded.

    torch's and TensorFlow's rows come with their sources (:func:`torch_check`,
    :func:`tf_threads_check`).
    """
    _note_loaded()
    rows = [setting_check()]
    if "numpy" in sys.modules:
        rows.append(native_check())
    if "jax" in sys.modules:
        rows.append(jax_check())
    return rows


def setting_check() -> Check:
    """What det_nb pins, and whether the count exceeds the CPUs this process may use."""
    if _applied is None:
        return Check("threads", "off", "not pinned yet", "%det_seed SEED")
    threads = _applied[0]
    cpus = usable_cpus()
    if threads is None:
        return Check(
            "threads", "off",
            "left alone: each library sizes its pools from the CPUs it may use, so floats "
            "can differ between machines with other core counts", LEAVE_FIX,
        )
    pools = "OpenBLAS/MKL/BLIS/OpenMP, torch, TensorFlow and JAX pools"
    if threads > cpus:
        return Check(
            "threads", "warn",
            f"pinned to {threads} threads, but this process may use only {cpus} "
            f"CPU{'s' * (cpus != 1)}: "
            f"det_nb's pools run {threads} threads on them (slow: OpenBLAS's threads wait "
            f"for each other), and OpenBLAS or torch loaded in another process from the "
            f"variables caps at {cpus}, so its floats match only machines with at least "
            f"{threads} cores",
            f"--threads {cpus} or fewer (1 gives the same floats on every machine)", caveat=True,
        )
    if threads == 1:
        return Check("threads", "ok", f"single-thread: the {pools} run 1 thread each")
    return Check("threads", "ok", f"pinned to {threads} threads in the {pools}: floats match "
                 f"machines that pin {threads}")


def _owner(path: str) -> str:
    """The package that ships a library (``numpy`` for ``.../numpy.libs/...``), or system."""
    parts = path.replace("\\", "/").split("/")
    for marker in ("site-packages", "dist-packages"):
        if marker in parts and parts.index(marker) + 1 < len(parts):
            return parts[parts.index(marker) + 1].removesuffix(".libs")
    return "system"


def _label(controller: Any) -> str:
    """``openblas Haswell`` (kernel included) or the library's name, and its package."""
    if controller.internal_api == "openblas":
        name = f"openblas {getattr(controller, 'architecture', None) or 'unknown kernel'}"
    else:
        name = controller.prefix
    owner = _owner(controller.filepath)
    return name if owner == "numpy" else f"{name} ({owner})"


def native_pools() -> list[tuple[str, int]]:
    """(label, threads) of each native pool loaded, except torch's own (torch's row).

    NumPy's own first, then the others by label: the order libraries were loaded in
    varies, and the status line must not.
    """
    pools = [(_label(c), c.num_threads) for c in _controllers()
             if _owner(c.filepath) != "torch"]
    return sorted(pools, key=lambda pool: (pool[0].endswith(")"), pool[0]))


def native_check() -> Check:
    """NumPy's BLAS and the other native pools: library, kernel and threads, read back."""
    pools = native_pools()
    shown = ", ".join(f"{label} {_plural(count)}" for label, count in pools) or (
        "no BLAS or OpenMP pool found")
    threads = None if _applied is None else _applied[0]
    if threads is None:
        return Check("numpy threads", "off", f"left alone: {shown}", LEAVE_FIX)
    other = [(label, count) for label, count in pools if count != threads]
    if not other:
        return Check("numpy threads", "ok", f"{_mode(threads)}: {shown}")
    cpus = usable_cpus()
    why = (f"loaded from the variables, capped at the CPUs this process may use ({cpus})"
           if all(count == cpus < threads for _, count in other)
           else "changed since, by threadpoolctl or the library's own call")
    return Check(
        "numpy threads", "warn",
        f"{shown}: {', '.join(label for label, _ in other)} not at the {threads} det_nb "
        f"pinned ({why})", REPIN_FIX, caveat=True,
    )


def torch_check(torch: ModuleType, threads: int | None) -> Check:
    """torch's intra- and inter-op pools, read back, against ``threads`` (None: left alone)."""
    intra, inter = torch.get_num_threads(), torch.get_num_interop_threads()
    counts = f"intra-op {intra}, inter-op {inter}"
    if threads is None:
        return Check("torch threads", "off", f"left alone ({counts})", LEAVE_FIX)
    if intra != threads:
        return Check("torch threads", "warn",
                     f"{counts}: intra-op not at the {threads} det_nb pinned (changed since, by "
                     "torch.set_num_threads)", REPIN_FIX, caveat=True)
    if inter != threads:
        return Check(
            "torch threads", "warn",
            f"{counts}: too late for the inter-op pool, which torch sized before det_nb "
            f"pinned it (set_num_interop_threads or its first parallel work) and cannot "
            "resize now", "restart the kernel and run %det_seed before torch's first "
            "parallel work, or use a det_nb kernel (python -m det_nb kernel install)",
            caveat=True,
        )
    return Check("torch threads", "ok", f"{_mode(threads)} ({counts})")


def _jax_started() -> bool:
    """Whether JAX has started a backend (its pools are sized then), read without JAX's API."""
    bridge = sys.modules.get("jax._src.xla_bridge")
    return bool(getattr(bridge, "_backends", None))


def xla_cpu_pool_threads() -> int | None:
    """Threads in XLA's CPU pool, counted by name (Linux); None where they cannot be read."""
    try:
        tasks = os.listdir("/proc/self/task")
    except OSError:
        return None
    count = 0
    for task in tasks:
        try:
            with open(f"/proc/self/task/{task}/comm", encoding="utf-8") as comm:
                count += comm.read().strip() == _XLA_THREAD
        except OSError:
            continue  # a thread that ended meanwhile
    return count or None


def jax_check() -> Check:
    """XLA's CPU pool for JAX: its size once the backend started, else the size it will get."""
    threads = None if _applied is None else _applied[0]
    started = _jax_started()
    count = xla_cpu_pool_threads() if started else None
    if count is None and started and _jax_started_with is not None:
        value = _jax_started_with[0] or ""
        count = int(value) if value.isascii() and value.isdigit() else None
    pool = "XLA's CPU pool"
    if threads is None:
        size = "not started" if not started else (_plural(count) if count else "size unknown")
        return Check("jax threads", "off", f"left alone ({pool}: {size})", LEAVE_FIX)
    if not started:
        value = _c_getenv(JAX_VARIABLE)
        if value == str(threads):
            return Check("jax threads", "ok", f"pending: {pool} starts at JAX's first op, with "
                         f"{JAX_VARIABLE}={threads}")
        return Check("jax threads", "warn",
                     f"{pool} will start with {JAX_VARIABLE}={value!r}, not the {threads} det_nb "
                     "pinned (changed since)", "run %det_seed again before JAX's first op",
                     caveat=True)
    if count == threads:
        return Check("jax threads", "ok", f"{_mode(threads)} ({pool}: {_plural(count)})")
    found = _plural(count) if count else "a size det_nb cannot read here"
    return Check(
        "jax threads", "warn",
        f"too late: JAX's CPU backend started before det_nb pinned it, with {found} in "
        f"{pool}, which cannot change now",
        f"restart the kernel and run %det_seed (or %load_ext det_nb) before JAX's first op, "
        f"or start the kernel with {JAX_VARIABLE}={threads}", caveat=True,
    )


def _c_getenv(name: str) -> str | None:
    """A variable as C code in this process sees it (what the libraries read)."""
    import ctypes

    getenv = ctypes.CDLL(None).getenv
    getenv.restype, getenv.argtypes = ctypes.c_char_p, [ctypes.c_char_p]
    found = getenv(name.encode())
    return None if found is None else found.decode(errors="replace")


def record_fields() -> dict[str, object]:
    """What a run record keeps about threads: usable CPUs and each loaded pool's size."""
    pools: dict[str, int] = {}
    for controller in _controllers():
        pools[f"{controller.internal_api} ({_owner(controller.filepath)})"] = \
            controller.num_threads
    torch = _torch()
    if torch is not None:
        pools["torch intra-op"] = torch.get_num_threads()
        pools["torch inter-op"] = torch.get_num_interop_threads()
    tf = sys.modules.get("tensorflow")
    if tf is not None and hasattr(tf, "config"):
        pools["tensorflow intra-op"], pools["tensorflow inter-op"] = tf_thread_counts(tf)
    if "jax" in sys.modules and _jax_started():
        count = xla_cpu_pool_threads()
        if count is not None:
            pools["jax xla cpu"] = count
    return {"cpus_usable": usable_cpus(), "thread_pools": pools}


# -- undo ---------------------------------------------------------------------------------


def snapshot() -> object:
    """The pins and their bookkeeping, and each native pool's size, for :func:`restore`."""
    variables = {variable: os.environ.get(variable) for variable in POOL_VARIABLES}
    sizes = {c.filepath: c.num_threads for c in _controllers()}
    return _applied, dict(_ours), variables, sizes


def restore(saved: object) -> None:
    """Put back what :func:`snapshot` took (torch and TF are re-pinned by their sources)."""
    global _applied
    _note_loaded()
    _applied, ours, variables, sizes = saved
    _ours.clear()
    _ours.update(ours)
    for variable, value in variables.items():
        if value is None:
            os.environ.pop(variable, None)
        else:
            os.environ[variable] = value
    for controller in _controllers():
        size = sizes.get(controller.filepath)
        if size is not None and controller.num_threads != size:
            controller.set_num_threads(size)
