"""tqdm progress bars by what a reader sees: the count, the total, the description, the
unit, the postfix and whether the bar is shown; not their timings (rates, start times)
nor the widgets and comms of a notebook bar, which differ in every run."""

from __future__ import annotations

from types import ModuleType
from typing import Any

from det_nb.values.base import Family, View, find, parts

# What a reader sees of a bar (a disabled bar lacks all but n, total and disable).
_SHOWN = ("n", "total", "desc", "unit", "postfix", "disable")


class Tqdm(Family):
    """``tqdm.std.tqdm`` and its subclasses (``tqdm.auto``, ``tqdm.notebook``, ...)."""

    name = "tqdm"
    module = "tqdm"

    def view(self, value: object, module: ModuleType | None) -> View | None:
        tqdm: Any = module
        if not isinstance(value, find(tqdm, "std.tqdm")):
            return None
        named = {name: getattr(value, name, None) for name in _SHOWN}
        kind = type(value).__name__
        return parts(kind, named, f"{kind} ({named['n']}/{named['total']})")
