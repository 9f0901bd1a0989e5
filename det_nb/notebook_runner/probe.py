"""Inside the kernel: after every cell, the names it changed and their fingerprints.

:func:`install_probe` registers a ``post_run_cell`` callback in the notebook's kernel;
the runner (:mod:`det_nb.notebook_runner.kernel_run`) calls the functions here through
silent requests (``user_expressions``) that leave no trace in the notebook's namespace,
history or outputs, and each answers JSON text.

The probe leaves NumPy's import to the notebook: CPU-kernel pins that ``%det_seed`` sets
act only if NumPy loads after them, so until the notebook imports NumPy plain Python values
are hashed without it and other values are listed as unchecked. Code a cell defines
(functions, classes, modules) is not a result: it is neither compared nor listed.
"""

from __future__ import annotations

import functools
import json
import os
import re
import struct
import sys
import types
from dataclasses import dataclass
from typing import Any

_IGNORED = re.compile(r"_+|_i+|_i\d+|_\d+|_[ido]h|__\w+__|In|Out|exit|quit|get_ipython|_exit_code")
_PLAIN = (type(None), bool, int, float, complex, str, bytes)
#: Code, not results: what a cell defines or imports to compute with.
_CODE = (types.ModuleType, type, types.FunctionType, types.BuiltinFunctionType,
         types.MethodType, types.BuiltinMethodType, types.MethodWrapperType,
         types.WrapperDescriptorType, types.MethodDescriptorType,
         types.ClassMethodDescriptorType, functools.partial)
_INERT = (*_CODE, *_PLAIN)
_BEFORE_NUMPY = "not fingerprinted before the notebook imports NumPy"


@dataclass
class _Tracked:
    value: object
    digest: str
    plain: bool  # hashed without NumPy (see _plain_print)


class _Probe:
    """After each cell, the names it changed and their fingerprints."""

    def __init__(self, shell: Any) -> None:
        self.shell = shell
        self.tracked: dict[str, _Tracked] = {}
        self.cell: dict[str, list[str]] = {}
        self.failure: str | None = None

    def after_cell(self, result: Any) -> None:
        """post_run_cell: fingerprint the cell's names; a failure is kept for take_cell.

        IPython would print an exception raised here into the cell's outputs, where it
        would pass for the user's own error.
        """
        try:
            self.failure = None
            self.cell = self._changes(result.info.raw_cell or "")
        except Exception as error:
            self.failure = f"{type(error).__name__}: {error}"

    def _changes(self, source: str) -> dict[str, list[str]]:
        """{name: [digest, description, kind]} for each name the cell changed."""
        shell, tracked = self.shell, self.tracked
        hidden = shell.user_ns_hidden
        now = {n: v for n, v in shell.user_ns.items()
               if not _IGNORED.fullmatch(n) and not (n in hidden and hidden[n] is v)}
        watched = _watched(shell, source)
        changes: dict[str, list[str]] = {}
        for name in tracked.keys() - now.keys():
            del tracked[name]
            changes[name] = ["", "(deleted)", "value"]
        for name, value in now.items():
            old = tracked.get(name)
            if old is not None and old.value is value and (
                issubclass(type(value), _INERT) or (watched is not None and name not in watched)
            ):
                continue
            if issubclass(type(value), _CODE):
                tracked[name] = _Tracked(value, "", True)
                continue
            fields, plain = _print(value, same_as=old)
            if old is not None and old.value is value and fields[0] == old.digest:
                continue
            tracked[name] = _Tracked(value, fields[0], plain)
            changes[name] = fields
        return changes


def _watched(shell: Any, source: str) -> frozenset[str] | None:
    """Names whose in-place changes the cell can make (None: any), as %%det_check finds."""
    if "numpy" not in sys.modules:
        return None  # only plain values so far: cheap to hash them all
    from det_nb.check import _names_used

    return _names_used(shell, source)[1]


def _print(value: object, same_as: _Tracked | None) -> tuple[list[str], bool]:
    """([digest, description, kind], hashed without NumPy?) for ``value``.

    A value last hashed without NumPy is hashed the same way again, so NumPy's import
    alone never looks like a change.
    """
    if "numpy" not in sys.modules or (same_as is not None and same_as.plain):
        plain = _plain_print(value)
        if plain is not None or "numpy" not in sys.modules:
            return plain or ["", f"{type(value).__name__}: {_BEFORE_NUMPY}", "unchecked"], True
    from det_nb.fingerprint import Fingerprint, fingerprint

    found = fingerprint(value)
    if isinstance(found, Fingerprint):
        return [found.digest.hex(), found.summary, "value"], False
    return ["", f"{found.summary}: {found.reason}", "unchecked"], False


def _plain_print(value: object) -> list[str] | None:
    """A fingerprint of plain Python data made without NumPy, or None for anything else."""
    import xxhash

    hasher = xxhash.xxh3_128()
    try:
        _feed_plain(hasher, value, 0)
    except (TypeError, RecursionError):
        return None
    size = f" (len {len(value)})" if isinstance(value, (str, bytes, list, tuple, dict,
                                                         set, frozenset)) else ""
    return [hasher.hexdigest(), f"{type(value).__name__}{size}", "value"]


def _feed_plain(hasher: Any, value: object, depth: int) -> None:
    kind = type(value)
    if depth > 100:
        raise TypeError("too deep")
    hasher.update(kind.__name__.encode() + b"\0")
    if kind in (int, bool):
        hasher.update(hex(value).encode() + b"\0")
    elif kind is float:
        hasher.update(struct.pack("<d", value))
    elif kind is complex:
        hasher.update(struct.pack("<dd", value.real, value.imag))
    elif kind in (str, bytes):
        data = value.encode("utf-8", "surrogatepass") if kind is str else value
        hasher.update(struct.pack("<Q", len(data)) + data)
    elif value is None:
        return
    elif kind in (list, tuple):
        hasher.update(struct.pack("<Q", len(value)))
        for item in value:
            _feed_plain(hasher, item, depth + 1)
    elif kind is dict:
        hasher.update(struct.pack("<Q", len(value)))
        for key, item in value.items():
            _feed_plain(hasher, key, depth + 1)
            _feed_plain(hasher, item, depth + 1)
    elif kind in (set, frozenset):
        import xxhash

        digests = []
        for item in value:
            sub = xxhash.xxh3_128()
            _feed_plain(sub, item, depth + 1)
            digests.append(sub.digest())
        hasher.update(struct.pack("<Q", len(value)) + b"".join(sorted(digests)))
    else:
        raise TypeError(kind.__name__)


_PROBE: _Probe | None = None


def user_namespace() -> dict[str, Any]:
    """The notebook's namespace (empty before the probe is installed)."""
    return _PROBE.shell.user_ns if _PROBE is not None else {}


def install_probe(shell: Any) -> str:
    """Register the probe after every cell (once per kernel); answers this process's CPUs."""
    global _PROBE
    if _PROBE is None:
        _PROBE = _Probe(shell)
        shell.events.register("post_run_cell", _PROBE.after_cell)
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    return json.dumps({"cpus": cpus})


def seed_kernel(seed: int, trial: int | None, scheme: str | None) -> str:
    """Load det_nb and seed it quietly (a notebook without %det_seed, run under a seed)."""
    from det_nb.notebook_runner.det_seed_lines import Seeding

    assert _PROBE is not None
    seeding = Seeding(seed, trial, scheme)  # validated again: only numbers and a scheme
    _PROBE.shell.run_line_magic("load_ext", "det_nb")
    _PROBE.shell.run_line_magic("det_seed", f"{seeding.magic_arguments()} --quiet")
    return "null"


def take_cell() -> str:
    """The last cell's names as JSON {name: [digest, description, kind]}."""
    assert _PROBE is not None
    if _PROBE.failure is not None:
        raise RuntimeError(_PROBE.failure)
    return json.dumps(_PROBE.cell)


def final_report(collect: list[str]) -> str:
    """Run record, det_nb warnings, environment and collected names (JSON)."""
    from det_nb.run_record import environment

    record, warnings = None, []
    session_module = sys.modules.get("det_nb.session")
    if session_module is not None:
        session = session_module.get_session()
        if session.lineage is not None:
            from det_nb.run_record import build

            record = build(session)
            warnings = [f"{c.name}: {c.detail}" for c in session.status().checks
                        if c.state == "warn"]
    namespace = user_namespace()
    collected = {name: _collected(namespace[name]) for name in collect if name in namespace}
    return json.dumps({"record": record, "warnings": warnings, "environment": environment(),
                       "collected": collected})


def _collected(value: object) -> dict[str, object]:
    """{"value": v} for JSON data (NumPy scalars included), else {"fingerprint": [...]}."""
    numpy = sys.modules.get("numpy")
    if numpy is not None and isinstance(value, numpy.generic) and value.ndim == 0:
        value = value.item()
    if _is_json(value, 0):
        return {"value": value}
    return {"fingerprint": _print(value, None)[0]}


def _is_json(value: object, depth: int) -> bool:
    if depth > 100:
        return False
    if value is None or type(value) in (bool, int, float, str):
        return True
    if type(value) in (list, tuple):
        return all(_is_json(item, depth + 1) for item in value)
    if type(value) is dict:
        return all(type(k) is str and _is_json(v, depth + 1) for k, v in value.items())
    return False
