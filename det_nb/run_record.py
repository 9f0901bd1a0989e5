"""The run record: one JSON file with what it takes to replay a run and to judge the replay.

It holds the lineage, the settings det_nb applied with the status of every check, and the
environment that can change results: versions, CPU, platform, GPUs, the environment
variables read at start and hash randomisation. Loading is strict (size, encoding, JSON,
version, every field's type and the lineage's arithmetic), so a bad file is refused whole
with one line saying why; files are written atomically (:mod:`det_nb.files`), so a crash
never leaves half a record behind, and :func:`seed_and_save` seeds and writes all or
nothing. Text read from a record is escaped before it is shown. Frameworks are never
imported here: versions come from modules already imported or from the installed
packages' metadata.
"""

from __future__ import annotations

import json
import os
import platform
import sys
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from det_nb import cpu_kernels, determinism, entropy_audit, nondeterministic_ops, state, threads
from det_nb.cluster import TRIAL_SEED_ENV, cluster_trial_seed
from det_nb.determinism import Settings
from det_nb.files import (
    MapOf,
    check_fields,
    json_type,
    parse_json,
    printable,
    read_limited,
    shown,
    writable_target,
    write_atomically,
)
from det_nb.lineage import Lineage
from det_nb.session import NOT_SEEDED, Session
from det_nb.status import Check

#: The record format this det_nb writes. Versions 1 (before CPU kernels were recorded)
#: and 2 (before each check said whether it is a caveat, thread pools, ops without a
#: deterministic kernel and the entropy audit's records were recorded) are read too.
VERSION = 3
READABLE_VERSIONS = (1, 2, 3)
#: Packages whose version can change results (det_nb's own is recorded too).
PACKAGES = ("numpy", "tensorflow", "keras", "torch", "jax", "jaxlib")
#: Environment variables that act at start: recorded when set.
VARIABLES = (
    "PYTHONHASHSEED", "CUBLAS_WORKSPACE_CONFIG", "CUDA_VISIBLE_DEVICES",
    "TF_DETERMINISTIC_OPS",
    "TF_CUDNN_DETERMINISTIC", "TF_ENABLE_ONEDNN_OPTS", "TF_XLA_FLAGS", "TF_USE_LEGACY_KERAS",
    "TORCHINDUCTOR_DETERMINISTIC", *threads.VARIABLES, cpu_kernels.EMULATED,
    *(pin.variable for pin in cpu_kernels.PINS),
)
#: Only set logging (older records hold them): a difference in them changes no result.
LOGGING_VARIABLES = ("TF_CPP_MIN_LOG_LEVEL", "TF_CPP_MAX_VLOG_LEVEL", "TF_CPP_VMODULE")


@dataclass(frozen=True)
class Record:
    """A loaded, validated record: what :func:`replay` applies and compares."""

    lineage: Lineage
    settings: Settings
    checks: tuple[Check, ...]
    environment: dict[str, Any]
    #: The entropy audit's records (det_nb.entropy_audit.records()); none before version 3.
    unseeded_randomness: tuple[dict[str, Any], ...] = ()


# -- building and writing -------------------------------------------------------------


def build(session: Session) -> dict[str, Any]:
    """The record of ``session`` as a JSON-ready dict (ValueError before seeding)."""
    lineage = session.lineage
    if lineage is None:
        raise ValueError(NOT_SEEDED)
    settings = session.settings
    return {
        "version": VERSION,
        "lineage": {
            "experiment_seed": lineage.experiment_seed,
            "experiment_seed_origin": lineage.experiment_seed_origin,
            "trial": lineage.trial,
            "scheme": lineage.scheme,
            "trial_seed": lineage.trial_seed,
        },
        "settings": {
            "threads": settings.threads,
            "deterministic_ops": settings.deterministic_ops,
            "per_cell": settings.per_cell,
            "portable": settings.portable,
        },
        "status": [
            {"name": c.name, "state": c.state, "detail": c.detail, "fix": c.fix,
             "caveat": c.caveat}
            for c in session.status().checks
        ],
        "unseeded_randomness": entropy_audit.records(),
        "environment": environment(),
        # torch's ops without a deterministic kernel: ran (warn mode) or raised (strict)
        "nondeterministic_ops": nondeterministic_ops.record(),
    }


def environment() -> dict[str, Any]:
    """What in this process can change results, read now (imports no framework)."""
    return {
        "python": f"{platform.python_version()} ({platform.python_implementation()})",
        "platform": platform.platform(),
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "packages": {name: _version(name) for name in ("det_nb", *PACKAGES)},
        "gpus": determinism.visible_gpus(),
        "variables": {
            name: value for name, value in sorted(os.environ.items())
            if name in VARIABLES
        },
        "hash_randomization": bool(sys.flags.hash_randomization),
        **cpu_kernels.record_fields(),  # "cpu_flags" and "cpu_kernels"
        **threads.record_fields(),  # "cpus_usable" and "thread_pools"
    }


def _version(name: str) -> str | None:
    """The version of an imported module, else of the installed package, else None."""
    module = sys.modules.get(name)
    if module is not None and isinstance(getattr(module, "__version__", None), str):
        return module.__version__
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _cpu_model() -> str:
    """The CPU's model name (float results can differ between instruction sets)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def save(session: Session, path: str | os.PathLike[str]) -> Path:
    """Write ``session``'s record to ``path`` as JSON, atomically; return the path."""
    text = json.dumps(build(session), indent=2) + "\n"
    return write_atomically(path, text.encode("utf-8"), "run record")


def seed_and_save(
    session: Session, path: str | os.PathLike[str], apply: Callable[[], Lineage]
) -> Lineage:
    """Seed with ``apply()`` and write the record to ``path``: both, or neither.

    The path is checked first; then the session and every stream are snapshotted, and
    when writing fails (a full disk, say) they are put back before the ValueError (one
    line) is raised, so the seed in force is the one before the call.
    """
    writable_target(path, "run record")
    before = state.snapshot(session)
    try:
        lineage = apply()
        save(session, path)
    except BaseException as error:
        failure = str(error) if isinstance(error, ValueError) else (
            f"cannot write run record {shown(path)}: {type(error).__name__}: "
            f"{printable(str(error))}"
        )
        try:
            before.restore()
        except ValueError as undo:
            raise ValueError(f"{failure}; {undo}") from None
        if not isinstance(error, Exception):  # KeyboardInterrupt: undone, and passed on
            raise
        raise ValueError(failure) from None
    return lineage


# -- reading and validating -----------------------------------------------------------


def load(path: str | os.PathLike[str]) -> Record:
    """Read and strictly validate a record; ValueError with one line on any problem."""
    raw = read_limited(path, "run record")
    where = f"run record {shown(path)}"
    data = parse_json(raw, where)
    if not isinstance(data, dict):
        raise ValueError(f"{where} holds a JSON {json_type(data)}, not a det_nb record object")
    if "version" not in data:
        raise ValueError(f"{where} has no version field: not a det_nb record")
    version = data["version"]
    if type(version) is not int or version not in READABLE_VERSIONS:
        readable = ", ".join(map(str, READABLE_VERSIONS[:-1])) + f" and {READABLE_VERSIONS[-1]}"
        raise ValueError(f"{where} has version {version!r:.60}; this det_nb reads versions "
                         f"{readable}")
    try:
        check_fields(data, _SCHEMAS[version], "")
        return _record(data)
    except ValueError as error:
        raise ValueError(f"{where}: {error}") from None


_SCHEMA_V1: dict[str, Any] = {
    "version": int,
    "lineage": {
        "experiment_seed": int, "experiment_seed_origin": str, "trial": (int, None),
        "scheme": str, "trial_seed": int,
    },
    "settings": {"threads": (int, None), "deterministic_ops": bool, "per_cell": bool},
    "status": [{"name": str, "state": str, "detail": str, "fix": str}],
    "environment": {
        "python": str, "platform": str, "cpu": str, "cpu_count": (int, None),
        "packages": MapOf((str, None)), "gpus": [str], "variables": MapOf(str),
        "hash_randomization": bool,
    },
}
_SCHEMA_V2: dict[str, Any] = {
    **_SCHEMA_V1,
    "settings": {**_SCHEMA_V1["settings"], "portable": bool},
    "environment": {
        **_SCHEMA_V1["environment"], "cpu_flags": [str], "cpu_kernels": MapOf(str),
    },
}
#: One entropy audit record (det_nb.entropy_audit.records()).
_AUDIT_RECORD = {
    "cell": (int, None), "file": (str, None), "line": int, "text": str, "call": str,
    "entry": str, "kind": str, "fix": str, "count": int, "run_by": (int, None),
}
_SCHEMA_V3: dict[str, Any] = {
    **_SCHEMA_V2,
    "status": [{**_SCHEMA_V1["status"][0], "caveat": bool}],
    "environment": {
        **_SCHEMA_V2["environment"], "cpus_usable": int, "thread_pools": MapOf(int),
    },
    # deterministic_ops may be "warn"; the ops without a deterministic kernel seen
    "settings": {**_SCHEMA_V2["settings"], "deterministic_ops": (bool, str)},
    "nondeterministic_ops": {"ran": MapOf(int), "raised": [str]},
    "unseeded_randomness": [_AUDIT_RECORD],
}
_SCHEMAS: dict[int, dict[str, Any]] = {1: _SCHEMA_V1, 2: _SCHEMA_V2, 3: _SCHEMA_V3}


def _record(data: dict[str, Any]) -> Record:
    """Build the validated pieces; the lineage must derive the recorded trial seed."""
    recorded = data["lineage"]
    lineage = Lineage(
        recorded["experiment_seed"], recorded["trial"], recorded["scheme"],
        recorded["experiment_seed_origin"],
    )
    if lineage.trial_seed != recorded["trial_seed"]:
        raise ValueError(
            f"trial seed {recorded['trial_seed']} does not follow from the lineage, which "
            f"gives {lineage.trial_seed}"
        )
    # Version 1 predates CPU-kernel pins: those runs had none.
    settings = Settings(**{"portable": False, **data["settings"]})
    checks = tuple(
        Check(**{key: printable(text) if isinstance(text, str) and key != "state" else text
                 for key, text in check.items()})
        for check in data["status"]
    )
    audit = tuple(map(_audit_record, data.get("unseeded_randomness", ())))
    return Record(lineage, settings, checks, data["environment"], audit)


def _audit_record(found: dict[str, Any]) -> dict[str, Any]:
    """An entropy audit record read from a file: its kind and count checked, text escaped."""
    kinds = (entropy_audit.OS_ENTROPY, entropy_audit.CLOCK)
    if found["kind"] not in kinds:
        raise ValueError(f"unseeded_randomness: kind must be one of {', '.join(kinds)}, got "
                         f"{found['kind']!r:.60}")
    for field, least in (("count", 1), ("line", 0)):
        if found[field] < least:
            raise ValueError(f"unseeded_randomness: {field} must be at least {least}, got "
                             f"{found[field]}")
    return {key: printable(value) if isinstance(value, str) else value
            for key, value in found.items()}


# -- replaying ------------------------------------------------------------------------

def replay(session: Session, record: Record) -> list[str]:
    """Seed ``session`` with the record's lineage and settings; return what differs here.

    The lineage keeps its origin (a seed det_nb had assigned stays marked assigned), but
    a seed from a Determined cluster is replayed as a given seed, with a note, unless
    this process runs in a trial with that very seed. The differences are those of
    :func:`compare`, escaped for printing.
    """
    lineage, notes = _replayable(record.lineage)
    session.apply(lineage, record.settings)
    return notes + compare(record.environment, environment())


def _replayable(lineage: Lineage) -> tuple[Lineage, list[str]]:
    """The lineage to apply here, and a note when its cluster origin cannot hold here."""
    if lineage.experiment_seed_origin != "cluster":
        return lineage, []
    here = cluster_trial_seed()  # ValueError on a malformed DET_TRIAL_SEED: nothing changed
    if here == lineage.experiment_seed:
        return lineage, []
    why = (f"no Determined cluster here ({TRIAL_SEED_ENV} unset)" if here is None
           else f"this Determined trial's seed is {here}")
    given = Lineage(lineage.experiment_seed, lineage.trial, lineage.scheme, "given")
    return given, [
        f"the record's seed {lineage.experiment_seed} came from a Determined cluster; {why}, "
        "so it is replayed as a given seed"
    ]


def compare(recorded: dict[str, Any], here: dict[str, Any]) -> list[str]:
    """Each difference between two environments that can change results, in escaped words."""
    differences = []
    for key, label in (("python", "Python"), ("platform", "platform"), ("cpu", "CPU"),
                       ("cpu_count", "CPU count")):
        if recorded[key] != here[key]:
            differences.append(f"{label} {_text(here[key])} here, {_text(recorded[key])} in the "
                               "record")
    for name in sorted(recorded["packages"].keys() | here["packages"].keys()):
        now, then = here["packages"].get(name), recorded["packages"].get(name)
        if now != then:
            differences.append(
                f"{_text(name)} {_text(now or 'not installed')} here, "
                f"{_text(then or 'not installed')} in the record"
            )
    if sorted(recorded["gpus"]) != sorted(here["gpus"]):
        differences.append(
            f"GPUs seen by the imported frameworks: {_text(', '.join(here['gpus']) or 'none')} "
            f"here, {_text(', '.join(recorded['gpus']) or 'none')} in the record"
        )
    for name in sorted(recorded["variables"].keys() | here["variables"].keys()):
        now, then = here["variables"].get(name), recorded["variables"].get(name)
        if now != then and name not in LOGGING_VARIABLES:
            differences.append(
                f"{_text(name)} {'unset' if now is None else _text(repr(now))} here, "
                f"{'unset' if then is None else _text(repr(then))} in the record"
            )
    if recorded["hash_randomization"] != here["hash_randomization"]:
        on = {True: "on", False: "off"}
        differences.append(
            f"hash randomisation {on[here['hash_randomization']]} here, "
            f"{on[recorded['hash_randomization']]} in the record"
        )
    return differences + _cpu_kernel_differences(recorded, here) + _thread_differences(
        recorded, here)


def _cpu_kernel_differences(recorded: dict[str, Any], here: dict[str, Any]) -> list[str]:
    """CPU flags that select kernels, and kernels in use, that differ (version 2 records)."""
    differences = []
    if "cpu_flags" in recorded and "cpu_flags" in here:
        ours, theirs = _kernel_flags(here["cpu_flags"]), _kernel_flags(recorded["cpu_flags"])
        if ours != theirs:
            sides = [f"{', '.join(sorted(flags))} only {side}"
                     for flags, side in ((theirs - ours, "in the record"), (ours - theirs, "here"))
                     if flags]
            differences.append(
                f"CPU flags that select kernels differ: {_text('; '.join(sides))} (libraries "
                "not pinned to one baseline can give other floats)"
            )
    if "cpu_kernels" in recorded and "cpu_kernels" in here:
        for name in sorted(recorded["cpu_kernels"].keys() | here["cpu_kernels"].keys()):
            now, then = here["cpu_kernels"].get(name), recorded["cpu_kernels"].get(name)
            if now != then:
                differences.append(
                    f"{_text(name)} kernel {_text(now or 'none')} here, "
                    f"{_text(then or 'none')} in the record: it can change results"
                )
    return differences


def _thread_differences(recorded: dict[str, Any], here: dict[str, Any]) -> list[str]:
    """Usable CPUs, and the size of each pool loaded on both sides, that differ (version 3).

    A pool split in another number of parts adds floats in another order. A framework
    loaded on one side only is not listed: det_nb pins its pools when it is imported.
    """
    differences = []
    if "cpus_usable" in recorded and "cpus_usable" in here and (
            recorded["cpus_usable"] != here["cpus_usable"]):
        differences.append(f"CPUs this process may use {_text(here['cpus_usable'])} here, "
                           f"{_text(recorded['cpus_usable'])} in the record (pools left alone "
                           "size from them)")
    if "thread_pools" in recorded and "thread_pools" in here:
        for name in sorted(recorded["thread_pools"].keys() & here["thread_pools"].keys()):
            now, then = here["thread_pools"][name], recorded["thread_pools"][name]
            if now != then:
                differences.append(f"{_text(name)} threads {_text(now)} here, {_text(then)} in "
                                   "the record: it can change results")
    return differences


def _kernel_flags(flags: list[str]) -> set[str]:
    """The flags among ``flags`` that make libraries pick other kernels."""
    return set(flags) & set(cpu_kernels.KERNEL_FLAGS)


def _text(value: object) -> str:
    """A recorded or local value for one line of output: non-printable characters escaped."""
    return printable(str(value))
