"""Run a cell several times and compare what it produced: the core of ``%%det_check``.

Each run is re-seeded first, then the names the cell assigned or changed in the user
namespace are fingerprinted (:mod:`det_nb.fingerprint`). A name counts as changed when it
appears, disappears or is rebound (cheap identity checks), or when an object the cell uses
is changed in place (fingerprint before and after). To keep the cost near two plain runs,
in-place changes are looked for only in the names the cell's code, or the notebook
functions it calls, refer to; a cell with magics or shell commands is watched whole.

Run k is compared with run k - 1 (equal fingerprints all along mean equal to run 1). The
previous run's objects are kept by reference; an object changed in place is copied
(:func:`~det_nb.fingerprint.snapshot`) so that the next run cannot overwrite it before
it is compared. The namespace ends as the last run left it.

Verdict rules (shared with ``verify``): functions, classes and modules the cell defines
are code, not results, and are neither compared nor listed (:func:`~det_nb.fingerprint.
is_code`); the data notebook code holds is a result (:func:`~det_nb.fingerprint.as_result`:
a function's defaults, closure cells and attributes, a class's data attributes), compared
under the code's name. "deterministic" means every value the cell produced or changed
was compared and equal, and its runs drew no unseeded randomness; where some value could
not be compared, or a run drew from OS entropy or seeded from a clock (det_nb's entropy
audit), the verdict is "not proven", naming each such value with its type and why, and
each such call: equal values from unseeded draws are luck (a coarse result, a draw that
was not used), not proof.
"""

from __future__ import annotations

import ast
import dataclasses
import html
import re
import sys
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from det_nb.fingerprint import (
    NOT_A_RESULT,
    Fingerprint,
    Snapshot,
    Unfingerprintable,
    as_result,
    describe_difference,
    fingerprint,
    snapshot,
)
from det_nb.lineage import validate_integer

# IPython's own bookkeeping in the user namespace: output and input history, dunders.
_IGNORED = re.compile(r"_+|_i+|_i\d+|_\d+|_[ido]h|__\w+__|In|Out|exit|quit|get_ipython|_exit_code")
#: The most runs %%det_check makes: a thousand runs of a quick cell still end.
MAX_RUNS = 1000
# What an absent name fingerprints as, so "defined in one run only" compares unequal.
_ABSENT = Fingerprint(b"", "(not defined)")
# Values that cannot change in place (code that holds no data needs no watching either).
_IMMUTABLE = (type(None), bool, int, float, complex, str, bytes)
_Fp = Fingerprint | Unfingerprintable


@dataclass(frozen=True)
class Compared:
    """A name whose value was fingerprinted after every run."""

    name: str
    summary: str  # type, dtype, shape: e.g. "ndarray float64 (3,)"


@dataclass(frozen=True)
class Differing:
    """A name whose value was not the same after every run."""

    name: str
    detail: str  # where and how: "d['meta']['t']: int differs by 1200 (runs 1 and 2)"
    note: str = ""  # why the cell may not be re-runnable as it stands, if known


@dataclass(frozen=True)
class Unchecked:
    """A name the cell assigned or uses whose value cannot be fingerprinted."""

    name: str
    reason: str  # its type, then why: "TextIOWrapper: files and streams have no comparable value"


@dataclass(frozen=True)
class CheckReport:
    """What ``%%det_check`` found. ``compared`` includes the ``differing`` names."""

    runs: int
    compared: tuple[Compared, ...] = ()
    differing: tuple[Differing, ...] = ()
    unchecked: tuple[Unchecked, ...] = ()
    error: str | None = None  # "run 2 of 3 raised ValueError: ..." when a run failed
    #: The runs' calls that drew from OS entropy or seeded from a clock (det_nb's entropy
    #: audit): the likely cause where runs differ; where none differ, why it is not proven.
    unseeded: tuple[str, ...] = ()

    @property
    def deterministic(self) -> bool:
        """True when every run finished, some value was compared, every value the cell
        produced or changed was compared and equal (nothing unchecked), and no run drew
        unseeded randomness."""
        return (self.error is None and bool(self.compared) and not self.differing
                and not self.unchecked and not self.unseeded)

    def headline(self) -> str:
        """The verdict, in one line."""
        runs = self.runs
        if self.error is not None:
            return f"det_check stopped: {self.error}"
        if self.differing:
            return f"NOT deterministic across {runs} runs"
        reasons = []
        if self.unchecked:
            count = len(self.unchecked)
            reasons.append(f"{'1 value' if count == 1 else f'{count} values'} could not be "
                           "compared")
        if self.unseeded:
            reasons.append("the cell drew unseeded randomness (OS entropy or a seed from a "
                           "clock)")
        if reasons:
            return f"not proven across {runs} runs: {'; '.join(reasons)}"
        if not self.compared:
            return f"nothing to compare across {runs} runs: the cell assigned or changed no names"
        return f"deterministic across {runs} runs"

    def _sections(self) -> Iterator[tuple[str, list[str]]]:
        """(title, lines) after the headline; the differing names come untitled, first."""
        yield "", [d.detail + (f" ({d.note})" if d.note else "") for d in self.differing]
        differing = {d.name for d in self.differing}
        equal = [f"{c.name}: {c.summary}" for c in self.compared if c.name not in differing]
        yield ("equal" if differing else "compared"), equal
        yield "could not be compared", [f"{u.name}: {u.reason}" for u in self.unchecked]
        yield (("likely cause, " if self.differing else "") + "unseeded randomness (det_nb's "
               "entropy audit)", list(self.unseeded))

    def text(self) -> str:
        """Plain text; free of addresses, times and paths, so notebook tests can compare it."""
        lines = [self.headline()]
        for title, items in self._sections():
            if items and title:
                lines.append(f"{title}:")
            lines.extend(f"  {item}" for item in items)
        return "\n".join(lines)

    def html(self) -> str:
        """The same content as :meth:`text`, as an HTML fragment."""
        colour = "#1a7f37" if self.deterministic else "#b35900"
        if self.error is not None or self.differing:
            colour = "#cf222e"
        parts = [f'<div class="det-check"><strong style="color: {colour}">'
                 f"{html.escape(self.headline())}</strong>"]
        for title, items in self._sections():
            if not items:
                continue
            if title:
                parts.append(f"<div>{html.escape(title)}:</div>")
            parts.append("<ul>" + "".join(f"<li><code>{html.escape(item)}</code></li>"
                                          for item in items) + "</ul>")
        parts.append("</div>")
        return "".join(parts)

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, str]:
        return {"text/plain": self.text(), "text/html": self.html()}


def validate_runs(runs: object) -> int:
    """``runs`` as an int in [2, MAX_RUNS], or ValueError: a check needs two runs to
    compare, and a count no one could wait for would only hang the kernel."""
    return validate_integer(runs, "--runs", 2, MAX_RUNS)


def run_check(shell: Any, cell: str, runs: int, reseed: Callable[[], object]) -> CheckReport:
    """Run ``cell`` ``runs`` times in ``shell``, calling ``reseed()`` before each, and compare.

    ``shell`` is an IPython InteractiveShell. A run that raises stops the check (IPython
    has shown the traceback) and the report says which run failed.
    """
    from det_nb import entropy_audit

    runs = validate_runs(runs)
    tracker = _Tracker(shell, *_names_used(shell, cell))
    mark = entropy_audit.mark()
    for run in range(1, runs + 1):
        reseed()
        tracker.start_run(first=run == 1)
        result = shell.run_cell(cell)
        if not result.success:
            exc = result.error_in_exec or result.error_before_exec
            text = exc.msg if isinstance(exc, SyntaxError) else str(exc)  # no file names
            message = text.strip().splitlines()[0] if text and text.strip() else ""
            error = f"run {run} of {runs} raised {type(exc).__name__}"
            return CheckReport(runs, error=f"{error}: {message}" if message else error)
        tracker.end_run(run, last=run == runs)
    unseeded = tuple(entropy_audit.describe(_as_shown(record))
                     for record in entropy_audit.records(since=mark))
    return dataclasses.replace(tracker.report(runs), unseeded=unseeded)


def _as_shown(record: dict[str, Any]) -> dict[str, Any]:
    """An audit record of the checked cell's body, its line counted as the cell shows it
    (under its ``%%det_check`` line); lines of other cells stay as they are."""
    if record["file"] is None and record["cell"] is not None and record["cell"] == record[
            "run_by"]:
        return {**record, "line": record["line"] + 1}
    return record


@dataclass
class _Track:
    """One changed name across runs."""

    first: _Fp  # the earliest fingerprint seen, for the summary
    last: _Fp  # the previous run's fingerprint
    kept: object  # the previous run's value (by reference, or a Snapshot)
    detail: str | None = None
    unchecked: str | None = None


@dataclass
class _Tracker:
    """Watches the user namespace from run to run and compares the changed names."""

    shell: Any
    loaded: frozenset[str]  # names the cell's own code reads
    watched: frozenset[str] | None  # names to watch for in-place changes (None: all)
    tracks: dict[str, _Track] = field(default_factory=dict)
    before: dict[str, object] = field(default_factory=dict)  # namespace as a run starts
    before_fps: dict[str, _Fp] = field(default_factory=dict)  # its watched names' prints
    fps: dict[str, _Fp] = field(default_factory=dict)  # prints made as the last run ended
    pre_cell: frozenset[str] = frozenset()  # names defined before the first run
    in_place: set[str] = field(default_factory=set)  # names changed in place in any run
    used_unchecked: dict[str, str] = field(default_factory=dict)

    def start_run(self, first: bool) -> None:
        """Record the namespace as a run starts (after reseeding)."""
        now = _visible(self.shell)
        self.before_fps = {}
        for name, value in now.items():
            if not self._watch(name, value):
                continue
            carried = self.fps.get(name)
            same = carried is not None and self.before.get(name) is value
            self.before_fps[name] = carried if same else _fingerprint(value)
        self.before = now
        if first:
            self.pre_cell = frozenset(now)
            self.used_unchecked = {
                name: f"{fp.summary}: used by the cell, which may change it unseen: {fp.reason}"
                for name, fp in self.before_fps.items()
                if isinstance(fp, Unfingerprintable) and name in self.loaded
            }

    def end_run(self, run: int, last: bool) -> None:
        """Find what this run changed, fingerprint it, and compare it with the last run."""
        now = _visible(self.shell)
        before = self.before
        fps: dict[str, _Fp] = {}

        def fp_of(name: str) -> _Fp:
            if name not in fps:
                fps[name] = _fingerprint(now[name]) if name in now else _ABSENT
            return fps[name]

        changed = {n for n in before.keys() | now.keys()
                   if n not in now or n not in before or now[n] is not before[n]}
        mutated = {n for n, fp in self.before_fps.items()
                   if n in now and now[n] is before[n] and fp_of(n) != fp}
        self.in_place |= mutated
        for name in sorted(changed | mutated):
            if name in self.tracks or as_result(now.get(name, before.get(name))) is NOT_A_RESULT:
                continue  # code holding no data is not a result: neither compared nor listed
            if run == 1:
                self.tracks[name] = _Track(fp_of(name), fp_of(name), None)
            else:  # unchanged until now: the value at the start of this run stands for all
                old = self.before_fps.get(name) if name in mutated else None
                old = old or (_fingerprint(before[name]) if name in before else _ABSENT)
                self.tracks[name] = _Track(old, old, before.get(name, _ABSENT))
        for name, track in self.tracks.items():
            current = fp_of(name)
            if track.unchecked is None:
                self._compare(name, track, current, now.get(name, _ABSENT), run)
            track.last = current
            if last:
                track.kept = None
            elif name in mutated and isinstance(current, Fingerprint):
                track.kept = self._snapshot(track, now[name])  # the next run would change it
            else:
                track.kept = now.get(name, _ABSENT)
        self.before, self.fps = now, fps

    def _compare(self, name: str, track: _Track, current: _Fp, value: object, run: int) -> None:
        """Record the first difference (or the reason it cannot be checked)."""
        for fp in (track.last, current):
            if isinstance(fp, Unfingerprintable):
                track.unchecked = f"{fp.summary}: {fp.reason}"
                return
        if run == 1 or track.detail is not None or current == track.last:
            return
        runs = f"(runs {run - 1} and {run})"
        previous = track.kept
        if previous is _ABSENT or value is _ABSENT:
            where = run - 1 if value is _ABSENT else run
            track.detail = f"{name}: defined in run {where} only {runs}"
        elif not isinstance(previous, Snapshot) and _fingerprint(previous) != track.last:
            track.detail = (f"{name}: {track.last.summary}: differs {runs}; the earlier value"
                            " was changed in place since, so no detail")
        else:
            labels = (f"run {run - 1}", f"run {run}")
            detail = describe_difference(as_result(previous), as_result(value), name, labels)
            track.detail = f"{detail or name + ': differs'} {runs}"

    @staticmethod
    def _snapshot(track: _Track, value: object) -> object:
        """A copy of ``value``; where its own code raises now, the name becomes unchecked."""
        try:
            return snapshot(as_result(value))
        except ValueError as error:
            track.unchecked = str(error)
            return None

    def _watch(self, name: str, value: object) -> bool:
        """Should ``name`` be fingerprinted before a run, to see in-place changes?"""
        return (self.watched is None or name in self.watched) and not _inert(value)

    def report(self, runs: int) -> CheckReport:
        compared, differing, unchecked = [], [], dict(self.used_unchecked)
        for name in sorted(self.tracks):
            track = self.tracks[name]
            if track.unchecked is not None:
                unchecked[name] = track.unchecked
                continue
            compared.append(Compared(name, track.first.summary))
            if track.detail is not None:
                differing.append(Differing(name, track.detail, self._note(name)))
        return CheckReport(
            runs,
            compared=tuple(compared),
            differing=tuple(differing),
            unchecked=tuple(Unchecked(n, unchecked[n]) for n in sorted(unchecked)),
        )

    def _note(self, name: str) -> str:
        if name in self.pre_cell and (name in self.loaded or name in self.in_place):
            return (f"{name} existed before the cell, which uses or changes it, so each run"
                    " starts from what the previous run left")
        return ""


def _fingerprint(value: object) -> _Fp:
    """The fingerprint of a name's value: of the data it holds where it is code."""
    return fingerprint(as_result(value))


def _inert(value: object) -> bool:
    """Values whose in-place changes need no watching: immutable (plain scalars, NumPy
    scalars, TF eager tensors, JAX arrays), or code that holds no data."""
    kind = type(value)  # not isinstance(): an object's own __class__ may raise
    if (issubclass(kind, _IMMUTABLE) or kind.__name__ == "EagerTensor"
            or as_result(value) is NOT_A_RESULT):
        return True
    np = sys.modules.get("numpy")  # never imported here: a NumPy scalar means it is loaded
    if np is not None and issubclass(kind, np.generic):
        return True
    jax = sys.modules.get("jax")
    return jax is not None and issubclass(kind, getattr(jax, "Array", ()))


def _visible(shell: Any) -> dict[str, object]:
    """The user's names: without IPython's history variables and its own hidden names."""
    hidden = shell.user_ns_hidden
    return {
        name: value
        for name, value in shell.user_ns.items()
        if not _IGNORED.fullmatch(name) and not (name in hidden and hidden[name] is value)
    }


def _names_used(shell: Any, cell: str) -> tuple[frozenset[str], frozenset[str] | None]:
    """(names the cell reads, names to watch for in-place changes; None means all).

    Watched: what the cell reads, plus the globals that notebook functions, methods and
    classes it refers to read, transitively. Magics and shell commands can reach anything,
    and so can a class whose own code raises when it is inspected.
    """
    try:
        tree = ast.parse(shell.transform_cell(cell))
    except (SyntaxError, ValueError):
        return frozenset(), None
    loaded: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load):
            loaded.add(node.id)
        elif isinstance(node, ast.AugAssign) and isinstance(node.target, ast.Name):
            loaded.add(node.target.id)
        elif isinstance(node, ast.Global | ast.Nonlocal):
            loaded.update(node.names)
    if "get_ipython" in loaded:
        return frozenset(loaded), None
    namespace = shell.user_ns
    names_of: dict[int, list[str]] | None = None  # built when a closure holds a value
    watched, queue, seen = set(loaded), list(loaded), set()
    while queue:
        value = namespace.get(queue.pop())
        try:
            reached = list(_code_of(value, namespace, seen))
        except Exception:  # e.g. a metaclass whose __module__ raises
            return frozenset(loaded), None
        for found in reached:
            if isinstance(found, types.CodeType):
                fresh = set(found.co_names) - watched
            else:  # a value a closure or default holds: watched by the names bound to it
                if names_of is None:
                    names_of = {}
                    for name, bound in namespace.items():
                        names_of.setdefault(id(bound), []).append(name)
                fresh = set(names_of.get(id(found), ())) - watched
            watched |= fresh
            queue.extend(fresh)
    return frozenset(loaded), frozenset(watched)


def _code_of(value: object, namespace: dict, seen: set[int]) -> Iterator[object]:
    """Code objects of a notebook function, method, class or class instance (not twice),
    and the values its functions hold in closure cells and defaults: ``bump = make(w)``
    changes ``w`` through its closure, though no code names it."""
    if issubclass(type(value), types.MethodType | staticmethod | classmethod):
        value = value.__func__
    if not issubclass(type(value), types.FunctionType | type):
        value = type(value)
    if id(value) in seen:
        return
    seen.add(id(value))
    if isinstance(value, types.FunctionType) and value.__globals__ is namespace:
        yield from _nested_code(value.__code__)
        for held in _held_by(value):
            if issubclass(type(held), types.FunctionType | type):
                yield from _code_of(held, namespace, seen)
            else:
                yield held
    elif isinstance(value, type) and value.__module__ == namespace.get("__name__"):
        for member in vars(value).values():
            yield from _code_of(member, namespace, seen)


def _held_by(function: types.FunctionType) -> Iterator[object]:
    """What a function holds: its closure cells' contents and its default values."""
    for cell in function.__closure__ or ():
        try:
            yield cell.cell_contents
        except ValueError:  # a cell not filled yet
            continue
    yield from function.__defaults__ or ()
    yield from (function.__kwdefaults__ or {}).values()


def _nested_code(code: types.CodeType) -> Iterator[types.CodeType]:
    yield code
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            yield from _nested_code(const)
