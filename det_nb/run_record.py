"""The run record: one JSON file with what it takes to replay a run and to judge the replay.

It holds the lineage, the settings det_nb applied with the status of every check, and the
environment that can change results: versions, CPU, platform, GPUs, the environment
variables read at start and hash randomisation. Loading is strict (size, encoding, JSON,
version, every field's type and the lineage's arithmetic), so a bad file is refused whole
with one line saying why; files are written atomically, so a crash never leaves half a
record behind. Frameworks are never imported here: versions come from modules already
imported or from the installed packages' metadata.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import tempfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from det_nb import determinism
from det_nb.determinism import Settings
from det_nb.lineage import Lineage
from det_nb.session import NOT_SEEDED, Session
from det_nb.status import Check

#: The record format this det_nb writes and the only one it reads.
VERSION = 1
#: Larger files are refused before they are read: a record is a few kilobytes.
MAX_BYTES = 1_000_000
#: Packages whose version can change results (det_nb's own is recorded too).
PACKAGES = ("numpy", "tensorflow", "keras", "torch", "jax", "jaxlib")
#: Environment variables that act at start: recorded when set.
VARIABLES = ("PYTHONHASHSEED", "CUBLAS_WORKSPACE_CONFIG", "XLA_FLAGS", "CUDA_VISIBLE_DEVICES")
VARIABLE_PREFIXES = ("TF_",)
#: Recorded, but only set logging: a difference in them changes no result.
LOGGING_VARIABLES = ("TF_CPP_MIN_LOG_LEVEL", "TF_CPP_MAX_VLOG_LEVEL", "TF_CPP_VMODULE")


@dataclass(frozen=True)
class Record:
    """A loaded, validated record: what :func:`replay` applies and compares."""

    lineage: Lineage
    settings: Settings
    checks: tuple[Check, ...]
    environment: dict[str, Any]


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
        },
        "status": [
            {"name": c.name, "state": c.state, "detail": c.detail, "fix": c.fix}
            for c in session.status().checks
        ],
        "environment": environment(),
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
            if name in VARIABLES or name.startswith(VARIABLE_PREFIXES)
        },
        "hash_randomization": bool(sys.flags.hash_randomization),
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
    return write_atomically(path, text.encode("utf-8"))


def writable_target(path: str | os.PathLike[str]) -> Path:
    """``path`` (``~`` expanded) if a file can be written there; ValueError saying why not.

    Callers check this before changing anything, so a bad ``--save`` changes nothing.
    """
    target = Path(path).expanduser()
    where = _shown(target)
    if target.is_dir():
        raise ValueError(f"cannot write {where}: it is a folder")
    folder = target.parent
    if not folder.is_dir():
        raise ValueError(f"cannot write {where}: folder {_shown(folder)} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ValueError(f"cannot write {where}: folder {_shown(folder)} is not writable")
    return target


def write_atomically(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to a temporary file beside ``path``, then rename it over ``path``.

    Readers see the old file or the new one, never a part. ValueError (one line) when
    the path cannot be written.
    """
    target = writable_target(path)
    where, folder = _shown(target), target.parent
    mode = target.stat().st_mode & 0o777 if target.exists() else 0o644
    try:
        handle, temporary = tempfile.mkstemp(dir=folder, prefix=f".{target.name}.", suffix=".tmp")
    except OSError as error:
        raise ValueError(f"cannot write {where}: {error.strerror}") from None
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temporary, mode)
        os.replace(temporary, target)
    except OSError as error:
        os.unlink(temporary)
        raise ValueError(f"cannot write {where}: {error.strerror}") from None
    except BaseException:
        os.unlink(temporary)
        raise
    return target


def _shown(path: Path) -> str:
    """A path for a one-line message (control characters escaped)."""
    return repr(str(path))


# -- reading and validating -----------------------------------------------------------


def read_limited(path: str | os.PathLike[str], what: str) -> bytes:
    """The bytes of ``path``, refusing a missing, unreadable or over-large file.

    The size is checked before the content is read (and again while reading, in case
    the file grows). ValueError messages start with ``what`` and the path.
    """
    path = Path(path).expanduser()
    where = f"{what} {_shown(path)}"
    try:
        with open(path, "rb") as file:
            if os.fstat(file.fileno()).st_size > MAX_BYTES:
                raise ValueError(f"{where} is over {MAX_BYTES} bytes: not a det_nb file")
            data = file.read(MAX_BYTES + 1)
    except FileNotFoundError:
        raise ValueError(f"{where} does not exist") from None
    except IsADirectoryError:
        raise ValueError(f"{where} is a folder, not a file") from None
    except OSError as error:
        raise ValueError(f"cannot read {where}: {error.strerror}") from None
    if len(data) > MAX_BYTES:
        raise ValueError(f"{where} is over {MAX_BYTES} bytes: not a det_nb file")
    if not data:
        raise ValueError(f"{where} is empty")
    return data


def load(path: str | os.PathLike[str]) -> Record:
    """Read and strictly validate a record; ValueError with one line on any problem."""
    where = f"run record {_shown(Path(path))}"
    data = parse_json(read_limited(path, "run record"), where)
    if not isinstance(data, dict):
        raise ValueError(f"{where} holds a JSON {_json_type(data)}, not a det_nb record object")
    if "version" not in data:
        raise ValueError(f"{where} has no version field: not a det_nb record")
    version = data["version"]
    if type(version) is not int or version != VERSION:
        raise ValueError(f"{where} has version {version!r}; this det_nb reads version {VERSION}")
    try:
        check_fields(data, _SCHEMA, "")
        return _record(data)
    except ValueError as error:
        raise ValueError(f"{where}: {error}") from None


def parse_json(raw: bytes, where: str) -> object:
    """Strict JSON from bytes: UTF-8 text, no NUL, no duplicate keys, no NaN or Infinity."""
    if b"\0" in raw:
        raise ValueError(f"{where} is binary, not JSON text")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ValueError(f"{where} is not UTF-8 text") from None
    try:
        return json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constant)
    except RecursionError:
        raise ValueError(f"{where} is nested too deeply to be a det_nb record") from None
    except json.JSONDecodeError as error:
        ends = error.pos >= len(text.rstrip()) or error.msg.startswith("Unterminated string")
        raise ValueError(
            f"{where} is not valid JSON: {error.msg} at line {error.lineno} column "
            f"{error.colno}{'; it ends too early (truncated?)' if ends else ''}"
        ) from None
    except ValueError as error:  # duplicate keys, NaN, numbers too long
        raise ValueError(f"{where} is not a valid det_nb record: {error}") from None


def _no_duplicates(pairs: list[tuple[str, object]]) -> dict[str, object]:
    result: dict[str, object] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"key {key!r} appears twice")
        result[key] = value
    return result


def _no_constant(name: str) -> object:
    raise ValueError(f"{name} is not a JSON number")


def _json_type(value: object) -> str:
    names = {list: "array", str: "string", bool: "boolean", int: "number", float: "number"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


class MapOf:
    """Schema of an object whose keys are free strings and whose values share a schema."""

    def __init__(self, values: object) -> None:
        self.values = values


_SCHEMA: dict[str, object] = {
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
_TYPE_NAMES = {
    int: "an integer", str: "a string", bool: "true or false", dict: "an object", None: "null",
}


def check_fields(value: object, schema: object, where: str) -> None:
    """ValueError naming the first field of ``value`` that does not fit ``schema``.

    Leaves are types (None for null) or tuples of them; a dict has exactly its keys; a
    one-item list is an array of that; :class:`MapOf` an object with free keys.
    """
    if isinstance(schema, dict):
        if not isinstance(value, dict):
            raise ValueError(f"{where or 'the record'} must be an object")
        missing, unknown = schema.keys() - value.keys(), value.keys() - schema.keys()
        if missing or unknown:
            problem = f"lacks {sorted(missing)}" if missing else f"has unknown {sorted(unknown)}"
            raise ValueError(f"{where or 'the record'} {problem}")
        for key, item in schema.items():
            check_fields(value[key], item, f"{where}.{key}" if where else key)
    elif isinstance(schema, list):
        if not isinstance(value, list):
            raise ValueError(f"{where} must be an array")
        for index, item in enumerate(value):
            check_fields(item, schema[0], f"{where}[{index}]")
    elif isinstance(schema, MapOf):
        if not isinstance(value, dict):
            raise ValueError(f"{where} must be an object")
        for key, item in value.items():
            check_fields(item, schema.values, f"{where}[{key!r}]")
    else:
        allowed = schema if isinstance(schema, tuple) else (schema,)
        if not any(value is None if t is None else type(value) is t for t in allowed):
            wanted = " or ".join(_TYPE_NAMES[t] for t in allowed)
            raise ValueError(f"{where} must be {wanted}, got {value!r:.60}")


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
    settings = Settings(**data["settings"])
    checks = tuple(Check(**check) for check in data["status"])
    return Record(lineage, settings, checks, data["environment"])


# -- replaying ------------------------------------------------------------------------


def replay(session: Session, record: Record) -> list[str]:
    """Seed ``session`` with the record's lineage and settings; return what differs here.

    The lineage keeps its origin (a seed det_nb had assigned stays marked assigned). The
    differences are those of :func:`compare`.
    """
    session.apply(record.lineage, record.settings)
    return compare(record.environment, environment())


def compare(recorded: dict[str, Any], here: dict[str, Any]) -> list[str]:
    """Each difference between two environments that can change results, in words."""
    differences = []
    for key, label in (("python", "Python"), ("platform", "platform"), ("cpu", "CPU"),
                       ("cpu_count", "CPU count")):
        if recorded[key] != here[key]:
            differences.append(f"{label} {here[key]} here, {recorded[key]} in the record")
    for name in sorted(recorded["packages"].keys() | here["packages"].keys()):
        now, then = here["packages"].get(name), recorded["packages"].get(name)
        if now != then:
            differences.append(
                f"{name} {now or 'not installed'} here, {then or 'not installed'} in the record"
            )
    if sorted(recorded["gpus"]) != sorted(here["gpus"]):
        differences.append(
            f"GPUs seen by the imported frameworks: {', '.join(here['gpus']) or 'none'} here, "
            f"{', '.join(recorded['gpus']) or 'none'} in the record"
        )
    for name in sorted(recorded["variables"].keys() | here["variables"].keys()):
        now, then = here["variables"].get(name), recorded["variables"].get(name)
        if now != then and name not in LOGGING_VARIABLES:
            differences.append(
                f"{name} {'unset' if now is None else repr(now)} here, "
                f"{'unset' if then is None else repr(then)} in the record"
            )
    if recorded["hash_randomization"] != here["hash_randomization"]:
        on = {True: "on", False: "off"}
        differences.append(
            f"hash randomisation {on[here['hash_randomization']]} here, "
            f"{on[recorded['hash_randomization']]} in the record"
        )
    return differences
