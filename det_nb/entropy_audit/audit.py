"""The audit: the wrappers' bookkeeping, the records they make, and the status check.

Entry points are patched as module or class attributes (:mod:`.entry_points` says which);
each patch remembers the original, so :meth:`EntropyAudit.uninstall` puts it back.
Frameworks not imported yet are patched from wrapt post-import hooks, registered on the
first cell after ``%load_ext`` (or at seeding), since importing wrapt in a bare shell
costs ~20 ms (asyncio) that ``%load_ext`` must not pay.
"""

from __future__ import annotations

import functools
import os
import sys
import threading
from collections.abc import Callable
from types import FrameType, ModuleType
from typing import Any, NamedTuple

from det_nb.entropy_audit.cell_calls import RouteCalls
from det_nb.entropy_audit.user_code import CallSite, Place, UserCode
from det_nb.status import Check

CHECK_NAME = "unseeded randomness"
OS_ENTROPY = "os entropy"
CLOCK = "clock seed"
#: Records named in the status; the rest are counted (records() has them all).
LISTED = 10
#: How records are cleared (said in the status's fix).
CLEARED_BY = "then %reset -f (or restart the kernel) and run the cells again"
_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


class Entry(NamedTuple):
    """An entry point as recorded: what was called, the fix, and what kind of draw it is."""

    name: str
    fix: str
    kind: str = OS_ENTROPY


#: A record's fields, as records() returns them (JSON-able).
RECORD_FIELDS = ("cell", "file", "line", "text", "call", "entry", "kind", "fix", "count",
                 "run_by")


class Call:
    """A call of a watched entry point by the notebook's code, for judging whether it drew."""

    def __init__(self, audit: EntropyAudit, frame: FrameType, place: Place, args: tuple,
                 kwargs: dict) -> None:
        self.audit, self.frame, self.place, self.args, self.kwargs = (
            audit, frame, place, args, kwargs)

    @property
    def site(self) -> CallSite:
        """The call's line and text (cached by the audit per code object and offset)."""
        return self.audit.user.call_site(self.frame)

    def clock_seed(self, keyword: str) -> bool:
        """Whether the call's seed (its first argument, or ``keyword``) is read from a clock."""
        return self.audit.user.clock_seed(self.frame, self.place, keyword)


#: An Entry, or a function judging a call: the Entry it makes, or None when it drew nothing.
Judge = Entry | Callable[[Call], Entry | None]


class _Patch(NamedTuple):
    owner: Any
    name: str
    original: Any
    wrapper: Any


class EntropyAudit:
    """Watches the entropy entry points for calls made by the notebook's own code."""

    def __init__(self, families: dict[str, Callable[[EntropyAudit, ModuleType], None]],
                 also_forget: tuple[Callable[[], None], ...] = ()) -> None:
        """``families``: module name -> the function that patches it (:mod:`.entry_points`);
        ``also_forget``: what :meth:`clear` (a hard ``%reset``) forgets besides the records."""
        self.user = UserCode()
        self._also_forget = also_forget
        self.watching = False
        #: Whether Python's global random was last seeded with a seed (for Keras).
        self.random_seeded = False
        self._families = families
        self._attached = False
        #: call site -> its record (RECORD_FIELDS), and the hit number of its latest draw
        self._records: dict[tuple, dict[str, Any]] = {}
        self._last: dict[tuple, int] = {}
        self._hits = 0
        self._lock = threading.Lock()
        self._patches: list[_Patch] = []
        self._originals: dict[int, Any] = {}  # id(wrapper) -> what it wraps
        self._patched: set[str] = set()  # families patched now
        #: family -> its post-import hook, registered with wrapt (fired or waiting)
        self._hooks: dict[str, Callable[[ModuleType], None]] = {}
        self._shell: Any = None
        self._reset: Callable[..., Any] | None = None  # our wrapper of shell.reset
        #: Checks of effects whose calls cannot be wrapped (a C method re-seeding torch's
        #: global generator): run before records are read or marked, and before seeding
        self.effect_checks: list[Callable[[], None]] = []
        #: Families' watches of callees a cell calls that cannot be patched (C methods,
        #: Cython classes): callee -> a wrapper judging the call, or None (:mod:`.cell_calls`)
        self.call_watches: list[Callable[[Any], Callable[..., Any] | None]] = []
        self._transformer = RouteCalls()

    # -- installing ---------------------------------------------------------------------

    def install(self, shell: Any) -> None:
        """``%load_ext``: watch what is imported now; the rest from the next cell on."""
        self._attach(shell)
        self._patch_imported()
        self.watching = True
        if any(name not in self._patched and name not in self._hooks
               for name in self._families):
            callbacks = shell.events.callbacks["pre_run_cell"]
            if self._first_cell not in callbacks:
                shell.events.register("pre_run_cell", self._first_cell)

    def activate(self) -> None:
        """Watch every entry point, now and at the import of each framework (idempotent)."""
        if not self._attached:
            ipython = sys.modules.get("IPython")
            self._attach(None if ipython is None else ipython.get_ipython())
        self._patch_imported()
        self.watching = True
        pending = [name for name in self._families
                   if name not in self._hooks and name not in sys.modules]
        if pending:
            import wrapt  # here: in a bare shell it costs %load_ext ~20 ms

            for name in pending:
                hook = self._hooks[name] = functools.partial(self._on_import, name)
                wrapt.register_post_import_hook(hook, name)
        self._forget_first_cell()

    def uninstall(self) -> None:
        """Put every patched attribute back, drop the post-import hooks still waiting and
        stop watching; the records stay."""
        self._forget_first_cell()
        if self._hooks:
            from wrapt import importer

            with importer._post_import_hooks_lock:  # wrapt has no call to unregister one
                for name, hook in self._hooks.items():
                    waiting = importer._post_import_hooks.get(name) or []
                    if hook in waiting:
                        waiting.remove(hook)
            self._hooks.clear()
        for patch in reversed(self._patches):
            owner, name = patch.owner, patch.name
            current = owner.__dict__.get(name) if isinstance(owner, type) else getattr(
                owner, name, None)
            if current is patch.wrapper:
                setattr(owner, name, patch.original)
        self._patches.clear()
        self._originals.clear()
        self._patched.clear()
        self.effect_checks.clear()
        self.call_watches.clear()
        self._detach()
        self._shell = self._reset = None
        self._attached = self.watching = False

    def _first_cell(self, _info: object = None) -> None:
        """``pre_run_cell`` until the first cell after ``%load_ext``: register the hooks."""
        self.activate()

    def _forget_first_cell(self) -> None:
        if self._shell is not None and self._first_cell in self._shell.events.callbacks.get(
                "pre_run_cell", []):
            self._shell.events.unregister("pre_run_cell", self._first_cell)

    def _attach(self, shell: Any) -> None:
        """Recognise ``shell``'s cells and the modules in the current folder as the user's.

        A hard ``%reset`` empties the namespace the drawn values lived in: the shell's
        ``reset`` is wrapped so that it clears the records too (and ``also_forget``; one
        wrapper for all of det_nb).
        """
        if self._attached and shell is self._shell:
            return
        self._detach()
        self.user.attach(shell, os.getcwd())
        self._shell, self._reset, self._attached = shell, None, True
        if shell is not None:
            original = shell.reset

            @functools.wraps(original)
            def reset(*args: Any, **kwargs: Any) -> Any:
                self.clear()
                return original(*args, **kwargs)

            shell.reset = self._reset = reset
            if self._transformer not in shell.ast_transformers:
                shell.ast_transformers.append(self._transformer)

    def _detach(self) -> None:
        """Take the wrapper of ``reset`` and the cell transformer off the shell attached."""
        if self._shell is None:
            return
        if self._shell.__dict__.get("reset") is self._reset:
            del self._shell.reset
        if self._transformer in self._shell.ast_transformers:
            self._shell.ast_transformers.remove(self._transformer)

    def _patch_imported(self) -> None:
        for name in self._families:
            module = sys.modules.get(name)
            if module is not None:
                self._patch_family(name, module)

    def _on_import(self, name: str, module: ModuleType) -> None:
        if self.watching:
            self._patch_family(name, module)

    def _patch_family(self, name: str, module: ModuleType) -> None:
        if name not in self._patched:
            self._patched.add(name)
            self._families[name](self, module)

    def patch(self, owner: Any, name: str, make: Callable[[Any], Callable[..., Any]]) -> None:
        """Replace ``owner.name`` by ``make(original)``; a classmethod stays one.

        An attribute this version of the library lacks is left alone. An attribute that is
        already one of this audit's wrappers (NumPy keeps ``secrets.randbits`` under its own
        name) is wrapped from the original, so no call counts twice.
        """
        current = owner.__dict__.get(name) if isinstance(owner, type) else getattr(
            owner, name, None)
        if current is None:
            return
        original = self._originals.get(id(current), current)
        if isinstance(original, classmethod):
            function = original.__func__
            wrapper: Any = classmethod(functools.wraps(function)(make(function)))
        else:
            wrapper = functools.wraps(original)(make(original))
        setattr(owner, name, wrapper)
        self._patches.append(_Patch(owner, name, original, wrapper))
        self._originals[id(wrapper)] = original

    # -- recording ----------------------------------------------------------------------

    def watch_call(self, callee: Any) -> Any:
        """What a cell calls where :class:`.cell_calls.RouteCalls` routed a call:
        ``callee`` itself, or the wrapper a family's watch gives for it."""
        if self.watching:
            for watch in self.call_watches:
                wrapper = watch(callee)
                if wrapper is not None:
                    return wrapper
        return callee

    def check_effects(self) -> None:
        """Run the families' checks of effects whose calls cannot be wrapped."""
        if self.watching:
            for check in self.effect_checks:
                check()

    def user_frame(self, skip: frozenset[str] = frozenset()) -> tuple[FrameType, Place] | None:
        """The nearest calling frame outside this package and ``skip``, if it is the user's."""
        frame: FrameType | None = sys._getframe(1)
        while frame is not None and (frame.f_code.co_filename.startswith(_PACKAGE_DIR)
                                     or frame.f_code.co_filename in skip):
            frame = frame.f_back
        if frame is None:
            return None
        filename = frame.f_code.co_filename
        places = self.user.places
        place = places[filename] if filename in places else self.user.place(filename)
        return None if place is None else (frame, place)

    def judge(self, judge: Judge, skip: frozenset[str], args: tuple, kwargs: dict) -> None:
        """Record the call that reached a wrapper when it is the user's and ``judge`` says so."""
        if not self.watching:
            return
        found = self.user_frame(skip)
        if found is None:
            return
        frame, place = found
        entry = judge if isinstance(judge, Entry) else judge(
            Call(self, frame, place, args, kwargs))
        if entry is not None:
            self.record(frame, place, entry)

    def record(self, frame: FrameType, place: Place, entry: Entry) -> None:
        """Count one draw by ``frame`` (the notebook's code, in ``place``) at ``entry``."""
        if not self.watching:
            return
        site = self.user.call_site(frame)
        run_by = self.user.running_cell(frame)
        cell = None if place.module is not None else self.user.cell_number(place.filename)
        if cell is not None and run_by is not None and cell > run_by:
            cell = run_by  # a cell run inside the running one (IPython 9 numbers it ahead)
        self._count((place.filename, cell, site.line, site.call, entry.name, run_by), (
            cell, place.module, site.line, site.text, site.call or entry.name, entry.name,
            entry.kind, entry.fix, 0, run_by))

    def record_effect(self, subject: str, entry: Entry) -> None:
        """Count one draw seen by its effect only (``subject``, e.g. torch's global
        generator, holds a seed nobody gave it), not by its call: no cell or line."""
        if self.watching:
            self._count((None, None, None, subject, entry.name, None), (
                None, None, None, subject, entry.name, entry.name, entry.kind, entry.fix, 0,
                None))

    def _count(self, key: tuple, fields: tuple) -> None:
        with self._lock:
            record = self._records.get(key)
            if record is None:
                record = self._records[key] = dict(zip(RECORD_FIELDS, fields, strict=True))
            self._hits += 1
            record["count"] += 1
            self._last[key] = self._hits

    # -- reading ------------------------------------------------------------------------

    def records(self, cell: int | None = None, since: int | None = None) -> list[dict[str, Any]]:
        """The records (JSON-able dicts, oldest first): all, those of cells run as
        execution count ``cell``, and/or those with a draw after :meth:`mark` gave ``since``.

        ValueError for a cell or mark that is not a non-negative integer.
        """
        for value, what in ((cell, "cell"), (since, "since")):
            if value is not None and (type(value) is not int or value < 0):
                raise ValueError(f"{what} must be a non-negative integer (an execution count"
                                 f"{'' if what == 'cell' else ' mark from mark()'}), got "
                                 f"{value!r:.40}")
        self.check_effects()
        with self._lock:
            chosen = [dict(record) for key, record in self._records.items()
                      if (cell is None or record["run_by"] == cell)
                      and (since is None or self._last[key] > since)]
        return chosen

    def mark(self) -> int:
        """A mark for ``records(since=...)``: the number of draws counted so far."""
        self.check_effects()
        return self._hits

    def clear(self) -> None:
        """Forget every record, and what ``also_forget`` holds (a hard ``%reset`` does this)."""
        with self._lock:
            self._records.clear()
            self._last.clear()
        for forget in self._also_forget:
            forget()

    def status_check(self) -> Check:
        """The "unseeded randomness" line: each record with its fix, ok, or off."""
        records = self.records()
        if records:
            listed = records[:LISTED]
            more = (f"; {len(records) - LISTED} more in det_nb.entropy_audit.records()"
                    if len(records) > LISTED else "")
            detail = (f"{len(records)} call(s) in the notebook's code drew from OS entropy or "
                      "seeded from a clock: " + "; ".join(map(describe, listed)) + more)
            places: dict[str, list[str]] = {}  # fix -> where it applies, in order
            for record in listed:
                places.setdefault(record["fix"], []).append(where(record))
            fix = "; ".join(f"{' and '.join(at)}: {fix}" for fix, at in places.items())
            fix += f"{more}; {CLEARED_BY}"
            return Check(CHECK_NAME, "warn", detail, fix)
        if not self.watching:
            return Check(CHECK_NAME, "off",
                         "not watched: the audit starts with %load_ext det_nb or det_nb.seed()",
                         "%load_ext det_nb")
        return Check(CHECK_NAME, "ok",
                     "no draw from OS entropy and no seed from a clock seen in the notebook's "
                     "cells or the modules in its folder (docs/audit.md: what is watched)")


def where(record: dict[str, Any]) -> str:
    """``cell 6, line 1``, ``helpers.py, line 12``, or for a draw seen by its effect only,
    what holds it (``torch's global generator``)."""
    if record["line"] is None:
        return record["text"]
    if record["file"] is not None:
        return f"{record['file']}, line {record['line']}"
    cell = "a cell" if record["cell"] is None else f"cell {record['cell']}"
    return f"{cell}, line {record['line']}"


def describe(record: dict[str, Any]) -> str:
    """One line for a record, e.g. ``cell 6, line 1: uuid.uuid4()``.

    A seed from a clock says so; a line run by another cell (a function defined earlier)
    names that cell; repeated draws give their count.
    """
    text = record["call"] if record["line"] is None else f"{where(record)}: {record['call']}"
    if record["kind"] == CLOCK:
        text += " seeds from the clock"
    if record["run_by"] is not None and record["run_by"] != record["cell"]:
        text += f", run by cell {record['run_by']}"
    if record["count"] > 1:
        text += f", {record['count']} times"
    return text

