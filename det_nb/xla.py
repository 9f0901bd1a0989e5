"""XLA's GPU determinism flag for JAX, and JAX's backends read without starting them.

XLA reads ``XLA_FLAGS`` once, when JAX's backend starts (its first computation or device
query, not ``import jax``), and aborts the process on a flag it does not know. Every XLA in
the environment parses that variable: jaxlib's, a JAX GPU plugin's, and TensorFlow's (at
its first XLA compilation). So det_nb adds the first name it knows of XLA's determinism
flag that each of their shared libraries registers, found in the library's bytes without
loading it: a flag's name is a NUL-terminated string literal there, while a name XLA
dropped survives only as a reserved field name of its options, which is not. jaxlib 0.10.2
(measured) and 0.11.2 (DESIGN.md) accept both names; ``--xla_gpu_deterministic_ops``
comes first since it also covers autotuning ("run-to-run determinism"), where
``--xla_gpu_exclude_nondeterministic_ops`` only leaves out non-deterministic ops.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import mmap
import os
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from det_nb.determinism import WARN, startup_environ
from det_nb.status import Check

VARIABLE = "XLA_FLAGS"
#: XLA's determinism flags, preferred first.
FLAGS = ("xla_gpu_deterministic_ops", "xla_gpu_exclude_nondeterministic_ops")
#: Per package, the shared libraries that hold XLA's flag table (jaxlib >= 0.5 and before;
#: TensorFlow; JAX's PJRT GPU plugins under the jax_plugins namespace).
LIBRARIES = {
    "jaxlib": ("libjax_common.*", "xla_extension.*"),
    "tensorflow": ("libtensorflow_framework.*",),
    "jax_plugins": ("*/xla_*_plugin.*",),
}
#: JAX's GPU plugin packages (kernels, and the PJRT plugin JAX loads from jax_plugins).
GPU_PLUGINS = ("jax_cuda12_plugin", "jax_cuda13_plugin", "jax_rocm60_plugin",
               "jax_rocm7_plugin")
_GPU_PLATFORMS = ("cuda", "rocm", "gpu")
RESTART_FIX = ("restart the kernel and run %det_seed SEED --deterministic-ops before JAX's "
               "first computation, or use a det_nb kernel (python -m det_nb kernel install "
               "--deterministic-ops)")

# The flag det_nb added to XLA_FLAGS, while it is there.
_added: str | None = None
# The determinism flag on in XLA_FLAGS ("" for none) the last time det_nb looked while
# JAX's backend had not started (None: det_nb never looked before it started).
_on_before_start: str | None = None


# -- which flag the installed XLA libraries accept ------------------------------------


def xla_libraries() -> dict[str, list[Path]]:
    """Per installed package, its shared libraries with XLA's flag table (none imported)."""
    found: dict[str, list[Path]] = {}
    for package, patterns in LIBRARIES.items():
        folders = list(getattr(_spec(package), "submodule_search_locations", None) or [])
        paths = sorted({path for folder in folders for pattern in patterns
                        for path in Path(folder).glob(pattern) if path.is_file()})
        if paths:
            found[package] = paths
    return found


def _spec(name: str) -> importlib.machinery.ModuleSpec | None:
    """A top-level package's spec, found without importing it (None: not there)."""
    try:
        return importlib.util.find_spec(name)
    except (ImportError, ValueError):  # a module without __spec__ in sys.modules
        return None


def registers(library: Path, flag: str) -> bool:
    """Whether ``library`` registers the XLA flag ``flag`` (its NUL-terminated name)."""
    stat = library.stat()
    return _registers(str(library), stat.st_size, stat.st_mtime_ns, flag)


@cache
def _registers(path: str, size: int, mtime: int, flag: str) -> bool:
    """Cached per file version; the literal sits in read-only data, early in the file."""
    try:
        with open(path, "rb") as file, mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as m:
            return m.find(b"\0" + flag.encode() + b"\0") >= 0
    except (OSError, ValueError):  # unreadable, or empty (mmap refuses size 0)
        return False


def accepted_flag(libraries: dict[str, list[Path]] | None = None) -> str | None:
    """The first of :data:`FLAGS` that every XLA library here registers, or None.

    None also where jaxlib's library is not found (a layout det_nb does not know): then
    no name is safe to set.
    """
    libraries = xla_libraries() if libraries is None else libraries
    if "jaxlib" not in libraries:
        return None
    every = [path for paths in libraries.values() for path in paths]
    return next((flag for flag in FLAGS if all(registers(path, flag) for path in every)), None)


def setting(flags: str) -> tuple[str, bool] | None:
    """The determinism flag that ``flags`` sets last, and whether it turns it on."""
    found = None
    for word in flags.split():
        name, _, value = word.removeprefix("--").partition("=")
        if name in FLAGS:
            found = (name, value.lower() in ("", "true", "1"))
    return found


def with_flag(flags: str | None, flag: str) -> str:
    """``flags`` (another XLA_FLAGS value) with ``--flag=true`` added, unless it sets one."""
    words = (flags or "").split()
    if setting(" ".join(words)) is None:
        words.append(f"--{flag}=true")
    return " ".join(words)


# -- JAX's backends, read without starting them ---------------------------------------


def backends_started() -> bool | None:
    """Whether JAX's backends started (False: JAX not imported; None: cannot be read)."""
    bridge = sys.modules.get("jax._src.xla_bridge")
    if bridge is None:
        return False
    backends = getattr(bridge, "_backends", None)  # private: guarded
    return bool(backends) if isinstance(backends, dict) else None


def _started_backends() -> dict[str, object]:
    bridge = sys.modules.get("jax._src.xla_bridge")
    backends = getattr(bridge, "_backends", None)
    return dict(backends) if isinstance(backends, dict) else {}


def jax_gpus() -> list[str]:
    """JAX's GPU devices, from backends already started (``jax cuda:0``)."""
    gpus = []
    for platform, client in _started_backends().items():
        if platform in _GPU_PLATFORMS:
            try:
                gpus += [f"jax {platform}:{device.id}" for device in client.devices()]
            except Exception:  # a backend that failed half-way: no devices to name
                continue
    return gpus


def gpu_plugins() -> list[str]:
    """JAX GPU plugins installed here (found, not imported)."""
    found = [name for name in GPU_PLUGINS if _spec(name) is not None]
    for folder in getattr(_spec("jax_plugins"), "submodule_search_locations", None) or []:
        found += sorted(f"jax_plugins.{path.name}" for path in Path(folder).glob("xla_*")
                        if path.is_dir())
    return found


def waiting_gpu_plugins() -> list[str]:
    """JAX GPU plugins JAX may still start on: installed, JAX's backend not started, and
    ``JAX_PLATFORMS`` (if set) naming a GPU platform."""
    platforms = os.environ.get("JAX_PLATFORMS", "")
    if platforms and not any(gpu in platforms for gpu in _GPU_PLATFORMS):
        return []
    if backends_started() or _spec("jax") is None:
        return []
    return gpu_plugins()


# -- applying and reading back --------------------------------------------------------


def apply(enabled: bool) -> None:
    """Add (or take back) det_nb's determinism flag in ``XLA_FLAGS``.

    A determinism flag already there is left as it is (the user's, or det_nb's own);
    taking back removes only the flag det_nb added. Acts on a backend that starts later;
    :func:`check` says when it started before.
    """
    global _added
    _look()
    current = os.environ.get(VARIABLE)
    words = (current or "").split()
    if enabled:
        flag = accepted_flag() if setting(current or "") is None else None
        if flag is not None:
            os.environ[VARIABLE] = with_flag(current, flag)
            _added = f"--{flag}=true"
    elif _added is not None:
        kept = [word for word in words if word != _added]
        if kept:
            os.environ[VARIABLE] = " ".join(kept)
        else:
            os.environ.pop(VARIABLE, None)
        _added = None
    _look()


def _look() -> None:
    """Remember which flag is on while JAX's backend has not started."""
    global _on_before_start
    if backends_started() is False:
        _on_before_start = _flag_on(os.environ.get(VARIABLE, ""))


def _flag_on(flags: str) -> str:
    """The determinism flag ``flags`` turns on, or ""."""
    found = setting(flags)
    return found[0] if found is not None and found[1] else ""


@dataclass(frozen=True)
class Observed:
    """What the check reads: the flag now, JAX's backends, and the flag at their start."""

    flag: tuple[str, bool] | None  # the determinism flag XLA_FLAGS sets now, and its value
    started: bool | None  # JAX's backends started (None: cannot be read)
    platforms: tuple[str, ...]  # platforms of started backends
    on_at_start: str  # the determinism flag on in XLA_FLAGS when they started, or ""
    gpu_plugins: tuple[str, ...] = ()  # JAX GPU plugins it may still start on

    @property
    def gpu(self) -> bool:
        """Whether JAX runs, or may still run, on a GPU."""
        if self.started:
            return any(platform in _GPU_PLATFORMS for platform in self.platforms)
        return bool(self.gpu_plugins)


def observe() -> Observed:
    """Read the flag and JAX's backends now (starts nothing)."""
    _look()
    started = backends_started()
    at_start = _on_before_start
    if at_start is None:  # det_nb never looked before: what the process started with
        at_start = _flag_on(startup_environ().get(VARIABLE, ""))
    return Observed(setting(os.environ.get(VARIABLE, "")), started,
                    tuple(_started_backends()), at_start, tuple(waiting_gpu_plugins()))


def check(deterministic_ops: bool | str, seen: Observed) -> Check:
    """The "jax determinism" line: whether XLA's GPU kernels run deterministically.

    "Too late" is a defect of the run where JAX runs (or may still run) on a GPU, and a
    caveat (it matters on a GPU machine) where it runs on the CPU only.
    """
    name = "jax determinism"
    gpu = seen.gpu
    where = f" ({', '.join(seen.platforms)})" if seen.platforms else ""
    no_warn_mode = "; XLA has no warn mode" if deterministic_ops == WARN else ""
    if seen.started and seen.on_at_start:
        kept = "" if deterministic_ops else "; XLA keeps it until the kernel restarts"
        return Check(name, "ok", f"on: --{seen.on_at_start}=true was in XLA_FLAGS when JAX's "
                     f"backend started{where}{kept}{no_warn_mode}")
    if seen.flag is not None and not seen.flag[1]:
        state = "warn" if deterministic_ops else "off"
        return Check(name, state, f"your XLA_FLAGS sets --{seen.flag[0]}=false, which det_nb "
                     "leaves: XLA's GPU kernels (scatter-adds, segment_sum) can give different "
                     "floats run to run", f"remove it from XLA_FLAGS and {RESTART_FIX}",
                     caveat=not gpu)
    if not deterministic_ops:
        return Check(name, "off", "off: XLA's GPU kernels (scatter-adds, segment_sum) can give "
                     "different floats run to run (its CPU kernels are deterministic)",
                     "%det_seed SEED --deterministic-ops")
    if seen.flag is None:
        return Check(name, "warn", "on requested, but no XLA determinism flag that every "
                     f"installed XLA accepts was found ({' or '.join(FLAGS)}), so det_nb set "
                     "none", f"start the kernel with XLA_FLAGS=--{FLAGS[0]}=true if your "
                     "jaxlib accepts it", caveat=not gpu)
    token = f"--{seen.flag[0]}=true"
    if seen.started is False:
        return Check(name, "ok", f"{token} in XLA_FLAGS: XLA reads it when JAX's backend "
                     f"starts (its first computation){no_warn_mode}")
    if seen.started is None:
        return Check(name, "warn", f"{token} in XLA_FLAGS, but whether JAX's backend started "
                     "before it cannot be read in this JAX version", RESTART_FIX,
                     caveat=not gpu)
    return Check(name, "warn", f"too late: JAX's backend started{where} before {token} was "
                 "in XLA_FLAGS, and XLA reads them only then"
                 + ("" if gpu else "; it runs on the CPU here, whose kernels are "
                    "deterministic, so this matters on a GPU"), RESTART_FIX, caveat=not gpu)
