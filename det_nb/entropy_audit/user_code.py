"""Whose code made a call: the notebook's (its cells, the modules in its folder) or a library's.

A cell is recognised by IPython's own map of the file names it compiles cells under
(``shell.compile._filename_map``: ``<ipython-input-N-...>`` in terminal IPython,
``/tmp/ipykernel_PID/NNN.py`` in a kernel) to their execution counts. A module is the
notebook's when its file lies in the notebook's folder (the kernel's working directory
when the audit started), outside any installed environment and outside det_nb. Without
IPython, the ``__main__`` script counts too. Where in that code a call was made comes from
the frame: its line, and (Python 3.11+) the columns of the call being executed.
"""

from __future__ import annotations

import ast
import linecache
import os
import site
import sys
import sysconfig
from types import CodeType, FrameType
from typing import Any, NamedTuple

#: Calls that read a clock: a seed computed on the same line from one is a time seed.
CLOCK_CALLS = frozenset({
    "time", "time_ns", "monotonic", "monotonic_ns", "perf_counter", "perf_counter_ns",
    "now", "utcnow", "today",
})
#: The longest call text kept in a record.
MAX_CALL_TEXT = 120
_PACKAGE_DIRS = (f"{os.sep}site-packages{os.sep}", f"{os.sep}dist-packages{os.sep}")
_DET_NB_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep


class Place(NamedTuple):
    """A file of the notebook's code: a cell, or a module given relative to the folder."""

    filename: str
    module: str | None  # None for a cell
    clock_lines: frozenset[int]  # lines that call a clock (a seed there is a time seed)


class CallSite(NamedTuple):
    """Where in a file a call was made: its line, that line's text and the call's own text."""

    line: int
    text: str  # the whole line, stripped
    call: str  # the call expression as written ("" when the source is not at hand)
    node: ast.Call | None  # the call, parsed (for NumPy's "was it given a seed?")


class UserCode:
    """Tells the notebook's code from everyone else's, with a cache per file name."""

    def __init__(self) -> None:
        self.shell: Any = None
        self.folder: str | None = None
        self._libraries: tuple[str, ...] = ()
        self._main: str | None = None
        #: file name -> Place, or None for code that is not the notebook's
        self.places: dict[str, Place | None] = {}
        #: file name -> its clock lines (none for code that is not the notebook's): what a
        #: seeding function called in a tight loop looks up
        self.clock_lines: dict[str, frozenset[int]] = {}
        self._sites: dict[tuple[CodeType, int], CallSite] = {}

    def attach(self, shell: Any, folder: str) -> None:
        """Recognise ``shell``'s cells (None: no IPython) and modules under ``folder``."""
        self.shell, self.folder = shell, os.path.abspath(folder)
        self._libraries = _library_roots()
        main = sys.modules.get("__main__")
        path = getattr(main, "__file__", None) if shell is None else None
        self._main = os.path.abspath(path) if isinstance(path, str) else None
        self.places.clear()
        self.clock_lines.clear()
        self._sites.clear()

    def place(self, filename: str) -> Place | None:
        """The notebook's file ``filename`` is, or None; cached (the caller looks up first)."""
        place = None
        if self.cell_number(filename) is not None:
            place = Place(filename, None, clock_lines(_source(filename)))
        else:
            module = self._module(filename)
            if module is not None:
                place = Place(filename, module, clock_lines(_source(filename)))
        self.places[filename] = place
        self.clock_lines[filename] = frozenset() if place is None else place.clock_lines
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


def clock_lines(source: str) -> frozenset[int]:
    """Lines of ``source`` on which a seed would come from a clock.

    Those holding a clock call (``time.time()``, ``time_ns()``, ``datetime.now()``, ...)
    and every line of a call whose arguments hold one, so a seed call spread over lines is
    caught on its first. Source that does not parse has none.
    """
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return frozenset()
    lines: set[int] = set()

    def visit(node: ast.AST) -> bool:
        found = False
        for child in ast.iter_child_nodes(node):
            found = visit(child) or found
        if isinstance(node, ast.Call):
            if _callee_name(node) in CLOCK_CALLS:
                lines.add(node.lineno)
                found = True
            if found:
                lines.update(range(node.lineno, (node.end_lineno or node.lineno) + 1))
        return found

    visit(tree)
    return frozenset(lines)


def _callee_name(call: ast.Call) -> str | None:
    """The last name of what is called: ``default_rng`` for ``np.random.default_rng()``."""
    func = call.func
    if isinstance(func, ast.Attribute):
        return func.attr
    return func.id if isinstance(func, ast.Name) else None


def callee_name(site: CallSite) -> str | None:
    """The last name of the call at ``site``, when it is known."""
    return None if site.node is None else _callee_name(site.node)


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
