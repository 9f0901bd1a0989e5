"""Whose code made a call: the notebook's (its cells, the modules in its folder) or a library's.

A cell is recognised by IPython's own map of the file names it compiles cells under
(``shell.compile._filename_map``: ``<ipython-input-N-...>`` in terminal IPython,
``/tmp/ipykernel_PID/NNN.py`` in a kernel) to their execution counts. A module is the
notebook's when its file lies in the notebook's folder (the kernel's working directory
when the audit started), outside any installed environment and outside det_nb. Without
IPython, the ``__main__`` script counts too. Where in that code a call was made comes from
the frame: its line, and (Python 3.11+) the columns of the call being executed.

A seeding call seeds from a clock when a clock is called inside its seed argument
(``random.seed(int(time.time()))``): the call's own expression, parsed from those columns,
says what its seed argument is, and each call written in it is a clock or not by what its
name refers to in the calling frame (looked up in the frame's namespaces and in modules;
a method by the type that holds it), never evaluated.
"""

from __future__ import annotations

import ast
import linecache
import os
import site
import sys
import sysconfig
from types import BuiltinFunctionType, CodeType, FrameType, ModuleType
from typing import Any, NamedTuple

#: The clocks a seed can be read from: functions of the ``time`` module, and class methods
#: of ``datetime.date`` and the classes derived from it (``datetime``, pandas' ``Timestamp``).
TIME_CLOCKS = frozenset({
    "time", "time_ns", "monotonic", "monotonic_ns", "perf_counter", "perf_counter_ns",
})
DATE_CLOCKS = frozenset({"now", "utcnow", "today"})
#: What :func:`resolve` gives for a name or attribute it cannot look up.
UNKNOWN = object()
#: The longest call text kept in a record.
MAX_CALL_TEXT = 120
_PACKAGE_DIRS = (f"{os.sep}site-packages{os.sep}", f"{os.sep}dist-packages{os.sep}")
_DET_NB_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep


class Place(NamedTuple):
    """A file of the notebook's code: a cell, or a module given relative to the folder."""

    filename: str
    module: str | None  # None for a cell
    #: line -> the calls that may be clocks written in another call's arguments there:
    #: where a seed can be read from a clock (see :func:`clock_calls`)
    clock_calls: dict[int, tuple[ast.Call, ...]]


class CallSite(NamedTuple):
    """Where in a file a call was made: its line, that line's text and the call's own text."""

    line: int
    text: str  # the whole line, stripped
    call: str  # the call expression as written ("" when the source is not at hand)
    node: ast.Call | None  # the call, parsed (its seed argument; was it given one?)


class UserCode:
    """Tells the notebook's code from everyone else's, with a cache per file name."""

    def __init__(self) -> None:
        self.shell: Any = None
        self.folder: str | None = None
        self._libraries: tuple[str, ...] = ()
        self._main: str | None = None
        #: file name -> Place, or None for code that is not the notebook's
        self.places: dict[str, Place | None] = {}
        #: file name -> its Place's clock calls (none for code that is not the notebook's):
        #: what a seeding function called in a tight loop looks up
        self.clock_calls: dict[str, dict[int, tuple[ast.Call, ...]]] = {}
        self._sites: dict[tuple[CodeType, int], CallSite] = {}
        #: (code, offset, seed keyword) -> the calls that may be clocks in that call's seed
        self._seed_calls: dict[tuple[CodeType, int, str], tuple[ast.Call, ...]] = {}

    def attach(self, shell: Any, folder: str) -> None:
        """Recognise ``shell``'s cells (None: no IPython) and modules under ``folder``."""
        self.shell, self.folder = shell, os.path.abspath(folder)
        self._libraries = _library_roots()
        main = sys.modules.get("__main__")
        path = getattr(main, "__file__", None) if shell is None else None
        self._main = os.path.abspath(path) if isinstance(path, str) else None
        self.places.clear()
        self.clock_calls.clear()
        self._sites.clear()
        self._seed_calls.clear()

    def place(self, filename: str) -> Place | None:
        """The notebook's file ``filename`` is, or None; cached (the caller looks up first)."""
        place = None
        if self.cell_number(filename) is not None:
            place = Place(filename, None, clock_calls(_source(filename)))
        else:
            module = self._module(filename)
            if module is not None:
                place = Place(filename, module, clock_calls(_source(filename)))
        self.places[filename] = place
        self.clock_calls[filename] = {} if place is None else place.clock_calls
        return place

    def cell_number(self, filename: str) -> int | None:
        """The execution count IPython compiled ``filename`` for, if it is a cell's."""
        compiler = getattr(self.shell, "compile", None)
        number = getattr(compiler, "_filename_map", {}).get(filename)
        return number if isinstance(number, int) else None

    def running_cell(self, frame: FrameType | None) -> int | None:
        """The execution count of the cell that ``frame`` runs in: the outermost cell on the
        stack (IPython 9 counts the next cell while one runs; a cell run inside a cell, as
        ``%%det_check`` does, belongs to the outer one). None outside any cell."""
        compiler = getattr(self.shell, "compile", None)
        cells = getattr(compiler, "_filename_map", None)
        number = None
        while cells and frame is not None:
            found = cells.get(frame.f_code.co_filename)
            if isinstance(found, int):
                number = found
            frame = frame.f_back
        return number

    def _module(self, filename: str) -> str | None:
        """``filename`` relative to the notebook's folder when it is the notebook's module."""
        if self.folder is None or filename.startswith("<"):
            return None
        path = os.path.abspath(filename)
        if path == self._main:
            return os.path.relpath(path, self.folder) if _under(path, self.folder) else path
        if not _under(path, self.folder) or path.startswith(_DET_NB_DIR):
            return None
        if any(part in path for part in _PACKAGE_DIRS) or any(
                _under(path, root) for root in self._libraries):
            return None
        return os.path.relpath(path, self.folder)

    def call_site(self, frame: FrameType) -> CallSite:
        """The line and call ``frame`` is executing; cached per code object and offset."""
        key = (frame.f_code, frame.f_lasti)
        site = self._sites.get(key)
        if site is None:
            site = self._sites[key] = _call_site(frame)
        return site

    def clock_seed(self, frame: FrameType, place: Place, keyword: str) -> bool:
        """Whether the seeding call ``frame`` (the notebook's code, in ``place``) is making
        takes its seed from a clock.

        The seed is the call's first positional argument, or its argument ``keyword``; a
        clock called anywhere inside it counts (``int(datetime.now().timestamp())``).
        Without the call's columns (Python 3.10, ``-X no_debug_ranges``) the seed argument
        is unknown: a clock called in any call's arguments on the line counts. Cached per
        call site: the check is then a look-up, and a name lookup per call that may be a
        clock.
        """
        if frame.f_lineno not in place.clock_calls:
            return False
        key = (frame.f_code, frame.f_lasti, keyword)
        calls = self._seed_calls.get(key)
        if calls is None:
            calls = self._seed_calls[key] = self._seed_calls_at(frame, place, keyword)
        return bool(calls) and any(_calls_clock(call, frame) for call in calls)

    def _seed_calls_at(self, frame: FrameType, place: Place, keyword: str) -> tuple[ast.Call, ...]:
        """The calls a clock seed can be read from at ``frame``'s call: those written in its
        seed argument, or without columns those in any call's arguments on the line."""
        node = self.call_site(frame).node
        if node is None:
            return place.clock_calls[frame.f_lineno]
        seed = seed_argument(node, keyword)
        return () if seed is None else tuple(filter(may_be_clock, ast.walk(seed)))


def _under(path: str, folder: str) -> bool:
    return path.startswith(folder if folder.endswith(os.sep) else folder + os.sep)


def _library_roots() -> tuple[str, ...]:
    """Folders of the interpreter, its standard library and installed packages."""
    roots = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}
    roots.update(sysconfig.get_paths().values())
    roots.update(site.getsitepackages())
    roots.add(site.getusersitepackages())
    return tuple(os.path.abspath(root) for root in roots if root)


def _source(filename: str) -> str:
    return "".join(linecache.getlines(filename))


def clock_calls(source: str) -> dict[int, tuple[ast.Call, ...]]:
    """Where in ``source`` a seed can be read from a clock: line -> the calls that may be
    clocks (:func:`may_be_clock`) written inside the arguments of a call that spans that
    line (``time.time()`` in ``random.seed(int(time.time()))``, on each of its lines).

    Lines without any are the fast path of a seeding call; whether a call is in the seed
    argument, and whether it is a clock, is judged when a seed is taken
    (:meth:`UserCode.clock_seed`). Source that does not parse has none.
    """
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return {}
    found: dict[int, dict[ast.Call, None]] = {}  # ordered and without repeats
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        inner = dict.fromkeys(
            call for argument in (*node.args, *(keyword.value for keyword in node.keywords))
            for call in ast.walk(argument) if may_be_clock(call))
        if inner:
            for line in range(node.lineno, (node.end_lineno or node.lineno) + 1):
                found.setdefault(line, {}).update(inner)
    return {line: tuple(calls) for line, calls in found.items()}


def may_be_clock(node: ast.AST) -> bool:
    """Whether ``node`` is a call that may read a clock: one without arguments
    (``time.time()``, ``date.today()``) or a ``now(...)`` (``datetime.now(timezone.utc)``)."""
    if not isinstance(node, ast.Call):
        return False
    func = node.func
    return (not node.args and not node.keywords) or (
        isinstance(func, ast.Attribute | ast.Name)
        and (func.attr if isinstance(func, ast.Attribute) else func.id) == "now")


def seed_argument(call: ast.Call, keyword: str) -> ast.expr | None:
    """The seed as written in ``call``: its first positional argument, else ``keyword=``."""
    if call.args:
        return call.args[0]
    return next((item.value for item in call.keywords if item.arg == keyword), None)


def _calls_clock(call: ast.Call, frame: FrameType) -> bool:
    """Whether ``call`` calls a clock (:data:`TIME_CLOCKS`, :data:`DATE_CLOCKS`), by what
    its callee refers to in ``frame``: ``time.time``, ``t()`` after ``from time import time
    as t``, ``datetime.now`` on the class or an instance; a method of the user's own named
    ``now`` is none. Nothing is evaluated and no attribute of the user's objects is read.
    """
    func = call.func
    if isinstance(func, ast.Attribute):
        owner = resolve(func.value, frame)
        if not issubclass(type(owner), ModuleType):  # a class, or an instance of one
            kind = owner if issubclass(type(owner), type) else type(owner)
            return func.attr in DATE_CLOCKS and _is_date(kind)
    return _is_clock(resolve(func, frame))


def _is_clock(function: object) -> bool:
    """Whether ``function`` is one of the clocks: a builtin of ``time``, or a class method
    of a date class bound to it (``datetime.now``)."""
    if type(function) is not BuiltinFunctionType:
        return False
    owner, name = function.__self__, function.__name__
    if issubclass(type(owner), ModuleType):
        return owner is sys.modules.get("time") and name in TIME_CLOCKS
    return issubclass(type(owner), type) and name in DATE_CLOCKS and _is_date(owner)


def _is_date(kind: type) -> bool:
    """Whether ``kind`` is ``datetime.date`` or derived from it (never importing datetime)."""
    datetime = sys.modules.get("datetime")
    return datetime is not None and issubclass(kind, datetime.date)


def resolve(node: ast.expr, frame: FrameType) -> object:
    """The object a name, or a module's attribute, stands for in ``frame``; else
    :data:`UNKNOWN`.

    Only dictionary look-ups (the frame's namespaces, a module's attributes): nothing of
    the user's runs.
    """
    if isinstance(node, ast.Name):
        for space in (frame.f_locals, frame.f_globals, frame.f_builtins):
            if node.id in space:
                return space[node.id]
        return UNKNOWN
    if isinstance(node, ast.Attribute):
        owner = resolve(node.value, frame)
        if issubclass(type(owner), ModuleType):
            return owner.__dict__.get(node.attr, UNKNOWN)
    return UNKNOWN


def callee_name(site: CallSite) -> str | None:
    """The last name of the call at ``site`` (``default_rng`` for
    ``np.random.default_rng()``), when it is known."""
    func = None if site.node is None else site.node.func
    if isinstance(func, ast.Attribute):
        return func.attr
    return func.id if isinstance(func, ast.Name) else None


def _call_site(frame: FrameType) -> CallSite:
    code, line = frame.f_code, frame.f_lineno or 0
    lines = linecache.getlines(code.co_filename)
    text = lines[line - 1].strip() if 0 < line <= len(lines) else ""
    start, end, first, last = _position(code, frame.f_lasti)
    if start is None or not lines or end is None or end > len(lines):
        return CallSite(line, text, "", None)
    # Columns count UTF-8 bytes, not characters.
    span = [lines[number - 1].encode() for number in range(start, end + 1)]
    span[-1] = span[-1][:last]
    span[0] = span[0][first:]
    call = b"".join(span).decode(errors="replace")
    try:
        node = ast.parse(call.strip(), mode="eval").body
    except SyntaxError:
        node = None
    shown = " ".join(call.split())
    if len(shown) > MAX_CALL_TEXT:
        shown = shown[:MAX_CALL_TEXT - 3] + "..."
    return CallSite(start, text if start == line else lines[start - 1].strip(), shown,
                    node if isinstance(node, ast.Call) else None)


def _position(code: CodeType, offset: int) -> tuple[int | None, int | None, int, int]:
    """(first line, last line, first column, end column) of the instruction at ``offset``.

    Python 3.11 keeps columns per instruction; before, or under ``-X no_debug_ranges``,
    nothing is known and the record keeps the line alone.
    """
    positions = getattr(code, "co_positions", None)
    if positions is None or offset < 0:
        return None, None, 0, 0
    for index, position in enumerate(positions()):
        if index == offset // 2:
            start, end, first, last = position
            if None in (start, end, first, last):
                return None, None, 0, 0
            return start, end, first, last
    return None, None, 0, 0
