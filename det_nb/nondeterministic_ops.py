"""Ops without a deterministic kernel: counted in warn mode, named after a strict error.

With deterministic algorithms on, every torch kernel that has no deterministic
implementation (CUDA atomics, mostly) calls ``at::Context::alertNotDeterministic(op)``. In
strict mode that raises ``RuntimeError: <op> does not have a deterministic implementation,
but you set 'torch.use_deterministic_algorithms(True)'...``; in warn mode (``warn_only``)
it issues a UserWarning with the same opening, once per call. Python shows a warning once
per code location, so det_nb lets these through every time (a filter ``always`` for their
text, first in the list) and counts each one in front of the function that shows warnings;
the first of each op is shown, the rest only counted. The function is
``warnings._showwarnmsg`` (private, guarded), not ``warnings.showwarning``:
``catch_warnings(record=True)`` (pytest, some libraries) swaps the public one out.

The ops that ran stay listed across every re-seeding, as the entropy audit's records do:
values computed with them are still in the kernel. A hard ``%reset`` forgets them (the
audit's wrapper of ``shell.reset`` calls :func:`reset`), and so does a restart. An op that
raised in strict mode stopped a cell of the current run: a new seeding forgets it.

Nothing here imports torch; the state is the process's, as warnings are.
"""

from __future__ import annotations

import re
import warnings
from collections import Counter
from collections.abc import Callable
from typing import Any

_OPENING = r"(?P<op>.+?) does not have a deterministic implementation, but you set "
WARNED = re.compile(_OPENING + re.escape("'torch.use_deterministic_algorithms(True, "
                                         "warn_only=True)'"))
RAISED = re.compile(_OPENING + re.escape("'torch.use_deterministic_algorithms(True)'"))
#: What ``warnings.filterwarnings`` matches (from the start of the message, any case).
_FILTER = r".+ does not have a deterministic implementation, but you set 'torch\."

#: Op name prefixes, and the deterministic way to do the same (DESIGN.md, "GPUs").
_REPLACEMENTS = (
    ("adaptive_avg_pool", "replace nn.AdaptiveAvgPool2d by a fixed nn.AvgPool2d, or for a "
     "1x1 output by x.mean(dim=(2, 3), keepdim=True)"),
    ("adaptive_max_pool", "replace nn.AdaptiveMaxPool2d by a fixed nn.MaxPool2d"),
    ("_histc", "compute the histogram on the CPU: x.cpu().histc(...)"),
    ("_bincount", "count with weights on the CPU: x.cpu().bincount(weights=w.cpu())"),
    ("median", "take the median with indices on the CPU: x.cpu().median(dim)"),
)
_ANY_OP = "replace it by an op with a deterministic kernel, or run it on the CPU"

_ran: Counter[str] = Counter()  # op -> calls in warn mode since the latest hard reset
_raised: list[str] = []  # ops that raised in strict mode since the latest seeding
_shown: set[str] = set()  # ops whose first warning was shown (listed in _ran)
_previous: Callable[[Any], None] | None = None  # what showed warnings before det_nb
_counting = False


def install() -> None:
    """Count every warn-mode alert from now on (det_nb's filter first in the list again).

    The filter list is changed only when det_nb's is not first: each change makes Python
    show every other warning again once per line.
    """
    global _previous, _counting
    if not warnings.filters or not _ours(warnings.filters[0]):
        warnings.filterwarnings("always", message=_FILTER, category=UserWarning)
    if getattr(warnings, "_showwarnmsg", None) is not _show:
        _previous = getattr(warnings, "_showwarnmsg", None)
        if _previous is not None:
            warnings._showwarnmsg = _show
    _counting = _previous is not None


def uninstall() -> None:
    """Stop counting; remove det_nb's filter, and its hook unless another wraps it."""
    global _counting
    _counting = False
    ours = [entry for entry in warnings.filters if _ours(entry)]
    for entry in ours:
        warnings.filters.remove(entry)
    if ours and hasattr(warnings, "_filters_mutated"):
        warnings._filters_mutated()
    if getattr(warnings, "_showwarnmsg", None) is _show and _previous is not None:
        warnings._showwarnmsg = _previous


def _ours(entry: tuple) -> bool:
    """Whether a ``warnings.filters`` entry is det_nb's."""
    return entry[0] == "always" and getattr(entry[1], "pattern", None) == _FILTER


def counting() -> bool:
    """Whether warn-mode alerts are being counted."""
    return _counting


def reset() -> None:
    """Forget what ran and raised: what a hard ``%reset`` does, as the values computed with
    those ops are gone then (an op that runs again is shown again)."""
    _ran.clear()
    _raised.clear()
    _shown.clear()


def forget_raised() -> None:
    """A new seeding starts a new run: forget the ops that raised in strict mode (they
    stopped a cell of the last one). The ops that ran stay listed."""
    _raised.clear()


def _show(message: Any) -> None:
    """Count an alert and show only its op's first; pass every other warning on."""
    found = WARNED.match(str(message.message)) if _counting else None
    if found is not None:
        op = found["op"]
        _ran[op] += 1
        if op in _shown:
            return
        _shown.add(op)
    if _previous is not None:
        _previous(message)


def note_error(error: BaseException | None) -> str | None:
    """Note the op of a strict-mode error (in ``error`` or its causes); return it, or None."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        found = RAISED.match(str(error)) if isinstance(error, RuntimeError) else None
        if found is not None:
            if found["op"] not in _raised:
                _raised.append(found["op"])
            return found["op"]
        error = error.__cause__ or error.__context__
    return None


def ran() -> dict[str, int]:
    """Ops that ran in warn mode since the kernel started or its latest hard ``%reset``,
    with their counts, first first."""
    return dict(_ran)


def raised() -> list[str]:
    """Ops that raised in strict mode since the latest seeding, in order."""
    return list(_raised)


def describe(counts: dict[str, int]) -> str:
    """``adaptive_avg_pool2d_backward_cuda 60 times, put_ once``."""
    return ", ".join(f"{op} {'once' if n == 1 else f'{n} times'}" for op, n in counts.items())


def replacement(op: str) -> str:
    """What to do instead of ``op``, in words."""
    bare = op.removeprefix("aten::")
    return next((hint for prefix, hint in _REPLACEMENTS if bare.startswith(prefix)), _ANY_OP)


def replacements(ops: list[str]) -> str:
    """What to do instead of each op: ``for put_: ...; for adaptive_avg_pool2d_...: ...``."""
    grouped: dict[str, list[str]] = {}
    for op in ops:
        grouped.setdefault(replacement(op), []).append(op)
    return "; ".join(f"for {', '.join(named)}: {hint}" for hint, named in grouped.items())


def record() -> dict[str, Any]:
    """What a run record keeps: ops that ran (with counts) and ops that raised."""
    return {"ran": ran(), "raised": raised()}
