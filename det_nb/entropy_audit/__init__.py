"""The entropy audit: which of the notebook's calls drew from OS entropy or seeded from a clock.

Seeding every global generator does not make a notebook reproducible when its code makes
generators of its own without a seed (``np.random.default_rng()``), asks the operating
system (``uuid.uuid4()``, ``secrets``) or seeds from the time. The audit wraps those entry
points as frameworks are imported (never importing one), and records a call when the
frame that made it is the notebook's: a cell, or a module in the notebook's folder. The
status's "unseeded randomness" line lists the records with their fixes, and the verdict
is NOT reproducible while any exists; a hard ``%reset`` (or a restart) clears them,
re-seeding does not. The audit's wrapper of ``shell.reset`` is det_nb's only one: it also
forgets the torch ops without a deterministic kernel that warn mode listed
(:mod:`det_nb.nondeterministic_ops`), for the same reason.

For reports (``%%det_check``, ``verify``), inside the kernel::

    mark = entropy_audit.mark()            # before a cell
    ...                                    # the cell runs
    entropy_audit.records(since=mark)      # JSON-able dicts: what it drew
    entropy_audit.records(cell=6)          # or by the cell's execution count
    entropy_audit.describe(record)         # "cell 6, line 1: uuid.uuid4()"
"""

from __future__ import annotations

from typing import Any

from det_nb import nondeterministic_ops
from det_nb.entropy_audit.audit import CHECK_NAME, CLOCK, OS_ENTROPY, EntropyAudit, describe
from det_nb.entropy_audit.entry_points import FAMILIES
from det_nb.status import Check

__all__ = [
    "CHECK_NAME", "CLOCK", "OS_ENTROPY", "activate", "clear", "describe", "install", "mark",
    "records", "status_check", "uninstall", "watch_call",
]

# Values computed by ops warn mode listed live in the namespace a hard %reset empties too.
_AUDIT = EntropyAudit(FAMILIES, also_forget=(nondeterministic_ops.reset,))


def install(shell: Any) -> None:
    """For ``%load_ext``: watch entry points in modules imported now, and every other one
    from the next cell on (its post-import hooks wait for it: see the module's note)."""
    _AUDIT.install(shell)


def activate() -> None:
    """For seeding (``%det_seed``, ``det_nb.seed()``): watch every entry point from now on."""
    _AUDIT.activate()


def uninstall() -> None:
    """For ``%unload_ext``: put every wrapped entry point back; the records stay."""
    _AUDIT.uninstall()


def records(cell: int | None = None, since: int | None = None) -> list[dict[str, Any]]:
    """The records, oldest first, as JSON-able dicts.

    ``cell``: only draws made while the cell with that execution count ran; ``since``:
    only records with a draw after :func:`mark` returned that number. Each dict has
    ``cell`` (execution count of the cell holding the line, or None), ``file`` (a module
    relative to the notebook's folder, or None), ``line``, ``text`` (the line), ``call``
    (what was called, as written), ``entry`` (the entry point that drew), ``kind``
    (``"os entropy"`` or ``"clock seed"``), ``fix``, ``count`` and ``run_by`` (the
    execution count running at the time). A seed seen by its effect only (torch's global
    generator re-seeded by a C method) has ``cell``, ``file`` and ``line`` None and ``text``
    naming what holds it. ValueError for a bad ``cell`` or ``since``.
    """
    return _AUDIT.records(cell, since)


def mark() -> int:
    """A mark to pass as ``records(since=...)``: how many draws were counted so far."""
    return _AUDIT.mark()


def clear() -> None:
    """What a hard ``%reset`` does: forget every record, and the torch ops warn mode listed."""
    _AUDIT.clear()


def watch_call(callee: Any) -> Any:
    """For cells the audit rewrote (:mod:`.cell_calls`): ``callee``, or a wrapper that
    judges the call of a C method or Cython class a family watches after it runs."""
    return _AUDIT.watch_call(callee)


def status_check() -> Check:
    """The status's "unseeded randomness" check, read now."""
    return _AUDIT.status_check()
