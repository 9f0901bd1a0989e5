"""Inside the kernel: after every cell, the names it changed and their fingerprints.

The cell's displayed result (the value of its last expression) is a result too, and is
fingerprinted with them; after the last cell every name is fingerprinted once more
(:meth:`_Probe.sweep`), for values a cell changed without naming them (an optimizer's
``step()`` changes its model). Names the runner asks to watch are fingerprinted after
every cell, named by it or not.

:func:`install_probe` registers a ``post_run_cell`` callback in the notebook's kernel;
the runner (:mod:`det_nb.notebook_runner.kernel_run`) calls the functions here through
silent requests (``user_expressions``) that leave no trace in the notebook's namespace,
history or outputs, and each answers JSON text.

Values are hashed by :func:`det_nb.fingerprint.fingerprint`, the hashes ``%%det_check``
uses; it imports no NumPy for plain values, and neither does the probe, so CPU-kernel pins
that ``%det_seed`` sets still act on the NumPy the notebook imports later. Code a cell
defines (:func:`det_nb.fingerprint.is_code`: functions, classes, modules) is not a result,
but the data it holds is (:func:`det_nb.fingerprint.as_result`: a function's defaults and
closure cells, a class's data attributes): code that holds none is neither compared nor
listed.

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
    code: bool = False  # code that holds no data: no result


class _Probe:
    """After each cell, the names it changed and their fingerprints."""

    def __init__(self, shell: Any, watched: frozenset[str] = frozenset()) -> None:
        from det_nb import entropy_audit

        self.shell = shell
        self.tracked: dict[str, _Tracked] = {}
        self.cell: dict[str, Any] = {}
        self.failure: str | None = None
        #: Names fingerprinted after every cell, whether or not the cell names them.
        self.watched = watched
        #: The last cell's displayed result (the value of its last expression), if any.
        self.shown: object = None
        #: Names fingerprinted again after the last cell and found unchanged.
        self.looked: list[str] = []
        entropy_audit.install(shell)
        entropy_audit.activate()
        self.audit_mark = entropy_audit.mark()

    def after_cell(self, result: Any) -> None:
        """post_run_cell: fingerprint the cell's names and its displayed result; a failure
        is kept for take_cell.

        IPython would print an exception raised here into the cell's outputs, where it
        would pass for the user's own error.
        """
        try:
            self.failure = None
            self.shown = None
            names = self._changes(result.info.raw_cell or "")
            self.cell = {"names": names, "result": self._result(result.result, names),
                         "looked": self.looked, "count": result.execution_count,
                         "unseeded": self.take_unseeded()}
        except Exception as error:
            self.failure = f"{type(error).__name__}: {error}"

    def take_unseeded(self) -> list[dict[str, Any]]:
        """The entropy audit's records of the draws made since the last call."""
        from det_nb import entropy_audit

        found = entropy_audit.records(since=self.audit_mark)
        self.audit_mark = entropy_audit.mark()
        return found

    def _changes(self, source: str) -> dict[str, list[str]]:
        """{name: [digest, description, kind]} for each name the cell changed."""
        from det_nb.check import _names_used

        used = _names_used(self.shell, source)[1]  # None: the cell may change anything
        return self._fingerprint_changes(None if used is None else used | self.watched)

    def sweep(self) -> dict[str, list[str]]:
        """After the last cell: every name fingerprinted once more, {name: fields} for those
        whose value changed since it was last fingerprinted.

        A cell changes a value without naming it through another reference (an
        optimizer's ``step()`` changes its model's weights, a closure writes into an
        array): only a last look at every name catches that.
        """
        return self._fingerprint_changes(None)

    def _fingerprint_changes(self, watched: frozenset[str] | None) -> dict[str, list[str]]:
        """{name: [digest, description, kind]} for each name that appeared, was rebound or
        deleted, or (among ``watched``, all when None) changed in place."""
        from det_nb.check import _visible
        from det_nb.fingerprint import NOT_A_RESULT, as_result

        tracked = self.tracked
        now = _visible(self.shell)  # the user's names, as %%det_check sees them
        changes: dict[str, list[str]] = {}
        self.looked = []
        for name in tracked.keys() - now.keys():
            if not tracked.pop(name).code:  # code that held no data was no result
                changes[name] = ["", "(deleted)", "value"]
        for name, value in now.items():
            old = tracked.get(name)
            if old is not None and old.value is value and (
                issubclass(type(value), _IMMUTABLE)
                or (watched is not None and name not in watched)
            ):
                continue
            result = as_result(value)  # code by the data it holds
            if result is NOT_A_RESULT:  # code holding none: neither compared nor listed
                tracked[name] = _Tracked(value, "", code=True)
                continue
            fields = _print(result)
            if old is not None and old.value is value and fields[0] == old.digest:
                self.looked.append(name)
                continue
            tracked[name] = _Tracked(value, fields[0])
            changes[name] = fields
        return changes

    def _result(self, shown: object, names: dict[str, list[str]]) -> list[str] | None:
        """Fields of the cell's displayed result; None where there is none, or it is code
        that holds no data.

        A displayed value is a result even when no name holds it (``model(x)``): compared
        by its fingerprint, not by its rounded repr. A value a name of this cell holds is
        not fingerprinted twice.
        """
        from det_nb.check import _visible
        from det_nb.fingerprint import NOT_A_RESULT, as_result

        result = as_result(shown)
        if shown is None or result is NOT_A_RESULT:
            return None
        self.shown = shown
        named = next((name for name, value in _visible(self.shell).items()
                      if value is shown and name in names), None)
        return names[named] if named is not None else _print(result)


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


def displayed_result() -> object:
    """The last cell's displayed result, as the probe fingerprinted it (None if none)."""
    return _PROBE.shown if _PROBE is not None else None


def install_probe(shell: Any, watched: list[str] | None = None) -> str:
    """Register the probe after every cell (once per kernel); answers this process's CPUs.

    ``watched``: names fingerprinted after every cell, named by the cell or not.
    """
    global _PROBE
    if _PROBE is None:
        _PROBE = _Probe(shell, frozenset(watched or ()))
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
    """The last cell as JSON: ``names`` {name: [digest, description, kind]}, its displayed
    ``result`` (the same fields, or null), the names fingerprinted again and found unchanged
    (``looked``), its execution ``count``, and the entropy audit's records of the draws it
    made (``unseeded``)."""
    assert _PROBE is not None
    if _PROBE.failure is not None:
        raise RuntimeError(_PROBE.failure)
    return json.dumps(_PROBE.cell)


def final_report(collect: list[str]) -> str:
    """After the last cell (JSON): every name once more (``after_last``: the names whose
    values changed since they were last fingerprinted, and the audit's records since),
    the audit's records still in force (``unseeded``: what the status lists; a hard
    ``%reset`` clears them), the run record, det_nb warnings, environment and collected
    names."""
    from det_nb import entropy_audit
    from det_nb.run_record import environment

    assert _PROBE is not None
    after_last = {"names": _PROBE.sweep(), "unseeded": _PROBE.take_unseeded()}

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
    return json.dumps({"after_last": after_last, "unseeded": entropy_audit.records(),
                       "record": record, "warnings": warnings, "environment": environment(),
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
