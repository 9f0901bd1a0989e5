"""Inside the kernel: after every cell, the names it changed and their fingerprints.

:func:`install_probe` registers a ``post_run_cell`` callback in the notebook's kernel;
the runner (:mod:`det_nb.notebook_runner.kernel_run`) calls the functions here through
silent requests (``user_expressions``) that leave no trace in the notebook's namespace,
history or outputs, and each answers JSON text.

Values are hashed by :func:`det_nb.fingerprint.fingerprint`, the hashes ``%%det_check``
uses; it imports no NumPy for plain values, and neither does the probe, so CPU-kernel pins
that ``%det_seed`` sets still act on the NumPy the notebook imports later. Code a cell
defines (:func:`det_nb.fingerprint.is_code`: functions, classes, modules) is not a result:
it is neither compared nor listed.

The probe also starts det_nb's entropy audit (:mod:`det_nb.entropy_audit`), whether or not
the notebook loads det_nb: each cell's answer carries the calls it made that drew from OS
entropy or seeded from a clock, which verify names as the likely cause where runs part.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from typing import Any

#: Values that cannot change in place: an unchanged binding needs no new hash.
_IMMUTABLE = (type(None), bool, int, float, complex, str, bytes)


@dataclass
class _Tracked:
    value: object
    digest: str


class _Probe:
    """After each cell, the names it changed and their fingerprints."""

    def __init__(self, shell: Any) -> None:
        from det_nb import entropy_audit

        self.shell = shell
        self.tracked: dict[str, _Tracked] = {}
        self.cell: dict[str, Any] = {}
        self.failure: str | None = None
        entropy_audit.install(shell)
        entropy_audit.activate()
        self.audit_mark = entropy_audit.mark()

    def after_cell(self, result: Any) -> None:
        """post_run_cell: fingerprint the cell's names; a failure is kept for take_cell.

        IPython would print an exception raised here into the cell's outputs, where it
        would pass for the user's own error.
        """
        from det_nb import entropy_audit

        try:
            self.failure = None
            unseeded = entropy_audit.records(since=self.audit_mark)
            self.audit_mark = entropy_audit.mark()
            self.cell = {"names": self._changes(result.info.raw_cell or ""),
                         "count": result.execution_count, "unseeded": unseeded}
        except Exception as error:
            self.failure = f"{type(error).__name__}: {error}"

    def _changes(self, source: str) -> dict[str, list[str]]:
        """{name: [digest, description, kind]} for each name the cell changed."""
        from det_nb.check import _names_used, _visible
        from det_nb.fingerprint import is_code

        shell, tracked = self.shell, self.tracked
        now = _visible(shell)  # the user's names, as %%det_check sees them
        watched = _names_used(shell, source)[1]  # None: the cell may change anything
        changes: dict[str, list[str]] = {}
        for name in tracked.keys() - now.keys():
            del tracked[name]
            changes[name] = ["", "(deleted)", "value"]
        for name, value in now.items():
            old = tracked.get(name)
            code = is_code(value)
            if old is not None and old.value is value and (
                code or issubclass(type(value), _IMMUTABLE)
                or (watched is not None and name not in watched)
            ):
                continue
            if code:  # not a result: neither compared nor listed
                tracked[name] = _Tracked(value, "")
                continue
            fields = _print(value)
            if old is not None and old.value is value and fields[0] == old.digest:
                continue
            tracked[name] = _Tracked(value, fields[0])
            changes[name] = fields
        return changes


def _print(value: object) -> list[str]:
    """[digest, description, kind] of ``value`` (kind "unchecked" with the reason)."""
    from det_nb.fingerprint import Fingerprint, fingerprint

    found = fingerprint(value)
    if isinstance(found, Fingerprint):
        return [found.digest.hex(), found.summary, "value"]
    return ["", f"{found.summary}: {found.reason}", "unchecked"]


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
    """The last cell as JSON: ``names`` {name: [digest, description, kind]}, its execution
    ``count``, and the entropy audit's records of the draws it made (``unseeded``)."""
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
    """{"value": v} for JSON data (NumPy scalars included), else {"fingerprint": [...]}.

    Each name on its own: data JSON cannot carry (an int of over 4300 digits) goes as its
    fingerprint, and a value that cannot be read is that name's problem only (unchecked).
    """
    try:
        numpy = sys.modules.get("numpy")
        if numpy is not None and isinstance(value, numpy.generic) and value.ndim == 0:
            value = value.item()
        if _is_json(value, 0):
            json.dumps(value)
            return {"value": value}
    except Exception:  # not JSON after all (e.g. too many digits): its fingerprint stands
        pass
    return {"fingerprint": _print(value)}


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
